//! Metadata: topics, gateway epochs, flush records, partition checkpoints and
//! indexes. The contract every backend meets (see `tests/contract.rs`):
//!
//! - `register_gateway` returns an epoch greater than any earlier epoch of that
//!   gateway; from then on only the new epoch can commit.
//! - `commit_flush` is atomic: the epoch check and the record write happen in one
//!   transaction. It is idempotent: committing the same record twice succeeds, a
//!   different record at the same `(stream, seq)` fails with `AlreadyExists`, and a
//!   stale epoch fails with `Fenced`.
//! - `write_checkpoints` is atomic over all given partitions, fenced the same way,
//!   and idempotent for index entries already written.
//! - Topic writes are conditional: create fails with `AlreadyExists`, update with
//!   `Precondition` unless the stored version is the one the caller read.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::types::{
    FlushRecord, GatewayInfo, PartitionCheckpoint, PartitionId, PartitionSnapshot, StreamId,
    TopicId, TopicMeta,
};

pub mod dynamodb;
mod memory;
mod sqlite;

pub use dynamodb::DynamoMetaStore;
pub use memory::MemoryMetaStore;
pub use sqlite::SqliteMetaStore;

#[async_trait]
pub trait MetaStore: Send + Sync + Debug {
    /// Starts a new incarnation of `gateway`; returns its epoch.
    async fn register_gateway(&self, gateway: &str, info: &GatewayInfo) -> Result<u64>;

    async fn create_topic(&self, topic: &TopicMeta) -> Result<()>;
    /// Replaces the topic if the stored one has the same id and `topic.version - 1`.
    async fn update_topic(&self, topic: &TopicMeta) -> Result<()>;
    /// Removes the topic named `name` if its id is `id`; `NotFound` otherwise.
    async fn delete_topic(&self, name: &str, id: TopicId) -> Result<()>;
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

    /// Writes partition checkpoints (and claims ownership for `fence`), atomically.
    async fn write_checkpoints(
        &self,
        fence: &StreamId,
        checkpoints: &[PartitionCheckpoint],
    ) -> Result<()>;
    /// A partition's checkpoint and full index, if it was ever claimed.
    async fn load_partition(&self, partition: PartitionId) -> Result<Option<PartitionSnapshot>>;

    /// Reserves `count` producer ids; returns the first.
    async fn allocate_producer_ids(&self, count: u64) -> Result<i64>;
}

pub type SharedMetaStore = Arc<dyn MetaStore>;

/// Checks a topic update against the stored topic.
pub(crate) fn check_topic_update(stored: Option<&TopicMeta>, new: &TopicMeta) -> Result<()> {
    match stored {
        Some(s) if s.id == new.id && s.version + 1 == new.version => Ok(()),
        Some(s) => Err(crate::Error::Precondition(format!(
            "topic {} is at version {} (id {}), update expected {} (id {})",
            new.name,
            s.version,
            s.id,
            new.version.saturating_sub(1),
            new.id
        ))),
        None => Err(crate::Error::NotFound(format!("topic {}", new.name))),
    }
}

pub(crate) fn fenced(stream: &StreamId, current: Option<u64>) -> crate::Error {
    crate::Error::Fenced(match current {
        Some(e) => format!(
            "{stream} is stale: gateway {} is at epoch {e}",
            stream.gateway
        ),
        None => format!("{stream} is not registered"),
    })
}
