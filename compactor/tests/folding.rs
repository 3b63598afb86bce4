//! Flush records are the index until a pass folds them: an owner with a
//! `checkpoint-delay` stores no index entry between its (rare) checkpoints,
//! so a pass merges the entries its flush records hold, past the owner's
//! stored state, and stores them in one swap. Readers see the same log
//! before and after, and once the owner stores its state and trims its
//! records, the merged entries alone are the index. Storage level (memory
//! stores); the end-to-end figures are in `gateway/tests/metadata_cost.rs`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_compactor::{Config, compact_partition};
use floe_core::backend::Stores;
use floe_core::index::load;
use floe_core::keys::{is_compacted, object_key};
use floe_core::meta::{MemoryMetaStore, MetaStore};
use floe_core::object_store::{MemoryObjectStore, ObjectStore};
use floe_core::records::encode_batch;
use floe_core::segment::SegmentBuilder;
use floe_core::types::{FlushPartition, FlushRecord, PartitionCheckpoint, PartitionId};

const FLUSHES: u64 = 40;

#[tokio::test]
async fn a_pass_folds_the_entries_only_flush_records_hold() {
    let meta: Arc<dyn MetaStore> = Arc::new(MemoryMetaStore::new());
    let objects: Arc<dyn ObjectStore> = Arc::new(MemoryObjectStore::new());
    let stores = Stores::new(objects.clone(), meta.clone());
    let me = common::registered(&*meta).await;
    let topic = common::created(&*meta, "folded", 8, 2).await;
    let (p, other) = (PartitionId::new(topic.id, 0), PartitionId::new(topic.id, 1));
    let claim = |partition| PartitionCheckpoint {
        partition,
        owner: me.clone(),
        checkpoint_seq: 0,
        next_offset: 0,
        log_start_offset: 0,
        producers: BTreeMap::new(),
        new_entries: Vec::new(),
    };
    meta.write_checkpoints(&me, &[claim(p), claim(other)])
        .await
        .expect("claim");

    // Flushes of two records to each partition; only their records say so.
    let batch = encode_batch(
        &[
            (Some(b"k".to_vec()), Some(b"v1".to_vec())),
            (Some(b"k".to_vec()), Some(b"v2".to_vec())),
        ],
        1_000,
        0,
        false,
    )
    .expect("batch");
    for seq in 1..=FLUSHES {
        let base = (seq as i64 - 1) * 2;
        let mut b = SegmentBuilder::with_capacity(256);
        let mut parts = Vec::new();
        for id in [p, other] {
            let at = b.position();
            b.push_batch(&batch, base);
            let region = b.finish_region(id, at, base, base + 1, 1_001, 1);
            parts.push(FlushPartition {
                partition: id,
                base_offset: base,
                last_offset: base + 1,
                max_timestamp: 1_001,
                position: region.position,
                length: region.length,
                producers: Vec::new(),
            });
        }
        let key = object_key(&me, seq);
        let body = b.finish();
        let len = body.len() as u64;
        objects.put_if_absent(&key, body).await.expect("put");
        meta.commit_flush(&FlushRecord {
            stream: me.clone(),
            seq,
            object_key: key,
            object_len: len,
            created_ms: 0,
            partitions: parts,
        })
        .await
        .expect("commit");
    }
    let end = FLUSHES as i64 * 2;
    let before = load(&*meta, p, 0).await.expect("load").expect("claimed");
    assert_eq!(
        (before.next_offset, before.entries.len()),
        (end, FLUSHES as usize)
    );

    // The pass merges them although the stored state ends at offset 0.
    let r = compact_partition(&stores, p, &Config::default())
        .await
        .expect("pass");
    assert_eq!(
        (r.partitions_compacted, r.entries_merged),
        (1, FLUSHES),
        "{r}"
    );
    assert_eq!(r.entries_deleted, 0, "nothing stored was covered");
    let stored = meta
        .load_partition(p)
        .await
        .expect("load")
        .expect("claimed");
    assert_eq!(stored.next_offset, 0, "the owner's state is the owner's");
    assert_eq!(stored.entries.len(), 1);
    assert!(is_compacted(&stored.entries[0].object_key));
    let after = load(&*meta, p, 0).await.expect("load").expect("claimed");
    assert_eq!(after.next_offset, end);
    assert_eq!(after.entries, stored.entries, "one entry for the whole log");

    // The owner stores its state, no entry (the pass did), and trims: the
    // merged entry alone is the index of partition 0; partition 1, not
    // compacted, needs its records until its own checkpoint stores them.
    let mut cp = claim(p);
    cp.checkpoint_seq = FLUSHES;
    cp.next_offset = end;
    meta.write_checkpoints(&me, &[cp])
        .await
        .expect("checkpoint");
    let other_entries = load(&*meta, other, 0)
        .await
        .expect("load")
        .expect("claimed")
        .entries;
    let mut cp = claim(other);
    cp.checkpoint_seq = FLUSHES;
    cp.next_offset = end;
    cp.new_entries = other_entries;
    meta.write_checkpoints(&me, &[cp])
        .await
        .expect("checkpoint");
    meta.trim_flushes(&me, FLUSHES).await.expect("trim");
    let trimmed = load(&*meta, p, 0).await.expect("load").expect("claimed");
    assert_eq!(
        (trimmed.next_offset, trimmed.entries),
        (end, stored.entries)
    );
    let other_log = load(&*meta, other, 0)
        .await
        .expect("load")
        .expect("claimed");
    assert_eq!(
        (other_log.next_offset, other_log.entries.len()),
        (end, FLUSHES as usize)
    );
}
