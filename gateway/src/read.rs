//! Reading committed batches: index entry → cached range or one ranged GET,
//! for partitions led here and for read-only copies of partitions led in
//! other zones.
//!
//! Zone-local reads (Kafka's fetch-from-follower, KIP-392): any gateway can
//! serve reads of any partition, since the data is in the object store. A
//! consumer that sends `client.rack` and fetches from the leader of a
//! partition in another zone is told to fetch from a live gateway in its own
//! zone instead (`preferred_read_replica`); that gateway keeps a read-only
//! copy of the partition's index, re-read at most every `follower_refresh`
//! while it is fetched, by the storage model's rule
//! (`floe_core::index::load_since`: the stored entries from the copy's end
//! on, plus the leader's flush records the copy has not read yet). The trade-off: no cross-zone transfer for
//! those consumers, for up to `follower_refresh` more end-to-end latency and a
//! few metadata reads per refresh and partition (shared by every consumer of
//! it on that gateway).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use floe_core::meta::SharedMetaStore;
use floe_core::object_store::SharedObjectStore;
use floe_core::types::{IndexEntry, PartitionId, StreamId};
use floe_flusher::{PartitionLog, ReadCache};
use tokio::time::Instant;

use crate::batch::stored_batches;

/// A read-only copy of one partition led elsewhere.
#[derive(Debug)]
struct Copy {
    log: Arc<PartitionLog>,
    /// When it was last brought up to date, and the leader's flush records
    /// it was built from (stream, last seq read: the next refresh reads only
    /// later ones); the lock makes one refresh at a time serve every fetch
    /// waiting on it.
    refreshed: tokio::sync::Mutex<Refreshed>,
}

#[derive(Debug, Default)]
struct Refreshed {
    at: Option<Instant>,
    seen: Option<(StreamId, u64)>,
}

#[derive(Debug)]
pub struct Reader {
    objects: SharedObjectStore,
    meta: SharedMetaStore,
    cache: Arc<ReadCache>,
    follower_refresh: Duration,
    copies: Mutex<HashMap<PartitionId, Arc<Copy>>>,
}

impl Reader {
    /// `cache` is shared with the write path, which fills it with what it
    /// commits.
    pub fn new(
        objects: SharedObjectStore,
        meta: SharedMetaStore,
        cache: Arc<ReadCache>,
        follower_refresh: Duration,
    ) -> Self {
        Reader {
            objects,
            meta,
            cache,
            follower_refresh,
            copies: Mutex::default(),
        }
    }

    /// The bytes of one index entry's region.
    pub async fn entry_bytes(&self, e: &IndexEntry) -> floe_core::Result<Bytes> {
        if let Some(b) = self.cache.get(&e.object_key, e.position) {
            return Ok(b);
        }
        let b = self
            .objects
            .get_range(&e.object_key, e.position..e.position + e.length as u64)
            .await?;
        self.cache.insert(&e.object_key, e.position, b.clone());
        Ok(b)
    }

    /// Collects whole batches from `offset`, stopping before `limit` bytes
    /// unless `must_return_one` (KIP-74: the first batch is returned even if
    /// larger).
    pub async fn read_batches(
        &self,
        entries: &[IndexEntry],
        offset: i64,
        limit: usize,
        must_return_one: bool,
    ) -> floe_core::Result<Option<Bytes>> {
        let mut parts: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        'outer: for e in entries {
            let bytes = self.entry_bytes(e).await?;
            for (start, end, _base, last, _ts) in stored_batches(&bytes) {
                if last < offset {
                    continue;
                }
                let len = end - start;
                if total + len > limit && !(parts.is_empty() && must_return_one) {
                    break 'outer;
                }
                parts.push(bytes.slice(start..end));
                total += len;
                if total >= limit {
                    break 'outer;
                }
            }
        }
        Ok(match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => {
                let mut out = BytesMut::with_capacity(total);
                for p in parts {
                    out.extend_from_slice(&p);
                }
                Some(out.freeze())
            }
        })
    }

    /// How long a copy serves fetches before it is refreshed.
    pub fn follower_refresh(&self) -> Duration {
        self.follower_refresh
    }

    /// Reloads the copy of `p` from the whole stored index (a read found an
    /// object missing: compacted and deleted since the copy was loaded).
    pub async fn reload_replica(&self, p: PartitionId) -> floe_core::Result<()> {
        let copy = self
            .copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p)
            .cloned();
        let Some(copy) = copy else { return Ok(()) };
        let mut refreshed = copy.refreshed.lock().await;
        self.reset(&copy, &mut refreshed, p).await
    }

    /// Reloads `copy` from the whole stored index and its leader's records.
    async fn reset(
        &self,
        copy: &Copy,
        refreshed: &mut Refreshed,
        p: PartitionId,
    ) -> floe_core::Result<()> {
        refreshed.seen = None;
        if let Some((full, seen)) = floe_core::index::load_since(&*self.meta, p, 0, None).await? {
            copy.log
                .reset_replica(full.log_start_offset, full.next_offset, full.entries);
            refreshed.seen = Some(seen);
        }
        Ok(())
    }

    /// An up-to-date (within `follower_refresh`) read-only copy of `p`.
    pub async fn replica(&self, p: PartitionId) -> floe_core::Result<Arc<PartitionLog>> {
        let copy = self
            .copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(p)
            .or_insert_with(|| {
                Arc::new(Copy {
                    log: PartitionLog::unowned(p),
                    refreshed: tokio::sync::Mutex::new(Refreshed::default()),
                })
            })
            .clone();
        let mut refreshed = copy.refreshed.lock().await;
        if refreshed
            .at
            .is_some_and(|t| t.elapsed() < self.follower_refresh)
        {
            return Ok(copy.log.clone());
        }
        let from = copy.log.high_watermark();
        let loaded =
            floe_core::index::load_since(&*self.meta, p, from, refreshed.seen.as_ref()).await;
        let extended = match loaded {
            Ok(Some((snap, seen))) => {
                let grew = copy.log.extend_replica(snap.log_start_offset, snap.entries);
                refreshed.seen = Some(seen);
                grew
            }
            Ok(None) => true,
            // What is stored from the copy's end on no longer shows the log
            // (a compaction merged across it and the records are trimmed).
            Err(e) if e.kind() == floe_core::ErrorKind::Corrupt => false,
            Err(e) => return Err(e),
        };
        if !extended {
            // The copy fell behind what the index still holds: start afresh.
            tracing::info!(partition = %p, "zone-local copy fell behind; reloading it");
            self.reset(&copy, &mut refreshed, p).await?;
        }
        refreshed.at = Some(Instant::now());
        Ok(copy.log.clone())
    }
}
