//! Floe's own storage vocabulary: topics, partitions, index entries, flush
//! records, producer state and checkpoints. Backends persist these; the gateway
//! translates Kafka requests into them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A topic's permanent identity (Kafka's topic id). A topic deleted and created
/// again under the same name gets a new id, so old data can never reappear.
pub type TopicId = uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionId {
    pub topic: TopicId,
    pub partition: i32,
}

impl PartitionId {
    pub fn new(topic: TopicId, partition: i32) -> Self {
        PartitionId { topic, partition }
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.topic, self.partition)
    }
}

/// A topic as stored in the MetaStore. `version` increases with every change and
/// guards conditional updates (config changes, partition additions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: TopicId,
    pub partitions: i32,
    /// Topic-level config overrides (only keys set explicitly).
    pub configs: BTreeMap<String, String>,
    pub created_ms: i64,
    pub version: u64,
}

/// A deleted topic whose partitions' stored state (checkpoints, index, index
/// versions) has not been removed yet: `delete_topic` leaves it, and a
/// compaction pass removes the state once no gateway can still write it
/// (`MetaStore::forget_topic`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedTopic {
    pub name: String,
    pub id: TopicId,
    /// The partition count when it was deleted: every partition that can
    /// have stored state.
    pub partitions: i32,
    pub deleted_ms: i64,
}

/// One gateway incarnation: a gateway id plus the epoch it registered with. Every
/// flush record belongs to exactly one stream; a stream's commits are accepted
/// only while its epoch is the gateway's current, unfenced epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamId {
    pub gateway: String,
    pub epoch: u64,
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.gateway, self.epoch)
    }
}

/// Where one contiguous run of a partition's batches lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexEntry {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub object_key: String,
    /// Byte position of the run inside the object.
    pub position: u64,
    pub length: u32,
}

/// One idempotent-producer batch appended to a partition, as recorded in a flush
/// record so producer state can be rebuilt after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// The part of a flush that concerns one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushPartition {
    pub partition: PartitionId,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub position: u64,
    pub length: u32,
    /// Idempotent batches in this run, in offset order (empty for plain producers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub producers: Vec<ProducerBatch>,
}

/// The commit record of one flush: one segment object, many partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushRecord {
    pub stream: StreamId,
    /// Position in the stream, from 1, increasing in seal order.
    pub seq: u64,
    pub object_key: String,
    pub object_len: u64,
    pub created_ms: i64,
    pub partitions: Vec<FlushPartition>,
}

impl FlushPartition {
    pub fn index_entry(&self, object_key: &str) -> IndexEntry {
        IndexEntry {
            base_offset: self.base_offset,
            last_offset: self.last_offset,
            max_timestamp: self.max_timestamp,
            object_key: object_key.to_string(),
            position: self.position,
            length: self.length,
        }
    }
}

/// The sequence window Kafka keeps per producer and partition.
pub const PRODUCER_WINDOW: usize = 5;

/// Idempotent-producer state of one producer on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProducerState {
    pub epoch: i16,
    /// The last (up to five) batches, oldest first.
    pub batches: Vec<ProducerBatch>,
    pub last_timestamp: i64,
}

/// A partition's durable state: written by its owner at claim and at every
/// checkpoint. Flush records of `owner` with seq > `checkpoint_seq` are not yet
/// folded in and must be replayed on load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCheckpoint {
    pub partition: PartitionId,
    pub owner: StreamId,
    pub checkpoint_seq: u64,
    pub next_offset: i64,
    pub log_start_offset: i64,
    pub producers: BTreeMap<i64, ProducerState>,
    /// Index entries added since the previous checkpoint (appended, never rewritten
    /// here; compaction swaps entries through its own operation).
    pub new_entries: Vec<IndexEntry>,
}

/// A partition's state as loaded from the MetaStore: the checkpoint plus the
/// whole index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSnapshot {
    pub owner: StreamId,
    /// The owner handed the partition back (drained and checkpointed first):
    /// any live gateway may claim it without fencing the owner.
    pub released: bool,
    pub checkpoint_seq: u64,
    pub next_offset: i64,
    pub log_start_offset: i64,
    pub producers: BTreeMap<i64, ProducerState>,
    pub entries: Vec<IndexEntry>,
}

/// A consumer group's committed position in one partition (Kafka's
/// OffsetCommit value), returned by OffsetFetch exactly as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when the client did not say.
    pub leader_epoch: i32,
    /// The client's metadata string (`None`: null).
    pub metadata: Option<String>,
    pub commit_ms: i64,
    /// The id of the topic committed for (`None` from versions before it
    /// was kept). Offsets are stored by topic name; a topic deleted and
    /// created again under its name has a new id, and offsets committed for
    /// the old one are not its (Kafka deletes them with the topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<TopicId>,
}

/// A group's committed offsets: topic name → partition → offset.
pub type GroupOffsets = BTreeMap<String, BTreeMap<i32, CommittedOffset>>;

/// A consumer group's membership as its coordinator last stored it (Kafka's
/// GroupMetadata record): written when a generation completes, when the group
/// empties and when a group first commits offsets, so a gateway that takes the
/// group over resumes it at the same generation, without a rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StoredGroup {
    /// "consumer" for Kafka consumers; empty for a group that only commits
    /// offsets (consumers that assign their partitions themselves).
    pub protocol_type: String,
    /// The protocol (assignor) chosen for the current generation.
    pub protocol: Option<String>,
    /// 0 before the first generation.
    pub generation: i32,
    pub leader: Option<String>,
    pub members: Vec<StoredMember>,
    /// Wall-clock time of the write, for operators.
    pub stored_ms: i64,
    /// A KIP-848 group (ConsumerGroupHeartbeat): `generation` is the group
    /// epoch and members carry their epochs and partitions.
    #[serde(default)]
    pub consumer_protocol: bool,
}

/// One member of a stored group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StoredMember {
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// The protocols the member supports, in its order of preference: name and
    /// the member's opaque metadata for it.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// The member's assignment in the current generation (opaque bytes).
    pub assignment: Vec<u8>,
    /// KIP-848 members: the member epoch.
    #[serde(default)]
    pub member_epoch: i32,
    /// KIP-848 members: the subscribed topic names.
    #[serde(default)]
    pub subscribed_topics: Vec<String>,
    /// KIP-848 members: the server-side assignor asked for.
    #[serde(default)]
    pub server_assignor: Option<String>,
    /// KIP-848 members: the client's rack.
    #[serde(default)]
    pub rack: Option<String>,
    /// KIP-848 members: the partitions the member owns, by topic id.
    #[serde(default)]
    pub owned: Vec<(TopicId, Vec<i32>)>,
    /// KIP-848 members: partitions it was told to give up and has not yet.
    #[serde(default)]
    pub revoking: Vec<(TopicId, Vec<i32>)>,
}

/// A gateway's registration: where clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    pub advertised: String,
    pub zone: Option<String>,
    /// Wall-clock time of registration, for operators only: liveness never
    /// compares clocks (see `Member::heartbeat`).
    pub heartbeat_ms: i64,
    /// The Kafka node id clients see for this gateway.
    #[serde(default)]
    pub node_id: i32,
    /// How many Kafka broker ids it answers as (`--broker-ids`); 1 for
    /// registrations written before the setting existed.
    #[serde(default = "one_broker_id")]
    pub broker_ids: u32,
}

fn one_broker_id() -> u32 {
    1
}

/// A gateway's extra broker ids are its node id plus multiples of this.
pub const BROKER_ID_STRIDE: i32 = 1000;

impl GatewayInfo {
    /// A registration at `advertised` with node id 0, one broker id, no zone.
    pub fn at(advertised: &str) -> GatewayInfo {
        GatewayInfo {
            advertised: advertised.to_string(),
            zone: None,
            heartbeat_ms: 0,
            node_id: 0,
            broker_ids: 1,
        }
    }

    /// Every Kafka broker id this gateway answers as, its node id first. The
    /// k-th (from 0) is served at the advertised port + k: each broker id has
    /// its own address, so no client can take two of them for one broker.
    pub fn broker_ids(&self) -> impl Iterator<Item = i32> + '_ {
        (0..self.broker_ids.max(1) as i32).map(move |k| self.node_id + k * BROKER_ID_STRIDE)
    }

    /// Whether `id` is one of this gateway's broker ids.
    pub fn has_broker_id(&self, id: i32) -> bool {
        self.broker_ids().any(|b| b == id)
    }

    /// The broker id that leads `p` when this gateway leads it: a topic's
    /// partitions take the ids in turn, from a place its id picks, so each id
    /// leads an even share.
    pub fn leader_id(&self, p: &PartitionId) -> i32 {
        let n = u64::from(self.broker_ids.max(1));
        let start = p.topic.as_u64_pair().0 % n;
        let slot = (start + u64::from(p.partition.unsigned_abs())) % n;
        self.node_id + slot as i32 * BROKER_ID_STRIDE
    }
}

/// A gateway's current incarnation as every gateway reads it from the MetaStore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub stream: StreamId,
    pub info: GatewayInfo,
    /// A counter the incarnation raises with every heartbeat. Observers judge
    /// liveness by whether it moves, timed on their own monotonic clock, so no
    /// two gateways' clocks are ever compared.
    pub heartbeat: u64,
    /// Declared dead by another gateway: its commits and checkpoints fail.
    pub fenced: bool,
}
