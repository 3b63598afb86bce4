//! Deleted topics: a pass removes their partitions' stored state once the
//! object delete delay has passed, not before, and a removal that fails does
//! not stop the pass: the collection still runs, and the next pass retries.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use floe_core::backend::Stores;
use floe_core::clock::ManualClock;
use floe_core::fault::{Faults, FaultyMetaStore};
use floe_core::meta::{MemoryMetaStore, MetaStore};
use floe_core::object_store::{MemoryObjectStore, ObjectStore};
use floe_core::types::{IndexEntry, PartitionCheckpoint, PartitionId};

const DELAY: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_failed_removal_leaves_the_collection_running_and_the_next_pass_finishes() {
    let inner: Arc<dyn MetaStore> = Arc::new(MemoryMetaStore::new());
    let faults = Faults::parse("meta.forget_topic=unavailable*1").expect("faults");
    let meta: Arc<dyn MetaStore> = Arc::new(FaultyMetaStore::new(inner, faults));
    let objects: Arc<dyn ObjectStore> = Arc::new(MemoryObjectStore::new());
    let stores = Stores::new(objects.clone(), meta.clone());
    let me = common::registered(&*meta).await;
    let topic = common::created(&*meta, "gone", 5, 2).await;
    let key = "segments/00/g-1-1.seg".to_string();
    objects
        .put_if_absent(&key, Bytes::from_static(b"a flush of the deleted topic"))
        .await
        .expect("put");
    let checkpoints: Vec<PartitionCheckpoint> = (0..2)
        .map(|p| PartitionCheckpoint {
            partition: PartitionId::new(topic.id, p),
            owner: me.clone(),
            checkpoint_seq: 1,
            next_offset: 10,
            log_start_offset: 0,
            producers: BTreeMap::new(),
            new_entries: vec![IndexEntry {
                base_offset: 0,
                last_offset: 9,
                max_timestamp: 0,
                object_key: key.clone(),
                position: 0,
                length: 28,
            }],
        })
        .collect();
    meta.write_checkpoints(&me, &checkpoints)
        .await
        .expect("checkpoint");
    meta.trim_flushes(&me, 1).await.expect("trim");
    let clock = ManualClock::new(1_000_000);
    meta.delete_topic("gone", topic.id, 1_000_000)
        .await
        .expect("delete");
    let config = floe_compactor::Config {
        delete_delay: DELAY,
        ..floe_compactor::Config::default()
    };
    let loaded = |p: i32| {
        let meta = meta.clone();
        async move {
            meta.load_partition(PartitionId::new(topic.id, p))
                .await
                .expect("load")
        }
    };

    // Within the delay: kept.
    clock.advance(DELAY.as_millis() as i64 - 1);
    let r = floe_compactor::run_pass(&stores, &config, &*clock)
        .await
        .expect("pass");
    assert_eq!((r.topics_forgotten, r.topics_forget_failed), (0, 0), "{r}");
    assert!(loaded(0).await.is_some());

    // Past it, the removal fails once: the collection runs anyway (the
    // deleted topic's object is first seen unreferenced).
    clock.advance(1);
    let r = floe_compactor::run_pass(&stores, &config, &*clock)
        .await
        .expect("pass");
    assert_eq!((r.topics_forgotten, r.topics_forget_failed), (0, 1), "{r}");
    assert_eq!(r.gc.objects_listed, 1, "{r}");
    assert_eq!(r.gc.objects_pending, 1, "{r}");
    assert_eq!(meta.deleted_topics().await.expect("list").len(), 1);

    // The next pass removes it.
    clock.advance(1_000);
    let r = floe_compactor::run_pass(&stores, &config, &*clock)
        .await
        .expect("pass");
    assert_eq!((r.topics_forgotten, r.topics_forget_failed), (1, 0), "{r}");
    assert!(loaded(0).await.is_none() && loaded(1).await.is_none());
    assert!(meta.deleted_topics().await.expect("list").is_empty());
}
