//! Deleting records, as a Kafka user sees it through librdkafka: DeleteRecords
//! moves the log start forward (never back), ListOffsets earliest follows it,
//! a fetch below it is OFFSET_OUT_OF_RANGE and `auto.offset.reset` decides
//! what the consumer does, and the log start survives `kill -9`. Retention by
//! `retention.ms` and `retention.bytes` moves it on its own, checked every
//! `--retention-check-interval` (at a checkpoint).

mod common;

use std::time::{Duration, Instant};

use common::kafka::create_topic_with;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin")
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

/// Sends `n` records to `partition` one at a time, each waiting for its ack,
/// so each is its own flush (one index entry each).
async fn send_each(
    p: &FutureProducer,
    topic: &str,
    partition: i32,
    n: usize,
    payload: &[u8],
    timestamp: Option<i64>,
) {
    for _ in 0..n {
        let mut r = FutureRecord::<(), _>::to(topic)
            .payload(payload)
            .partition(partition);
        if let Some(ts) = timestamp {
            r = r.timestamp(ts);
        }
        p.send(r, Duration::from_secs(30)).await.expect("delivered");
    }
}

fn consumer(bootstrap: &str, reset: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "retention-test")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", reset)
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    consumer(bootstrap, "earliest")
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("watermarks")
}

/// Deletes below `offset` in `topic`-`partition`: the low watermark, or the
/// partition's error.
async fn delete_below(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offset: Offset,
) -> Result<i64, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, offset)
        .expect("tpl");
    let out = admin(bootstrap)
        .delete_records(&tpl, &AdminOptions::new())
        .await?;
    let e = out.find_partition(topic, partition).expect("answered");
    e.error()?;
    match e.offset() {
        Offset::Offset(o) => Ok(o),
        other => panic!("low watermark {other:?}"),
    }
}

/// Reads `topic`-`partition` from `from` until `end`: the offsets received.
fn offsets_read(bootstrap: &str, topic: &str, partition: i32, from: i64, end: i64) -> Vec<i64> {
    let c = consumer(bootstrap, "earliest");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.last().is_none_or(|o| *o + 1 < end) && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            got.push(m.expect("consume").offset());
        }
    }
    got
}

async fn delete_records_scenario(extra: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gw = common::Process::start(dir.path(), common::free_port(), extra);
    let bs = gw.bootstrap();
    create_topic_with(&bs, "dr", 2, &[]).await;
    let p = producer(&bs);
    send_each(&p, "dr", 0, 12, b"zero", None).await;
    send_each(&p, "dr", 1, 4, b"one", None).await;

    assert_eq!(delete_below(&bs, "dr", 0, Offset::Offset(5)).await, Ok(5));
    // The end: everything below the high watermark.
    assert_eq!(delete_below(&bs, "dr", 1, Offset::End).await, Ok(4));
    // Never backwards: the answer is the log start as it is.
    assert_eq!(delete_below(&bs, "dr", 0, Offset::Offset(2)).await, Ok(5));
    // Past the high watermark.
    match delete_below(&bs, "dr", 0, Offset::Offset(13)).await {
        Err(e) => assert_eq!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::OffsetOutOfRange),
            "{e}"
        ),
        Ok(o) => panic!("deleted past the high watermark: {o}"),
    }
    assert_eq!(watermarks(&bs, "dr", 0), (5, 12));
    assert_eq!(watermarks(&bs, "dr", 1), (4, 4));

    // Reading from below the log start: reset to the earliest offset...
    assert_eq!(
        offsets_read(&bs, "dr", 0, 1, 12),
        (5..12).collect::<Vec<_>>()
    );
    // ...or, with auto.offset.reset=error, an error and nothing below it.
    let c = consumer(&bs, "error");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("dr", 0, Offset::Offset(1))
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        assert!(Instant::now() < deadline, "no out-of-range error");
        match c.poll(Duration::from_millis(100)) {
            Some(Err(e)) => break e,
            Some(Ok(m)) => panic!("read offset {} below the log start", m.offset()),
            None => {}
        }
    };
    // librdkafka's answer to OFFSET_OUT_OF_RANGE with no reset policy.
    assert_eq!(
        err.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AutoOffsetReset),
        "{err}"
    );

    // The answer came after the log start was stored: kill -9 keeps it.
    gw.restart();
    assert_eq!(watermarks(&bs, "dr", 0), (5, 12));
    assert_eq!(watermarks(&bs, "dr", 1), (4, 4));
    send_each(&producer(&bs), "dr", 1, 1, b"after", None).await;
    assert_eq!(watermarks(&bs, "dr", 1), (4, 5));
    assert_eq!(offsets_read(&bs, "dr", 1, 0, 5), vec![4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start_for_good() {
    delete_records_scenario(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs emulators: scripts/test-all.sh starts them"]
async fn delete_records_on_the_aws_backend() {
    let args = common::kafka::fresh_aws_backend("floe-delrec");
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    delete_records_scenario(&args).await;
}

/// Waits for the low watermark to reach `at_least` (retention passes may
/// run while records are still being sent); returns the watermarks then.
fn wait_for_retention(bootstrap: &str, topic: &str, at_least: i64) -> (i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let w = watermarks(bootstrap, topic, 0);
        if w.0 >= at_least {
            return w;
        }
        assert!(Instant::now() < deadline, "retention left {topic} at {w:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn retention_scenario(extra: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        ("checkpoint-interval", "200ms"),
        ("retention-check-interval", "200ms"),
    ];
    args.extend_from_slice(extra);
    let gw = common::Process::start(dir.path(), common::free_port(), &args);
    let bs = gw.bootstrap();
    let p = producer(&bs);

    // By time: three records stamped an hour ago, then two stamped now; with
    // retention.ms of a minute the old three go, the new two stay.
    create_topic_with(&bs, "by-time", 1, &[("retention.ms", "60000")]).await;
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 3_600_000;
    send_each(&p, "by-time", 0, 3, b"old", Some(hour_ago)).await;
    send_each(&p, "by-time", 0, 2, b"new", None).await;
    assert_eq!(wait_for_retention(&bs, "by-time", 3), (3, 5));
    assert_eq!(offsets_read(&bs, "by-time", 0, 0, 5), vec![3, 4]);

    // By size: ten flushes of one 1,000-byte record each (a little over
    // 1,000 bytes stored each); keeping at least 3,000 bytes keeps the
    // newest three, as Kafka keeps whole segments.
    create_topic_with(&bs, "by-size", 1, &[("retention.bytes", "3000")]).await;
    send_each(&p, "by-size", 0, 10, &[7u8; 1000], None).await;
    assert_eq!(wait_for_retention(&bs, "by-size", 7), (7, 10));

    // Forever (-1) and compact-only topics keep everything.
    create_topic_with(&bs, "forever", 1, &[("retention.ms", "-1")]).await;
    create_topic_with(
        &bs,
        "compacted",
        1,
        &[("cleanup.policy", "compact"), ("retention.ms", "1000")],
    )
    .await;
    send_each(&p, "forever", 0, 2, b"x", Some(hour_ago)).await;
    let keyed = FutureRecord::to("compacted")
        .key("k")
        .payload("v")
        .partition(0)
        .timestamp(hour_ago);
    p.send(keyed, Duration::from_secs(30)).await.expect("sent");
    // Several retention passes (one per checkpoint interval).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(watermarks(&bs, "forever", 0), (0, 2));
    assert_eq!(watermarks(&bs, "compacted", 0), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_moves_the_log_start_by_time_and_by_size() {
    retention_scenario(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs emulators: scripts/test-all.sh starts them"]
async fn retention_on_the_aws_backend() {
    let args = common::kafka::fresh_aws_backend("floe-retention");
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    retention_scenario(&args).await;
}
