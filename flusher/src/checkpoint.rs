//! Bulk checkpoints: every `checkpoint-interval` the owner stores the state
//! (next offset, log start, producer state) of every partition whose changes
//! are `checkpoint-delay` old, with the index entries no compaction pass has
//! stored yet, then trims its flush records up to the first change still
//! unstored. Until a partition is due, its flush records are its index: a
//! flush costs one metadata write whatever the number of partitions it
//! touched, and a pass stores the entries merged (one per region).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use floe_core::meta::SharedMetaStore;
use floe_core::types::StreamId;

use crate::log::PartitionLog;

/// Partitions written in one atomic checkpoint call (DynamoDB transactions take
/// at most 100 items).
pub const CHECKPOINT_CHUNK: usize = 50;

/// Checkpoints every partition of `logs` with a change at least `delay` old
/// (or a moved log start) as of `committed_through`, then trims the
/// stream's flush records up to it, or to the first change a checkpoint has
/// not stored, unless `trimmed` (the stream's highest trim so far, kept by
/// the caller) is already there (an idle gateway writes nothing), or a
/// partition of `logs` was handed over with changes its release has not
/// stored yet. Returns how many partitions were written.
pub async fn checkpoint_once(
    meta: &SharedMetaStore,
    stream: &StreamId,
    logs: &[Arc<PartitionLog>],
    committed_through: u64,
    delay: Duration,
    trimmed: &AtomicU64,
) -> floe_core::Result<usize> {
    // Read the commit position before snapshotting: every flush at or below it is
    // already applied to each snapshot. A snapshot may also include later flushes;
    // replay skips offsets a checkpoint already holds.
    let through = committed_through;
    let mut dirty = Vec::new();
    for log in logs {
        if let Some(cp) = log.checkpoint_if_dirty(stream, through, delay) {
            dirty.push((log.clone(), cp));
        }
    }
    let written = dirty.len();
    for chunk in dirty.chunks(CHECKPOINT_CHUNK) {
        let cps: Vec<_> = chunk.iter().map(|(_, (cp, _, _))| cp.clone()).collect();
        meta.write_checkpoints(stream, &cps).await?;
        for (log, (_, version, end)) in chunk {
            log.mark_checkpointed(*version, *end);
        }
    }
    let Some(through) = trim_point(logs, through) else {
        return Ok(written);
    };
    if through > trimmed.load(Ordering::SeqCst) {
        meta.trim_flushes(stream, through).await?;
        trimmed.fetch_max(through, Ordering::SeqCst);
    }
    Ok(written)
}

/// How far a stream may trim its flush records now, given every partition
/// it leads or led (`logs`): through `committed_through`, but not past the
/// first flush holding a change of one of them that no checkpoint stored
/// (its state or its index entry: the records are then all a reader has).
/// `None` while one was handed over with changes its release has not
/// stored yet: only this stream's records hold them for the next owner.
pub fn trim_point(logs: &[Arc<PartitionLog>], committed_through: u64) -> Option<u64> {
    if logs.iter().any(|l| l.has_unreleased_changes()) {
        return None;
    }
    Some(
        logs.iter()
            .filter_map(|l| l.trim_bound())
            .map(|seq| seq.saturating_sub(1))
            .fold(committed_through, u64::min),
    )
}
