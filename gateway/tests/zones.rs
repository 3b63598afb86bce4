//! Zone-local reads: two `floe` processes in zones `zone-a` and `zone-b` share
//! one backend. A librdkafka consumer that sets `client.rack` and reads a
//! partition led in the other zone is pointed by the leader at the gateway of
//! its own zone (KIP-392 `preferred_read_replica`), which serves the records
//! from its copy of the partition's index: exactly the acknowledged records,
//! also while the consumer tails new ones. Each gateway's metrics show it served
//! the reads of its zone.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "zones";
/// Enough that each of the two gateways leads some (all on one: 2 in 65,536).
const PARTITIONS: i32 = 16;

/// Bytes of records this gateway has returned to fetches.
fn fetched_bytes(port: u16) -> f64 {
    common::scrape(port)
        .lines()
        .find_map(|l| {
            l.strip_prefix("floe_fetch_bytes_total ")?
                .trim()
                .parse()
                .ok()
        })
        .expect("floe_fetch_bytes_total")
}

struct Gateway {
    process: common::Process,
    metrics: u16,
}

fn start(dir: &std::path::Path, node: i32, zone: &str, backend: &[(&str, String)]) -> Gateway {
    let metrics = common::free_port();
    let metrics_addr = format!("127.0.0.1:{metrics}");
    let id = format!("gw-{zone}");
    let node = node.to_string();
    let mut args: Vec<(&str, &str)> = vec![
        ("gateway-id", &id),
        ("node-id", &node),
        ("zone", zone),
        ("heartbeat-interval", "200ms"),
        ("session-timeout", "1500ms"),
        ("follower-refresh", "100ms"),
        ("metrics-listen", &metrics_addr),
    ];
    args.extend(backend.iter().map(|(k, v)| (*k, v.as_str())));
    let process = common::Process::start(dir, common::free_port(), &args);
    Gateway { process, metrics }
}

/// Reads `partition` from offset 0 with `client.rack = rack` until `count`
/// records arrived: [(offset, payload)].
fn read(consumer: &BaseConsumer, count: usize) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < count && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            let v = String::from_utf8(m.payload().unwrap_or(&[]).to_vec()).expect("utf8");
            out.push((m.offset(), v));
        }
    }
    out
}

fn consumer(bootstrap: &str, rack: &str, partition: i32) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "assign-only")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "100")
        .set("client.rack", rack)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, partition, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    c
}

/// Sends `n` records to `partition` and returns what was acknowledged, in
/// offset order.
async fn produce(
    producer: &rdkafka::producer::FutureProducer,
    partition: i32,
    tag: &str,
    n: usize,
) -> Vec<(i64, String)> {
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let v = format!("{tag}-{partition}-{i}");
            let f = producer
                .send_result(
                    rdkafka::producer::FutureRecord::<(), _>::to(TOPIC)
                        .partition(partition)
                        .payload(&v),
                )
                .map_err(|(e, _)| e)
                .expect("enqueued");
            async move { (f.await.expect("delivery outcome"), v) }
        })
        .collect();
    let mut acked = Vec::new();
    for (r, v) in futures_join(sends).await {
        let d = r.map_err(|(e, _)| e).expect("delivered");
        assert_eq!(d.partition, partition);
        acked.push((d.offset, v));
    }
    acked.sort();
    acked
}

/// Awaits every future, in order (they run concurrently once created: the
/// producer batches them).
async fn futures_join<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(fs.len());
    for f in fs {
        out.push(f.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_read_from_the_gateway_in_their_zone() {
    let backend = common::test_backend("floe-zones");
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(dir.path(), 1, "zone-a", &backend);
    let b = start(dir.path(), 2, "zone-b", &backend);
    let bootstrap = format!("{},{}", a.process.bootstrap(), b.process.bootstrap());
    common::kafka::create_topic(&bootstrap, TOPIC, PARTITIONS).await;

    // Wait until both gateways lead some partitions and report their racks.
    let producer = common::kafka::durable_producer(&bootstrap);
    let deadline = Instant::now() + Duration::from_secs(20);
    let leaders: BTreeMap<i32, i32> = loop {
        use rdkafka::producer::Producer;
        let md = producer
            .client()
            .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
            .expect("metadata");
        let leaders: BTreeMap<i32, i32> = md.topics()[0]
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader()))
            .collect();
        let nodes: std::collections::BTreeSet<i32> = leaders.values().copied().collect();
        if md.brokers().len() == 2 && nodes.len() == 2 && leaders.len() == PARTITIONS as usize {
            break leaders;
        }
        assert!(
            Instant::now() < deadline,
            "two leaders expected: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let on_a = *leaders
        .iter()
        .find(|(_, n)| **n == 1)
        .expect("a leads one")
        .0;
    let on_b = *leaders
        .iter()
        .find(|(_, n)| **n == 2)
        .expect("b leads one")
        .0;
    let mut acked_a = produce(&producer, on_a, "first", 300).await;
    let mut acked_b = produce(&producer, on_b, "first", 300).await;

    // A zone-b consumer of a's partition is served by b, and vice versa.
    let (a_before, b_before) = (fetched_bytes(a.metrics), fetched_bytes(b.metrics));
    let from_b = consumer(&bootstrap, "zone-b", on_a);
    assert_eq!(
        read(&from_b, acked_a.len()),
        acked_a,
        "zone-b reads a's partition exactly"
    );
    let b_served = fetched_bytes(b.metrics) - b_before;
    assert!(
        b_served > 0.0,
        "gateway b served its zone's reads of a's partition"
    );

    let from_a = consumer(&bootstrap, "zone-a", on_b);
    assert_eq!(
        read(&from_a, acked_b.len()),
        acked_b,
        "zone-a reads b's partition exactly"
    );
    let a_served = fetched_bytes(a.metrics) - a_before;
    assert!(
        a_served > 0.0,
        "gateway a served its zone's reads of b's partition"
    );

    // Tailing through the copy: new records reach the zone-local consumer.
    let more = produce(&producer, on_a, "tail", 100).await;
    assert_eq!(read(&from_b, more.len()), more, "tailing zone-b consumer");
    acked_a.extend(more);
    let more = produce(&producer, on_b, "tail", 100).await;
    assert_eq!(read(&from_a, more.len()), more, "tailing zone-a consumer");
    acked_b.extend(more);

    // A consumer without a rack reads from the leader, as before.
    let plain = {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "assign-only")
            .set("session.timeout.ms", "6000")
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, on_a, Offset::Beginning)
            .expect("tpl");
        c.assign(&tpl).expect("assign");
        c
    };
    assert_eq!(read(&plain, acked_a.len()), acked_a);

    drop((from_a, from_b, plain, producer));
    for mut g in [a, b] {
        assert_eq!(g.process.terminate(), Some(0), "clean stop");
    }
}
