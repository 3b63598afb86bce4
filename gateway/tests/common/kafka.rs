//! Real-client helpers shared by the durability drills: read a topic back to its
//! high watermarks and check it against what the producer was told.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// Every record of `topic` (partitions `0..partitions`) up to the high
/// watermarks: partition → [(offset, payload)].
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<(i64, String)>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "assign-only")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let total = assign_from_beginning(&c, topic, partitions);
    let mut out: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
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

/// Assigns `c` partitions `0..partitions` of `topic` from the beginning;
/// returns how many records they hold up to their high watermarks (what a
/// read of everything must return, log starts at 0).
pub fn assign_from_beginning(c: &BaseConsumer, topic: &str, partitions: i32) -> i64 {
    let mut total = 0;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, hi) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        total += hi;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    total
}

/// Asserts the log is exactly what the producer was told: offsets contiguous
/// from 0 in every partition, no payload twice, and every acknowledged
/// `(payload, partition, offset)` found at its offset. An idempotent
/// librdkafka producer may acknowledge a record without an offset (-1001,
/// an "implicit ack": a retried batch that a later batch's acknowledgement
/// proves stored); such a record must then be in its partition.
pub fn assert_log_matches_acks(
    log: &BTreeMap<i32, Vec<(i64, String)>>,
    acked: &[(String, i32, i64)],
) {
    let mut at: HashMap<(i32, i64), &str> = HashMap::new();
    let mut seen: HashMap<&str, (i32, i64)> = HashMap::new();
    for (p, recs) in log {
        for (i, (off, v)) in recs.iter().enumerate() {
            assert_eq!(
                *off, i as i64,
                "partition {p}: offsets contiguous from 0, no gap or reuse"
            );
            if let Some(prev) = seen.insert(v, (*p, *off)) {
                panic!("record {v} duplicated at {prev:?} and ({p}, {off})");
            }
            at.insert((*p, *off), v);
        }
    }
    for (v, p, off) in acked {
        if *off < 0 {
            assert_eq!(
                seen.get(v.as_str()).map(|(stored, _)| *stored),
                Some(*p),
                "record {v}, acknowledged without an offset, in partition {p}"
            );
            continue;
        }
        assert_eq!(
            at.get(&(*p, *off)).copied(),
            Some(v.as_str()),
            "acknowledged record {v} at {p}/{off}"
        );
    }
}

/// What a paced sender was told: `(payload, partition, offset)` per
/// acknowledged record, and the error of every failed delivery.
#[derive(Default)]
pub struct Deliveries {
    pub acked: Vec<(String, i32, i64)>,
    pub failed: Vec<String>,
}

/// An idempotent, acks=all producer that survives long outages (the local
/// queue waits; deliveries time out only after three minutes).
pub fn durable_producer(bootstrap: &str) -> rdkafka::producer::FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "180000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create()
        .expect("producer")
}

/// Sends payloads `0..total` round-robin over `partitions`, pausing 5 ms after
/// every `group` records, recording every outcome in the returned `Deliveries`
/// as it arrives. The task ends when every delivery has an outcome.
pub fn spawn_paced_sender(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    partitions: i32,
    total: u64,
    group: u64,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::Mutex<Deliveries>>,
) {
    use rdkafka::producer::FutureRecord;
    let out: std::sync::Arc<std::sync::Mutex<Deliveries>> = Default::default();
    let producer = producer.clone();
    let topic = topic.to_string();
    let deliveries = out.clone();
    let task = tokio::spawn(async move {
        let mut waits = Vec::new();
        for seq in 0..total {
            let v = seq.to_string();
            let part = (seq % partitions as u64) as i32;
            let f = loop {
                match producer.send_result(
                    FutureRecord::<(), _>::to(&topic)
                        .payload(&v)
                        .partition(part),
                ) {
                    Ok(f) => break f,
                    // Local queue full while the gateway cannot take more: wait.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            };
            let deliveries = deliveries.clone();
            waits.push(tokio::spawn(async move {
                let outcome = f.await;
                let mut d = deliveries.lock().expect("lock");
                match outcome {
                    Ok(Ok(m)) => d.acked.push((v, m.partition, m.offset)),
                    Ok(Err((e, _))) => d.failed.push(e.to_string()),
                    Err(_) => d.failed.push("cancelled".into()),
                }
            }));
            if seq % group == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        for w in waits {
            let _ = w.await;
        }
    });
    (task, out)
}

/// Creates `topic` with `partitions` partitions through the Admin API.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    create_topic_with(bootstrap, topic, partitions, &[]).await;
}

/// Creates `topic` with `partitions` partitions and topic `configs`.
pub async fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let mut t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    admin
        .create_topics([&t], &AdminOptions::new())
        .await
        .expect("create")[0]
        .as_ref()
        .expect("created");
}

/// Deletes `topic` through the Admin API.
pub async fn delete_topic(bootstrap: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    admin
        .delete_topics(&[topic], &AdminOptions::new())
        .await
        .expect("delete")[0]
        .as_ref()
        .expect("deleted");
}

/// Flags for a fresh bucket and table (named `<prefix>-<uuid>`) on the moto
/// server of FLOE_TEST_MOTO_ENDPOINT, created with `floe init`.
pub fn fresh_aws_backend(prefix: &str) -> Vec<(&'static str, String)> {
    let endpoint = std::env::var("FLOE_TEST_MOTO_ENDPOINT")
        .expect("FLOE_TEST_MOTO_ENDPOINT must name the moto server (scripts/test-all.sh sets it)");
    let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    let args = vec![
        ("backend", "aws".to_string()),
        ("bucket", name.clone()),
        ("table", name),
        ("endpoint-url", endpoint),
        ("region", "us-east-1".to_string()),
    ];
    let mut init = std::process::Command::new(super::floe_bin());
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
    args
}
