//! Fault drills on the AWS backend (moto): the gateway process runs with fail
//! points armed in the HTTP client under the AWS SDK (`floe_core::fault::http`),
//! so S3 and DynamoDB seem to throttle, conflict, time out, refuse access or
//! vanish while an idempotent librdkafka producer writes. Everything above the
//! HTTP client is the production path.
//!
//! Each drill proves: the producer sees only retriable errors or added latency
//! (no delivery fails), no acknowledged record is lost or moved, nothing is
//! duplicated, offsets stay contiguous, and the gateway serves again by itself
//! once the fault clears (a fresh record is acknowledged, then a graceful stop
//! exits 0). Faults arm after a few hits (`@n`) so they strike mid-stream; the
//! producer is paced (2,000 records over at least 2.5 s) so a run makes many
//! flushes.

mod common;

use std::time::{Duration, Instant};

use common::kafka::Deliveries;

const PARTITIONS: i32 = 4;
const RECORDS: u64 = 2_000;

struct Outcome {
    /// Log lines naming a fired fail point.
    fired: usize,
    /// Flushes that failed definitively (their producers were told to retry).
    failed_flushes: usize,
    /// The gateway's log (stderr).
    log: String,
    /// From the first record sent to the last acknowledged.
    run_time: Duration,
}

/// Runs the drill with fail point spec `spec`; counts the log lines of fired
/// fail points that contain every string of `matching` (at least one must).
async fn drill(name: &str, spec: &str, matching: &[&str]) -> Outcome {
    let args = common::kafka::fresh_aws_backend(&format!("floe-drill-{name}"));
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("floe.log");
    let port = common::free_port();
    let mut gw = common::Process::start_logged(
        dir.path(),
        port,
        &args,
        &[("FLOE_FAILPOINTS", spec)],
        Some(&log_path),
    );
    let bs = gw.bootstrap();
    common::kafka::create_topic(&bs, "drill", PARTITIONS).await;

    let producer = common::kafka::durable_producer(&bs);
    let started = Instant::now();
    let (sender, deliveries) =
        common::kafka::spawn_paced_sender(&producer, "drill", PARTITIONS, RECORDS, 4);
    tokio::time::timeout(Duration::from_secs(240), sender)
        .await
        .expect("the producer finishes within 4 minutes")
        .expect("sender task");
    let Deliveries { acked, failed } = std::mem::take(&mut *deliveries.lock().expect("lock"));
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        failed.is_empty(),
        "{name}: deliveries failed: {:?}\n--- gateway log ---\n{}",
        &failed[..failed.len().min(5)],
        tail(&log)
    );
    assert_eq!(
        acked.len() as u64,
        RECORDS,
        "{name}: every record acknowledged"
    );
    let fired = log
        .lines()
        .filter(|l| l.contains("fail point fired") && matching.iter().all(|m| l.contains(m)))
        .count();
    assert!(
        fired > 0,
        "{name}: no fail point {matching:?} fired\n--- gateway log ---\n{}",
        tail(&log)
    );

    // Recovered: a fresh record is acknowledged once the fault is over.
    let d = producer
        .send(
            rdkafka::producer::FutureRecord::<(), _>::to("drill")
                .payload("after")
                .partition(0),
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("{name}: produce after the fault: {e}"));
    let run_time = started.elapsed();
    drop(producer);

    let records = common::kafka::consume_all(&bs, "drill", PARTITIONS);
    let mut expected = acked;
    expected.push(("after".to_string(), d.partition, d.offset));
    common::kafka::assert_log_matches_acks(&records, &expected);
    assert_eq!(gw.terminate(), Some(0), "{name}: graceful shutdown exits 0");
    eprintln!(
        "{name}: {fired} injected faults, {} records, run {:.1?}",
        RECORDS + 1,
        started.elapsed()
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    Outcome {
        fired,
        failed_flushes: log.matches("flush failed").count(),
        log,
        run_time,
    }
}

/// Transient faults are absorbed below the producer: retried until a definite
/// answer, no flush fails.
fn absorbed(o: &Outcome) {
    assert_eq!(
        o.failed_flushes,
        0,
        "a transient fault failed a flush\n{}",
        tail(&o.log)
    );
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// S3 answers 503 SlowDown to a burst of PUTs (each also retried inside the
/// SDK): uploads back off and succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: scripts/test-all.sh starts it"]
async fn s3_slowdown_burst() {
    let o = drill(
        "slowdown",
        "http.s3.put=throttle*24@3",
        &["http.s3.put", "Throttle"],
    )
    .await;
    assert_eq!(o.fired, 24, "the whole burst was served");
    absorbed(&o);
}

/// PUTs are applied but their responses are lost: the retry finds the object
/// already there (If-None-Match), reads it back, and the flush goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: scripts/test-all.sh starts it"]
async fn s3_put_timeouts() {
    let o = drill(
        "put-timeout",
        "http.s3.put=timeout*5@3",
        &["http.s3.put", "Timeout"],
    )
    .await;
    assert_eq!(o.fired, 5);
    absorbed(&o);
}

/// DynamoDB throttles the commit transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: scripts/test-all.sh starts it"]
async fn dynamodb_throttling() {
    let o = drill(
        "throttling",
        "http.ddb.TransactWriteItems=throttle*24@4",
        &["http.ddb.TransactWriteItems", "Throttle"],
    )
    .await;
    assert_eq!(o.fired, 24);
    absorbed(&o);
}

/// DynamoDB cancels commit transactions for conflicting ones
/// (TransactionCanceledException, reason TransactionConflict).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: scripts/test-all.sh starts it"]
async fn dynamodb_transaction_conflicts() {
    let o = drill(
        "conflict",
        "http.ddb.TransactWriteItems=conflict*20@4",
        &["http.ddb.TransactWriteItems", "Conflict"],
    )
    .await;
    assert_eq!(o.fired, 20);
    absorbed(&o);
}

/// Commits are applied but their responses are lost: the retry's condition
/// fails on the flush record that is already there, and the read-back decides
/// the commit happened, so no offset is used twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: scripts/test-all.sh starts it"]
async fn dynamodb_commit_timeouts() {
    let o = drill(
        "commit-timeout",
        "http.ddb.TransactWriteItems=timeout*4@4",
        &["http.ddb.TransactWriteItems", "Timeout"],
    )
    .await;
    assert_eq!(o.fired, 4);
    absorbed(&o);
}

/// Both services refuse connections for 10 s: produce stalls, then catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: scripts/test-all.sh starts it"]
async fn endpoint_unreachable_for_ten_seconds() {
    let o = drill("unreachable", "http=unreachable~10s@60", &["Unreachable"]).await;
    assert!(o.fired >= 2, "refused more than once: {}", o.fired);
    absorbed(&o);
    assert!(
        o.run_time >= Duration::from_secs(10),
        "the outage was felt: {:?}",
        o.run_time
    );
}

/// S3 and DynamoDB deny access for a while (a broken IAM policy being fixed):
/// flushes fail with a message naming the cause, producers get retriable
/// errors and retry, nothing is lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto: scripts/test-all.sh starts it"]
async fn access_denied_then_restored() {
    let o = drill(
        "denied",
        "http.s3.put=denied*4@3;http.ddb.TransactWriteItems=denied*4@12",
        &["Denied"],
    )
    .await;
    assert_eq!(o.fired, 8, "both services denied");
    assert!(
        o.failed_flushes > 0,
        "a denied request fails its flush (producers retry it)"
    );
    assert!(
        o.log.contains("IAM policy"),
        "the log names the likely cause\n{}",
        tail(&o.log)
    );
}
