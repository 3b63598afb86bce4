//! The in-memory state of one partition this gateway owns.
//!
//! Two layers: *committed* state (high watermark, index, producer state) that
//! readers see and checkpoints persist, and *working* state (next offset, producer
//! state including sealed-but-uncommitted batches) that sealing builds on. A failed
//! commit resets working to committed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use floe_core::index::PartitionIndex;
use floe_core::topic_config::TopicPolicy;
use floe_core::types::{
    IndexEntry, PartitionCheckpoint, PartitionId, PartitionSnapshot, ProducerState, StreamId,
};
use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct LogState {
    // Committed.
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub index: PartitionIndex,
    pub producers: BTreeMap<i64, ProducerState>,
    // Working.
    pub next_offset: i64,
    pub working_producers: BTreeMap<i64, ProducerState>,
    // Checkpoint bookkeeping.
    pub version: u64,
    pub checkpointed_version: u64,
    /// The stored index reaches this offset: entries starting here or later
    /// are for a checkpoint to store (unless a compaction pass stores them
    /// first, merged: `adopt_compacted` moves it then).
    pub checkpointed_end: i64,
    /// Changes not yet stored by a checkpoint, oldest first, a bucket per
    /// second at most (so this stays small whatever the flush rate): what
    /// makes the partition due for one (`checkpoint-delay`) and how far this
    /// incarnation may trim its flush records (`trim_bound`).
    pub unsaved: VecDeque<Changes>,
    /// Index entries from `checkpointed_end` on, a bucket per second at
    /// most, oldest first: neither a checkpoint nor a pass has stored them,
    /// so this incarnation's records holding them stay (`trim_bound`); a
    /// checkpoint stores only those `checkpoint-delay` old (a pass usually
    /// stores them merged first).
    pub unstored: VecDeque<Unstored>,
    pub deleted: bool,
    pub lease: Lease,
    /// The stored index version whose compacted entries the index holds.
    pub compacted_version: u64,
}

/// Changes of a partition's committed state since its last checkpoint, made
/// within a second of each other. A checkpoint that stored part of them
/// leaves the bucket whole: its first seq and time then err on the safe
/// side (trim less, checkpoint sooner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    /// The state's version after the last of them.
    pub last_version: u64,
    /// The first flush among them (`None`: only moved log starts).
    pub seq: Option<u64>,
    /// A moved log start among them: stored at the next checkpoint.
    pub urgent: bool,
    /// When the first was made.
    pub at: Instant,
}

/// Index entries appended within a second of each other, from the one at
/// `base` on (to the next bucket's base, or the high watermark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unstored {
    pub base: i64,
    /// The flush that appended the first of them.
    pub seq: u64,
    pub at: Instant,
}

/// How long one bucket of `Changes` or `Unstored` collects.
const BUCKET: Duration = Duration::from_secs(1);

/// Records a change (the state is now at `version`): flush `seq`, or a
/// moved log start (`None`).
fn note_change(s: &mut LogState, version: u64, seq: Option<u64>) {
    if let Some(b) = s.unsaved.back_mut()
        && b.at.elapsed() < BUCKET
    {
        b.last_version = version;
        b.seq = b.seq.or(seq);
        b.urgent |= seq.is_none();
        return;
    }
    s.unsaved.push_back(Changes {
        last_version: version,
        seq,
        urgent: seq.is_none(),
        at: Instant::now(),
    });
}

/// Whether this gateway leads the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Produce, fetch and checkpoints are served here.
    Owned,
    /// Being handed over: new produce requests are refused, appends already
    /// accepted are still sealed and committed.
    Draining,
    /// Another gateway leads it (or nobody yet); sealing refuses appends.
    NotOwned,
}

/// One owned partition.
#[derive(Debug)]
pub struct PartitionLog {
    pub id: PartitionId,
    state: Mutex<LogState>,
    waiters: Mutex<Vec<Weak<Notify>>>,
}

/// What readers need, copied under the lock.
#[derive(Debug, Clone)]
pub struct LogSnapshot {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Entries from the one containing the requested offset, in offset order.
    pub entries: Vec<IndexEntry>,
}

impl PartitionLog {
    pub fn new(
        id: PartitionId,
        next_offset: i64,
        log_start_offset: i64,
        entries: Vec<IndexEntry>,
        producers: BTreeMap<i64, ProducerState>,
        checkpointed_end: i64,
    ) -> Arc<Self> {
        Arc::new(PartitionLog {
            id,
            state: Mutex::new(LogState {
                high_watermark: next_offset,
                log_start_offset,
                index: PartitionIndex::new(entries),
                working_producers: producers.clone(),
                producers,
                next_offset,
                version: 0,
                checkpointed_version: 0,
                checkpointed_end,
                unsaved: VecDeque::new(),
                unstored: VecDeque::new(),
                deleted: false,
                lease: Lease::Owned,
                compacted_version: 0,
            }),
            waiters: Mutex::new(Vec::new()),
        })
    }

    /// An empty, new partition.
    pub fn empty(id: PartitionId) -> Arc<Self> {
        Self::new(id, 0, 0, Vec::new(), BTreeMap::new(), 0)
    }

    /// A partition this gateway does not lead (yet): a slot `load` fills.
    pub fn unowned(id: PartitionId) -> Arc<Self> {
        let log = Self::empty(id);
        log.lock().lease = Lease::NotOwned;
        log
    }

    pub fn lease(&self) -> Lease {
        self.lock().lease
    }

    /// Leads the partition from now on, with `snap`'s state (the caller
    /// replayed later flush records into it) whose index is stored in the
    /// MetaStore up to offset `stored`.
    pub fn load(&self, snap: PartitionSnapshot, stored: i64) {
        let mut s = self.lock();
        s.high_watermark = snap.next_offset;
        s.next_offset = snap.next_offset;
        s.log_start_offset = snap.log_start_offset;
        s.index = PartitionIndex::new(snap.entries);
        s.working_producers = snap.producers.clone();
        s.producers = snap.producers;
        s.version += 1;
        s.checkpointed_end = stored;
        s.lease = Lease::Owned;
        drop(s);
        self.wake();
    }

    /// A read-only copy of a partition led by another gateway, for zone-local
    /// reads: extends the committed state with `entries` (index entries in
    /// offset order; those already held are skipped). `false` if they leave a
    /// gap, so the caller starts the copy afresh.
    pub fn extend_replica(&self, log_start_offset: i64, entries: Vec<IndexEntry>) -> bool {
        let mut s = self.lock();
        let mut grew = false;
        for e in entries {
            if e.last_offset < s.high_watermark {
                continue;
            }
            if e.base_offset != s.high_watermark {
                return false;
            }
            s.high_watermark = e.last_offset + 1;
            s.next_offset = s.high_watermark;
            s.index.push(e);
            grew = true;
        }
        let trimmed = advance_start(&mut s, log_start_offset);
        if grew || trimmed {
            s.version += 1;
            drop(s);
            self.wake();
        }
        true
    }

    /// Replaces a read-only copy's state with a freshly loaded one (the copy
    /// fell behind what the index still holds).
    pub fn reset_replica(&self, log_start_offset: i64, next_offset: i64, entries: Vec<IndexEntry>) {
        let mut s = self.lock();
        s.index = PartitionIndex::new(entries);
        s.high_watermark = next_offset;
        s.next_offset = next_offset;
        s.log_start_offset = log_start_offset;
        s.version += 1;
        drop(s);
        self.wake();
    }

    /// Starts or finishes a hand-over; waiting fetches wake so they answer
    /// NOT_LEADER_OR_FOLLOWER instead of parking.
    pub fn set_lease(&self, lease: Lease) {
        self.lock().lease = lease;
        self.wake();
    }
    pub(crate) fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn high_watermark(&self) -> i64 {
        self.lock().high_watermark
    }

    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start_offset
    }

    /// Marks the partition deleted: later appends fail, waiting fetches wake.
    pub fn mark_deleted(&self) {
        self.lock().deleted = true;
        self.wake();
    }

    pub fn is_deleted(&self) -> bool {
        self.lock().deleted
    }

    /// Index entries covering offsets from `offset`, up to about `max_bytes` of
    /// data (always at least one entry if any exists).
    pub fn read_plan(&self, offset: i64, max_bytes: u64) -> LogSnapshot {
        let s = self.lock();
        LogSnapshot {
            high_watermark: s.high_watermark,
            log_start_offset: s.log_start_offset,
            entries: s.index.read_plan(offset, max_bytes),
        }
    }

    /// Index entries whose max timestamp reaches `timestamp`, starting with the
    /// first such entry (for ListOffsets by time).
    pub fn entries_from_timestamp(&self, timestamp: i64) -> Vec<IndexEntry> {
        self.lock().index.from_timestamp(timestamp)
    }

    /// The entry holding the largest timestamp (first of equals), for
    /// ListOffsets MAX_TIMESTAMP.
    pub fn entry_with_max_timestamp(&self) -> Option<IndexEntry> {
        self.lock().index.max_timestamp_entry()
    }

    /// Registers `notify` to be woken at the next commit (or deletion).
    pub fn register_waiter(&self, notify: &Arc<Notify>) {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        w.retain(|x| x.strong_count() > 0);
        w.push(Arc::downgrade(notify));
    }

    pub(crate) fn wake(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|p| p.into_inner()));
        for w in waiters {
            if let Some(n) = w.upgrade() {
                n.notify_one();
            }
        }
    }

    /// Whether a checkpoint with `delay` stores this partition now.
    pub fn is_due(&self, delay: Duration) -> bool {
        is_due(&self.lock(), delay)
    }

    /// A checkpoint of the committed state if the partition is due (see
    /// `is_due`): its state, and the entries no one stored that are at least
    /// `delay` (`checkpoint-delay`) old. Also the version it holds and where
    /// the stored entries then end.
    pub(crate) fn checkpoint_if_dirty(
        &self,
        owner: &StreamId,
        checkpoint_seq: u64,
        delay: Duration,
    ) -> Option<(PartitionCheckpoint, u64, i64)> {
        let s = self.lock();
        if !is_due(&s, delay) {
            return None;
        }
        // Entries younger than the delay stay in the records for a pass to
        // store merged.
        let cutoff = s
            .unstored
            .iter()
            .find(|u| u.at.elapsed() < delay)
            .map_or(s.high_watermark, |u| u.base)
            .max(s.checkpointed_end);
        let new_entries = s
            .index
            .from_base(s.checkpointed_end)
            .into_iter()
            .take_while(|e| e.base_offset < cutoff)
            .collect();
        Some((
            PartitionCheckpoint {
                partition: self.id,
                owner: owner.clone(),
                checkpoint_seq,
                next_offset: s.high_watermark,
                log_start_offset: s.log_start_offset,
                producers: s.producers.clone(),
                new_entries,
            },
            s.version,
            cutoff,
        ))
    }

    /// Not led here, yet changed since its last checkpoint: a hand-over
    /// whose release has not landed. Until it does, the flush records holding
    /// those changes are all the next owner can replay them from.
    pub(crate) fn has_unreleased_changes(&self) -> bool {
        let s = self.lock();
        !s.deleted && s.lease == Lease::NotOwned && s.version != s.checkpointed_version
    }

    pub(crate) fn mark_checkpointed(&self, version: u64, end: i64) {
        let mut s = self.lock();
        s.checkpointed_version = s.checkpointed_version.max(version);
        s.checkpointed_end = s.checkpointed_end.max(end);
        while s.unsaved.front().is_some_and(|c| c.last_version <= version) {
            s.unsaved.pop_front();
        }
        drop_stored(&mut s);
    }

    /// The first flush seq whose change to this partition no checkpoint
    /// stored yet: this incarnation's records from there on must stay
    /// (`None`: nothing pending, or the partition is deleted).
    pub(crate) fn trim_bound(&self) -> Option<u64> {
        let s = self.lock();
        if s.deleted {
            return None;
        }
        let unsaved = s.unsaved.iter().find_map(|c| c.seq);
        let unstored = s.unstored.front().map(|u| u.seq);
        unsaved.into_iter().chain(unstored).min()
    }

    /// A committed flush `seq` appended `entry`: the write path's part of
    /// applying a commit (under the lock the caller holds).
    pub(crate) fn note_flush(s: &mut LogState, seq: u64, entry: IndexEntry) {
        s.high_watermark = entry.last_offset + 1;
        if s.unstored.back().is_none_or(|b| b.at.elapsed() >= BUCKET) {
            s.unstored.push_back(Unstored {
                base: entry.base_offset,
                seq,
                at: Instant::now(),
            });
        }
        s.index.push(entry);
        s.version += 1;
        let version = s.version;
        note_change(s, version, Some(seq));
    }

    /// The stored index version last adopted (`adopt_compacted`).
    pub fn compacted_version(&self) -> u64 {
        self.lock().compacted_version
    }

    /// Adopts a compaction: `stored` is the stored index's whole prefix from
    /// the log start at index version `version` (`index::stored_prefix`),
    /// and `complete` whether it is all the stored index holds (a later part
    /// stays unadopted until the gap before it is stored). The entries
    /// `stored` holds the same offsets as are replaced by them, and no
    /// checkpoint stores them again. The version is recorded as adopted
    /// only when `complete` and lined up, so a read that misses an object
    /// loads the stored index again. `false` if nothing was replaced.
    pub fn adopt_compacted(&self, version: u64, stored: &[IndexEntry], complete: bool) -> bool {
        let mut s = self.lock();
        if s.compacted_version > version {
            return false;
        }
        if stored.is_empty() || s.index.is_empty() {
            // Nothing stored to take, or nothing held to replace.
            if complete {
                s.compacted_version = version;
            }
            return false;
        }
        if !s.index.replace_prefix(stored) {
            return false;
        }
        if complete {
            s.compacted_version = version;
        }
        // Stored, merged: no checkpoint needs to store these entries.
        if let Some(last) = stored.last() {
            s.checkpointed_end = s.checkpointed_end.max(last.last_offset + 1);
            drop_stored(&mut s);
        }
        true
    }

    /// A full checkpoint (used when claiming the partition).
    pub fn full_checkpoint(&self, owner: &StreamId, checkpoint_seq: u64) -> PartitionCheckpoint {
        let s = self.lock();
        PartitionCheckpoint {
            partition: self.id,
            owner: owner.clone(),
            checkpoint_seq,
            next_offset: s.high_watermark,
            log_start_offset: s.log_start_offset,
            producers: s.producers.clone(),
            new_entries: s.index.from_base(s.checkpointed_end),
        }
    }

    /// After a claim checkpoint succeeded: everything is persisted.
    pub fn mark_all_checkpointed(&self) {
        let mut s = self.lock();
        s.checkpointed_version = s.version;
        s.checkpointed_end = s.high_watermark;
        s.unsaved.clear();
        s.unstored.clear();
    }

    /// Moves the log start offset forward to `offset` (capped at the high
    /// watermark; never backwards) and forgets the index entries wholly
    /// below it: reads below it get OFFSET_OUT_OF_RANGE from then on, and
    /// the next checkpoint stores it. Returns the log start offset now and
    /// whether it moved.
    pub fn advance_log_start(&self, offset: i64) -> (i64, bool) {
        let s = self.lock();
        self.advance_locked(s, offset)
    }

    /// Applies the topic's retention at `now_ms`: moves the log start past
    /// the oldest entries `policy` deletes. Returns the new log start, if it
    /// moved.
    pub fn apply_retention(&self, policy: &TopicPolicy, now_ms: i64) -> Option<i64> {
        let s = self.lock();
        if s.deleted || s.lease != Lease::Owned {
            return None;
        }
        let start = policy.retention_start(&s.index, s.high_watermark, now_ms)?;
        let (start, moved) = self.advance_locked(s, start);
        moved.then_some(start)
    }

    /// `advance_start` under the lock held in `s`; a move is a change for the
    /// next checkpoint and wakes waiting fetches.
    fn advance_locked(&self, mut s: MutexGuard<'_, LogState>, offset: i64) -> (i64, bool) {
        if !advance_start(&mut s, offset) {
            return (s.log_start_offset, false);
        }
        s.version += 1;
        let version = s.version;
        note_change(&mut s, version, None);
        let start = s.log_start_offset;
        drop(s);
        self.wake();
        (start, true)
    }
}

/// Led here and due for a checkpoint: changed since the last one, by a
/// change at least `delay` old or a moved log start; or holding index
/// entries no one stored that are `delay` old (an idle partition's last
/// entries, when no pass stored them).
fn is_due(s: &LogState, delay: Duration) -> bool {
    if s.deleted || s.lease == Lease::NotOwned {
        return false;
    }
    let state = s.version != s.checkpointed_version
        && (s.unsaved.is_empty()
            || s.unsaved.iter().any(|c| c.urgent)
            || s.unsaved.front().is_some_and(|c| c.at.elapsed() >= delay));
    let entries = s.unstored.front().is_some_and(|u| u.at.elapsed() >= delay);
    state || entries
}

/// Forgets the buckets of entries now stored (below `checkpointed_end`).
fn drop_stored(s: &mut LogState) {
    while !s.unstored.is_empty() {
        let end = s.unstored.get(1).map_or(s.high_watermark, |next| next.base);
        if end > s.checkpointed_end {
            break;
        }
        s.unstored.pop_front();
    }
}

/// Raises the log start to `offset` (at most the high watermark) and drops
/// the entries wholly below it; `false` if it does not move.
fn advance_start(s: &mut LogState, offset: i64) -> bool {
    let start = offset.min(s.high_watermark);
    if start <= s.log_start_offset {
        return false;
    }
    s.log_start_offset = start;
    s.index.trim_before(start);
    true
}
