//! The production MetaStore: ONE DynamoDB table, string keys `pk` (HASH) and `sk`
//! (RANGE), on-demand billing, TTL on `expires_at`. Every read that decides
//! something is strongly consistent.
//!
//! | pk | sk | attributes | written by |
//! |---|---|---|---|
//! | `gw#<gateway>` | `epoch` | `epoch` N, `fenced` BOOL, `hb` N (heartbeat counter), `info` B (GatewayInfo JSON) | `register_gateway` (UpdateItem ADD epoch 1, resets `fenced` and `hb`), `heartbeat` (UpdateItem ADD hb 1 if current and unfenced), `fence_gateway` (UpdateItem SET fenced if `epoch` and `hb` are the observed ones) |
//! | `members` | `<gateway>` | (none) | `register_gateway` (Put, never expires): the gateways `list_members` reads, each then read at its `gw#` item |
//! | `topics` | `<name>` | `id` S, `version` N, `t` B (TopicMeta JSON) | topic create/update/delete, conditional on `id` and `version`; one partition key so `list_topics` is one Query (topic writes are rare, far below one partition's 1,000 WCU/s) |
//! | `streams` | `<gateway>#<epoch, 20 digits>` | `trimmed` N (flush seqs at or below it are checkpointed), `expires_at` N once fully trimmed | `register_gateway` (before the incarnation can commit), `trim_flushes` (one UpdateItem per checkpoint round) |
//! | `flush#<gateway>#<epoch, 20 digits>` | `<seq, 20 digits>` | `r` B (compact flush record: format 2, postcard with deltas, see `codec::encode_flush`; format 1 still read), `expires_at` N | `commit_flush` |
//! | `part#<topic id>#<partition>` | `state` | `s` B (owner, checkpoint seq, next offset, log start, producer states; JSON), `own` S (owning stream, `<gateway>@<epoch>`), `rel` BOOL (released) | `write_checkpoints`, `release_partitions`, `claim_partition`, each conditional on `own` (and `rel`) |
//! | `part#<topic id>#<partition>` | `idx#<base offset, 20 digits>` | `e` B (IndexEntry JSON) | `write_checkpoints`, `release_partitions`, `claim_partition` |
//! | `part#<topic id>#<partition>` | `idx#<base offset, 20 digits>#c` | `e` B (IndexEntry JSON of a compacted region) | `swap_index` (compaction), in one TransactWriteItems with the version below; never written by the owner, so an owner storing the small entry at the same base again does not overwrite it |
//! | `part#<topic id>#<partition>` | `compaction` | `v` N (index version) | `swap_index` (UpdateItem conditional on the version the compaction loaded) |
//! | `deleted-topics` | `<topic id>` | `t` B (DeletedTopic JSON: name, partition count, deletion time) | `delete_topic`, in one TransactWriteItems with the `topics` item's conditional Delete; `forget_topic` deletes it after every `part#` item of the topic |
//! | `counter` | `producer_id` | `v` N | `allocate_producer_ids` (UpdateItem ADD) |
//! | `group#<group>` | `<topic>` | `p<partition>` B (CommittedOffset JSON), one attribute per partition | `commit_offsets` (ONE UpdateItem SET per group, topic and up to 100 partitions, merging with the stored partitions), `delete_offsets` (UpdateItem REMOVE), `delete_group` (BatchWriteItem delete) |
//! | `groups` | `<group>` | `gen` N (generation), `state` S (StoredGroup JSON) | `store_group` (PutItem conditional on `gen` not above the new one), `delete_group` (DeleteItem, after the group's offset items); one partition key so `list_groups` is one Query |
//!
//! Zero-padded numbers make `sk` order numeric order. The gateway name is parsed
//! from the right of a flush `pk`, so it may itself contain `#`.
//!
//! Sizes and cost (DynamoDB bills each started KiB written, twice inside a
//! transaction; strongly consistent reads per started 4 KiB):
//! - a flush item (format 2) is ~170 bytes (keys, object key) plus ~16 bytes
//!   per partition and ~12 per idempotent batch: one partition ≈ 0.2 KiB, 100
//!   partitions ≈ 1.7 KiB (2.9 KiB with one idempotent batch each).
//!   `commit_flush` is ONE TransactWriteItems (ConditionCheck on the epoch item +
//!   Put of the flush item): 2 × (1 + ⌈flush item KiB⌉) WRU, so 4 WRU for a
//!   small flush, 6 for 100 partitions (8 when idempotent). The 400 KB item
//!   limit allows ~20,000 partitions per flush.
//! - a state item is ~150 bytes plus ~100 bytes per producer batch remembered
//!   (at most 5 per producer); producers beyond ~3,000 per partition would exceed
//!   400 KB (the write then fails `Internal` with DynamoDB's message).
//! - an index item is ~200 bytes: 1 WRU each, written with BatchWriteItem.
//! - `heartbeat` is one UpdateItem of the (< 1 KiB) epoch item: 1 WRU.
//!   `fence_gateway` likewise 1 WRU (plus a strongly consistent read, 1 RCU, when
//!   its condition fails). `list_members` is one Query of `members` plus one
//!   strongly consistent GetItem per gateway (1 RCU each).
//! - `claim_partition` is one transaction per partition: the claimer's epoch
//!   ConditionCheck + the state Put, plus, taking over from a live-looking
//!   owner of another gateway, a ConditionCheck on that owner's epoch item:
//!   2 × (1 + ⌈state KiB⌉ [+ 1]) WRU, after one strongly consistent read of the
//!   state item (when a previous owner is expected) and the index items.
//!
//! Heartbeats write the epoch item that every commit's ConditionCheck reads, so
//! the two can collide: DynamoDB then cancels the transaction (or rejects the
//! UpdateItem) with `TransactionConflict`, and both sides retry within a budget.
//! At one heartbeat per second or slower this costs a commit a retry rarely.
//!
//! `expires_at` (epoch seconds) is the table's TTL attribute. Flush items carry
//! it from the start (commit time + `flush_record_ttl`, default 7 days), so
//! DynamoDB deletes them for free; nothing deletes them one by one. A checkpoint
//! instead raises its stream's `trimmed` mark (one small write per round, not
//! one per flush: a delete would add 1 WRU to every flush's 4), and readers
//! ignore flush items at or below the mark. The TTL must outlast the longest time
//! a crashed incarnation's records can wait for recovery: records a gateway
//! acknowledged in its last checkpoint interval (5 s) before a crash are only in
//! flush items until the next incarnation (or, with several gateways, another
//! owner) folds them into a checkpoint, which happens at its start. A deployment
//! left with no gateway at all for longer than the TTL after a crash would lose
//! them; size `flush_record_ttl` above the worst outage you plan for.
//! A fully trimmed stream's registry item expires with the records.
//!
//! Atomicity: `write_checkpoints` and `release_partitions` write index items
//! first (plain idempotent overwrites, not fenced), then the state items in
//! TransactWriteItems of at most 99 Puts + the epoch ConditionCheck. Each Put is
//! conditional on the writer owning the partition (`own`; `write_checkpoints`
//! also accepts a partition never claimed, or last written by a version without
//! `own`). Each chunk is atomic; a call with more than 99 partitions is atomic
//! per chunk only, which is safe because each partition's state item is
//! self-contained. `claim_partition` writes its index items, then ONE
//! transaction: the claimer's epoch ConditionCheck + the state Put conditional
//! on the owner it read (released: `own` and `rel` unchanged; not released: `own`
//! unchanged and a ConditionCheck that the owner's epoch item moved on or is
//! fenced, skipped when the owner is an older epoch of the claimer's own gateway,
//! which the claimer's epoch check already proves superseded). Two claimers
//! conditioned on the same owner cannot both win: the first changes `own`.
//!
//! `load_partition` returns only the owner's index entries with `base_offset <
//! next_offset`, so entries written by a failed, fenced or non-owner checkpoint
//! (or claim) beyond the state are invisible (replaying the flush records
//! recreates them identically, overwriting them). Compacted entries (`#c`)
//! are returned wherever they are: a pass folds the owner's flush records
//! past its stored state, and readers apply the covering rule. Caveat for the compactor: a
//! fenced gateway's index write may still overwrite an existing entry below
//! `next_offset` with the same (replayed) content; entry swaps must be
//! conditional on the entry they replace.
//!
//! `list_members` lists gateways from the `members` items, not from the
//! `streams` registry, whose items expire once their stream is fully trimmed.
//!
//! `flush_streams` reads the `streams` registry (one Query) plus one
//! single-item Query per stream not yet fully trimmed; it runs only at recovery.
//! Every incarnation is registered before it can commit, so no stream with
//! flush items is missed.

mod codec;
mod keys;
mod transport;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, DeleteRequest, Put, PutRequest, ReturnConsumedCapacity,
    ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};

use super::MetaStore;
use super::rules::{
    ClaimBasis, CommitOutcome, EpochRecord, FenceDecision, StoredOwner, check_checkpoint,
    check_epoch, check_release, check_topic_update, claim_basis, claim_conflict, commit_conflict,
    commit_outcome, decide_fence, fence_refused, stale_group, stale_index,
};
use crate::aws::{AwsStats, classify};
use crate::error::{Error, Result};
use crate::types::{
    CommittedOffset, DeletedTopic, FlushRecord, GatewayInfo, GroupOffsets, IndexEntry, Member,
    PartitionCheckpoint, PartitionId, PartitionSnapshot, StoredGroup, StreamId, TopicId, TopicMeta,
};
use codec::{
    Item, StoredState, b, blob, build_err, commit_token, decode_flush, epoch_record, flag,
    flush_item, group_state, heartbeat_count, is_condition_failed, json, n, num, s, state_item,
    stored_owner, string, topic_item, trim_mark, unix_secs,
};
pub use codec::{commit_flush_write_units, item_size};
pub use keys::TTL_ATTRIBUTE;
use keys::{
    DELETED_TOPICS_PK, GROUPS_PK, INDEX_VERSION_SK, MEMBERS_PK, STREAMS_PK, entry_sk, flush_pk,
    group_pk, gw_pk, idx_sk, key, offset_attr, parse_stream_sk, part_pk, seq_sk, stream_sk,
};
use transport::TxFailure;

#[derive(Debug, Clone)]
pub struct DynamoMetaStore {
    client: Client,
    table: String,
    stats: Arc<AwsStats>,
    flush_ttl: std::time::Duration,
}

/// Puts per TransactWriteItems besides the epoch ConditionCheck (limit 100).
const TX_CHUNK: usize = 99;

impl DynamoMetaStore {
    /// The store on `table`, counting requests into `stats`; flush items
    /// expire `flush_ttl` after their commit (the `flush-record-ttl` setting).
    pub fn new(
        client: Client,
        table: impl Into<String>,
        stats: Arc<AwsStats>,
        flush_ttl: std::time::Duration,
    ) -> Self {
        DynamoMetaStore {
            client,
            table: table.into(),
            stats,
            flush_ttl,
        }
    }

    fn expiry(&self) -> u64 {
        unix_secs().saturating_add(self.flush_ttl.as_secs())
    }

    /// The stream's trim mark: its flush items at or below it are checkpointed.
    async fn trimmed(&self, stream: &StreamId) -> Result<u64> {
        match self
            .get_item(STREAMS_PK.to_string(), stream_sk(stream))
            .await?
        {
            Some(item) => trim_mark(&item),
            None => Ok(0),
        }
    }

    pub fn client(config: &aws_config::SdkConfig) -> Client {
        Client::new(config)
    }

    pub fn stats(&self) -> &Arc<AwsStats> {
        &self.stats
    }

    /// The ConditionCheck that `stream` is its gateway's current, unfenced epoch.
    fn epoch_check(&self, stream: &StreamId) -> Result<TransactWriteItem> {
        let cc = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(gw_pk(&stream.gateway), "epoch")))
            .condition_expression("#e = :e AND (attribute_not_exists(#f) OR #f = :false)")
            .expression_attribute_names("#e", "epoch")
            .expression_attribute_names("#f", "fenced")
            .expression_attribute_values(":e", n(stream.epoch))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().condition_check(cc).build())
    }

    /// The `Fenced` error for `stream`, given the epoch item (if known).
    fn fenced(&self, stream: &StreamId, epoch_item: Option<&Item>) -> Error {
        match check_epoch(stream, epoch_item.and_then(epoch_record)) {
            Err(e) => e,
            // The condition failed, yet the item read looks current: it
            // changed in between, which only a register or fence does.
            Ok(()) => Error::Fenced(format!("{stream} is not current")),
        }
    }

    /// Checks `stream` is current with a strongly consistent read.
    async fn check_fence(&self, stream: &StreamId) -> Result<()> {
        let item = self
            .get_item(gw_pk(&stream.gateway), "epoch".to_string())
            .await?;
        check_epoch(stream, item.as_ref().and_then(epoch_record))
    }

    /// After a conditional put of a flush record failed, or its outcome is
    /// unknown: the stored record decides.
    async fn resolve_existing(&self, r: &FlushRecord) -> Result<CommitOutcome> {
        let stored = match self.get_item(flush_pk(&r.stream), seq_sk(r.seq)).await? {
            Some(item) => Some(decode_flush(&item)?),
            None => None,
        };
        Ok(commit_outcome(r, stored.as_ref()))
    }

    /// Writes index items (idempotent overwrites, not fenced; see the module docs).
    async fn write_index(&self, entries: &BTreeMap<(PartitionId, i64), &IndexEntry>) -> Result<()> {
        let mut requests = Vec::with_capacity(entries.len());
        for ((p, _), e) in entries {
            // A compacted entry the owner adopted goes where swaps put them.
            let mut item = key(part_pk(*p), entry_sk(e)?);
            item.insert("e".into(), b(json(e)?));
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(build_err)?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.batch_write(requests).await
    }

    /// A transactional Put of `item` under `condition` (with the `#o` = `own`,
    /// `#r` = `rel` names when it uses them), returning the old item on failure.
    fn state_put(
        &self,
        item: Item,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem> {
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if condition.contains("#o") {
            put = put.expression_attribute_names("#o", "own");
        }
        if condition.contains("#r") {
            put = put.expression_attribute_names("#r", "rel");
        }
        for (name, v) in values {
            put = put.expression_attribute_values(name, v);
        }
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(build_err)?)
            .build())
    }

    /// A partition's stored owner and released flag: from `item` if given, else
    /// read (strongly consistent).
    async fn partition_owner(
        &self,
        p: PartitionId,
        item: Option<Item>,
    ) -> Result<Option<StoredOwner>> {
        let item = match item {
            Some(i) => Some(i),
            None => self.get_item(part_pk(p), "state".into()).await?,
        };
        item.as_ref().map(stored_owner).transpose()
    }

    /// Why a checkpoint (`release` false) or release of `p` by `me` was
    /// refused, judged by the shared rule on the state item (returned with the
    /// failure, or read now).
    async fn ownership_error(
        &self,
        me: &StreamId,
        p: PartitionId,
        item: Option<Item>,
        release: bool,
    ) -> Result<Error> {
        let stored = self.partition_owner(p, item).await?;
        let verdict = if release {
            check_release(me, p, stored.as_ref())
        } else {
            check_checkpoint(me, p, stored.as_ref())
        };
        Ok(verdict.err().unwrap_or_else(|| {
            Error::Unavailable(format!(
                "write of partition {p} by {me} was refused, but its state allows it now; retry"
            ))
        }))
    }

    /// `write_checkpoints` (`release` false) and `release_partitions` (true):
    /// index items, then state items owned by `me`, in fenced transactions.
    async fn store_checkpoints(
        &self,
        me: &StreamId,
        checkpoints: &[PartitionCheckpoint],
        release: bool,
    ) -> Result<()> {
        // One state item per partition (the last checkpoint given wins) and one
        // index item per (partition, base offset): a batch may not name a key twice.
        let mut states: BTreeMap<PartitionId, &PartitionCheckpoint> = BTreeMap::new();
        let mut entries: BTreeMap<(PartitionId, i64), &IndexEntry> = BTreeMap::new();
        for cp in checkpoints {
            states.insert(cp.partition, cp);
            for e in &cp.new_entries {
                entries.insert((cp.partition, e.base_offset), e);
            }
        }
        if states.is_empty() {
            return self.check_fence(me).await;
        }
        self.write_index(&entries).await?;

        // Releasing needs an owner; a checkpoint may also claim a partition never
        // claimed, or one last written by a version that did not record `own`.
        let condition = if release {
            "#o = :me"
        } else {
            "attribute_not_exists(pk) OR attribute_not_exists(#o) OR #o = :me"
        };
        let what = if release { "release" } else { "checkpoint" };
        let states: Vec<_> = states.into_values().collect();
        for chunk in states.chunks(TX_CHUNK) {
            let mut items = vec![self.epoch_check(me)?];
            for cp in chunk {
                items.push(self.state_put(
                    state_item(me, cp, release)?,
                    condition,
                    vec![(":me", s(me.to_string()))],
                )?);
            }
            match self.transact(items, None).await? {
                Ok(()) => {}
                Err(TxFailure::Fenced(item)) => return Err(self.fenced(me, item.as_ref())),
                Err(TxFailure::Condition(i, item)) => {
                    let cp = chunk.get(i - 1).ok_or_else(|| {
                        Error::Internal(format!(
                            "{what} of {me}: cancellation reason {i} out of range"
                        ))
                    })?;
                    return Err(self
                        .ownership_error(me, cp.partition, item, release)
                        .await?);
                }
                Err(TxFailure::Unknown) => {
                    self.check_fence(me).await?;
                    for cp in chunk {
                        let stored = self.partition_owner(cp.partition, None).await?;
                        if release {
                            check_release(me, cp.partition, stored.as_ref())?;
                        } else {
                            check_checkpoint(me, cp.partition, stored.as_ref())?;
                        }
                    }
                    return Err(Error::Unavailable(format!(
                        "{what} of {me}: transaction cancelled without a reason"
                    )));
                }
                Err(TxFailure::TokenMismatch) => {
                    return Err(Error::Internal(format!(
                        "{what} of {me}: idempotency token mismatch without a token"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl MetaStore for DynamoMetaStore {
    async fn register_gateway(&self, gateway: &str, info: &GatewayInfo) -> Result<u64> {
        self.request();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(gw_pk(gateway), "epoch")))
            .update_expression("ADD #e :one SET #f = :false, #h = :zero, #i = :info")
            .expression_attribute_names("#e", "epoch")
            .expression_attribute_names("#f", "fenced")
            .expression_attribute_names("#h", "hb")
            .expression_attribute_names("#i", "info")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":info", b(json(info)?))
            .return_values(ReturnValue::UpdatedNew)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| classify(&self.what("UpdateItem (register gateway)"), e))?;
        self.account(out.consumed_capacity(), true);
        let attrs = out.attributes.unwrap_or_default();
        let epoch: u64 = num(&attrs, "epoch")?;
        // Register the incarnation before it can commit anything, so recovery
        // finds every stream that may hold flush items; and list the gateway
        // (again) in `members`, which never expires. One BatchWriteItem.
        let stream = StreamId {
            gateway: gateway.to_string(),
            epoch,
        };
        let mut registry = key(STREAMS_PK, stream_sk(&stream));
        registry.insert("trimmed".into(), n(0));
        let mut requests = Vec::with_capacity(2);
        for item in [registry, key(MEMBERS_PK, gateway)] {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(build_err)?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.batch_write(requests).await?;
        Ok(epoch)
    }

    async fn heartbeat(&self, me: &StreamId) -> Result<u64> {
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(gw_pk(&me.gateway), "epoch")))
            .update_expression("ADD #h :one")
            .condition_expression("#e = :e AND (attribute_not_exists(#f) OR #f = :false)")
            .expression_attribute_names("#h", "hb")
            .expression_attribute_names("#e", "epoch")
            .expression_attribute_names("#f", "fenced")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":e", n(me.epoch))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .return_values(ReturnValue::UpdatedNew);
        match self
            .update_epoch_item(req, "UpdateItem (heartbeat)")
            .await?
        {
            Ok(attrs) => num(&attrs, "hb"),
            Err(old) => {
                let item = match old {
                    Some(i) => Some(i),
                    None => self.get_item(gw_pk(&me.gateway), "epoch".into()).await?,
                };
                Err(self.fenced(me, item.as_ref()))
            }
        }
    }

    async fn list_members(&self) -> Result<Vec<Member>> {
        let mut members = Vec::new();
        for listed in self.query(MEMBERS_PK, None, true).await? {
            let gateway = string(&listed, "sk")?;
            // Listed but never registered (a registration that failed halfway).
            let Some(item) = self.get_item(gw_pk(gateway), "epoch".into()).await? else {
                continue;
            };
            members.push(Member {
                stream: StreamId {
                    gateway: gateway.to_string(),
                    epoch: num(&item, "epoch")?,
                },
                info: blob(&item, "info")?,
                heartbeat: if item.contains_key("hb") {
                    num(&item, "hb")?
                } else {
                    0
                },
                fenced: flag(&item, "fenced"),
            });
        }
        members.sort_by(|a, b| a.stream.gateway.cmp(&b.stream.gateway));
        Ok(members)
    }

    async fn fence_gateway(&self, target: &StreamId, observed: u64) -> Result<()> {
        // An incarnation that never heartbeated may lack `hb` (older versions).
        let condition = if observed == 0 {
            "#e = :e AND (attribute_not_exists(#h) OR #h = :seen)"
        } else {
            "#e = :e AND #h = :seen"
        };
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(gw_pk(&target.gateway), "epoch")))
            .update_expression("SET #f = :true")
            .condition_expression(condition)
            .expression_attribute_names("#f", "fenced")
            .expression_attribute_names("#e", "epoch")
            .expression_attribute_names("#h", "hb")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":e", n(target.epoch))
            .expression_attribute_values(":seen", n(observed));
        let old = match self.update_epoch_item(req, "UpdateItem (fence)").await? {
            Ok(_) => return Ok(()),
            Err(old) => old,
        };
        let item = match old {
            Some(i) => Some(i),
            None => {
                self.get_item(gw_pk(&target.gateway), "epoch".into())
                    .await?
            }
        };
        // An epoch item that does not parse is corruption, not "gone".
        let stored = match &item {
            Some(i) => Some((
                EpochRecord {
                    epoch: num(i, "epoch")?,
                    fenced: flag(i, "fenced"),
                },
                heartbeat_count(i)?,
            )),
            None => None,
        };
        match decide_fence(target, observed, stored) {
            FenceDecision::AlreadyGone => Ok(()),
            FenceDecision::Alive(now) => Err(fence_refused(target, observed, now)),
            // The condition failed, yet the item now allows the fence: it
            // changed in between. Report it alive; the caller looks again.
            FenceDecision::Fence => Err(fence_refused(target, observed, observed)),
        }
    }

    async fn create_topic(&self, topic: &TopicMeta) -> Result<()> {
        self.request();
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(topic_item(topic)?))
            .condition_expression("attribute_not_exists(pk)")
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match r {
            Ok(out) => {
                self.account(out.consumed_capacity(), true);
                Ok(())
            }
            Err(e) if is_condition_failed(&e) => {
                Err(Error::AlreadyExists(format!("topic {}", topic.name)))
            }
            Err(e) => Err(classify(&self.what("PutItem (create topic)"), e)),
        }
    }

    async fn update_topic(&self, topic: &TopicMeta) -> Result<()> {
        if topic.version == 0 {
            let stored = self.get_topic(&topic.name).await?;
            check_topic_update(stored.as_ref(), topic)?;
        }
        self.request();
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(topic_item(topic)?))
            .condition_expression("#i = :id AND #v = :prev")
            .expression_attribute_names("#i", "id")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":id", s(topic.id.to_string()))
            .expression_attribute_values(":prev", n(topic.version.saturating_sub(1)))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match r {
            Ok(out) => {
                self.account(out.consumed_capacity(), true);
                Ok(())
            }
            Err(e) if is_condition_failed(&e) => {
                let stored = self.get_topic(&topic.name).await?;
                check_topic_update(stored.as_ref(), topic)?;
                // The stored version moved between the write and the read.
                Err(Error::Precondition(format!(
                    "topic {} changed concurrently",
                    topic.name
                )))
            }
            Err(e) => Err(classify(&self.what("PutItem (update topic)"), e)),
        }
    }

    async fn delete_topic(&self, name: &str, id: TopicId, deleted_ms: i64) -> Result<()> {
        let not_found = || Error::NotFound(format!("topic {name} ({id})"));
        // A topic changed between the read and the write (a config change,
        // added partitions) is read again: a few times, then `Unavailable`.
        for _ in 0..3 {
            let Some(stored) = self.get_topic(name).await? else {
                return Err(not_found());
            };
            if stored.id != id {
                return Err(not_found());
            }
            let deleted = DeletedTopic {
                name: name.to_string(),
                id,
                partitions: stored.partitions,
                deleted_ms,
            };
            // The topic goes only if it is still the one read (same id and
            // version: a partition added since would be missed by the
            // tombstone).
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key("topics", name)))
                .condition_expression("#i = :id AND #v = :v")
                .expression_attribute_names("#i", "id")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":id", s(id.to_string()))
                .expression_attribute_values(":v", n(stored.version))
                .build()
                .map_err(build_err)?;
            let mut tomb = key(DELETED_TOPICS_PK, id.to_string());
            tomb.insert("t".into(), b(json(&deleted)?));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(tomb))
                .build()
                .map_err(build_err)?;
            let items = vec![
                TransactWriteItem::builder().delete(delete).build(),
                TransactWriteItem::builder().put(put).build(),
            ];
            // A fresh token: the SDK's own retry of a transaction that landed
            // but whose answer was lost then succeeds instead of failing the
            // condition it already met.
            let token = Some(uuid::Uuid::new_v4().simple().to_string());
            match self.transact(items, token).await? {
                Ok(()) => return Ok(()),
                // Item 0 (the Delete) failed its condition, or an emulator
                // gave no reason: deleted or changed since the read.
                Err(TxFailure::Fenced(_) | TxFailure::Unknown) => continue,
                Err(TxFailure::Condition(..) | TxFailure::TokenMismatch) => {
                    return Err(Error::Internal(format!(
                        "delete topic {name}: the transaction failed a condition it does not set"
                    )));
                }
            }
        }
        match self.get_topic(name).await? {
            Some(t) if t.id == id => Err(Error::Unavailable(format!(
                "topic {name} kept changing while being deleted; retry"
            ))),
            _ => Err(not_found()),
        }
    }

    async fn deleted_topics(&self) -> Result<Vec<DeletedTopic>> {
        let mut out = self
            .query(DELETED_TOPICS_PK, None, false)
            .await?
            .iter()
            .map(|item| blob::<DeletedTopic>(item, "t"))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|d| d.deleted_ms);
        Ok(out)
    }

    async fn forget_topic(&self, topic: &DeletedTopic) -> Result<()> {
        for partition in 0..topic.partitions {
            let pk = part_pk(PartitionId {
                topic: topic.id,
                partition,
            });
            let mut requests = Vec::new();
            for item in self.query(&pk, None, true).await? {
                let del = DeleteRequest::builder()
                    .set_key(Some(key(pk.clone(), string(&item, "sk")?)))
                    .build()
                    .map_err(build_err)?;
                requests.push(WriteRequest::builder().delete_request(del).build());
            }
            self.batch_write(requests).await?;
        }
        self.request();
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(DELETED_TOPICS_PK, topic.id.to_string())))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| classify(&self.what("DeleteItem (deleted topic)"), e))?;
        self.account(r.consumed_capacity(), true);
        Ok(())
    }

    async fn get_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        self.get_item("topics".into(), name.into())
            .await?
            .map(|item| blob(&item, "t"))
            .transpose()
    }

    async fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        self.query("topics", None, false)
            .await?
            .iter()
            .map(|item| blob(item, "t"))
            .collect()
    }

    /// One TransactWriteItems (epoch ConditionCheck + conditional Put) with a
    /// ClientRequestToken derived from (stream, seq). Within DynamoDB's 10-minute
    /// idempotency window an identical retry returns success without re-checking
    /// the epoch: the record landed while the epoch was current, so `Ok` is the
    /// true outcome (emulators that ignore the token answer `Fenced` instead).
    async fn commit_flush(&self, record: &FlushRecord) -> Result<()> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(flush_item(record, self.expiry())?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        let items = vec![
            self.epoch_check(&record.stream)?,
            TransactWriteItem::builder().put(put).build(),
        ];
        let mut token = Some(commit_token(&record.stream, record.seq));
        for _ in 0..2 {
            let failure = match self.transact(items.clone(), token.clone()).await? {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            let outcome = match failure {
                TxFailure::Fenced(item) => {
                    let item = match item {
                        Some(i) => Some(i),
                        None => {
                            self.get_item(gw_pk(&record.stream.gateway), "epoch".into())
                                .await?
                        }
                    };
                    return Err(self.fenced(&record.stream, item.as_ref()));
                }
                TxFailure::Condition(..) => self.resolve_existing(record).await?,
                TxFailure::Unknown => {
                    self.check_fence(&record.stream).await?;
                    self.resolve_existing(record).await?
                }
                TxFailure::TokenMismatch => {
                    // Another record used this (stream, seq) token. If it landed,
                    // it decides; if not, retry once with a fresh token.
                    match self.resolve_existing(record).await? {
                        CommitOutcome::Absent => {
                            token = None;
                            continue;
                        }
                        decided => decided,
                    }
                }
            };
            return match outcome {
                CommitOutcome::Landed => Ok(()),
                CommitOutcome::Conflict => Err(commit_conflict(record)),
                // Cancelled, yet nothing is stored: trimmed between the write
                // and the read, or an emulator that gives no reason. Retriable.
                CommitOutcome::Absent => Err(Error::Unavailable(format!(
                    "flush {} #{}: transaction cancelled but no record is stored",
                    record.stream, record.seq
                ))),
            };
        }
        Err(Error::Unavailable(format!(
            "flush {} #{}: idempotency token conflict did not resolve",
            record.stream, record.seq
        )))
    }

    async fn read_flushes(&self, stream: &StreamId, after_seq: u64) -> Result<Vec<FlushRecord>> {
        let after = after_seq.max(self.trimmed(stream).await?);
        if after == u64::MAX {
            return Ok(Vec::new());
        }
        self.query(
            &flush_pk(stream),
            Some(("sk > :v", s(seq_sk(after)))),
            false,
        )
        .await?
        .iter()
        .map(decode_flush)
        .collect()
    }

    async fn trim_flushes(&self, stream: &StreamId, through_seq: u64) -> Result<()> {
        // The mark only rises. A fully trimmed stream's registry item expires
        // with its last flush items.
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(STREAMS_PK, stream_sk(stream))))
            .condition_expression("attribute_not_exists(#t) OR #t < :t")
            .expression_attribute_names("#t", "trimmed")
            .expression_attribute_values(":t", n(through_seq))
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        req = if through_seq == u64::MAX {
            req.update_expression("SET #t = :t, #x = :x")
                .expression_attribute_names("#x", TTL_ATTRIBUTE)
                .expression_attribute_values(":x", n(self.expiry()))
        } else {
            req.update_expression("SET #t = :t")
        };
        self.request();
        match req.send().await {
            Ok(out) => {
                self.account(out.consumed_capacity(), true);
                Ok(())
            }
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(classify(&self.what("UpdateItem (trim mark)"), e)),
        }
    }

    async fn flush_streams(&self) -> Result<Vec<StreamId>> {
        let mut streams = Vec::new();
        for item in self.query(STREAMS_PK, None, false).await? {
            let sk = string(&item, "sk")?;
            let stream = parse_stream_sk(sk)
                .ok_or_else(|| Error::Corrupt(format!("stream registry key {sk:?}")))?;
            let trimmed = trim_mark(&item)?;
            if trimmed < u64::MAX && self.any_flush_after(&stream, trimmed).await? {
                streams.push(stream);
            }
        }
        streams.sort();
        Ok(streams)
    }

    async fn write_checkpoints(
        &self,
        fence: &StreamId,
        checkpoints: &[PartitionCheckpoint],
    ) -> Result<()> {
        self.store_checkpoints(fence, checkpoints, false).await
    }

    async fn claim_partition(
        &self,
        me: &StreamId,
        previous: Option<&StreamId>,
        checkpoint: &PartitionCheckpoint,
    ) -> Result<()> {
        let p = checkpoint.partition;
        let item = state_item(me, checkpoint, false)?;
        // Expecting no owner, the Put's condition alone checks it: no read.
        let read = match previous {
            None => None,
            Some(_) => self.get_item(part_pk(p), "state".into()).await?,
        };
        let tagged = read.as_ref().is_some_and(|i| i.contains_key("own"));
        let stored = read.as_ref().map(stored_owner).transpose()?;
        let basis = match claim_basis(me, p, previous, stored.as_ref()) {
            Ok(b) => b,
            Err(e) => {
                self.check_fence(me).await?;
                return Err(e);
            }
        };
        let mut items = vec![self.epoch_check(me)?];
        match basis {
            ClaimBasis::Unclaimed => {
                items.push(self.state_put(item, "attribute_not_exists(pk)", Vec::new())?)
            }
            ClaimBasis::Released(owner) => items.push(self.state_put(
                item,
                "#o = :p AND #r = :true",
                vec![
                    (":p", s(owner.to_string())),
                    (":true", AttributeValue::Bool(true)),
                ],
            )?),
            ClaimBasis::OwnerGone {
                owner,
                superseded_by_me,
            } => {
                items.push(if tagged {
                    self.state_put(item, "#o = :p", vec![(":p", s(owner.to_string()))])?
                } else {
                    self.state_put(item, "attribute_not_exists(#o)", Vec::new())?
                });
                // DynamoDB allows one check per item: on my own gateway's
                // item my epoch check already decides.
                if !superseded_by_me {
                    let cc = ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(gw_pk(&owner.gateway), "epoch")))
                        .condition_expression("attribute_not_exists(#e) OR #e <> :pe OR #f = :true")
                        .expression_attribute_names("#e", "epoch")
                        .expression_attribute_names("#f", "fenced")
                        .expression_attribute_values(":pe", n(owner.epoch))
                        .expression_attribute_values(":true", AttributeValue::Bool(true))
                        .build()
                        .map_err(build_err)?;
                    items.push(TransactWriteItem::builder().condition_check(cc).build());
                }
            }
        }

        let entries = checkpoint
            .new_entries
            .iter()
            .map(|e| ((p, e.base_offset), e))
            .collect();
        self.write_index(&entries).await?;
        match self.transact(items, None).await? {
            Ok(()) => Ok(()),
            Err(TxFailure::Fenced(item)) => Err(self.fenced(me, item.as_ref())),
            // The state item changed since it was read.
            Err(TxFailure::Condition(1, item)) => {
                let stored = self.partition_owner(p, item).await?;
                Err(claim_conflict(me, p, previous, stored.as_ref()))
            }
            // The previous owner's epoch is current and not fenced.
            Err(TxFailure::Condition(..)) => {
                let stored = previous.map(|prev| StoredOwner {
                    owner: prev.clone(),
                    released: false,
                });
                Err(claim_conflict(me, p, previous, stored.as_ref()))
            }
            Err(TxFailure::Unknown) => {
                self.check_fence(me).await?;
                let stored = self.partition_owner(p, None).await?;
                Err(claim_conflict(me, p, previous, stored.as_ref()))
            }
            Err(TxFailure::TokenMismatch) => Err(Error::Internal(format!(
                "claim of {p} by {me}: idempotency token mismatch without a token"
            ))),
        }
    }

    async fn release_partitions(
        &self,
        me: &StreamId,
        checkpoints: &[PartitionCheckpoint],
    ) -> Result<()> {
        self.store_checkpoints(me, checkpoints, true).await
    }

    async fn load_partition_from(
        &self,
        partition: PartitionId,
        from_offset: i64,
    ) -> Result<Option<PartitionSnapshot>> {
        // `idx#<offset>` sorts before `state`: one Query returns both.
        let from = s(idx_sk(from_offset.max(0))?);
        let items = self
            .query(&part_pk(partition), Some(("sk >= :v", from)), false)
            .await?;
        let Some(state_item) = items
            .iter()
            .find(|i| matches!(i.get("sk"), Some(AttributeValue::S(sk)) if sk == "state"))
        else {
            return Ok(None);
        };
        let state: StoredState = blob(state_item, "s")?;
        let released = stored_owner(state_item)?.released;
        let mut entries = Vec::new();
        for item in &items {
            let sk = string(item, "sk")?;
            if sk.starts_with("idx#") {
                let e: IndexEntry = blob(item, "e")?;
                // Entries past the checkpoint an owner wrote come from a
                // checkpoint that did not land; the records hold them. A
                // pass stores entries past it (merged from the records).
                if e.base_offset < state.next_offset || sk.ends_with("#c") {
                    entries.push(e);
                }
            }
        }
        Ok(Some(PartitionSnapshot {
            owner: state.owner,
            released,
            checkpoint_seq: state.checkpoint_seq,
            next_offset: state.next_offset,
            log_start_offset: state.log_start_offset,
            producers: state.producers,
            entries,
        }))
    }

    async fn index_version(&self, partition: PartitionId) -> Result<u64> {
        match self
            .get_item(part_pk(partition), INDEX_VERSION_SK.to_string())
            .await?
        {
            Some(item) => num(&item, "v"),
            None => Ok(0),
        }
    }

    async fn swap_index(
        &self,
        partition: PartitionId,
        version: u64,
        merged: &[IndexEntry],
    ) -> Result<()> {
        let pk = part_pk(partition);
        // Item 0: the version, which `transact` reads as its "epoch" check.
        let mut bump = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk.clone(), INDEX_VERSION_SK)))
            .update_expression("SET #v = :next")
            .expression_attribute_names("#v", "v")
            .expression_attribute_values(":next", n(version + 1));
        bump = if version == 0 {
            bump.condition_expression("attribute_not_exists(#v)")
        } else {
            bump.condition_expression("#v = :v")
                .expression_attribute_values(":v", n(version))
        };
        let mut items = vec![
            TransactWriteItem::builder()
                .update(bump.build().map_err(build_err)?)
                .build(),
            TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(pk.clone(), "state")))
                        .condition_expression("attribute_exists(pk)")
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
        ];
        for e in merged {
            let mut item = key(pk.clone(), entry_sk(e)?);
            item.insert("e".into(), b(json(e)?));
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(item))
                            .build()
                            .map_err(build_err)?,
                    )
                    .build(),
            );
        }
        match self.transact(items, None).await? {
            Ok(()) => Ok(()),
            Err(TxFailure::Fenced(_)) => {
                let stored = self.index_version(partition).await?;
                Err(stale_index(partition, stored, version))
            }
            Err(TxFailure::Condition(..)) => Err(Error::NotFound(format!("partition {partition}"))),
            Err(TxFailure::Unknown) => {
                let stored = self.index_version(partition).await?;
                if stored == version {
                    Err(Error::NotFound(format!("partition {partition}")))
                } else {
                    Err(stale_index(partition, stored, version))
                }
            }
            Err(TxFailure::TokenMismatch) => Err(Error::Internal(format!(
                "index swap of {partition}: idempotency token mismatch without a token"
            ))),
        }
    }

    async fn delete_index(&self, partition: PartitionId, entries: &[IndexEntry]) -> Result<()> {
        let pk = part_pk(partition);
        let mut requests = Vec::new();
        for e in entries {
            if crate::keys::is_compacted(&e.object_key) {
                // A later compaction may have stored another region at this
                // base: delete only the entry read.
                self.request();
                let r = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key(pk.clone(), entry_sk(e)?)))
                    .condition_expression("#e = :e")
                    .expression_attribute_names("#e", "e")
                    .expression_attribute_values(":e", b(json(e)?))
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await;
                match r {
                    Ok(out) => self.account(out.consumed_capacity(), true),
                    Err(err) if is_condition_failed(&err) => {}
                    Err(err) => return Err(classify(&self.what("DeleteItem (index)"), err)),
                }
            } else {
                // An owner stores one entry per base, the same every time.
                let del = DeleteRequest::builder()
                    .set_key(Some(key(pk.clone(), entry_sk(e)?)))
                    .build()
                    .map_err(build_err)?;
                requests.push(WriteRequest::builder().delete_request(del).build());
            }
        }
        self.batch_write(requests).await
    }

    async fn allocate_producer_ids(&self, count: u64) -> Result<i64> {
        self.request();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key("counter", "producer_id")))
            .update_expression("ADD #v :c")
            .expression_attribute_names("#v", "v")
            .expression_attribute_values(":c", n(count))
            .return_values(ReturnValue::UpdatedNew)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| classify(&self.what("UpdateItem (producer ids)"), e))?;
        self.account(out.consumed_capacity(), true);
        let attrs = out.attributes.unwrap_or_default();
        let new: i64 = num(&attrs, "v")?;
        Ok(new - count as i64)
    }

    async fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &BTreeMap<i32, CommittedOffset>,
    ) -> Result<()> {
        let offsets: Vec<_> = offsets.iter().collect();
        for chunk in offsets.chunks(OFFSETS_PER_UPDATE) {
            let mut sets = Vec::with_capacity(chunk.len());
            let mut req = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(group_pk(group), topic)))
                .return_consumed_capacity(ReturnConsumedCapacity::Total);
            for (i, (p, o)) in chunk.iter().enumerate() {
                sets.push(format!("#a{i} = :v{i}"));
                req = req
                    .expression_attribute_names(format!("#a{i}"), offset_attr(**p))
                    .expression_attribute_values(format!(":v{i}"), b(json(o)?));
            }
            self.request();
            let out = req
                .update_expression(format!("SET {}", sets.join(", ")))
                .send()
                .await
                .map_err(|e| classify(&self.what("UpdateItem (commit offsets)"), e))?;
            self.account(out.consumed_capacity(), true);
        }
        Ok(())
    }

    async fn fetch_offsets(&self, group: &str) -> Result<GroupOffsets> {
        let mut out = GroupOffsets::new();
        for item in self.query(&group_pk(group), None, false).await? {
            let topic = string(&item, "sk")?.to_string();
            let mut partitions = BTreeMap::new();
            for (attr, v) in &item {
                let Some(p) = attr.strip_prefix('p').and_then(|p| p.parse::<i32>().ok()) else {
                    continue;
                };
                let AttributeValue::B(body) = v else {
                    return Err(Error::Corrupt(format!("offset {attr} of {group}/{topic}")));
                };
                let o: CommittedOffset = serde_json::from_slice(body.as_ref()).map_err(|e| {
                    Error::Corrupt(format!("offset {attr} of {group}/{topic}: {e}"))
                })?;
                partitions.insert(p, o);
            }
            if !partitions.is_empty() {
                out.insert(topic, partitions);
            }
        }
        Ok(out)
    }

    async fn delete_offsets(&self, group: &str, topic: &str, partitions: &[i32]) -> Result<()> {
        for chunk in partitions.chunks(OFFSETS_PER_UPDATE) {
            let mut req = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(group_pk(group), topic)))
                .return_consumed_capacity(ReturnConsumedCapacity::Total);
            let mut removes = Vec::with_capacity(chunk.len());
            for (i, p) in chunk.iter().enumerate() {
                removes.push(format!("#a{i}"));
                req = req.expression_attribute_names(format!("#a{i}"), offset_attr(*p));
            }
            self.request();
            let out = req
                .update_expression(format!("REMOVE {}", removes.join(", ")))
                .send()
                .await
                .map_err(|e| classify(&self.what("UpdateItem (delete offsets)"), e))?;
            self.account(out.consumed_capacity(), true);
        }
        Ok(())
    }

    async fn store_group(&self, group: &str, state: &StoredGroup) -> Result<()> {
        if group.is_empty() {
            return Err(Error::InvalidInput("group id is empty".into()));
        }
        let body = serde_json::to_string(state)
            .map_err(|e| Error::Internal(format!("encode group {group}: {e}")))?;
        let mut item = key(GROUPS_PK, group);
        item.insert("gen".into(), n(state.generation));
        item.insert("state".into(), s(body));
        self.request();
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #g <= :g")
            .expression_attribute_names("#g", "gen")
            .expression_attribute_values(":g", n(state.generation))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match r {
            Ok(out) => {
                self.account(out.consumed_capacity(), true);
                Ok(())
            }
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => {
                    // The stored item comes back with the failure; an emulator
                    // that omits it still gets a `Precondition`.
                    let stored = c.item().and_then(|i| num::<i32>(i, "gen").ok());
                    Err(match stored {
                        Some(g) => stale_group(group, g, state.generation),
                        None => Error::Precondition(format!(
                            "group {group} is stored at a generation above {}",
                            state.generation
                        )),
                    })
                }
                _ => Err(classify(&self.what("PutItem (store group)"), e)),
            },
        }
    }

    async fn load_group(&self, group: &str) -> Result<Option<StoredGroup>> {
        if group.is_empty() {
            return Ok(None); // `store_group` refuses an empty id
        }
        self.get_item(GROUPS_PK.into(), group.into())
            .await?
            .map(|item| group_state(group, &item))
            .transpose()
    }

    async fn list_groups(&self) -> Result<Vec<(String, StoredGroup)>> {
        self.query(GROUPS_PK, None, false)
            .await?
            .iter()
            .map(|item| {
                let group = string(item, "sk")?;
                Ok((group.to_string(), group_state(group, item)?))
            })
            .collect()
    }

    /// Deletes the offset items first and the state item last: a failure in
    /// between leaves the group listed, so a retry (by anyone) completes it.
    async fn delete_group(&self, group: &str) -> Result<()> {
        let mut requests = Vec::new();
        for item in self.query(&group_pk(group), None, true).await? {
            let del = DeleteRequest::builder()
                .set_key(Some(key(group_pk(group), string(&item, "sk")?)))
                .build()
                .map_err(build_err)?;
            requests.push(WriteRequest::builder().delete_request(del).build());
        }
        self.batch_write(requests).await?;
        if group.is_empty() {
            return Ok(()); // no state item can exist
        }
        self.request();
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(GROUPS_PK, group)))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| classify(&self.what("DeleteItem (delete group)"), e))?;
        self.account(out.consumed_capacity(), true);
        Ok(())
    }
}

/// Partitions per offset-commit UpdateItem (a commit of more partitions of one
/// topic takes one write per this many). DynamoDB's 4 KB expression limit
/// allows about 200; moto's expression parser recurses per clause and fails
/// somewhat above 100.
const OFFSETS_PER_UPDATE: usize = 100;
