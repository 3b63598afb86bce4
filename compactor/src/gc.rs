//! Deleting objects nothing references, after a delay.
//!
//! **The rule.** An object (a flush's under `segments/`, a compaction's under
//! `compacted/`) is deleted once passes have found it unreferenced for at
//! least `object-delete-delay`. Referenced means: named by an untrimmed flush
//! record of any stream, or by a stored index entry of a topic that exists
//! whose offsets reach the partition's log start. A pass reads, in this
//! order, the objects, the flush records, then the topics and their indexes,
//! so an entry moving from a record into an index (a checkpoint) while it
//! reads is seen in one or the other.
//!
//! **Why it is safe.** Once an object is unreferenced it stays so: keys are
//! never reused (flush keys name one incarnation and seq; compaction keys
//! carry a fresh UUID), the log start only moves forward, and a swap only
//! supersedes entries. The exceptions are objects not referenced *yet*: a
//! flush's between its upload and its commit, a compaction's between its
//! upload and its swap. The flusher and the compactor refuse to reference an
//! object they uploaded more than half the delay earlier, so an object found
//! unreferenced for the whole delay is never referenced later. Readers that
//! loaded an index before a compaction or a retention move keep reading the
//! old objects until they refresh it: owners adopt compactions every
//! `retention-check-interval` (and on a missing object), so the delay must
//! be longer than that, with a margin for clock skew between the machines
//! that run passes (first sightings are wall-clock times).
//!
//! **Marks.** When a pass first finds an object unreferenced is kept in a
//! small object, `gc/marks-<ms>-<uuid>.json`, one per pass (the newest is
//! read, older ones deleted). Two passes at once may each write one; the
//! next pass reads the newest, so a sighting can be forgotten (the object is
//! then deleted one delay later). A sighting holds only while passes keep
//! looking: marks written more than half the delay ago are dropped, so
//! passes must run more often than that for anything to be deleted. Each
//! pass's time is read just before it lists the objects.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use floe_core::backend::Stores;
use floe_core::clock::Clock;
use floe_core::keys::COMPACTED_PREFIX;
use floe_core::object_store::put_exactly;
use floe_core::types::PartitionId;
use floe_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where marks live.
pub const MARKS_PREFIX: &str = "gc/";
/// Where flush objects live.
const SEGMENTS_PREFIX: &str = "segments/";

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub objects_listed: u64,
    pub objects_referenced: u64,
    /// Unreferenced, still within the delay.
    pub objects_pending: u64,
    pub objects_deleted: u64,
    pub bytes_deleted: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Marks {
    /// When the pass that wrote them listed the objects (Unix ms).
    #[serde(default)]
    listed_ms: i64,
    /// Object key → when a pass first found it unreferenced (Unix ms).
    first_unreferenced_ms: BTreeMap<String, i64>,
}

/// One collection, its time read from `clock` just before it lists the
/// objects: an object listed then existed then (see the module docs).
pub async fn collect(stores: &Stores, delay: Duration, clock: &dyn Clock) -> Result<GcReport> {
    let mut report = GcReport::default();
    let (mut marks, mark_keys) = read_marks(stores).await?;
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let now_ms = clock.now_ms();
    // Sightings count only if passes kept looking: marks older than half the
    // delay (passes stopped, or failed before writing theirs) start afresh, so
    // an object referenced in between is never deleted on an old sighting.
    if now_ms.saturating_sub(marks.listed_ms) > delay_ms / 2 {
        marks.first_unreferenced_ms.clear();
    }

    let mut listed = stores.objects.list(SEGMENTS_PREFIX).await?;
    listed.extend(stores.objects.list(COMPACTED_PREFIX).await?);
    report.objects_listed = listed.len() as u64;

    let referenced = referenced(stores).await?;

    let mut next = Marks {
        listed_ms: now_ms,
        ..Marks::default()
    };
    for o in listed {
        if referenced.contains(&o.key) {
            report.objects_referenced += 1;
            continue;
        }
        let first = marks
            .first_unreferenced_ms
            .get(&o.key)
            .copied()
            .unwrap_or(now_ms)
            .min(now_ms);
        if now_ms.saturating_sub(first) >= delay_ms {
            stores.objects.delete(&o.key).await?;
            tracing::debug!(key = %o.key, "deleted an unreferenced object");
            report.objects_deleted += 1;
            report.bytes_deleted += o.size;
        } else {
            next.first_unreferenced_ms.insert(o.key, first);
            report.objects_pending += 1;
        }
    }

    let body = serde_json::to_vec(&next).map_err(|e| Error::Internal(e.to_string()))?;
    let key = format!(
        "{MARKS_PREFIX}marks-{:020}-{}.json",
        now_ms.max(0),
        uuid::Uuid::new_v4().simple()
    );
    put_exactly(&*stores.objects, &key, Bytes::from(body)).await?;
    for old in mark_keys {
        stores.objects.delete(&old).await?;
    }
    Ok(report)
}

/// The newest marks (empty if none or unreadable) and every marks object.
async fn read_marks(stores: &Stores) -> Result<(Marks, Vec<String>)> {
    let keys: Vec<String> = stores
        .objects
        .list(MARKS_PREFIX)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".json"))
        .collect();
    let Some(newest) = keys.last() else {
        return Ok((Marks::default(), keys));
    };
    let marks = match stores.objects.get(newest).await {
        Ok(body) => serde_json::from_slice(&body).unwrap_or_else(|e| {
            tracing::warn!(key = %newest, error = %e, "unreadable marks; starting afresh");
            Marks::default()
        }),
        Err(e) if e.kind() == floe_core::ErrorKind::NotFound => Marks::default(),
        Err(e) => return Err(e),
    };
    Ok((marks, keys))
}

/// Every object a reader may be sent to: untrimmed flush records first,
/// then the stored indexes of existing topics (from the log start).
async fn referenced(stores: &Stores) -> Result<HashSet<String>> {
    let mut keys = HashSet::new();
    for stream in stores.meta.flush_streams().await? {
        for r in stores.meta.read_flushes(&stream, 0).await? {
            keys.insert(r.object_key);
        }
    }
    for topic in stores.meta.list_topics().await? {
        for partition in 0..topic.partitions {
            let p = PartitionId::new(topic.id, partition);
            if let Some(snap) = stores.meta.load_partition(p).await? {
                for e in snap.entries {
                    if e.last_offset >= snap.log_start_offset {
                        keys.insert(e.object_key);
                    }
                }
            }
        }
    }
    Ok(keys)
}
