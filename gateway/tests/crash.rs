//! Durability under `kill -9`: a gateway process is killed repeatedly while an
//! idempotent producer writes; every acknowledged record must be readable at its
//! acknowledged offset afterwards, offsets must be contiguous, and the producer's
//! retries across restarts must not duplicate anything.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;

fn consume_all(bootstrap: &str, topic: &str) -> BTreeMap<i32, Vec<(i64, String)>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "assign-only")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (_, hi) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, hi);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let total: i64 = ends.values().sum();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut n = 0i64;
    while n < total && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let v = String::from_utf8(m.payload().unwrap_or(&[]).to_vec()).expect("utf8");
            out.entry(m.partition()).or_default().push((m.offset(), v));
            n += 1;
        }
    }
    assert_eq!(n, total, "consumed up to the high watermarks");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    kill9_scenario(dir.path(), &[], 20_000).await;
}

/// The same drill with S3 + DynamoDB (moto) as the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs emulators: scripts/test-all.sh starts them"]
async fn kill9_under_load_on_the_aws_backend() {
    let endpoint = std::env::var("FLOE_TEST_MOTO_ENDPOINT")
        .expect("FLOE_TEST_MOTO_ENDPOINT must name the moto server (scripts/test-all.sh sets it)");
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("floe-crash-{}", uuid::Uuid::new_v4().simple());
    let args = [
        ("backend", "aws"),
        ("bucket", name.as_str()),
        ("table", name.as_str()),
        ("endpoint-url", endpoint.as_str()),
        ("region", "us-east-1"),
    ];
    let mut init = std::process::Command::new(common::floe_bin());
    init.arg("init");
    for (k, v) in &args {
        init.arg(format!("--{k}")).arg(v);
    }
    let out = init.output().expect("floe init");
    assert!(
        out.status.success(),
        "floe init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    kill9_scenario(dir.path(), &args, 6_000).await;
}

async fn kill9_scenario(data_dir: &std::path::Path, extra: &[(&str, &str)], total: u64) {
    let port = common::free_port();
    let mut gw = common::Process::start(data_dir, port, extra);
    let bs = gw.bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .create()
        .expect("admin");
    let t = NewTopic::new("crash", PARTITIONS, TopicReplication::Fixed(1));
    admin
        .create_topics([&t], &AdminOptions::new())
        .await
        .expect("create")[0]
        .as_ref()
        .expect("created");
    drop(admin);

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "180000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create()
        .expect("producer");
    let acked: Arc<Mutex<Vec<(u64, i32, i64)>>> = Arc::default();
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let sender = {
        let producer = producer.clone();
        let acked = acked.clone();
        let failed = failed.clone();
        tokio::spawn(async move {
            let mut waits = Vec::new();
            for seq in 0..total {
                let v = seq.to_string();
                let part = (seq % PARTITIONS as u64) as i32;
                let f = loop {
                    match producer.send_result(
                        FutureRecord::<(), _>::to("crash")
                            .payload(&v)
                            .partition(part),
                    ) {
                        Ok(f) => break f,
                        // Local queue full while the gateway is down: wait.
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                };
                let acked = acked.clone();
                let failed = failed.clone();
                waits.push(tokio::spawn(async move {
                    match f.await {
                        Ok(Ok(d)) => acked
                            .lock()
                            .expect("lock")
                            .push((seq, d.partition, d.offset)),
                        Ok(Err((e, _))) => failed.lock().expect("lock").push(e.to_string()),
                        Err(_) => failed.lock().expect("lock").push("cancelled".into()),
                    }
                }));
                if seq % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            for w in waits {
                let _ = w.await;
            }
        })
    };
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
        while acked.lock().expect("lock").len() < target
            && !sender.is_finished()
            && waited.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if sender.is_finished() {
            break;
        }
        let before = acked.lock().expect("lock").len();
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
    let failed = failed.lock().expect("lock").clone();
    assert!(
        failed.is_empty(),
        "deliveries failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    let acked = acked.lock().expect("lock").clone();
    assert_eq!(acked.len() as u64, total, "every record acknowledged");
    assert!(
        kills >= 2,
        "the test killed the gateway while producing ({kills} kills)"
    );

    // One more crash with no load, then read everything back.
    gw.restart();
    let log = consume_all(&gw.bootstrap(), "crash");
    let mut at: HashMap<(i32, i64), String> = HashMap::new();
    let mut seen: HashMap<String, (i32, i64)> = HashMap::new();
    for (p, recs) in &log {
        for (i, (off, v)) in recs.iter().enumerate() {
            assert_eq!(
                *off, i as i64,
                "partition {p}: offsets contiguous from 0, no gap or reuse"
            );
            if let Some(prev) = seen.insert(v.clone(), (*p, *off)) {
                panic!("record {v} duplicated at {prev:?} and ({p}, {off})");
            }
            at.insert((*p, *off), v.clone());
        }
    }
    for (seq, p, off) in &acked {
        assert_eq!(
            at.get(&(*p, *off)),
            Some(&seq.to_string()),
            "acknowledged record {seq} at {p}/{off}"
        );
    }
    assert_eq!(gw.terminate(), Some(0), "graceful shutdown exits 0");
}
