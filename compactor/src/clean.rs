//! Key compaction (`cleanup.policy=compact`), Kafka's log cleaner: a
//! partition keeps the latest record of each key, and a tombstone (a null
//! value) for `delete.retention.ms` after it was written.
//!
//! **Clean and dirty.** Entries up to the last one stored in a cleaned object
//! (`keys::is_cleaned`) are clean; the rest of the stored live entries below
//! the stored checkpoint's end are dirty. The object keys are the cleaner's
//! checkpoint: nothing else records it. A partition is cleaned when its
//! dirty bytes, counting only entries whose max timestamp is at least
//! `min.compaction.lag.ms` old, are at least `min.cleanable.dirty.ratio` of
//! the whole (clean plus cleanable dirty), or when the oldest dirty entry is
//! older than `max.compaction.lag.ms`.
//!
//! **A cleaning** reads every entry from the log start to the end of the
//! cleanable dirty part twice (once to learn the highest offset of each key,
//! once to rewrite; the first read's bytes are kept for the second up to
//! `KEEP_READ_BYTES`), and keeps a record when it is the latest of its key,
//! unless it is a tombstone written more than `delete.retention.ms` ago
//! (by its timestamp). Records without a key (a topic made compacted after
//! they were written) and batches it cannot read are kept as they are. The
//! last batch of the cleaned range is always kept whole, so the cleaned log
//! never ends in a gap. A batch losing records is rebuilt with its header,
//! offsets and codec unchanged (`records::retain_records`); one losing all
//! is dropped.
//!
//! **Offsets do not move.** The rewritten regions cover exactly the offsets
//! of the entries they replace (a region whose records all went is folded
//! into the next), so the swap, the covering rule, the owner's adoption
//! (`PartitionIndex::replace_prefix`) and the object deletion rule are those
//! of merging; only the batches inside have gaps, which readers skip as
//! Kafka's do.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use floe_core::backend::Stores;
use floe_core::keys::{cleaned_key, is_cleaned};
use floe_core::records::{self, Record};
use floe_core::segment::{SegmentBuilder, check_batches_within};
use floe_core::topic_config::CleanerPolicy;
use floe_core::types::{IndexEntry, PartitionId};
use floe_core::{Error, Result};

use crate::{Config, FlushRecords, MAX_SWAP_ENTRIES, Report, in_entry, put_object};

/// Decompressed records a cleaning reads per batch at most: what the write
/// path allows a compacted topic's batch (`records::records_section` cap).
const RECORDS_CAP: usize = 64 << 20;

/// Bytes of the first read kept for the rewrite instead of read again.
const KEEP_READ_BYTES: u64 = 64 << 20;

/// Where the clean part of `live` (stored live entries in offset order) ends.
pub fn clean_end(live: &[IndexEntry]) -> usize {
    live.iter()
        .rposition(|e| is_cleaned(&e.object_key))
        .map_or(0, |i| i + 1)
}

/// How many entries of `live` (from the first) to clean at `now_ms`, if the
/// partition is due (see the module docs).
pub fn due(live: &[IndexEntry], policy: &CleanerPolicy, now_ms: i64) -> Option<usize> {
    let clean = clean_end(live);
    let dirty = &live[clean..];
    let lag_cutoff = now_ms.saturating_sub(policy.min_compaction_lag_ms);
    let cleanable = dirty
        .iter()
        .take_while(|e| e.max_timestamp <= lag_cutoff)
        .count();
    if cleanable == 0 {
        return None;
    }
    let bytes = |es: &[IndexEntry]| es.iter().map(|e| u64::from(e.length)).sum::<u64>();
    let dirty_bytes = bytes(&dirty[..cleanable]);
    let total = bytes(&live[..clean]) + dirty_bytes;
    let ratio = dirty_bytes as f64 / total.max(1) as f64;
    let overdue = dirty[0].max_timestamp >= 0
        && dirty[0].max_timestamp < now_ms.saturating_sub(policy.max_compaction_lag_ms);
    (ratio >= policy.min_cleanable_dirty_ratio || overdue).then_some(clean + cleanable)
}

/// What a batch's records are, read for cleaning: `None` if they cannot be
/// read (kept whole).
fn batch_records(batch: &[u8]) -> Option<(Vec<u8>, i32)> {
    let (section, count) = records::decompressed(batch, RECORDS_CAP).ok()?;
    records::records(&section, count).ok()?;
    Some((section, count))
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// One output region being built: the entries it replaces and its bytes.
#[derive(Default)]
struct Region {
    base: Option<i64>,
    last: i64,
    max_timestamp: i64,
    bytes: Vec<u8>,
    batches: u32,
}

/// Cleans `range` (the first entries of the partition's live index, from the
/// log start) by `policy` at `now_ms` (wall-clock) and writes the result; returns the merged entries to swap in,
/// covering a prefix of `range` (all of it unless the swap's entry limit or
/// `stop_at` cut it short).
pub async fn clean(
    (stores, records): (&Stores, &mut FlushRecords),
    p: PartitionId,
    range: &[IndexEntry],
    (policy, now_ms): (&CleanerPolicy, i64),
    config: &Config,
    stop_at: Option<Instant>,
    r: &mut Report,
) -> Result<(Vec<IndexEntry>, usize)> {
    // Read 1: the highest offset of each key, and the last batch.
    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut kept_reads: Vec<Option<Bytes>> = Vec::with_capacity(range.len());
    let mut kept_bytes = 0u64;
    let mut last_batch = None;
    let mut unreadable = 0u64;
    for e in range {
        let bytes = records.read_entry(stores, e, r).await?;
        check_batches_within(&bytes, e.base_offset, e.last_offset)
            .map_err(|err| in_entry(p, e, err))?;
        for batch in records::batches(&bytes) {
            let base = be_i64(batch, 0);
            last_batch = Some(base);
            let Some((section, count)) = batch_records(batch) else {
                unreadable += 1;
                continue;
            };
            for rec in records::records(&section, count).unwrap_or_default() {
                if let Some(k) = rec.key {
                    let offset = base.saturating_add(rec.offset_delta);
                    latest.insert(k.to_vec(), offset);
                }
            }
        }
        kept_bytes += bytes.len() as u64;
        kept_reads.push((kept_bytes <= KEEP_READ_BYTES).then_some(bytes));
    }
    if unreadable > 0 {
        tracing::warn!(partition = %p, batches = unreadable, "batches not readable for key compaction; kept whole");
    }
    let tombstone_cutoff = now_ms.saturating_sub(policy.delete_retention_ms);

    // Read 2: rewrite into regions, each covering whole entries.
    let mut regions: Vec<Region> = Vec::new();
    let mut open = Region::default();
    let mut covered = 0;
    let mut removed = 0u64;
    for (i, e) in range.iter().enumerate() {
        if regions.len() >= MAX_SWAP_ENTRIES || stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        let bytes = match kept_reads[i].take() {
            Some(b) => b,
            None => records.read_entry(stores, e, r).await?,
        };
        let mut out = Vec::with_capacity(bytes.len());
        let mut batches = 0u32;
        for batch in records::batches(&bytes) {
            let base = be_i64(batch, 0);
            if Some(base) == last_batch {
                out.extend_from_slice(batch);
                batches += 1;
                continue;
            }
            let log_append = batch[22] & 0x08 != 0;
            let (base_ts, max_ts) = (be_i64(batch, 27), be_i64(batch, 35));
            let mut dropped = 0u64;
            let keep = |_: usize, rec: &Record<'_>| {
                let Some(k) = rec.key else { return true };
                let offset = base.saturating_add(rec.offset_delta);
                if latest.get(k).is_some_and(|&l| l > offset) {
                    dropped += 1;
                    return false;
                }
                let ts = if log_append {
                    max_ts
                } else {
                    base_ts.wrapping_add(rec.timestamp_delta)
                };
                let expired = rec.value.is_none() && ts < tombstone_cutoff;
                dropped += u64::from(expired);
                !expired
            };
            match records::retain_records(batch, RECORDS_CAP, keep) {
                Ok(Some(b)) => {
                    removed += dropped;
                    out.extend_from_slice(&b);
                    batches += 1;
                }
                Ok(None) => removed += dropped,
                Err(_) => {
                    out.extend_from_slice(batch);
                    batches += 1;
                }
            }
        }
        // A region closes before an entry that would take it past the
        // region size, once it holds something.
        if !open.bytes.is_empty() && (open.bytes.len() + out.len()) as u64 > config.region_bytes {
            regions.push(std::mem::take(&mut open));
            if regions.len() >= MAX_SWAP_ENTRIES {
                break;
            }
        }
        if open.base.is_none() {
            open.base = Some(e.base_offset);
            open.max_timestamp = i64::MIN;
        }
        open.last = e.last_offset;
        open.max_timestamp = open.max_timestamp.max(e.max_timestamp);
        open.bytes.extend_from_slice(&out);
        open.batches += batches;
        covered = i + 1;
    }
    if !open.bytes.is_empty() && regions.len() < MAX_SWAP_ENTRIES {
        regions.push(open);
    } else if open.base.is_some() {
        // Entries whose records all went, after the last region: they stay
        // as they are (not swapped) until the next cleaning.
        covered = regions.last().map_or(0, |g| {
            range.iter().take_while(|e| e.last_offset <= g.last).count()
        });
    }
    r.records_removed += removed;
    let merged = write_regions(stores, p, regions, config, r).await?;
    Ok((merged, covered))
}

/// Writes `regions` into cleaned objects of at most `config.object_bytes`;
/// returns their entries.
async fn write_regions(
    stores: &Stores,
    p: PartitionId,
    regions: Vec<Region>,
    config: &Config,
    r: &mut Report,
) -> Result<Vec<IndexEntry>> {
    let mut merged = Vec::with_capacity(regions.len());
    let mut pending: Vec<Region> = Vec::new();
    let mut pending_len = 0u64;
    for g in regions {
        let len = g.bytes.len() as u64;
        if !pending.is_empty() && pending_len + len > config.object_bytes {
            merged.extend(write_object(stores, p, std::mem::take(&mut pending), r).await?);
            pending_len = 0;
        }
        pending_len += len;
        pending.push(g);
    }
    if !pending.is_empty() {
        merged.extend(write_object(stores, p, pending, r).await?);
    }
    Ok(merged)
}

async fn write_object(
    stores: &Stores,
    p: PartitionId,
    regions: Vec<Region>,
    r: &mut Report,
) -> Result<Vec<IndexEntry>> {
    let total: usize = regions.iter().map(|g| g.bytes.len()).sum();
    let mut builder = SegmentBuilder::with_capacity(total);
    let mut infos = Vec::with_capacity(regions.len());
    for g in &regions {
        let base = g
            .base
            .ok_or_else(|| Error::Internal("an empty cleaned region".into()))?;
        let position = builder.position();
        builder.push_bytes(&g.bytes);
        infos.push(builder.finish_region(p, position, base, g.last, g.max_timestamp, g.batches));
    }
    put_object(stores, p, builder, infos, cleaned_key, r).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(base: i64, last: i64, ts: i64, len: u32, key: &str) -> IndexEntry {
        IndexEntry {
            base_offset: base,
            last_offset: last,
            max_timestamp: ts,
            object_key: key.into(),
            position: 0,
            length: len,
        }
    }

    fn policy(ratio: f64, min_lag: i64, max_lag: i64) -> CleanerPolicy {
        CleanerPolicy {
            min_cleanable_dirty_ratio: ratio,
            min_compaction_lag_ms: min_lag,
            max_compaction_lag_ms: max_lag,
            delete_retention_ms: 0,
        }
    }

    #[test]
    fn a_partition_is_due_by_its_dirty_ratio_and_lags() {
        let cleaned = "compacted/00/x.clean.seg";
        let live = vec![
            e(0, 9, 100, 600, cleaned),
            e(10, 19, 200, 300, "segments/a"),
            e(20, 29, 900, 100, "segments/b"),
        ];
        assert_eq!(clean_end(&live), 1);
        // Dirty 400 of 1000 bytes.
        assert_eq!(due(&live, &policy(0.5, 0, i64::MAX), 1000), None);
        assert_eq!(due(&live, &policy(0.4, 0, i64::MAX), 1000), Some(3));
        // The youngest entry is within the minimum lag: 300 of 900.
        assert_eq!(due(&live, &policy(0.3, 500, i64::MAX), 1000), Some(2));
        assert_eq!(due(&live, &policy(0.4, 500, i64::MAX), 1000), None);
        // The oldest dirty entry is past the maximum lag: due whatever the ratio.
        assert_eq!(due(&live, &policy(0.9, 0, 700), 1000), Some(3));
        // Nothing dirty, or nothing old enough.
        assert_eq!(due(&live[..1], &policy(0.0, 0, 1), 1000), None);
        assert_eq!(due(&live, &policy(0.0, 10_000, i64::MAX), 1000), None);
        // Never cleaned: all dirty.
        assert_eq!(due(&live[1..], &policy(0.5, 0, i64::MAX), 1000), Some(2));
    }
}
