//! Boundedness: a partition written by 100,000 one-batch flushes has 100,000
//! index entries; after compaction the stored index (what a takeover reads),
//! and an owner's in-memory index once it adopts the compaction, hold a few
//! entries per 4 MiB of data, not one per flush. Storage-level (the stores'
//! own API, memory backends), so it runs in seconds; the end-to-end tests
//! with Kafka clients are in `gateway/tests/compaction.rs`. Also: a pass past
//! its deadline (a Lambda invocation running out) starts nothing, and the
//! next pass does the work.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_core::backend::Stores;
use floe_core::index::{PartitionIndex, live_entries};
use floe_core::keys::object_key;
use floe_core::meta::{MemoryMetaStore, MetaStore};
use floe_core::object_store::{MemoryObjectStore, ObjectStore};
use floe_core::segment::SegmentBuilder;
use floe_core::types::{IndexEntry, PartitionCheckpoint, PartitionId};

const FLUSHES: i64 = 100_000;

/// A RecordBatch v2 of `len` bytes holding offsets base..=base+delta, with a
/// valid CRC-32C (the records are filler).
fn batch(base: i64, delta: i32, len: usize) -> Vec<u8> {
    let mut b = vec![7u8; len];
    b[0..8].copy_from_slice(&base.to_be_bytes());
    b[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
    b[16] = 2;
    b[21..23].copy_from_slice(&0i16.to_be_bytes());
    b[23..27].copy_from_slice(&delta.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// One partition written by `flushes` one-batch flushes, each its own object
/// and stored index entry: the stores, the partition and its data's bytes.
async fn hundred_thousand_flushes(flushes: i64) -> (Stores, PartitionId, u64) {
    let meta: Arc<dyn MetaStore> = Arc::new(MemoryMetaStore::new());
    let objects: Arc<dyn ObjectStore> = Arc::new(MemoryObjectStore::new());
    let stores = Stores::new(objects.clone(), meta.clone());
    let me = common::registered(&*meta).await;
    let topic = common::created(&*meta, "t", 9, 1).await;
    let p = PartitionId::new(topic.id, 0);

    // One flush per batch of two records: its own object, its own entry.
    let mut entries = Vec::with_capacity(flushes as usize);
    let mut bytes = 0u64;
    for seq in 1..=flushes {
        let base = (seq - 1) * 2;
        let mut b = SegmentBuilder::with_capacity(128);
        let at = b.position();
        b.push_batch(&batch(base, 1, 90), base);
        let region = b.finish_region(p, at, base, base + 1, seq, 1);
        let key = object_key(&me, seq as u64);
        objects.put_if_absent(&key, b.finish()).await.expect("put");
        bytes += u64::from(region.length);
        entries.push(IndexEntry {
            base_offset: base,
            last_offset: base + 1,
            max_timestamp: seq,
            object_key: key,
            position: region.position,
            length: region.length,
        });
    }
    meta.write_checkpoints(
        &me,
        &[PartitionCheckpoint {
            partition: p,
            owner: me.clone(),
            checkpoint_seq: flushes as u64,
            next_offset: flushes * 2,
            log_start_offset: 0,
            producers: BTreeMap::new(),
            new_entries: entries,
        }],
    )
    .await
    .expect("checkpoint");
    (stores, p, bytes)
}

#[tokio::test]
async fn a_pass_past_its_deadline_starts_nothing_and_the_next_resumes() {
    let (stores, p, bytes) = hundred_thousand_flushes(1_000).await;
    let config = floe_compactor::Config::default();
    let now = std::time::Instant::now();
    let clock = floe_core::clock::SystemClock;
    let r = floe_compactor::run_pass_until(&stores, &config, &clock, Some(now))
        .await
        .expect("pass");
    assert!(r.cut_short, "{r}");
    assert_eq!(
        (r.partitions_seen, r.put_requests, r.gc.objects_listed),
        (0, 0, 0)
    );
    let r = floe_compactor::run_pass(&stores, &config, &clock)
        .await
        .expect("pass");
    assert!(!r.cut_short && r.partitions_compacted == 1, "{r}");
    let stored = stores
        .meta
        .load_partition(p)
        .await
        .expect("load")
        .expect("some");
    assert_eq!(stored.entries.len(), 1, "{bytes} B in one region");
}

/// A run whose last region would hold one entry: that entry stays as it
/// is, and the stored index stays whole (contiguous to the checkpoint's
/// end) after the swap and the deletes, on every pass.
#[tokio::test]
async fn a_lone_last_entry_stays_and_the_index_stays_whole() {
    let (stores, p, _) = hundred_thousand_flushes(23).await;
    let config = floe_compactor::Config {
        region_bytes: 1024, // 11 entries of 90 B: regions of 11, 11 and 1
        ..floe_compactor::Config::default()
    };
    for pass in 0..3 {
        floe_compactor::run_pass(&stores, &config, &floe_core::clock::SystemClock)
            .await
            .expect("pass");
        let mut snap = stores
            .meta
            .load_partition(p)
            .await
            .expect("load")
            .expect("some");
        let stored = snap.entries.clone();
        floe_core::index::rebuild(&mut snap, p, &[], 0)
            .unwrap_or_else(|e| panic!("after pass {pass}: {e}: {stored:?}"));
        let lens: Vec<u32> = snap.entries.iter().map(|e| e.length).collect();
        assert_eq!(lens, vec![990, 990, 90], "after pass {pass}");
    }
}

#[tokio::test]
async fn a_hundred_thousand_flushes_compact_to_a_bounded_index() {
    let (stores, p, bytes) = hundred_thousand_flushes(FLUSHES).await;
    let meta = stores.meta.clone();
    let entries = meta
        .load_partition(p)
        .await
        .expect("load")
        .expect("some")
        .entries;
    let mut owner = PartitionIndex::new(entries);
    let stored_before = meta.load_partition(p).await.expect("load").expect("some");
    assert_eq!(stored_before.entries.len(), FLUSHES as usize);

    let config = floe_compactor::Config::default();
    let report = floe_compactor::run_pass(&stores, &config, &floe_core::clock::SystemClock)
        .await
        .expect("pass");
    let stored = meta.load_partition(p).await.expect("load").expect("some");
    let live = live_entries(stored.entries.clone()).expect("live");
    let bound = bytes.div_ceil(config.region_bytes) as usize + 1;
    eprintln!(
        "{FLUSHES} flushes, {bytes} B: stored index {} -> {} items ({} live); {report}",
        stored_before.entries.len(),
        stored.entries.len(),
        live.len()
    );
    assert!(
        stored.entries.len() <= bound,
        "{} items",
        stored.entries.len()
    );
    assert_eq!(live.first().map(|e| e.base_offset), Some(0));
    assert_eq!(live.last().map(|e| e.last_offset), Some(FLUSHES * 2 - 1));
    assert!(
        live.windows(2)
            .all(|w| w[1].base_offset == w[0].last_offset + 1),
        "contiguous"
    );
    assert!(owner.replace_prefix(&live), "the owner adopts it");
    assert!(owner.len() <= bound, "{} in memory", owner.len());
    assert_eq!(owner.bytes(), bytes, "the same data");
}
