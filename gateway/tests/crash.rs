//! Durability under `kill -9`: a gateway process is killed repeatedly while an
//! idempotent producer writes; every acknowledged record must be readable at its
//! acknowledged offset afterwards, offsets must be contiguous, and the producer's
//! retries across restarts must not duplicate anything.

mod common;

use std::time::{Duration, Instant};

use common::kafka::Deliveries;

const PARTITIONS: i32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    kill9_scenario(dir.path(), &[], 20_000).await;
}

/// The same drill with S3 + DynamoDB (moto) as the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs emulators: scripts/test-all.sh starts them"]
async fn kill9_under_load_on_the_aws_backend() {
    let args = common::kafka::fresh_aws_backend("floe-crash");
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    kill9_scenario(dir.path(), &args, 6_000).await;
}

async fn kill9_scenario(data_dir: &std::path::Path, extra: &[(&str, &str)], total: u64) {
    let port = common::free_port();
    let mut gw = common::Process::start(data_dir, port, extra);
    let bs = gw.bootstrap();
    common::kafka::create_topic(&bs, "crash", PARTITIONS).await;

    let producer = common::kafka::durable_producer(&bs);
    let (sender, deliveries) =
        common::kafka::spawn_paced_sender(&producer, "crash", PARTITIONS, total, 20);
    let acked_count = || deliveries.lock().expect("lock").acked.len();
    // Kill the gateway at pseudo-random moments while acknowledgements flow: each
    // kill waits until acks have progressed since the previous restart.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut kills = 0;
    let mut last = 0usize;
    while !sender.is_finished() && kills < 5 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Kill after another 10-30% of the records were acknowledged.
        let step = (total / 10) as usize;
        let target = last + step + (x % (2 * step as u64)) as usize;
        let waited = Instant::now();
        while acked_count() < target
            && !sender.is_finished()
            && waited.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if sender.is_finished() {
            break;
        }
        let before = acked_count();
        last = before;
        gw.restart();
        kills += 1;
        eprintln!("kill -9 #{kills} after {before} acknowledged records");
    }
    tokio::time::timeout(Duration::from_secs(240), sender)
        .await
        .expect("producer finishes")
        .expect("sender task");
    drop(producer);
    let Deliveries { acked, failed } = std::mem::take(&mut *deliveries.lock().expect("lock"));
    assert!(
        failed.is_empty(),
        "deliveries failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert_eq!(acked.len() as u64, total, "every record acknowledged");
    assert!(
        kills >= 2,
        "the test killed the gateway while producing ({kills} kills)"
    );

    // One more crash with no load, then read everything back.
    gw.restart();
    let log = common::kafka::consume_all(&gw.bootstrap(), "crash", PARTITIONS);
    common::kafka::assert_log_matches_acks(&log, &acked);
    assert_eq!(gw.terminate(), Some(0), "graceful shutdown exits 0");
}
