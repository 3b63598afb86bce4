//! Bulk checkpoints: the owner folds new index entries and producer state of
//! every changed partition into the MetaStore every few seconds, then trims the
//! flush records that are now covered. Metadata cost per flush stays constant
//! whatever the number of partitions it touched.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use floe_core::meta::SharedMetaStore;
use floe_core::types::StreamId;

use crate::log::PartitionLog;

/// Partitions written in one atomic checkpoint call (DynamoDB transactions take
/// at most 100 items).
pub const CHECKPOINT_CHUNK: usize = 50;

/// Checkpoints every changed partition of `logs` as of `committed_through`, then
/// trims the stream's flush records up to it unless `trimmed` (the stream's
/// highest trim so far, kept by the caller) is already there (an idle gateway
/// writes nothing), or a partition of `logs` was handed over with changes its
/// release has not stored yet. Returns how many partitions were written.
pub async fn checkpoint_once(
    meta: &SharedMetaStore,
    stream: &StreamId,
    logs: &[Arc<PartitionLog>],
    committed_through: u64,
    trimmed: &AtomicU64,
) -> floe_core::Result<usize> {
    // Read the commit position before snapshotting: every flush at or below it is
    // already applied to each snapshot. A snapshot may also include later flushes;
    // replay skips offsets a checkpoint already holds.
    let through = committed_through;
    let mut dirty = Vec::new();
    for log in logs {
        if let Some(cp) = log.checkpoint_if_dirty(stream, through) {
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
    // A partition handed over but not (yet) released has changes that only
    // this stream's flush records hold: trimming them would lose them for the
    // next owner. Trim once its release lands.
    if logs.iter().any(|l| l.has_unreleased_changes()) {
        return Ok(written);
    }
    if through > trimmed.load(Ordering::SeqCst) {
        meta.trim_flushes(stream, through).await?;
        trimmed.fetch_max(through, Ordering::SeqCst);
    }
    Ok(written)
}
