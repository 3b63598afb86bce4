//! Compaction as a Kafka user sees it: none of it. `floe compact --once`
//! (two at once) runs beside a gateway that keeps taking writes; consumers
//! read byte-identical records (keys, values, headers, timestamps) at
//! identical offsets before, during and after, on the live gateway and on
//! the next owner after a `kill -9`, which loads the compacted index: one
//! entry per region instead of one per flush. A gateway also compacts on
//! its own timer.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::kafka::create_topic;
use common::{Process, floe_bin, free_port};
use floe_core::settings::Settings;
use floe_core::types::TopicMeta;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

const PARTITIONS: i32 = 3;
/// Longer than a checkpoint interval (5 s by default).
const CHECKPOINTED: Duration = Duration::from_secs(6);

/// A record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp: Option<i64>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("compression.type", "lz4")
        .create()
        .expect("producer")
}

/// `n` records from `from`, each acknowledged before the next (each its own
/// flush, so its own index entry until compacted).
async fn produce(bootstrap: &str, topic: &str, from: usize, n: usize) {
    let p = producer(bootstrap);
    for i in from..from + n {
        let key = format!("key-{i}");
        let value = format!("value-{i}-{}", "x".repeat(i % 200));
        let headers = OwnedHeaders::new().insert(Header {
            key: "i",
            value: Some(&i.to_string()),
        });
        let r = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .partition((i % PARTITIONS as usize) as i32)
            .timestamp(1_700_000_000_000 + i as i64)
            .headers(headers);
        p.send(r, Duration::from_secs(30)).await.expect("delivered");
    }
}

/// Every record of `topic` up to the high watermarks.
fn read_all(bootstrap: &str, topic: &str) -> BTreeMap<i32, Vec<Rec>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "compaction-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let total = common::kafka::assign_from_beginning(&c, topic, PARTITIONS);
    let mut out: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while n < total && Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("consume");
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_string(), x.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        out.entry(m.partition()).or_default().push(Rec {
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            timestamp: m.timestamp().to_millis(),
            headers,
        });
        n += 1;
    }
    assert_eq!(n, total, "read up to the high watermarks");
    out
}

/// Consumers read `expected` from the running gateway, and again from its
/// next incarnation after `kill -9` (which loads the stored index); then the
/// gateway stops.
fn same_live_and_after_kill9(mut gw: Process, topic: &str, expected: &BTreeMap<i32, Vec<Rec>>) {
    assert!(
        read_all(&gw.bootstrap(), topic) == *expected,
        "identical on the live gateway"
    );
    gw.restart();
    assert!(
        read_all(&gw.bootstrap(), topic) == *expected,
        "identical after kill -9"
    );
    gw.terminate();
}

/// The first offset of `partition` with a timestamp at or after `ts`
/// (ListOffsets by timestamp).
fn offset_for_time(bootstrap: &str, topic: &str, partition: i32, ts: i64) -> i64 {
    use rdkafka::consumer::Consumer;
    use rdkafka::{Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "offsets-for-times")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(ts))
        .expect("tpl");
    let found = c
        .offsets_for_times(tpl, Duration::from_secs(30))
        .expect("ListOffsets");
    let elem = found.elements_for_topic(topic);
    assert_eq!(elem.len(), 1);
    elem[0].error().expect("partition answered");
    match elem[0].offset() {
        Offset::Offset(o) => o,
        other => panic!("{other:?}"),
    }
}

/// `floe compact --once` on the gateway's backend, deleting objects found
/// unreferenced for `delete_delay`.
fn compact_once(
    data_dir: &Path,
    backend: &[(&str, String)],
    delete_delay: &str,
) -> std::process::Child {
    compact_with(data_dir, backend, delete_delay, None, "8KiB")
}

/// `compact_once` with fail points armed (`--failpoints`).
fn compact_with(
    data_dir: &Path,
    backend: &[(&str, String)],
    delete_delay: &str,
    failpoints: Option<&str>,
    region_bytes: &str,
) -> std::process::Child {
    let mut cmd = std::process::Command::new(floe_bin());
    if let Some(f) = failpoints {
        cmd.args(["--failpoints", f]);
    }
    cmd.args([
        "compact",
        "--once",
        "--compact-region-bytes",
        region_bytes,
        "--object-delete-delay",
        delete_delay,
        "--log-level",
        "warn",
    ])
    .arg("--data-dir")
    .arg(data_dir)
    .stdout(std::process::Stdio::piped());
    for (k, v) in backend {
        cmd.arg(format!("--{k}")).arg(v);
    }
    cmd.spawn().expect("spawn floe compact")
}

fn finish(child: std::process::Child) -> String {
    let out = child.wait_with_output().expect("floe compact");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "floe compact failed: {text}");
    text
}

/// The gateway's backend, opened beside it.
async fn open(data_dir: &Path, backend: &[(&str, String)]) -> floe_core::backend::Stores {
    let mut settings = Settings {
        data_dir: data_dir.to_path_buf(),
        ..Settings::default()
    };
    for (k, v) in backend {
        settings.apply(k, v).expect("setting");
    }
    floe_core::backend::open_backend(&settings, None)
        .await
        .expect("open backend")
}

/// Live index entries per partition, as a loading owner sees them.
async fn entries(stores: &floe_core::backend::Stores, topic: &str) -> Vec<usize> {
    let t = stores
        .meta
        .get_topic(topic)
        .await
        .expect("topic")
        .expect("exists");
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let snap = floe_core::index::load(
            &*stores.meta,
            floe_core::types::PartitionId::new(t.id, p),
            0,
        )
        .await
        .expect("load")
        .expect("claimed");
        out.push(snap.entries.len());
    }
    out
}

/// Segment objects (flushes' and compactions') in the object store.
async fn objects(stores: &floe_core::backend::Stores) -> Vec<String> {
    let mut keys = Vec::new();
    for prefix in ["segments/", "compacted/"] {
        keys.extend(
            stores
                .objects
                .list(prefix)
                .await
                .expect("list")
                .into_iter()
                .map(|o| o.key),
        );
    }
    keys
}

async fn compaction_is_invisible(backend: Vec<(&'static str, String)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut extra: Vec<(&str, &str)> = backend.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Reads go to the object store (the read cache keeps what was written).
    extra.push(("read-cache-bytes", "1024"));
    // The owner stores its partitions (and trims its flush records, which
    // name the flushes' objects) a second after they change, instead of the
    // AWS default's 10 minutes: the objects compacted away become
    // unreferenced within the test.
    extra.push(("checkpoint-delay", "1s"));
    let gw = Process::start(dir.path(), free_port(), &extra);
    let bootstrap = gw.bootstrap();
    let topic = "compacted-invisibly";
    create_topic(&bootstrap, topic, PARTITIONS).await;

    produce(&bootstrap, topic, 0, 450).await;
    // Compaction works on what checkpoints stored (every 5 s by default).
    tokio::time::sleep(CHECKPOINTED).await;
    let before = read_all(&bootstrap, topic);
    assert_eq!(before.values().map(Vec::len).sum::<usize>(), 450);

    // Two compactors at once, while the owner keeps appending and a consumer reads.
    let writer = tokio::spawn({
        let bootstrap = bootstrap.clone();
        async move { produce(&bootstrap, topic, 450, 150).await }
    });
    let (a, b) = (
        compact_once(dir.path(), &backend, "1h"),
        compact_once(dir.path(), &backend, "1h"),
    );
    let during = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || read_all(&bootstrap, topic)
    });
    let reports = [finish(a), finish(b)];
    writer.await.expect("writer");
    let during = during.await.expect("reader");
    for (p, recs) in &during {
        let n = recs.len().min(before[p].len());
        assert!(
            recs[..n] == before[p][..n],
            "partition {p} read during compaction"
        );
    }
    let compacted: usize = reports
        .iter()
        .map(|r| {
            r.split(" compacted")
                .next()
                .and_then(|s| s.rsplit(' ').next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no count in {r:?}"))
        })
        .sum();
    assert!(compacted >= PARTITIONS as usize, "{reports:?}");

    // The live owner, still on the index it loaded, serves everything.
    let live = read_all(&bootstrap, topic);
    assert_eq!(live.values().map(Vec::len).sum::<usize>(), 600);
    for (p, recs) in &before {
        assert!(
            live[p][..recs.len()] == recs[..],
            "partition {p} on the live owner"
        );
    }
    for recs in live.values() {
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.offset, i as i64, "offsets contiguous from 0");
        }
    }

    // A pass after the writes have been checkpointed, then the next owner
    // after kill -9: it loads the compacted index (and replays the rest).
    tokio::time::sleep(CHECKPOINTED).await;
    finish(compact_once(dir.path(), &backend, "1h"));
    let stores = open(dir.path(), &backend).await;
    let counts = entries(&stores, topic).await;
    assert!(
        counts.iter().all(|&n| n <= 10),
        "200 flushes per partition in a few entries: {counts:?}"
    );

    // Objects nothing references any more (the flushes' once their regions
    // are compacted, one left by a crashed compaction) are deleted once
    // found so for the delay; the live owner, whose index still names the
    // flushes' objects, adopts the stored index when a read misses one.
    let t = stores
        .meta
        .get_topic(topic)
        .await
        .expect("topic")
        .expect("exists");
    let orphan = floe_core::keys::compacted_key(
        floe_core::types::PartitionId::new(t.id, 0),
        0,
        9,
        uuid::Uuid::new_v4(),
    );
    stores
        .objects
        .put_if_absent(
            &orphan,
            bytes::Bytes::from_static(b"a crashed compaction's"),
        )
        .await
        .expect("put");
    let before_gc = objects(&stores).await;
    // A delay of 6 s, passes about every second (a sighting holds while
    // passes run more often than half the delay): the orphan, first seen by
    // the first of these passes, stays until one finds it unreferenced for 6 s.
    let first_seen = Instant::now();
    let mut swept = String::new();
    while objects(&stores).await.contains(&orphan) {
        assert!(
            first_seen.elapsed() < Duration::from_secs(60),
            "never deleted: {swept}"
        );
        swept = finish(compact_once(dir.path(), &backend, "6s"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        first_seen.elapsed() >= Duration::from_secs(6),
        "deleted before the delay: {swept}"
    );
    let after_gc = objects(&stores).await;
    assert!(
        after_gc.len() * 4 < before_gc.len(),
        "{} objects before, {} after: {swept}",
        before_gc.len(),
        after_gc.len()
    );
    assert!(!after_gc.contains(&orphan), "{swept}");
    // The live owner's index still names the deleted objects: a lookup by
    // timestamp (ListOffsets) takes the stored index and answers right.
    for (p, recs) in &live {
        let want = &recs[recs.len() / 2];
        let ts = want.timestamp.expect("timestamp");
        assert_eq!(
            offset_for_time(&gw.bootstrap(), topic, *p, ts),
            want.offset,
            "partition {p}, time {ts}"
        );
    }
    same_live_and_after_kill9(gw, topic, &live);
}

/// A gateway's own passes (`--compact-interval`, on by default on the
/// embedded backend): they run while it serves, show in its metrics, and
/// change nothing a consumer reads, there or after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_compacts_on_its_own_timer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics}");
    let gw = Process::start(
        dir.path(),
        free_port(),
        &[
            ("compact-interval", "1s"),
            ("compact-region-bytes", "8KiB"),
            ("metrics-listen", &metrics_listen),
        ],
    );
    let bootstrap = gw.bootstrap();
    let topic = "compacted-by-the-gateway";
    create_topic(&bootstrap, topic, PARTITIONS).await;
    produce(&bootstrap, topic, 0, 300).await;
    let before = read_all(&bootstrap, topic);
    let counter = |kind: &str| -> u64 {
        let line = format!("floe_compaction_total{{kind=\"{kind}\"}} ");
        common::scrape(metrics)
            .lines()
            .find_map(|l| l.strip_prefix(&line)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter("entries_merged") < 250 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        counter("entries_merged") >= 250,
        "300 one-record flushes merged: {}",
        common::scrape(metrics)
    );
    assert!(counter("partitions_compacted") >= PARTITIONS as u64);
    assert_eq!(counter("partitions_failed"), 0);
    same_live_and_after_kill9(gw, topic, &before);
}

/// A compactor killed (`crash`: the process aborts) at each step of a pass,
/// or told an ambiguous outcome, with new writes between: consumers of the
/// live owner read exactly what was acknowledged the whole time, a clean
/// pass afterwards finishes the work, and the next owner reads the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compactor_killed_at_any_step_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gw = Process::start(
        dir.path(),
        free_port(),
        &[
            ("checkpoint-interval", "100ms"),
            ("read-cache-bytes", "1024"),
        ],
    );
    let bootstrap = gw.bootstrap();
    let topic = "compactor-crashes";
    create_topic(&bootstrap, topic, PARTITIONS).await;
    let mut produced = 0;
    for point in [
        "object.get=crash@5",
        "object.put=crash",
        "object.put=crash@1",
        "meta.swap_index=crash",
        "meta.swap_index=crash@1",
        "meta.swap_index=ambiguous",
        "meta.delete_index=crash",
        "object.delete=crash@2",
        "object.put=crash@3",
    ] {
        produce(&bootstrap, topic, produced, 60).await;
        produced += 60;
        tokio::time::sleep(Duration::from_millis(500)).await; // checkpointed
        let before = read_all(&bootstrap, topic);
        if point.starts_with("object.delete") {
            // Something to delete: passes find objects unreferenced, each
            // well within half the 4 s delay of the last, for 3 s; the
            // crashing pass comes once the delay has passed.
            let since = Instant::now();
            while since.elapsed() < Duration::from_secs(3) {
                finish(compact_once(dir.path(), &[], "4s"));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            tokio::time::sleep(Duration::from_millis(4300).saturating_sub(since.elapsed())).await;
        }
        let out = compact_with(dir.path(), &[], "4s", Some(point), "8KiB")
            .wait_with_output()
            .expect("floe compact");
        assert!(!out.status.success(), "{point}: the fault fired");
        let after = read_all(&bootstrap, topic);
        assert!(after == before, "{point}: consumers read the same");
        assert_eq!(
            after.values().map(Vec::len).sum::<usize>(),
            produced,
            "{point}"
        );
    }
    // The owner killed and restarted (a new incarnation takes the
    // partitions over) between a pass's reads and its swaps.
    produce(&bootstrap, topic, produced, 60).await;
    produced += 60;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_move = read_all(&bootstrap, topic);
    let slow = compact_with(
        dir.path(),
        &[],
        "1s",
        Some("meta.swap_index=delay(3s)"),
        "8KiB",
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    gw.restart();
    produce(&bootstrap, topic, produced, 30).await;
    produced += 30;
    finish(slow);
    let expected = read_all(&bootstrap, topic);
    assert_eq!(expected.values().map(Vec::len).sum::<usize>(), produced);
    for (p, recs) in &before_move {
        assert!(
            expected[p][..recs.len()] == recs[..],
            "partition {p} across the move"
        );
    }
    finish(compact_once(dir.path(), &[], "1s"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = finish(compact_once(dir.path(), &[], "1s"));
    let stores = open(dir.path(), &[]).await;
    let counts = entries(&stores, topic).await;
    assert!(counts.iter().all(|&n| n <= 10), "{counts:?} after {report}");
    same_live_and_after_kill9(gw, topic, &expected);
}

/// Object keys `topic` references: its live index entries, as a loading
/// owner sees them, and its owners' untrimmed flush records.
async fn referenced(stores: &floe_core::backend::Stores, topic: &TopicMeta) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for p in 0..topic.partitions {
        let pid = floe_core::types::PartitionId::new(topic.id, p);
        if let Some(snap) = floe_core::index::load(&*stores.meta, pid, 0)
            .await
            .expect("load")
        {
            // The owner's untrimmed flush records that hold the partition
            // name their objects too (until a checkpoint stores it).
            let records = stores
                .meta
                .read_flushes(&snap.owner, 0)
                .await
                .expect("records");
            keys.extend(
                records
                    .into_iter()
                    .filter(|r| r.partitions.iter().any(|fp| fp.partition == pid))
                    .map(|r| r.object_key),
            );
            keys.extend(snap.entries.into_iter().map(|e| e.object_key));
        }
    }
    keys
}

/// A deleted topic leaves nothing behind once the delay has passed: a pass
/// removes its partitions' stored state and index, and the collection its
/// objects, while another topic's records and objects stay as they were.
async fn a_deleted_topic_leaves_nothing(backend: Vec<(&'static str, String)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra: Vec<(&str, &str)> = backend.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = Process::start(dir.path(), free_port(), &extra);
    let bootstrap = gw.bootstrap();
    create_topic(&bootstrap, "doomed", PARTITIONS).await;
    create_topic(&bootstrap, "kept", PARTITIONS).await;
    // One topic after the other: no flush object holds both.
    produce(&bootstrap, "doomed", 0, 300).await;
    produce(&bootstrap, "kept", 0, 150).await;
    tokio::time::sleep(CHECKPOINTED).await;
    let kept = read_all(&bootstrap, "kept");
    assert_eq!(kept.values().map(Vec::len).sum::<usize>(), 150);
    let stores = open(dir.path(), &backend).await;
    let doomed = stores
        .meta
        .get_topic("doomed")
        .await
        .expect("topic")
        .expect("exists");
    let doomed_objects = referenced(&stores, &doomed).await;
    assert!(!doomed_objects.is_empty());

    common::kafka::delete_topic(&bootstrap, "doomed").await;
    let deleted_at = Instant::now();
    assert_eq!(stores.meta.deleted_topics().await.expect("list").len(), 1);

    // Passes about every half second with a 3 s delay, until the state and
    // the objects are gone.
    let mut report = String::new();
    loop {
        let left = objects(&stores).await;
        let state_gone = stores.meta.deleted_topics().await.expect("list").is_empty();
        if state_gone && !left.iter().any(|k| doomed_objects.contains(k)) {
            break;
        }
        assert!(
            deleted_at.elapsed() < Duration::from_secs(60),
            "still there after a minute: {report}"
        );
        report = finish(compact_once(dir.path(), &backend, "3s"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        deleted_at.elapsed() >= Duration::from_secs(3),
        "removed before the delay: {report}"
    );
    let check_gone = |what: &str| {
        let (stores, doomed) = (&stores, &doomed);
        let what = what.to_string();
        async move {
            for p in 0..doomed.partitions {
                let pid = floe_core::types::PartitionId::new(doomed.id, p);
                assert_eq!(
                    stores.meta.load_partition(pid).await.expect("load"),
                    None,
                    "partition {p} {what}"
                );
                assert_eq!(stores.meta.index_version(pid).await.expect("version"), 0);
            }
        }
    };
    check_gone("after the pass").await;
    // What is left is exactly what the kept topic's index names.
    let t = stores
        .meta
        .get_topic("kept")
        .await
        .expect("topic")
        .expect("exists");
    let left: BTreeSet<String> = objects(&stores).await.into_iter().collect();
    assert_eq!(left, referenced(&stores, &t).await, "{report}");
    same_live_and_after_kill9(gw, "kept", &kept);
    // The gateway, live then restarted, wrote nothing of it back.
    check_gone("after the gateway's checkpoints and restart").await;
    assert!(stores.meta.deleted_topics().await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_topic_leaves_nothing_behind() {
    a_deleted_topic_leaves_nothing(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs emulators: scripts/test-all.sh starts them"]
async fn a_deleted_topic_leaves_nothing_behind_on_the_aws_backend() {
    a_deleted_topic_leaves_nothing(common::kafka::fresh_aws_backend("floe-deltopic")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_is_invisible_to_consumers() {
    compaction_is_invisible(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs emulators: scripts/test-all.sh starts them"]
async fn compaction_is_invisible_on_the_aws_backend() {
    compaction_is_invisible(common::kafka::fresh_aws_backend("floe-compact")).await;
}

/// S3 GETs this gateway has made (`floe_s3_requests_total{op="get"}`).
fn s3_gets(metrics: u16) -> u64 {
    common::scrape(metrics)
        .lines()
        .find_map(|l| {
            l.strip_prefix("floe_s3_requests_total{op=\"get\"} ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// A catch-up consumer's GETs per GiB, before and after compaction: one per
/// flush region before, at most one per 4 MiB region (per partition) after.
/// Each read follows a restart, so nothing comes from the read cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs emulators: scripts/test-all.sh starts them"]
async fn catch_up_gets_per_gib_before_and_after_compaction() {
    let backend = common::kafka::fresh_aws_backend("floe-gets");
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics}");
    let mut extra: Vec<(&str, &str)> = backend.iter().map(|(k, v)| (*k, v.as_str())).collect();
    extra.extend([
        ("checkpoint-interval", "200ms"),
        ("metrics-listen", metrics_listen.as_str()),
    ]);
    let mut gw = Process::start(dir.path(), free_port(), &extra);
    let bootstrap = gw.bootstrap();
    let topic = "catch-up";
    create_topic(&bootstrap, topic, PARTITIONS).await;
    // 600 flushes of 8 KiB (incompressible), each its own region.
    let p = producer(&bootstrap);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..600usize {
        let value: Vec<u8> = (0..8 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let r = FutureRecord::<(), _>::to(topic)
            .payload(&value)
            .partition((i % PARTITIONS as usize) as i32);
        p.send(r, Duration::from_secs(30)).await.expect("delivered");
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // checkpointed

    let catch_up = |gw: &mut Process| {
        gw.restart();
        let before = s3_gets(metrics);
        let log = read_all(&gw.bootstrap(), topic);
        let bytes: usize = log
            .values()
            .flatten()
            .map(|r| r.value.as_ref().map_or(0, Vec::len))
            .sum();
        (log, s3_gets(metrics) - before, bytes as f64)
    };
    let (log_before, gets_before, bytes) = catch_up(&mut gw);
    let report = finish(compact_with(dir.path(), &backend, "1h", None, "4MiB"));
    // The pass reports its requests, as its stores counted them, and their
    // price: at least a ranged GET per flush region it merged, and a PUT per
    // object it wrote.
    let counted = |what: &str| -> u64 {
        let (before, _) = report
            .split_once(&format!(" {what},"))
            .unwrap_or_else(|| panic!("no {what} count in {report}"));
        before
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {what} count in {report}"))
    };
    assert!(counted("GET") >= 600, "{report}");
    assert!(counted("PUT") >= 3, "{report}");
    assert!(report.contains("; estimated $0.0"), "{report}");
    eprintln!("{report}");
    let (log_after, gets_after, _) = catch_up(&mut gw);
    let gib = bytes / (1u64 << 30) as f64;
    eprintln!(
        "catch-up of {:.1} MiB: {gets_before} GETs before compaction ({:.0}/GiB), {gets_after} after ({:.0}/GiB)",
        bytes / (1 << 20) as f64,
        gets_before as f64 / gib,
        gets_after as f64 / gib
    );
    assert!(log_after == log_before, "identical records");
    assert!(
        gets_before >= 600,
        "one GET per flush region: {gets_before}"
    );
    let regions = (bytes / (4 << 20) as f64).ceil() as u64 + PARTITIONS as u64;
    assert!(
        gets_after <= regions,
        "at most one GET per 4 MiB region and partition: {gets_after} > {regions}"
    );
    gw.terminate();
}

/// The metadata cost of a flush on DynamoDB (moto), checkpoints and
/// compaction included, as Floe's request accounting counts it (the units
/// DynamoDB bills for the items written, not moto's ConsumedCapacity): one
/// producer writes every partition every 20 ms until 1,000 flushes have
/// committed (each flush touches all of them); then one pass (`floe compact
/// --once`) folds what the flush records hold, and the gateway is killed
/// (`kill -9`) and started again: the new incarnation takes every partition
/// over, reading the flush records the dead one left (the worst case of a
/// takeover under this design), and stores each partition's state once
/// (its claim). That is the production cycle at a 250 ms flush interval (a
/// pass every 5 minutes holds 1,200 flushes; each partition's state is
/// stored once per 10-minute `checkpoint-delay`, 2,400 flushes), made a
/// little dearer. Write units per flush stay within 8 for 1 partition and
/// for 100; the takeover's reads are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs emulators: scripts/test-all.sh starts them"]
async fn write_units_per_flush_do_not_grow_with_partitions() {
    let one = write_units_per_flush(1).await;
    let hundred = write_units_per_flush(100).await;
    for (partitions, wru) in [(1, one), (100, hundred)] {
        assert!(
            wru <= 8.0,
            "{partitions} partitions: {wru:.2} write units per flush"
        );
    }
}

/// The number before `what` in `text` (`"... 618.0 WRU"`).
fn figure_before(text: &str, what: &str) -> f64 {
    let (before, _) = text
        .split_once(what)
        .unwrap_or_else(|| panic!("no {what} in {text}"));
    before
        .trim_end()
        .rsplit([' ', '('])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure before {what} in {text}"))
}

/// One run of `write_units_per_flush_do_not_grow_with_partitions`: write
/// units per flush with `partitions` partitions.
async fn write_units_per_flush(partitions: i32) -> f64 {
    const FLUSHES: f64 = 1000.0;
    let backend = common::kafka::fresh_aws_backend("floe-wru");
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics}");
    let mut extra: Vec<(&str, &str)> = backend.iter().map(|(k, v)| (*k, v.as_str())).collect();
    extra.extend([
        ("flush-interval", "20ms"),
        ("checkpoint-interval", "500ms"),
        ("checkpoint-delay", "1h"),
        ("compact-interval", "0s"),
        ("metrics-listen", metrics_listen.as_str()),
    ]);
    let mut gw = Process::start(dir.path(), free_port(), &extra);
    let bootstrap = gw.bootstrap();
    let topic = format!("wru-{partitions}");
    create_topic(&bootstrap, &topic, partitions).await;
    let p = producer(&bootstrap);
    // Claims and the first round trip are setup, not steady state.
    p.send(
        FutureRecord::<(), _>::to(&topic)
            .payload("warm")
            .partition(0),
        Duration::from_secs(30),
    )
    .await
    .expect("delivered");
    let sample = |name: &str| -> f64 {
        common::scrape(metrics)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let (wru0, flushes0, records0) = (
        sample("floe_dynamodb_write_units_total"),
        sample("floe_flushes_total"),
        sample("floe_produce_records_total"),
    );

    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut deliveries = Vec::new();
    let mut ticks = 0u64;
    while !ticks.is_multiple_of(25) || sample("floe_flushes_total") - flushes0 < FLUSHES {
        tick.tick().await;
        ticks += 1;
        for partition in 0..partitions {
            let r = FutureRecord::<(), _>::to(&topic)
                .payload("a record of the steady state")
                .partition(partition);
            deliveries.push(p.send_result(r).map_err(|(e, _)| e).expect("queued"));
        }
    }
    for d in deliveries {
        d.await.expect("not cancelled").expect("delivered");
    }
    let records = sample("floe_produce_records_total") - records0;
    let flushes = sample("floe_flushes_total") - flushes0;
    let written = sample("floe_dynamodb_write_units_total") - wru0;
    let pass = finish(compact_with(dir.path(), &backend, "1h", None, "4MiB"));
    let pass_wru = figure_before(&pass, " WRU)");

    // A crash, and the takeover of every partition by the next incarnation.
    gw.restart();
    let probe = producer(&gw.bootstrap());
    for partition in 0..partitions {
        let r = FutureRecord::<(), _>::to(&topic)
            .payload("after the takeover")
            .partition(partition);
        probe
            .send(r, Duration::from_secs(60))
            .await
            .expect("served after the takeover");
    }
    let (claims_wru, takeover_rru, takeover_requests) = (
        sample("floe_dynamodb_write_units_total"),
        sample("floe_dynamodb_read_units_total"),
        sample("floe_dynamodb_requests_total"),
    );
    let wru = written + pass_wru + claims_wru;
    eprintln!(
        "{partitions} partitions: {flushes} flushes ({:.1} records each): {written} WRU of \
         commits, pass {pass_wru} WRU, takeover {claims_wru} WRU (claims and the probe's \
         flushes): {:.2} WRU per flush; the takeover after kill -9 read {takeover_rru} RRU in \
         {takeover_requests} DynamoDB requests",
        records / flushes,
        wru / flushes
    );
    assert!(
        records / flushes >= f64::from(partitions) / 2.0,
        "flushes hold most partitions: {records} records in {flushes} flushes"
    );
    assert!(
        pass.contains(&format!("{partitions} compacted")),
        "the pass folded every partition: {pass}"
    );
    gw.terminate();
    wru / flushes
}
