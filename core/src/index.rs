//! A partition's index, and the rule that rebuilds it.
//!
//! The index says where each offset's batches live: entries (base and last
//! offset, max timestamp, object key, byte range) in offset order, each
//! starting where the previous one ended. Its owner keeps it in memory,
//! appends an entry per committed flush that touched the partition, and folds
//! the new entries into the MetaStore at every checkpoint.
//!
//! The rule every reader of a partition applies (a gateway taking it over, a
//! zone-local reader, tools): **a partition's state is its stored checkpoint
//! plus a replay of its owner's flush records after the checkpoint's seq that
//! are not yet trimmed**. Replay is idempotent by offset: a flush entry whose
//! offsets the checkpoint already holds is skipped, and one that would leave a
//! gap is corruption. Taking a partition over, the owner's records must be read
//! only after its release or fence is committed, so that every flush it
//! acknowledged is either in the checkpoint or among the records read.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::meta::MetaStore;
use crate::producer::apply_batch;
use crate::types::{FlushRecord, IndexEntry, PartitionId, PartitionSnapshot, StreamId};

/// The entries of one partition, contiguous and in offset order, from the
/// one holding the log start offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionIndex {
    entries: VecDeque<IndexEntry>,
    /// Sum of the entries' lengths (what `retention.bytes` measures).
    bytes: u64,
}

impl PartitionIndex {
    pub fn new(entries: Vec<IndexEntry>) -> Self {
        let bytes = entries.iter().map(|e| u64::from(e.length)).sum();
        PartitionIndex {
            entries: entries.into(),
            bytes,
        }
    }

    pub fn entries(&self) -> impl ExactSizeIterator<Item = &IndexEntry> {
        self.entries.iter()
    }

    /// Bytes of data the entries cover.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries that start at or after `offset` (those a checkpoint that
    /// stored the log up to `offset` has not stored yet).
    pub fn from_base(&self, offset: i64) -> Vec<IndexEntry> {
        let start = self.entries.partition_point(|e| e.base_offset < offset);
        self.entries.range(start..).cloned().collect()
    }

    /// Replaces the entries up to where `prefix` ends (contiguous entries
    /// holding the same offsets, as a compaction stored them) and keeps the
    /// rest. `false`, changing nothing, unless `prefix` is contiguous, starts
    /// at or before the first entry held and ends exactly where a held entry
    /// ends (at an entry boundary). Entries of `prefix` wholly below the
    /// first held entry are not taken (the log start passed them).
    pub fn replace_prefix(&mut self, prefix: &[IndexEntry]) -> bool {
        let (Some(first_held), Some(last)) = (self.entries.front(), prefix.last()) else {
            return false;
        };
        let start = first_held.base_offset;
        if prefix[0].base_offset > start
            || prefix
                .windows(2)
                .any(|w| w[0].last_offset.checked_add(1) != Some(w[1].base_offset))
        {
            return false;
        }
        let end = last.last_offset;
        let kept_from = self.entries.partition_point(|e| e.last_offset <= end);
        if kept_from == 0 || self.entries[kept_from - 1].last_offset != end {
            return false;
        }
        let mut entries: VecDeque<IndexEntry> = prefix
            .iter()
            .filter(|e| e.last_offset >= start)
            .cloned()
            .collect();
        entries.extend(self.entries.drain(kept_from..));
        *self = PartitionIndex::new(entries.into());
        true
    }

    /// Appends the entry of a committed flush.
    pub fn push(&mut self, e: IndexEntry) {
        self.bytes += u64::from(e.length);
        self.entries.push_back(e);
    }

    /// Drops the entries wholly below `log_start` (the entry holding it
    /// stays); returns how many.
    pub fn trim_before(&mut self, log_start: i64) -> usize {
        let n = self.entries.partition_point(|e| e.last_offset < log_start);
        for e in self.entries.drain(..n) {
            self.bytes -= u64::from(e.length);
        }
        n
    }

    /// Entries covering offsets from `offset`, up to about `max_bytes` of data
    /// (always at least one entry if any exists).
    pub fn read_plan(&self, offset: i64, max_bytes: u64) -> Vec<IndexEntry> {
        let start = self.entries.partition_point(|e| e.last_offset < offset);
        let mut plan = Vec::new();
        let mut bytes = 0u64;
        for e in self.entries.range(start..) {
            if !plan.is_empty() && bytes >= max_bytes {
                break;
            }
            bytes += e.length as u64;
            plan.push(e.clone());
        }
        plan
    }

    /// Entries from the first whose max timestamp reaches `timestamp` (for
    /// finding an offset by time).
    pub fn from_timestamp(&self, timestamp: i64) -> Vec<IndexEntry> {
        match self
            .entries
            .iter()
            .position(|e| e.max_timestamp >= timestamp)
        {
            Some(i) => self.entries.range(i..).cloned().collect(),
            None => Vec::new(),
        }
    }

    /// The entry holding the largest timestamp (the first of equals).
    pub fn max_timestamp_entry(&self) -> Option<IndexEntry> {
        let mut best: Option<&IndexEntry> = None;
        for e in &self.entries {
            if best.is_none_or(|b| e.max_timestamp > b.max_timestamp) {
                best = Some(e);
            }
        }
        best.cloned()
    }
}

/// Applies [the rule](self) to `snap` (a stored checkpoint, with its stored
/// index entries from `from_offset` on) and its owner's untrimmed flush
/// `records` (in seq order): adds the records' entries for `partition` to
/// the index (from `from_offset` on), keeps the live ones (the covering
/// rule; those wholly below the log start go), replays the records past the
/// checkpoint's end into its next offset and producer state, and checks
/// that the index is then the whole log from `from_offset` (or the log
/// start) to the end ([`check_complete`]). Returns how many flushes were
/// replayed.
pub fn rebuild(
    snap: &mut PartitionSnapshot,
    partition: PartitionId,
    records: &[FlushRecord],
    from_offset: i64,
) -> Result<usize> {
    let start = snap.log_start_offset;
    for record in records {
        for fp in record
            .partitions
            .iter()
            .filter(|fp| fp.partition == partition && fp.base_offset >= from_offset)
        {
            snap.entries.push(fp.index_entry(&record.object_key));
        }
    }
    snap.entries.retain(|e| e.last_offset >= start);
    snap.entries = live_entries(std::mem::take(&mut snap.entries))?;
    let replayed = replay_state(snap, partition, records)?;
    // Nothing past the end can be part of the log.
    let end = snap.next_offset;
    snap.entries.retain(|e| e.base_offset < end);
    check_complete(snap, from_offset)?;
    Ok(replayed)
}

/// Replays the flushes of `records` past `snap`'s end into its next offset
/// and producer state (their entries are already in the index).
fn replay_state(
    snap: &mut PartitionSnapshot,
    partition: PartitionId,
    records: &[FlushRecord],
) -> Result<usize> {
    let mut replayed = 0;
    for record in records {
        if record.seq <= snap.checkpoint_seq {
            continue;
        }
        for fp in record
            .partitions
            .iter()
            .filter(|fp| fp.partition == partition)
        {
            if fp.last_offset < snap.next_offset {
                continue; // already in the checkpoint
            }
            if fp.base_offset != snap.next_offset {
                return Err(Error::Corrupt(format!(
                    "partition {partition}: flush {} #{} starts at offset {} but the log ends at {}",
                    record.stream, record.seq, fp.base_offset, snap.next_offset
                )));
            }
            snap.next_offset = fp.last_offset + 1;
            for pb in &fp.producers {
                apply_batch(snap.producers.entry(pb.producer_id).or_default(), pb);
            }
            replayed += 1;
        }
    }
    Ok(replayed)
}

/// The stored entries of `snap` a reader can take as they are: the live ones
/// (covering rule) from the log start, up to the first gap; and whether
/// they are all the live ones (no stored entry lies past a gap). Stored
/// entries need not reach the checkpoint's end (the flush records hold the
/// rest), so this is what an owner adopts after a compaction.
pub fn stored_prefix(snap: &PartitionSnapshot) -> Result<(Vec<IndexEntry>, bool)> {
    let start = snap.log_start_offset;
    let live = live_entries(
        snap.entries
            .iter()
            .filter(|e| e.last_offset >= start)
            .cloned()
            .collect(),
    )?;
    let Some(first) = live.first() else {
        return Ok((live, true));
    };
    if first.base_offset > start {
        return Ok((Vec::new(), false));
    }
    let contiguous = 1 + live
        .windows(2)
        .take_while(|w| w[0].last_offset.checked_add(1) == Some(w[1].base_offset))
        .count();
    let whole = contiguous == live.len();
    let mut live = live;
    live.truncate(contiguous);
    Ok((live, whole))
}

/// The rule for a compacted index: an entry wholly inside the offsets of
/// another entry that starts no later is superseded and skipped. A
/// compaction swap stores its merged entries first and deletes the entries
/// they cover afterwards, and an owner retrying an index write may store a
/// small entry again after it was compacted; either way the stored index is
/// this rule away from the log, at every step. Two entries that overlap
/// without one holding the other cannot come from swaps (they are
/// serialized per partition) and are `Corrupt`.
pub fn live_entries(mut entries: Vec<IndexEntry>) -> Result<Vec<IndexEntry>> {
    // Widest first among equal bases: the compacted entry is the one kept.
    entries.sort_by(|a, b| {
        a.base_offset
            .cmp(&b.base_offset)
            .then(b.last_offset.cmp(&a.last_offset))
    });
    let mut live: Vec<IndexEntry> = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(prev) = live.last() {
            if e.last_offset <= prev.last_offset {
                continue; // covered
            }
            if e.base_offset <= prev.last_offset {
                return Err(Error::Corrupt(format!(
                    "index entries {}..={} ({}) and {}..={} ({}) overlap",
                    prev.base_offset,
                    prev.last_offset,
                    prev.object_key,
                    e.base_offset,
                    e.last_offset,
                    e.object_key
                )));
            }
        }
        live.push(e);
    }
    Ok(live)
}

/// Checks that `snap`'s live entries (as [`rebuild`] leaves them) are the
/// whole stored log: contiguous, ending where the checkpoint ends and, for a
/// full load (`from_offset` 0), starting at or before the log start. A
/// stored index read while a compaction swaps and deletes can miss a range
/// (a DynamoDB Query of several pages is not a snapshot); the reader then
/// reads it again.
pub fn check_complete(snap: &PartitionSnapshot, from_offset: i64) -> Result<()> {
    let start = snap.log_start_offset.max(from_offset);
    let end = snap.next_offset;
    let missing = |what: &str| {
        Err(Error::Corrupt(format!(
            "stored index of {} entries does not cover {start}..{end}: {what}",
            snap.entries.len()
        )))
    };
    let (Some(first), Some(last)) = (snap.entries.first(), snap.entries.last()) else {
        return if start < end {
            missing("no entries")
        } else {
            Ok(())
        };
    };
    if from_offset == 0 && first.base_offset > snap.log_start_offset {
        return missing("it starts after the log start");
    }
    if last.last_offset.checked_add(1) != Some(end) {
        return missing("it ends elsewhere");
    }
    if snap
        .entries
        .windows(2)
        .any(|w| w[0].last_offset.checked_add(1) != Some(w[1].base_offset))
    {
        return missing("a gap");
    }
    Ok(())
}

/// The stored entries no reader uses: covered by another entry (see
/// [`live_entries`]) or wholly below `log_start`. Deleting them changes no
/// load; the compactor does, after its swaps.
pub fn dead_entries(entries: &[IndexEntry], log_start: i64) -> Vec<IndexEntry> {
    let mut sorted: Vec<&IndexEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        a.base_offset
            .cmp(&b.base_offset)
            .then(b.last_offset.cmp(&a.last_offset))
    });
    let mut dead = Vec::new();
    let mut reach = i64::MIN;
    for e in sorted {
        if e.last_offset < log_start || e.last_offset <= reach {
            dead.push(e.clone());
        }
        reach = reach.max(e.last_offset);
    }
    dead
}

/// A partition's state as a reader must see it ([`rebuild`]): the stored
/// checkpoint, with the index entries from `from_offset` on, plus its
/// owner's untrimmed flush records. `None` if it was never claimed.
///
/// The checkpoint and the records are two reads: a live owner that
/// checkpoints and trims in between leaves records that no longer follow the
/// checkpoint read. The rebuild then finds a gap; and a compaction swapping
/// while the index is read can leave one in the stored entries
/// ([`check_complete`]). The load reads again (twice at most), and only a
/// gap that persists is corruption.
pub async fn load(
    meta: &dyn MetaStore,
    partition: PartitionId,
    from_offset: i64,
) -> Result<Option<PartitionSnapshot>> {
    Ok(load_since(meta, partition, from_offset, None)
        .await?
        .map(|(snap, _)| snap))
}

/// `load` for a reader that already holds the partition up to `from_offset`
/// (its end), built from the flush records of stream `seen.0` up to seq
/// `seen.1`: only the owner's records after those are read (a copy
/// refreshed often does not read the same records again). Returns the
/// snapshot and what the reader has now seen, for its next call. The held
/// part stands for what those records replayed: the snapshot's end is at
/// least `from_offset`, its checkpoint at least `seen.1`.
pub async fn load_since(
    meta: &dyn MetaStore,
    partition: PartitionId,
    from_offset: i64,
    seen: Option<&(StreamId, u64)>,
) -> Result<Option<(PartitionSnapshot, (StreamId, u64))>> {
    let mut attempt = 0;
    loop {
        let Some(mut snap) = meta.load_partition_from(partition, from_offset).await? else {
            return Ok(None);
        };
        let after = match seen {
            Some((stream, seq)) if *stream == snap.owner => *seq,
            _ => 0,
        };
        let records = meta.read_flushes(&snap.owner, after).await?;
        if after > 0 {
            snap.checkpoint_seq = snap.checkpoint_seq.max(after);
            snap.next_offset = snap.next_offset.max(from_offset);
        }
        let last = records.last().map_or(after, |r| r.seq.max(after));
        match rebuild(&mut snap, partition, &records, from_offset) {
            Ok(_) => {
                let owner = snap.owner.clone();
                return Ok(Some((snap, (owner, last))));
            }
            Err(e) if e.kind() == crate::ErrorKind::Corrupt && attempt < 2 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::types::{FlushPartition, ProducerBatch, StreamId, TopicId};

    const P: PartitionId = PartitionId {
        topic: TopicId::from_u128(1),
        partition: 0,
    };

    /// An index entry for tests: object `o<base>`, position 0.
    pub(crate) fn entry(base: i64, last: i64, ts: i64, len: u32) -> IndexEntry {
        IndexEntry {
            base_offset: base,
            last_offset: last,
            max_timestamp: ts,
            object_key: format!("o{base}"),
            position: 0,
            length: len,
        }
    }

    fn flush(seq: u64, parts: Vec<(PartitionId, i64, i64)>) -> FlushRecord {
        FlushRecord {
            stream: StreamId {
                gateway: "g".into(),
                epoch: 1,
            },
            seq,
            object_key: format!("k{seq}"),
            object_len: 10,
            created_ms: 0,
            partitions: parts
                .into_iter()
                .map(|(p, base, last)| FlushPartition {
                    partition: p,
                    base_offset: base,
                    last_offset: last,
                    max_timestamp: base,
                    position: 0,
                    length: 10,
                    producers: vec![ProducerBatch {
                        producer_id: 7,
                        epoch: 0,
                        first_seq: base as i32,
                        last_seq: last as i32,
                        base_offset: base,
                        last_offset: last,
                        max_timestamp: base,
                    }],
                })
                .collect(),
        }
    }

    fn checkpoint(seq: u64, next: i64) -> PartitionSnapshot {
        PartitionSnapshot {
            owner: StreamId {
                gateway: "g".into(),
                epoch: 1,
            },
            released: false,
            checkpoint_seq: seq,
            next_offset: next,
            log_start_offset: 0,
            producers: BTreeMap::new(),
            entries: Vec::new(),
        }
    }

    #[test]
    fn lookups() {
        let ix = PartitionIndex::new(vec![
            entry(0, 9, 100, 50),
            entry(10, 19, 300, 50),
            entry(20, 29, 200, 50),
        ]);
        assert_eq!(ix.read_plan(12, 1).len(), 1, "at least one entry");
        assert_eq!(ix.read_plan(12, 1)[0].base_offset, 10);
        assert_eq!(ix.read_plan(0, 100).len(), 2);
        assert!(ix.read_plan(30, 100).is_empty());
        assert_eq!(ix.from_timestamp(150)[0].base_offset, 10);
        assert!(ix.from_timestamp(301).is_empty());
        assert_eq!(ix.max_timestamp_entry().map(|e| e.base_offset), Some(10));
        assert_eq!(ix.from_base(20).len(), 1);
        assert_eq!(ix.from_base(15).len(), 1, "entries starting at or after");
        assert!(ix.from_base(30).is_empty());
    }

    #[test]
    fn trimming_keeps_the_entry_holding_the_log_start() {
        let mut ix = PartitionIndex::new(vec![
            entry(0, 9, 100, 50),
            entry(10, 19, 300, 60),
            entry(20, 29, 200, 70),
        ]);
        assert_eq!(ix.bytes(), 180);
        assert_eq!(ix.trim_before(10), 1);
        assert_eq!(ix.trim_before(15), 0, "offset 15 is inside the entry at 10");
        assert_eq!(ix.bytes(), 130);
        ix.push(entry(30, 39, 400, 10));
        assert_eq!(ix.bytes(), 140);
        assert_eq!(ix.trim_before(40), 3);
        assert_eq!((ix.len(), ix.bytes()), (0, 0));
    }

    #[test]
    fn loaded_entries_are_those_of_the_log() {
        let mut snap = checkpoint(1, 30);
        snap.log_start_offset = 12;
        snap.entries = vec![
            entry(0, 9, 0, 1),
            entry(10, 19, 0, 1),
            entry(20, 29, 0, 1),
            entry(30, 39, 0, 1), // a checkpoint whose state did not land
        ];
        rebuild(&mut snap, P, &[], 0).unwrap();
        let bases: Vec<_> = snap.entries.iter().map(|e| e.base_offset).collect();
        assert_eq!(bases, vec![10, 20]);
    }

    /// An entry of a compacted object covering `base..=last`.
    fn compacted(base: i64, last: i64) -> IndexEntry {
        IndexEntry {
            object_key: format!("c{base}-{last}"),
            ..entry(base, last, 0, 1)
        }
    }

    #[test]
    fn compacted_entries_supersede_the_entries_they_cover() {
        // Mid-swap: the merged entry stored, two of the three it covers not
        // deleted yet, one of them stored again by an owner's retried write.
        let stored = vec![
            entry(0, 9, 0, 1),
            compacted(0, 29),
            entry(20, 29, 0, 1),
            entry(30, 39, 0, 1),
            entry(10, 19, 0, 1),
        ];
        let live = live_entries(stored.clone()).unwrap();
        let keys: Vec<_> = live.iter().map(|e| e.object_key.as_str()).collect();
        assert_eq!(keys, vec!["c0-29", "o30"]);
        let dead: Vec<_> = dead_entries(&stored, 0)
            .into_iter()
            .map(|e| e.object_key)
            .collect();
        assert_eq!(dead, vec!["o0", "o10", "o20"]);
        // Below the log start too; the entry holding it stays.
        let dead = dead_entries(&stored, 31);
        assert_eq!(dead.len(), 4, "{dead:?}");
        assert!(dead.iter().all(|e| e.object_key != "o30"));
        // An overlap that no swap makes.
        let err = live_entries(vec![compacted(0, 19), compacted(10, 29)]).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt);
    }

    #[test]
    fn a_compacted_prefix_replaces_what_it_holds() {
        let held =
            || PartitionIndex::new((1..6).map(|i| entry(i * 10, i * 10 + 9, 0, 5)).collect());
        // The log start passed 0..9: held from 10; the compaction covers 0..39.
        let mut ix = held();
        assert!(ix.replace_prefix(&[compacted(0, 9), compacted(10, 39)]));
        let keys: Vec<_> = ix.entries().map(|e| e.object_key.clone()).collect();
        assert_eq!(keys, vec!["c10-39", "o40", "o50"]);
        assert_eq!(ix.bytes(), 11);
        // Not at an entry boundary, not contiguous, starting after what is held.
        for bad in [
            vec![compacted(0, 34)],
            vec![compacted(0, 19), compacted(21, 39)],
            vec![compacted(20, 39)],
            vec![],
        ] {
            let mut ix = held();
            assert!(!ix.replace_prefix(&bad), "{bad:?}");
            assert_eq!(ix, held());
        }
    }

    #[test]
    fn a_stored_index_with_a_hole_is_incomplete() {
        let mut snap = checkpoint(1, 40);
        snap.entries = (0..4).map(|i| entry(i * 10, i * 10 + 9, 0, 1)).collect();
        assert!(check_complete(&snap, 0).is_ok());
        let whole = snap.entries.clone();
        snap.entries.remove(2); // a page read before a swap, the next after its deletes
        assert!(check_complete(&snap, 0).is_err(), "a gap");
        snap.entries = whole[..3].to_vec();
        assert!(check_complete(&snap, 0).is_err(), "short of the end");
        snap.entries = whole[1..].to_vec();
        assert!(
            check_complete(&snap, 0).is_err(),
            "starts after the log start"
        );
        assert!(check_complete(&snap, 10).is_ok(), "a load from 10");
        snap.log_start_offset = 12;
        assert!(check_complete(&snap, 0).is_ok(), "the log start moved");
        snap.entries.clear();
        assert!(check_complete(&snap, 0).is_err(), "nothing for 12..40");
        snap.log_start_offset = 40;
        assert!(check_complete(&snap, 0).is_ok(), "an empty log");
    }

    #[test]
    fn rebuild_adds_the_records_to_the_stored_checkpoint() {
        let other = PartitionId::new(TopicId::from_u128(2), 0);
        let records = [
            flush(1, vec![(P, 0, 4)]),     // in the checkpoint, its entry stored
            flush(2, vec![(P, 5, 9)]),     // in the checkpoint, its entry not stored
            flush(3, vec![(other, 0, 2)]), // another partition
            flush(4, vec![(P, 10, 11), (other, 3, 3)]),
        ];
        let mut snap = checkpoint(2, 10);
        snap.entries = vec![records[0].partitions[0].index_entry("k1")];
        assert_eq!(rebuild(&mut snap, P, &records, 0).unwrap(), 1);
        assert_eq!(snap.next_offset, 12);
        let keys: Vec<_> = snap.entries.iter().map(|e| e.object_key.as_str()).collect();
        assert_eq!(keys, ["k1", "k2", "k4"]);
        assert_eq!(
            snap.producers[&7].batches.len(),
            1,
            "only flush 4's batch replayed"
        );
        // Idempotent: the same records again add nothing.
        let again = snap.clone();
        assert_eq!(rebuild(&mut snap, P, &records, 0).unwrap(), 0);
        assert_eq!(snap, again);
        // A merged entry stored past the checkpoint's end (a pass folded
        // the records) covers their entries.
        let mut snap = checkpoint(1, 5);
        snap.entries = vec![entry(0, 11, 0, 100)];
        assert_eq!(rebuild(&mut snap, P, &records, 0).unwrap(), 2);
        assert_eq!(snap.entries, vec![entry(0, 11, 0, 100)]);
        assert_eq!(snap.next_offset, 12);
        // From an offset: only entries from there.
        let mut snap = checkpoint(2, 10);
        assert_eq!(rebuild(&mut snap, P, &records, 5).unwrap(), 1);
        assert_eq!(snap.entries.len(), 2);
        // A gap is corruption.
        let mut snap = checkpoint(0, 0);
        let e = rebuild(&mut snap, P, &[flush(1, vec![(P, 3, 4)])], 0).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt);
        // So is a checkpoint whose entries neither the store nor the
        // records hold.
        let mut snap = checkpoint(3, 10);
        let e = rebuild(&mut snap, P, &records[2..], 0).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt);
    }

    #[test]
    fn the_stored_prefix_stops_at_the_first_gap() {
        let mut snap = checkpoint(0, 40);
        snap.entries = vec![
            entry(0, 9, 0, 1),
            entry(10, 19, 0, 1),
            entry(30, 39, 0, 1),
            entry(12, 15, 0, 1),
        ];
        assert_eq!(
            stored_prefix(&snap).unwrap().0,
            vec![entry(0, 9, 0, 1), entry(10, 19, 0, 1)]
        );
        snap.log_start_offset = 12;
        assert_eq!(stored_prefix(&snap).unwrap().0, vec![entry(10, 19, 0, 1)]);
        snap.log_start_offset = 25;
        assert!(
            stored_prefix(&snap).unwrap().0.is_empty(),
            "nothing stored from the log start"
        );
        // Whole only when no stored entry lies past the prefix.
        assert!(!stored_prefix(&snap).unwrap().1);
        snap.log_start_offset = 0;
        snap.entries.truncate(2);
        assert!(stored_prefix(&snap).unwrap().1);
    }

    #[tokio::test]
    async fn load_is_checkpoint_plus_replay() {
        use crate::meta::{MemoryMetaStore, MetaStore};
        use crate::types::{GatewayInfo, PartitionCheckpoint};
        let meta = MemoryMetaStore::new();
        let info = GatewayInfo::at("h:1");
        assert!(load(&meta, P, 0).await.unwrap().is_none());
        let epoch = meta.register_gateway("g", &info).await.unwrap();
        let me = StreamId {
            gateway: "g".into(),
            epoch,
        };
        let mut r1 = flush(1, vec![(P, 0, 4)]);
        let mut r2 = flush(2, vec![(P, 5, 9)]);
        r1.stream = me.clone();
        r2.stream = me.clone();
        meta.commit_flush(&r1).await.unwrap();
        meta.commit_flush(&r2).await.unwrap();
        let cp = PartitionCheckpoint {
            partition: P,
            owner: me.clone(),
            checkpoint_seq: 1,
            next_offset: 5,
            log_start_offset: 0,
            producers: BTreeMap::new(),
            new_entries: vec![r1.partitions[0].index_entry(&r1.object_key)],
        };
        meta.write_checkpoints(&me, &[cp]).await.unwrap();
        let snap = load(&meta, P, 0).await.unwrap().expect("claimed");
        assert_eq!(snap.next_offset, 10);
        let keys: Vec<_> = snap.entries.iter().map(|e| e.object_key.as_str()).collect();
        assert_eq!(keys, ["k1", "k2"]);
        let from = load(&meta, P, 5).await.unwrap().expect("claimed");
        assert_eq!(from.entries.len(), 1, "only entries from offset 5");
        // A gap that reading again does not close is corruption.
        let mut r4 = flush(4, vec![(P, 20, 21)]);
        r4.stream = me.clone();
        meta.commit_flush(&r4).await.unwrap();
        let e = load(&meta, P, 0).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt);
    }
}
