//! End-to-end with librdkafka (the `rdkafka` crate, bundled build) against a
//! gateway on 127.0.0.1: what a Kafka user does with their usual client.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

fn producer(bootstrap: &str, codec: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", codec)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

/// An assign-style consumer: it never subscribes or commits (consumer groups
/// come in a later release); librdkafka still wants a group.id to assign.
fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

async fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = admin(bootstrap)
        .create_topics([&t], &AdminOptions::new())
        .await
        .expect("create_topics");
    for r in res {
        r.expect("topic created");
    }
}

fn assign_all(c: &BaseConsumer, topic: &str, partitions: i32, offset: Offset) {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, offset).expect("tpl");
    }
    c.assign(&tpl).expect("assign");
}

type Rec = (i32, i64, Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>);
type KeyValue = (Vec<u8>, Vec<u8>);

fn consume_n(c: &BaseConsumer, n: usize, within: Duration) -> Vec<Rec> {
    let deadline = Instant::now() + within;
    let mut out = Vec::with_capacity(n);
    while out.len() < n && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| (x.key.to_string(), x.value.unwrap_or(&[]).to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    m.partition(),
                    m.offset(),
                    m.key().unwrap_or(&[]).to_vec(),
                    m.payload().unwrap_or(&[]).to_vec(),
                    headers,
                ));
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_codec_round_trips_byte_exact_and_in_order() {
    let g = common::InProcess::start().await;
    let bs = g.bootstrap();
    let partitions = 4;
    let per_codec = 20_000usize;
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    create_topic(&bs, "codecs", partitions, &[]).await;
    let mut sent: HashMap<i32, Vec<KeyValue>> = HashMap::new();
    for codec in codecs {
        let p = producer(&bs, codec);
        let mut futures = Vec::with_capacity(per_codec);
        for i in 0..per_codec {
            let key = format!("{codec}-key-{i}").into_bytes();
            // Values vary in size and content so codecs have real work.
            let value = format!("{codec}:{i}:{}", "x".repeat(i % 300)).into_bytes();
            let part = (i % partitions as usize) as i32;
            sent.entry(part)
                .or_default()
                .push((key.clone(), value.clone()));
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "codec",
                    value: Some(codec),
                })
                .insert(Header {
                    key: "i",
                    value: Some(&i.to_be_bytes()[..]),
                });
            let rec = FutureRecord::to("codecs")
                .key(&key)
                .payload(&value)
                .partition(part)
                .headers(headers);
            futures.push(p.send_result(rec).expect("enqueue"));
        }
        for f in futures {
            f.await.expect("delivery future").expect("delivered");
        }
    }
    let total = per_codec * codecs.len();
    let c = consumer(&bs);
    assign_all(&c, "codecs", partitions, Offset::Beginning);
    let got = consume_n(&c, total, Duration::from_secs(120));
    assert_eq!(got.len(), total, "consumed everything produced");
    let mut by_part: HashMap<i32, Vec<&Rec>> = HashMap::new();
    for r in &got {
        by_part.entry(r.0).or_default().push(r);
    }
    for (part, recs) in by_part {
        let expect = &sent[&part];
        assert_eq!(recs.len(), expect.len(), "partition {part} count");
        for (i, (r, (k, v))) in recs.iter().zip(expect).enumerate() {
            assert_eq!(
                r.1, i as i64,
                "offsets are contiguous from 0 on partition {part}"
            );
            assert_eq!(&r.2, k, "key byte-exact");
            assert_eq!(&r.3, v, "value byte-exact");
            assert_eq!(r.4.len(), 2, "two headers");
            assert_eq!(r.4[0].0, "codec");
        }
    }
    let (lo, hi) = c
        .fetch_watermarks("codecs", 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!((lo, hi), (0, (total / partitions as usize) as i64));
    drop(c);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_record_timestamp() {
    let g = common::InProcess::start().await;
    let bs = g.bootstrap();
    create_topic(&bs, "times", 1, &[]).await;
    let base = 1_700_000_000_000i64;
    for codec in ["none", "zstd"] {
        let p = producer(&bs, codec);
        let mut fs = Vec::new();
        for i in 0..50i64 {
            let ts = base + (if codec == "none" { i } else { 50 + i }) * 1000;
            let v = format!("{codec}{i}");
            fs.push(
                p.send_result(
                    FutureRecord::<(), _>::to("times")
                        .payload(&v)
                        .partition(0)
                        .timestamp(ts),
                )
                .expect("enqueue"),
            );
        }
        for f in fs {
            f.await.expect("future").expect("delivered");
        }
    }
    let c = consumer(&bs);
    for (ts, want) in [
        (base, 0),
        (base + 10_500, 11),
        (base + 49_000, 49),
        (base + 50_000, 50),
        (base + 77_000, 77),
        (base + 99_000, 99),
    ] {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("times", 0, Offset::Offset(ts))
            .expect("tpl");
        let r = c
            .offsets_for_times(tpl, Duration::from_secs(10))
            .expect("offsets_for_times");
        let got = r.elements()[0].offset();
        assert_eq!(got, Offset::Offset(want), "offset for timestamp {ts}");
    }
    // Past the last record: no offset (Kafka answers -1, librdkafka maps it to End).
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("times", 0, Offset::Offset(base + 1_000_000))
        .expect("tpl");
    let r = c
        .offsets_for_times(tpl, Duration::from_secs(10))
        .expect("offsets_for_times");
    assert!(
        matches!(
            r.elements()[0].offset(),
            Offset::End | Offset::Invalid | Offset::Offset(-1)
        ),
        "{:?}",
        r.elements()[0].offset()
    );
    assert_eq!(
        c.fetch_watermarks("times", 0, Duration::from_secs(10))
            .expect("wm"),
        (0, 100)
    );
    drop(c);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_fetch_wakes_on_produce() {
    let g = common::InProcess::start().await;
    let bs = g.bootstrap();
    create_topic(&bs, "tail", 1, &[]).await;
    // A consumer whose fetches wait up to 4 s on the broker: only a wake-up on
    // commit can deliver a record much sooner than that.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .set("group.id", "assign-only")
        .set("fetch.wait.max.ms", "4000")
        // Without a group coordinator, librdkafka's close can wait out the
        // session timeout (45 s by default); keep it short.
        .set("session.timeout.ms", "6000")
        .set("fetch.min.bytes", "1")
        .create()
        .expect("consumer");
    assign_all(&c, "tail", 1, Offset::End);
    // Let the consumer settle into a long poll.
    assert!(consume_n(&c, 1, Duration::from_secs(2)).is_empty());
    let p = producer(&bs, "none");
    let mut worst = Duration::ZERO;
    for i in 0..3 {
        let sent_at = Instant::now();
        p.send(
            FutureRecord::<(), _>::to("tail")
                .payload(&format!("r{i}"))
                .partition(0),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
        let got = consume_n(&c, 1, Duration::from_secs(8));
        assert_eq!(
            got.len(),
            1,
            "record {i} arrived while the fetch was parked"
        );
        worst = worst.max(sent_at.elapsed());
    }
    // Behaviour, not a benchmark: well under the 4 s broker wait.
    assert!(
        worst < Duration::from_secs(2),
        "a parked fetch was not woken by the commit ({worst:?})"
    );
    eprintln!("long-poll produce-to-consume, worst of 3: {worst:?}");
    drop(p);
    // Stop the gateway first: its drain answers the parked fetch at once, so the
    // consumer's close does not wait out fetch.wait.max.ms.
    g.stop().await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_admin_and_configs() {
    // Auto-creation off: librdkafka's admin client sends Metadata that would
    // otherwise create the topic and hide what validate_only did.
    let g = common::InProcess::start_with(|s| s.auto_create_topics = false).await;
    let bs = g.bootstrap();
    let a = admin(&bs);
    let opts = AdminOptions::new();
    // validate_only creates nothing.
    let t = NewTopic::new("adm", 2, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    let r = a
        .create_topics([&t], &AdminOptions::new().validate_only(true))
        .await
        .expect("validate");
    r[0].as_ref().expect("valid");
    let desc = a
        .describe_configs([&ResourceSpecifier::Topic("adm")], &opts)
        .await
        .expect("describe");
    assert!(
        desc[0]
            .as_ref()
            .map(|r| r.entries.is_empty())
            .unwrap_or(true),
        "validate_only must not create the topic: {:?}",
        desc[0].as_ref().map(|r| r.entries.len())
    );
    let r = a.create_topics([&t], &opts).await.expect("create");
    r[0].as_ref().expect("created");
    let r = a.create_topics([&t], &opts).await.expect("create again");
    assert!(r[0].is_err(), "duplicate create is refused");
    // A bad config is refused with a clear error.
    let bad = NewTopic::new("bad", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon");
    assert!(a.create_topics([&bad], &opts).await.expect("rpc")[0].is_err());
    let bad = NewTopic::new("bad2", 1, TopicReplication::Fixed(1)).set("no.such.config", "1");
    assert!(a.create_topics([&bad], &opts).await.expect("rpc")[0].is_err());

    let desc = a
        .describe_configs([&ResourceSpecifier::Topic("adm")], &opts)
        .await
        .expect("describe");
    let res = desc[0].as_ref().expect("resource");
    let get = |name: &str| res.get(name).and_then(|e| e.value.clone());
    assert_eq!(get("retention.ms").as_deref(), Some("3600000"));
    assert_eq!(get("cleanup.policy").as_deref(), Some("delete"));

    let alter = AlterConfig::new(ResourceSpecifier::Topic("adm"))
        .set("retention.ms", "7200000")
        .set("max.message.bytes", "2000");
    let r = a.alter_configs([&alter], &opts).await.expect("alter");
    r[0].as_ref().expect("altered");
    let desc = a
        .describe_configs([&ResourceSpecifier::Topic("adm")], &opts)
        .await
        .expect("describe");
    let res = desc[0].as_ref().expect("resource");
    assert_eq!(
        res.get("retention.ms")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("7200000")
    );
    assert_eq!(
        res.get("max.message.bytes")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("2000")
    );

    let r = a
        .create_partitions([&NewPartitions::new("adm", 5)], &opts)
        .await
        .expect("partitions");
    r[0].as_ref().expect("grown");
    let md = a
        .inner()
        .fetch_metadata(Some("adm"), Duration::from_secs(5))
        .expect("md");
    assert_eq!(md.topics()[0].partitions().len(), 5);
    let r = a
        .create_partitions([&NewPartitions::new("adm", 3)], &opts)
        .await
        .expect("partitions");
    assert!(r[0].is_err(), "shrinking is refused");

    let r = a.delete_topics(&["adm"], &opts).await.expect("delete");
    r[0].as_ref().expect("deleted");
    let r = a
        .delete_topics(&["adm"], &opts)
        .await
        .expect("delete again");
    assert!(r[0].is_err(), "deleting a missing topic is an error");
    drop(a);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batch_is_refused_and_others_still_land() {
    let g = common::InProcess::start().await;
    let bs = g.bootstrap();
    create_topic(&bs, "small", 1, &[("max.message.bytes", "1000")]).await;
    let p = producer(&bs, "none");
    let big = vec![7u8; 5000];
    let r = p
        .send(
            FutureRecord::<(), _>::to("small")
                .payload(&big)
                .partition(0),
            Duration::from_secs(10),
        )
        .await;
    let err = r.expect_err("too large").0;
    assert!(
        err.to_string().to_lowercase().contains("too large")
            || err.to_string().contains("MessageSizeTooLarge"),
        "{err}"
    );
    p.send(
        FutureRecord::<(), _>::to("small")
            .payload("ok")
            .partition(0),
        Duration::from_secs(10),
    )
    .await
    .expect("small record lands");
    drop(p);
    g.stop().await;
}
