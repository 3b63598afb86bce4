//! Key compaction (`cleanup.policy=compact`) at the storage level: a
//! partition of keyed records in flush objects, compressed with every codec
//! Kafka has, is cleaned by a pass to the latest record of each key at its
//! original offset; tombstones stay for `delete.retention.ms`; the dirty
//! ratio decides when a partition is cleaned again; what is merged later
//! keeps the clean part as it is. The end-to-end tests with Kafka clients
//! are in `tests/python/test_key_compaction.py`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_compactor::{Config, FlushRecords, compact_partition_with};
use floe_core::backend::Stores;
use floe_core::keys::{is_cleaned, object_key};
use floe_core::meta::{MemoryMetaStore, MetaStore};
use floe_core::object_store::{MemoryObjectStore, ObjectStore};
use floe_core::records::{batches, encode_batch, records, records_section};
use floe_core::segment::SegmentBuilder;
use floe_core::topic_config::CleanerPolicy;
use floe_core::types::{IndexEntry, PartitionCheckpoint, PartitionId, StreamId};

type Rec = floe_core::records::KeyValue;

fn rec(key: &str, value: Option<&str>) -> Rec {
    (
        Some(key.as_bytes().to_vec()),
        value.map(|v| v.as_bytes().to_vec()),
    )
}

/// A partition being written: one flush object and index entry per batch.
struct Log {
    stores: Stores,
    me: StreamId,
    p: PartitionId,
    next: i64,
    seq: u64,
    entries: Vec<IndexEntry>,
    /// What was written: offset → (key, value).
    written: BTreeMap<i64, (String, Option<String>)>,
}

impl Log {
    async fn new() -> Log {
        let meta: Arc<dyn MetaStore> = Arc::new(MemoryMetaStore::new());
        let objects: Arc<dyn ObjectStore> = Arc::new(MemoryObjectStore::new());
        let stores = Stores::new(objects, meta.clone());
        let me = common::registered(&*meta).await;
        let topic = common::created(&*meta, "compacted", 4, 1).await;
        Log {
            stores,
            me,
            p: PartitionId::new(topic.id, 0),
            next: 0,
            seq: 0,
            entries: Vec::new(),
            written: BTreeMap::new(),
        }
    }

    /// One flush of one batch of `recs` at timestamp `ts`, then a checkpoint
    /// storing its entry (what an owner's checkpoint does).
    async fn flush(&mut self, recs: &[Rec], ts: i64, codec: i16) {
        let batch = encode_batch(recs, ts, codec, codec == 2).expect("encode");
        let base = self.next;
        let last = base + recs.len() as i64 - 1;
        self.seq += 1;
        let mut b = SegmentBuilder::with_capacity(batch.len() + 64);
        let at = b.position();
        b.push_batch(&batch, base);
        let region = b.finish_region(self.p, at, base, last, ts + recs.len() as i64 - 1, 1);
        let key = object_key(&self.me, self.seq);
        self.stores
            .objects
            .put_if_absent(&key, b.finish())
            .await
            .expect("put");
        let entry = IndexEntry {
            base_offset: base,
            last_offset: last,
            max_timestamp: region.max_timestamp,
            object_key: key,
            position: region.position,
            length: region.length,
        };
        for (i, (k, v)) in recs.iter().enumerate() {
            let text =
                |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
            self.written
                .insert(base + i as i64, (text(k).unwrap_or_default(), text(v)));
        }
        self.next = last + 1;
        self.entries.push(entry.clone());
        self.stores
            .meta
            .write_checkpoints(
                &self.me,
                &[PartitionCheckpoint {
                    partition: self.p,
                    owner: self.me.clone(),
                    checkpoint_seq: self.seq,
                    next_offset: self.next,
                    log_start_offset: 0,
                    producers: BTreeMap::new(),
                    new_entries: vec![entry],
                }],
            )
            .await
            .expect("checkpoint");
    }

    async fn pass(&self, policy: &CleanerPolicy, now_ms: i64) -> floe_compactor::Report {
        let config = Config {
            region_bytes: 1024,
            object_bytes: 4096,
            ..Config::default()
        };
        compact_partition_with(
            &self.stores,
            self.p,
            &config,
            Some((policy, now_ms)),
            None,
            &mut FlushRecords::default(),
        )
        .await
        .expect("pass")
    }

    /// The stored index as a reader loads it, and every record it reads:
    /// offset → (key, value).
    async fn read(&self) -> (Vec<IndexEntry>, BTreeMap<i64, (String, Option<String>)>) {
        let snap = floe_core::index::load(&*self.stores.meta, self.p, 0)
            .await
            .expect("load")
            .expect("claimed");
        let mut out = BTreeMap::new();
        for e in &snap.entries {
            let bytes = self
                .stores
                .objects
                .get_range(&e.object_key, e.position..e.position + u64::from(e.length))
                .await
                .expect("get");
            floe_core::segment::check_batches_within(&bytes, e.base_offset, e.last_offset)
                .expect("batches");
            for batch in batches(&bytes) {
                let base = i64::from_be_bytes(batch[0..8].try_into().expect("8 bytes"));
                let count = i32::from_be_bytes(batch[57..61].try_into().expect("4 bytes"));
                let section = records_section(batch, 1 << 20).expect("section");
                for r in records(&section, count).expect("records") {
                    let key = String::from_utf8_lossy(r.key.expect("keyed")).into_owned();
                    let value = r.value.map(|v| String::from_utf8_lossy(v).into_owned());
                    let prev = out.insert(base + r.offset_delta, (key, value));
                    assert!(prev.is_none(), "offset read twice");
                }
            }
        }
        assert_eq!(snap.next_offset, self.next, "the log end does not move");
        (snap.entries, out)
    }
}

fn policy(ratio: f64, delete_retention_ms: i64) -> CleanerPolicy {
    CleanerPolicy {
        min_cleanable_dirty_ratio: ratio,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        delete_retention_ms,
    }
}

/// The latest record of each key in `written`, by offset.
fn latest(
    written: &BTreeMap<i64, (String, Option<String>)>,
) -> BTreeMap<i64, (String, Option<String>)> {
    let mut by_key: BTreeMap<&str, i64> = BTreeMap::new();
    for (o, (k, _)) in written {
        by_key.insert(k, *o);
    }
    by_key.values().map(|o| (*o, written[o].clone())).collect()
}

#[tokio::test]
async fn a_pass_keeps_the_latest_record_of_each_key_at_its_offset() {
    let mut log = Log::new().await;
    // 30 keys written once, uncompressed, in three flushes: 3 KiB kept, so
    // the cleaned log spans several 1 KiB regions.
    for f in 0..3 {
        let once: Vec<Rec> = (0..10)
            .map(|u| rec(&format!("u{f}-{u}"), Some(&"y".repeat(100))))
            .collect();
        log.flush(&once, 0, 0).await;
    }
    // Five flushes, one per codec (none, gzip, snappy in xerial framing,
    // lz4, zstd), each rewriting keys k0..k5; k1's last is a tombstone.
    for (round, codec) in [0i16, 1, 2, 3, 4].into_iter().enumerate() {
        let recs: Vec<Rec> = (0..6)
            .map(|k| {
                // 100 bytes a value: the cleaned log spans several regions.
                let value = format!("k{k}-v{round}-{}", "x".repeat(94));
                let tomb = round == 4 && k == 1;
                rec(&format!("k{k}"), (!tomb).then_some(value.as_str()))
            })
            .collect();
        log.flush(&recs, 1_000 * round as i64, codec).await;
    }
    // A last flush of k0 alone: the last batch, kept whole whatever it is.
    log.flush(&[rec("k0", Some("k0-last"))], 9_000, 0).await;

    let r = log.pass(&policy(0.5, 86_400_000), 10_000).await;
    assert_eq!(
        (r.partitions_compacted, r.partitions_cleaned),
        (1, 1),
        "{r}"
    );
    let (entries, read) = log.read().await;
    let want = latest(&log.written);
    assert_eq!(read, want, "the latest of each key, tombstone kept");
    assert_eq!(
        read.values().filter(|(_, v)| v.is_none()).count(),
        1,
        "k1's tombstone stays within delete.retention.ms"
    );
    assert_eq!(r.records_removed as usize, log.written.len() - want.len());
    assert!(
        entries.iter().all(|e| is_cleaned(&e.object_key)),
        "{entries:?}"
    );
    assert!(entries.len() >= 3, "1 KiB regions: {entries:?}");

    // Nothing dirty: the next pass does nothing.
    let r = log.pass(&policy(0.5, 86_400_000), 10_000).await;
    assert_eq!((r.partitions_compacted, r.get_requests), (0, 0), "{r}");

    // The log goes on: new writes are dirty, merged but not cleaned while
    // under the ratio; the clean part is left as it is.
    log.flush(
        &[rec("k2", Some("k2-new")), rec("k2", Some("k2-newer"))],
        20_000,
        0,
    )
    .await;
    log.flush(&[rec("k3", Some("k3-new"))], 21_000, 0).await;
    let r = log.pass(&policy(0.5, 86_400_000), 30_000).await;
    assert_eq!(
        (r.partitions_compacted, r.partitions_cleaned),
        (1, 0),
        "{r}"
    );
    let (after, read) = log.read().await;
    assert_eq!(
        &after[..entries.len()],
        &entries[..],
        "clean part untouched"
    );
    assert!(!is_cleaned(&after.last().unwrap().object_key));
    assert_eq!(
        read.len(),
        want.len() + 3,
        "the duplicates of k2 stay for now"
    );

    // A low enough ratio cleans them.
    let r = log.pass(&policy(0.01, 86_400_000), 30_000).await;
    assert_eq!(r.partitions_cleaned, 1, "{r}");
    let (_, read) = log.read().await;
    assert_eq!(read, latest(&log.written));
}

#[tokio::test]
async fn tombstones_stay_for_the_delete_retention_then_go() {
    let mut log = Log::new().await;
    log.flush(
        &[
            rec("a", Some("a1")),
            rec("b", Some("b1")),
            rec("c", Some("c1")),
        ],
        1_000,
        4,
    )
    .await;
    log.flush(&[rec("a", None), rec("b", Some("b2"))], 2_000, 1)
        .await;
    log.flush(&[rec("c", Some("c2"))], 3_000, 0).await;

    // Within delete.retention.ms (10 s at 5 s): a's tombstone stays, a1 goes.
    log.pass(&policy(0.5, 10_000), 5_000).await;
    let (_, read) = log.read().await;
    assert_eq!(read, latest(&log.written));
    assert_eq!(read[&3], ("a".to_string(), None), "tombstone kept");

    // Past it: the tombstone goes too (the next cleaning; make it due).
    log.flush(&[rec("c", Some("c3"))], 4_000, 0).await;
    let r = log.pass(&policy(0.0, 10_000), 20_000).await;
    assert_eq!(r.partitions_cleaned, 1, "{r}");
    let (entries, read) = log.read().await;
    let mut want = latest(&log.written);
    want.remove(&3);
    assert_eq!(read, want, "a is gone entirely");
    assert_eq!(
        entries.first().unwrap().base_offset,
        0,
        "offsets still covered from 0"
    );
}

#[tokio::test]
async fn the_minimum_lag_and_the_delete_policy_are_respected() {
    let mut log = Log::new().await;
    for i in 0..3 {
        log.flush(&[rec("k", Some(&format!("v{i}")))], 1_000 * i, 0)
            .await;
    }
    let young = CleanerPolicy {
        min_compaction_lag_ms: 60_000,
        ..policy(0.0, 0)
    };
    let r = log.pass(&young, 10_000).await;
    assert_eq!(
        (r.partitions_compacted, r.partitions_cleaned),
        (1, 0),
        "merged, not cleaned: {r}"
    );
    let (_, read) = log.read().await;
    assert_eq!(read, log.written, "every version stays");
    // A topic without cleanup.policy=compact is merged, never cleaned.
    log.flush(&[rec("k", Some("v3"))], 3_000, 0).await;
    log.flush(&[rec("k", Some("v4"))], 4_000, 0).await;
    let config = Config {
        region_bytes: 1024,
        object_bytes: 4096,
        ..Config::default()
    };
    let r = compact_partition_with(
        &log.stores,
        log.p,
        &config,
        None,
        None,
        &mut FlushRecords::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.partitions_compacted, r.partitions_cleaned),
        (1, 0),
        "{r}"
    );
    let (_, read) = log.read().await;
    assert_eq!(read, log.written, "every version stays");
}
