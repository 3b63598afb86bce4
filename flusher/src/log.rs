//! The in-memory state of one partition this gateway owns.
//!
//! Two layers: *committed* state (high watermark, index, producer state) that
//! readers see and checkpoints persist, and *working* state (next offset, producer
//! state including sealed-but-uncommitted batches) that sealing builds on. A failed
//! commit resets working to committed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

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
    /// are for the next checkpoint to store.
    pub checkpointed_end: i64,
    pub deleted: bool,
    pub lease: Lease,
    /// The stored index version whose compacted entries the index holds.
    pub compacted_version: u64,
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

    /// A checkpoint of the committed state if it changed since the last one.
    pub(crate) fn checkpoint_if_dirty(
        &self,
        owner: &StreamId,
        checkpoint_seq: u64,
    ) -> Option<(PartitionCheckpoint, u64, i64)> {
        let s = self.lock();
        if s.version == s.checkpointed_version || s.deleted || s.lease == Lease::NotOwned {
            return None;
        }
        Some((
            PartitionCheckpoint {
                partition: self.id,
                owner: owner.clone(),
                checkpoint_seq,
                next_offset: s.high_watermark,
                log_start_offset: s.log_start_offset,
                producers: s.producers.clone(),
                new_entries: s.index.from_base(s.checkpointed_end),
            },
            s.version,
            s.high_watermark,
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
    }

    /// The stored index version last adopted (`adopt_compacted`).
    pub fn compacted_version(&self) -> u64 {
        self.lock().compacted_version
    }

    /// Adopts a compaction: `stored` are the stored live entries at index
    /// version `version` (all below the stored checkpoint's end, so below
    /// what this index holds); the entries they hold the same offsets as are
    /// replaced by them. `false` if nothing was replaced (they do not line up
    /// with the entries held, or there are none); the version is then left
    /// as it was, to try again.
    pub fn adopt_compacted(&self, version: u64, stored: &[IndexEntry]) -> bool {
        let mut s = self.lock();
        if s.compacted_version > version {
            return false;
        }
        if stored.is_empty() || s.index.is_empty() {
            // Nothing stored to take, or nothing held to replace.
            s.compacted_version = version;
            return false;
        }
        if s.index.replace_prefix(stored) {
            s.compacted_version = version;
            true
        } else {
            false
        }
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
        let start = s.log_start_offset;
        drop(s);
        self.wake();
        (start, true)
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
