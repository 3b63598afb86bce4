//! Zone-local reads (Kafka's fetch-from-follower, KIP-392). Any gateway can
//! serve reads of any partition: the data is in the object store. A consumer
//! that sends `client.rack` and fetches from the leader of a partition in
//! another zone is told to fetch from a live gateway in its own zone instead
//! (`preferred_read_replica`); that gateway keeps a read-only copy of the
//! partition's index, re-read from the MetaStore at most every
//! `follower_refresh` while it is fetched: the checkpoint's entries from the
//! copy's end on, plus the leader's flush records after the checkpoint.
//!
//! The trade-off: no cross-zone transfer for those consumers, for up to
//! `follower_refresh` more end-to-end latency and a few metadata reads per
//! refresh and partition (shared by every consumer of it on that gateway).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use floe_core::types::{Member, PartitionId};
use floe_flusher::PartitionLog;
use tokio::time::Instant;

use crate::broker::Broker;

/// A read-only copy of one partition led elsewhere.
#[derive(Debug)]
struct Copy {
    log: Arc<PartitionLog>,
    /// When it was last brought up to date; the lock makes one refresh at a
    /// time serve every fetch waiting on it.
    refreshed: tokio::sync::Mutex<Option<Instant>>,
}

/// The copies this gateway keeps.
#[derive(Debug, Default)]
pub struct Replicas {
    copies: Mutex<HashMap<PartitionId, Arc<Copy>>>,
}

impl Replicas {
    fn copy(&self, p: PartitionId) -> Arc<Copy> {
        let mut c = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        c.entry(p)
            .or_insert_with(|| {
                Arc::new(Copy {
                    log: PartitionLog::unowned(p),
                    refreshed: tokio::sync::Mutex::new(None),
                })
            })
            .clone()
    }

    fn restart(&self, p: PartitionId) {
        self.copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&p);
    }
}

impl Broker {
    /// The live gateway in `zone` that serves reads of `p` for that zone (the
    /// same choice on every gateway), if there is one.
    pub fn zone_reader(&self, zone: &str, p: &PartitionId) -> Option<Member> {
        let in_zone: Vec<Member> = self
            .view()
            .into_iter()
            .filter(|m| m.info.zone.as_deref() == Some(zone))
            .collect();
        crate::ownership::owner_of(&in_zone, &crate::ownership::partition_key(p)).cloned()
    }

    /// An up-to-date (within `follower_refresh`) read-only copy of `p`.
    pub async fn replica(&self, p: PartitionId) -> floe_core::Result<Arc<PartitionLog>> {
        let copy = self.replicas.copy(p);
        let mut refreshed = copy.refreshed.lock().await;
        if refreshed.is_some_and(|t| t.elapsed() < self.settings.follower_refresh) {
            return Ok(copy.log.clone());
        }
        let from = copy.log.high_watermark();
        let Some(snap) = self.meta.load_partition_from(p, from).await? else {
            *refreshed = Some(Instant::now());
            return Ok(copy.log.clone());
        };
        let mut entries: Vec<_> = snap
            .entries
            .into_iter()
            .filter(|e| e.base_offset < snap.next_offset)
            .collect();
        for record in self
            .meta
            .read_flushes(&snap.owner, snap.checkpoint_seq)
            .await?
        {
            entries.extend(
                record
                    .partitions
                    .iter()
                    .filter(|fp| fp.partition == p)
                    .map(|fp| fp.index_entry(&record.object_key)),
            );
        }
        if !copy.log.extend_replica(snap.log_start_offset, entries) {
            tracing::info!(partition = %p, "replica fell behind a trim; reloading it");
            self.replicas.restart(p);
            drop(refreshed);
            return Box::pin(self.replica(p)).await;
        }
        *refreshed = Some(Instant::now());
        Ok(copy.log.clone())
    }
}
