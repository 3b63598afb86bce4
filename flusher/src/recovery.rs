//! Loading partitions at startup: each partition's checkpoint, plus every flush
//! record of this gateway's earlier incarnations not yet folded in, then a claim
//! (a full checkpoint under the new epoch) so the old streams can be trimmed.
//!
//! Replay is idempotent by offset: a flush entry whose offsets a checkpoint
//! already holds is skipped, and one that would leave a gap is corruption.

use std::collections::HashMap;
use std::sync::Arc;

use floe_core::meta::SharedMetaStore;
use floe_core::types::{PartitionId, StreamId};
use floe_core::{Error, Result};

use crate::checkpoint::CHECKPOINT_CHUNK;
use crate::log::PartitionLog;
use crate::producer::apply_batch;

pub async fn recover_partition_logs(
    meta: &SharedMetaStore,
    me: &StreamId,
    partitions: &[PartitionId],
) -> Result<HashMap<PartitionId, Arc<PartitionLog>>> {
    let mut logs = HashMap::new();
    let mut ckpt_seq: HashMap<PartitionId, (StreamId, u64)> = HashMap::new();
    for &p in partitions {
        let log = match meta.load_partition(p).await? {
            Some(snap) => {
                ckpt_seq.insert(p, (snap.owner.clone(), snap.checkpoint_seq));
                let n = snap.entries.len();
                PartitionLog::new(
                    p,
                    snap.next_offset,
                    snap.log_start_offset,
                    snap.entries,
                    snap.producers,
                    n,
                )
            }
            None => PartitionLog::empty(p),
        };
        logs.insert(p, log);
    }
    let mut streams: Vec<StreamId> = meta
        .flush_streams()
        .await?
        .into_iter()
        .filter(|s| s.gateway == me.gateway && s.epoch < me.epoch)
        .collect();
    streams.sort();
    let mut replayed = 0usize;
    for stream in &streams {
        for record in meta.read_flushes(stream, 0).await? {
            for fp in &record.partitions {
                let Some(log) = logs.get(&fp.partition) else {
                    continue; // topic deleted since
                };
                if let Some((owner, seq)) = ckpt_seq.get(&fp.partition)
                    && owner == stream
                    && record.seq <= *seq
                {
                    continue;
                }
                let mut st = log.lock();
                if fp.last_offset < st.high_watermark {
                    continue; // already in the checkpoint
                }
                if fp.base_offset != st.high_watermark {
                    return Err(Error::Corrupt(format!(
                        "partition {}: flush {} #{} starts at offset {} but the log ends at {}",
                        fp.partition, stream, record.seq, fp.base_offset, st.high_watermark
                    )));
                }
                st.high_watermark = fp.last_offset + 1;
                st.next_offset = st.high_watermark;
                st.entries.push(fp.index_entry(&record.object_key));
                for pb in &fp.producers {
                    apply_batch(st.producers.entry(pb.producer_id).or_default(), pb);
                }
                st.working_producers = st.producers.clone();
                st.version += 1;
                replayed += 1;
            }
        }
    }
    // Claim every partition under the new epoch, folding the replayed entries in.
    let all: Vec<_> = logs.values().cloned().collect();
    for chunk in all.chunks(CHECKPOINT_CHUNK) {
        let cps: Vec<_> = chunk.iter().map(|l| l.full_checkpoint(me, 0)).collect();
        meta.write_checkpoints(me, &cps).await?;
        for l in chunk {
            l.mark_all_checkpointed();
        }
    }
    for stream in &streams {
        meta.trim_flushes(stream, u64::MAX).await?;
    }
    tracing::info!(
        partitions = logs.len(),
        old_streams = streams.len(),
        replayed,
        "partitions recovered"
    );
    Ok(logs)
}
