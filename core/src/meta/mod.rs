//! Metadata: topics, gateway epochs, flush records, partition checkpoints and
//! indexes. The contract every backend meets (see `tests/contract.rs`):
//!
//! - `register_gateway` returns an epoch greater than any earlier epoch of that
//!   gateway; from then on only the new epoch can commit.
//! - `commit_flush` is atomic: the epoch check and the record write happen in one
//!   transaction. It is idempotent: committing the same record twice succeeds, a
//!   different record at the same `(stream, seq)` fails with `AlreadyExists`, and a
//!   stale epoch fails with `Fenced` (a retry of a record that landed while its
//!   epoch was current may instead succeed, as DynamoDB's idempotency token
//!   makes it: that outcome is true).
//! - `write_checkpoints` is atomic over all given partitions, fenced the same way,
//!   and idempotent for index entries already written.
//! - Ownership: a partition's state names one owning stream. `write_checkpoints`
//!   and `release_partitions` succeed only for its owner (or, for
//!   `write_checkpoints`, a partition never claimed); `claim_partition` moves it
//!   only away from an owner that released it or is no longer live (fenced by
//!   `fence_gateway`, or superseded by a newer epoch of its gateway), conditional
//!   on the owner the claimer read, so two claimers never both win.
//! - Membership: `heartbeat` raises the caller's counter and fails `Fenced` once
//!   it is fenced or superseded; `fence_gateway` succeeds only if the target's
//!   counter is still the one the caller observed (it did not heartbeat since).
//! - Index swaps (compaction) are conditional on the partition's index
//!   version and raise it, so two compactions never both swap; they store
//!   entries that cover stored ones and never write the partition's state.
//! - Topic writes are conditional: create fails with `AlreadyExists`, update with
//!   `Precondition` unless the stored version is the one the caller read.
//!
//! The decisions behind these rules (epochs, checkpoint and release ownership,
//! claims, fences, commit outcomes) are pure functions in [`rules`], shared by
//! every backend.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::types::{
    CommittedOffset, DeletedTopic, FlushRecord, GatewayInfo, GroupOffsets, IndexEntry, Member,
    PartitionCheckpoint, PartitionId, PartitionSnapshot, StoredGroup, StreamId, TopicId, TopicMeta,
};

#[cfg(feature = "aws")]
pub mod dynamodb;
mod memory;
pub mod rules;
#[cfg(feature = "embedded")]
mod sqlite;

#[cfg(feature = "aws")]
pub use dynamodb::DynamoMetaStore;
pub use memory::MemoryMetaStore;
#[cfg(feature = "embedded")]
pub use sqlite::SqliteMetaStore;

#[async_trait]
pub trait MetaStore: Send + Sync + Debug {
    /// Starts a new incarnation of `gateway`; returns its epoch.
    async fn register_gateway(&self, gateway: &str, info: &GatewayInfo) -> Result<u64>;
    /// Proves `me` alive: raises its heartbeat counter and returns the new value.
    /// `Fenced` once `me` was fenced or its gateway registered a newer epoch.
    async fn heartbeat(&self, me: &StreamId) -> Result<u64>;
    /// The current incarnation of every registered gateway, fenced ones
    /// included (flagged). Strongly consistent.
    async fn list_members(&self) -> Result<Vec<Member>>;
    /// Fences `target` if its heartbeat counter is still `observed`: from then on
    /// its commits, checkpoints and heartbeats fail `Fenced`. `Ok` if it already
    /// is fenced or superseded; `Precondition` if it heartbeated since.
    async fn fence_gateway(&self, target: &StreamId, observed: u64) -> Result<()>;

    async fn create_topic(&self, topic: &TopicMeta) -> Result<()>;
    /// Replaces the topic if the stored one has the same id and `topic.version - 1`.
    async fn update_topic(&self, topic: &TopicMeta) -> Result<()>;
    /// Removes the topic named `name` if its id is `id`; `NotFound` otherwise.
    /// In the same write it leaves a [`DeletedTopic`] (deleted at `deleted_ms`)
    /// naming what `forget_topic` must remove later: its partitions' state.
    async fn delete_topic(&self, name: &str, id: TopicId, deleted_ms: i64) -> Result<()>;
    /// Deleted topics whose partitions' state is still stored, oldest first.
    async fn deleted_topics(&self) -> Result<Vec<DeletedTopic>>;
    /// Removes everything stored for `topic`'s partitions (checkpoints, index
    /// entries, index versions), then `topic` from `deleted_topics`. Idempotent,
    /// and a crash part way leaves it listed, so a later call finishes it.
    /// Callers wait until no gateway can still checkpoint a partition of the
    /// topic: a checkpoint after this would store its state again.
    async fn forget_topic(&self, topic: &DeletedTopic) -> Result<()>;
    async fn get_topic(&self, name: &str) -> Result<Option<TopicMeta>>;
    async fn list_topics(&self) -> Result<Vec<TopicMeta>>;

    /// Commits a flush record, fenced on `record.stream`.
    async fn commit_flush(&self, record: &FlushRecord) -> Result<()>;
    /// Flush records of `stream` with seq > `after_seq` not yet trimmed, in seq order.
    async fn read_flushes(&self, stream: &StreamId, after_seq: u64) -> Result<Vec<FlushRecord>>;
    /// Drops flush records of `stream` with seq <= `through_seq` (folded into
    /// checkpoints): from then on no reader sees them. The embedded stores
    /// delete them; DynamoDB raises a trim mark and lets the TTL delete them.
    async fn trim_flushes(&self, stream: &StreamId, through_seq: u64) -> Result<()>;
    /// Every stream that still has untrimmed flush records.
    async fn flush_streams(&self) -> Result<Vec<StreamId>>;

    /// Writes partition checkpoints, atomically, fenced on `fence`. Each
    /// partition must be owned by `fence` or never claimed (then `fence` claims
    /// it); one owned by another stream fails the call `Fenced`.
    async fn write_checkpoints(
        &self,
        fence: &StreamId,
        checkpoints: &[PartitionCheckpoint],
    ) -> Result<()>;
    /// Takes `checkpoint.partition` over for `me`, storing `checkpoint` (its
    /// `new_entries` are the entries not yet stored). The stored owner must be
    /// `previous` (`None`: never claimed) and must have released the partition
    /// or no longer be live; `Precondition` otherwise, `Fenced` if `me` is not live.
    async fn claim_partition(
        &self,
        me: &StreamId,
        previous: Option<&StreamId>,
        checkpoint: &PartitionCheckpoint,
    ) -> Result<()>;
    /// Hands partitions back: stores their final checkpoints marked released.
    /// Atomic like `write_checkpoints`; `Fenced` unless `me` owns each.
    async fn release_partitions(
        &self,
        me: &StreamId,
        checkpoints: &[PartitionCheckpoint],
    ) -> Result<()>;
    /// A partition's checkpoint and full index, if it was ever claimed.
    async fn load_partition(&self, partition: PartitionId) -> Result<Option<PartitionSnapshot>> {
        self.load_partition_from(partition, 0).await
    }
    /// Like `load_partition`, with only the index entries whose base offset is
    /// at least `from_offset` (a reader that holds the rest reads only what is new).
    async fn load_partition_from(
        &self,
        partition: PartitionId,
        from_offset: i64,
    ) -> Result<Option<PartitionSnapshot>>;

    /// The partition's index version: 0 until its first `swap_index`, raised
    /// by each. A compaction reads it before loading the partition, and swaps
    /// on what it loaded.
    async fn index_version(&self, partition: PartitionId) -> Result<u64>;
    /// Stores compacted index entries, each covering entries already stored
    /// (which `index::live_entries` then skips), conditional on the index
    /// version still being `version`, and raises it: of two compactions of a
    /// partition that loaded the same version only one swaps (`Precondition`
    /// for the other). Never touches the partition's state, which only its
    /// owner writes. `NotFound` for a partition never claimed.
    async fn swap_index(
        &self,
        partition: PartitionId,
        version: u64,
        merged: &[IndexEntry],
    ) -> Result<()>;
    /// Deletes stored index entries no load uses any more (covered, or
    /// wholly below the log start: `index::dead_entries`), each only if
    /// stored as given. Idempotent.
    async fn delete_index(&self, partition: PartitionId, entries: &[IndexEntry]) -> Result<()>;

    /// Reserves `count` producer ids; returns the first.
    async fn allocate_producer_ids(&self, count: u64) -> Result<i64>;

    /// Stores `group`'s committed offsets for partitions of `topic`, merged with
    /// those already stored (other partitions keep theirs): ONE write per
    /// group and topic, whatever the number of partitions.
    async fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &BTreeMap<i32, CommittedOffset>,
    ) -> Result<()>;
    /// Every committed offset of `group` (strongly consistent).
    async fn fetch_offsets(&self, group: &str) -> Result<GroupOffsets>;
    /// Forgets `group`'s committed offsets for `partitions` of `topic`.
    async fn delete_offsets(&self, group: &str, topic: &str, partitions: &[i32]) -> Result<()>;

    /// Stores `group`'s membership state (one write). `Precondition` if the
    /// stored state has a greater generation: a coordinator that lost the group
    /// cannot roll it back.
    async fn store_group(&self, group: &str, state: &StoredGroup) -> Result<()>;
    /// `group`'s stored state, if any (strongly consistent).
    async fn load_group(&self, group: &str) -> Result<Option<StoredGroup>>;
    /// Every group with stored state, by id (one query, not a table scan).
    async fn list_groups(&self) -> Result<Vec<(String, StoredGroup)>>;
    /// Forgets `group`: its stored state and every committed offset. `Ok` if
    /// there was nothing to forget.
    async fn delete_group(&self, group: &str) -> Result<()>;
}

pub type SharedMetaStore = Arc<dyn MetaStore>;
