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
//! | `flush#<gateway>#<epoch, 20 digits>` | `<seq, 20 digits>` | `r` B (compact flush record, see `CompactFlush`), `expires_at` N | `commit_flush` |
//! | `part#<topic id>#<partition>` | `state` | `s` B (owner, checkpoint seq, next offset, log start, producer states; JSON), `own` S (owning stream, `<gateway>@<epoch>`), `rel` BOOL (released) | `write_checkpoints`, `release_partitions`, `claim_partition`, each conditional on `own` (and `rel`) |
//! | `part#<topic id>#<partition>` | `idx#<base offset, 20 digits>` | `e` B (IndexEntry JSON) | `write_checkpoints`, `release_partitions`, `claim_partition` |
//! | `counter` | `producer_id` | `v` N | `allocate_producer_ids` (UpdateItem ADD) |
//! | `group#<group>` | `<topic>` | `p<partition>` B (CommittedOffset JSON), one attribute per partition | `commit_offsets` (ONE UpdateItem SET per group, topic and up to 100 partitions, merging with the stored partitions), `delete_offsets` (UpdateItem REMOVE), `delete_group` (BatchWriteItem delete) |
//! | `groups` | `<group>` | `gen` N (generation), `state` S (StoredGroup JSON) | `store_group` (PutItem conditional on `gen` not above the new one), `delete_group` (DeleteItem, after the group's offset items); one partition key so `list_groups` is one Query |
//!
//! Zero-padded numbers make `sk` order numeric order. The gateway name is parsed
//! from the right of a flush `pk`, so it may itself contain `#`.
//!
//! Sizes and cost (DynamoDB bills each started KiB written, twice inside a
//! transaction; strongly consistent reads per started 4 KiB):
//! - a flush item is ~150 bytes (keys, object key) plus ~50 bytes per partition
//!   and ~60 per idempotent batch: one partition ≈ 0.2 KiB, 100 partitions ≈ 5
//!   KiB. `commit_flush` is ONE TransactWriteItems (ConditionCheck on the epoch
//!   item + Put of the flush item): 2 × (1 + ⌈flush item KiB⌉) WRU, so 4 WRU for a
//!   small flush, 12 for 100 partitions. The 400 KB item limit allows ~7,000
//!   partitions per flush.
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
//! `load_partition` returns only index entries with `base_offset <
//! next_offset`, so entries written by a failed, fenced or non-owner checkpoint
//! (or claim) beyond the state are invisible (replaying the flush records
//! recreates them identically, overwriting them). Caveat for the compactor: a
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

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, ConsumedCapacity,
    DeleteRequest, KeySchemaElement, KeyType, Put, PutRequest, ReturnConsumedCapacity, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus, TransactWriteItem, WriteRequest,
};
use serde::{Deserialize, Serialize};

use super::{
    MetaStore, check_topic_update, claim_conflict, fenced_by_peer, not_owner, stale_group,
};
use crate::aws::{AwsStats, backoff, classify, code};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::types::{
    CommittedOffset, FlushPartition, FlushRecord, GatewayInfo, GroupOffsets, IndexEntry, Member,
    PartitionCheckpoint, PartitionId, PartitionSnapshot, ProducerBatch, ProducerState, StoredGroup,
    StreamId, TopicId, TopicMeta,
};

type Item = HashMap<String, AttributeValue>;

/// The TTL attribute of the table.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// Puts per TransactWriteItems besides the epoch ConditionCheck (limit 100).
const TX_CHUNK: usize = 99;
/// Requests per BatchWriteItem (DynamoDB's limit).
const BATCH: usize = 25;
/// Attempts for conflicts and unprocessed items before giving up `Unavailable`.
const ATTEMPTS: u32 = 8;

#[derive(Debug, Clone)]
pub struct DynamoMetaStore {
    client: Client,
    table: String,
    stats: Arc<AwsStats>,
    flush_ttl: std::time::Duration,
}

/// How long flush items live by default (see the module docs).
pub const DEFAULT_FLUSH_RECORD_TTL: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

/// The partition key of the stream registry.
const STREAMS_PK: &str = "streams";
/// The partition key of the gateway list.
const MEMBERS_PK: &str = "members";
/// The partition key of the stored group states.
const GROUPS_PK: &str = "groups";

/// The `state` item's payload.
#[derive(Debug, Serialize, Deserialize)]
struct StoredState {
    owner: StreamId,
    checkpoint_seq: u64,
    next_offset: i64,
    log_start_offset: i64,
    producers: BTreeMap<i64, ProducerState>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn b(v: Vec<u8>) -> AttributeValue {
    AttributeValue::B(Blob::new(v))
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("encode metadata: {e}")))
}

fn blob<T: serde::de::DeserializeOwned>(item: &Item, attr: &str) -> Result<T> {
    match item.get(attr) {
        Some(AttributeValue::B(v)) => serde_json::from_slice(v.as_ref())
            .map_err(|e| Error::Corrupt(format!("dynamodb attribute {attr}: {e}"))),
        _ => Err(Error::Corrupt(format!(
            "dynamodb item {:?} has no binary attribute {attr}",
            item.get("pk")
        ))),
    }
}

fn num<T: std::str::FromStr>(item: &Item, attr: &str) -> Result<T> {
    match item.get(attr) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| Error::Corrupt(format!("dynamodb attribute {attr}={v} is not valid"))),
        _ => Err(Error::Corrupt(format!(
            "dynamodb item has no number attribute {attr}"
        ))),
    }
}

fn string<'a>(item: &'a Item, attr: &str) -> Result<&'a str> {
    match item.get(attr) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(Error::Corrupt(format!(
            "dynamodb item has no string attribute {attr}"
        ))),
    }
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::Internal(format!("dynamodb request: {e}"))
}

fn gw_pk(gateway: &str) -> String {
    format!("gw#{gateway}")
}

fn flush_pk(stream: &StreamId) -> String {
    format!("flush#{}#{:020}", stream.gateway, stream.epoch)
}

fn seq_sk(seq: u64) -> String {
    format!("{seq:020}")
}

fn stream_sk(stream: &StreamId) -> String {
    format!("{}#{:020}", stream.gateway, stream.epoch)
}

/// Parses `<gateway>#<epoch>` (the gateway may contain `#`).
fn parse_stream_sk(sk: &str) -> Option<StreamId> {
    let (gateway, epoch) = sk.rsplit_once('#')?;
    Some(StreamId {
        gateway: gateway.to_string(),
        epoch: epoch.parse().ok()?,
    })
}

fn unix_secs() -> u64 {
    (SystemClock.now_ms() / 1000).max(0) as u64
}

/// A registry item's trim mark (0 if it has none yet).
fn trim_mark(item: &Item) -> Result<u64> {
    if item.contains_key("trimmed") {
        num(item, "trimmed")
    } else {
        Ok(0)
    }
}

fn part_pk(p: PartitionId) -> String {
    format!("part#{}#{}", p.topic, p.partition)
}

/// Whether a boolean attribute is present and true.
fn flag(item: &Item, attr: &str) -> bool {
    matches!(item.get(attr), Some(AttributeValue::Bool(true)))
}

/// The state item `owner` writes for `cp`.
fn state_item(owner: &StreamId, cp: &PartitionCheckpoint, released: bool) -> Result<Item> {
    let state = StoredState {
        owner: owner.clone(),
        checkpoint_seq: cp.checkpoint_seq,
        next_offset: cp.next_offset,
        log_start_offset: cp.log_start_offset,
        producers: cp.producers.clone(),
    };
    let mut item = key(part_pk(cp.partition), "state");
    item.insert("s".into(), b(json(&state)?));
    item.insert("own".into(), s(owner.to_string()));
    item.insert("rel".into(), AttributeValue::Bool(released));
    Ok(item)
}

/// A state item's owner and released flag. Items written before `own` existed
/// name the owner in `s` only, and are not released.
fn stored_owner(item: &Item) -> Result<(StreamId, bool)> {
    if !item.contains_key("own") {
        let state: StoredState = blob(item, "s")?;
        return Ok((state.owner, false));
    }
    let own = string(item, "own")?;
    let owner = own
        .rsplit_once('@')
        .and_then(|(gateway, epoch)| {
            Some(StreamId {
                gateway: gateway.to_string(),
                epoch: epoch.parse().ok()?,
            })
        })
        .ok_or_else(|| Error::Corrupt(format!("partition owner {own:?}")))?;
    Ok((owner, flag(item, "rel")))
}

fn idx_sk(base_offset: i64) -> Result<String> {
    if base_offset < 0 {
        return Err(Error::InvalidInput(format!(
            "index entry base offset {base_offset} is negative"
        )));
    }
    Ok(format!("idx#{base_offset:020}"))
}

/// Parses `flush#<gateway>#<epoch>` (the gateway may contain `#`).
fn parse_flush_pk(pk: &str) -> Option<StreamId> {
    parse_stream_sk(pk.strip_prefix("flush#")?)
}

/// The ClientRequestToken of a commit: a 128-bit FNV-1a hash of (stream, seq),
/// 33 characters. A retried commit reuses it, so DynamoDB applies it at most once
/// within its 10-minute idempotency window.
fn commit_token(stream: &StreamId, seq: u64) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    let prime: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut feed = |bytes: &[u8]| {
        for &x in bytes {
            h ^= x as u128;
            h = h.wrapping_mul(prime);
        }
    };
    feed(stream.gateway.as_bytes());
    feed(&[0]);
    feed(&stream.epoch.to_be_bytes());
    feed(&seq.to_be_bytes());
    format!("f{h:032x}")
}

/// DynamoDB's size of an item, in bytes: attribute names plus values (strings
/// and binaries by length, numbers about one byte per two digits).
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value(v)).sum::<usize>(),
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, v)| 1 + k.len() + value(v)).sum::<usize>()
            }
            AttributeValue::Ss(l) => l.iter().map(|s| s.len()).sum(),
            AttributeValue::Ns(l) => l.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
            AttributeValue::Bs(l) => l.iter().map(|b| b.as_ref().len()).sum(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// The `r` attribute of a flush item, format 1: JSON arrays without field names,
/// each topic id written once, stream and seq left to the key. About 50 bytes
/// per partition instead of ~190 for `FlushRecord`'s own JSON, so a 100-partition
/// flush bills 12 WRU instead of 40.
#[derive(Serialize, Deserialize)]
struct CompactFlush {
    v: u8,
    k: String,
    l: u64,
    c: i64,
    t: Vec<TopicId>,
    p: Vec<CompactPart>,
}

/// (topic index, partition, base offset, last - base, max timestamp, position,
/// length, producer batches).
#[derive(Serialize, Deserialize)]
struct CompactPart(u32, i32, i64, i64, i64, u64, u32, Vec<CompactProducer>);

/// (producer id, epoch, first seq, last seq, base offset, last offset, max timestamp).
#[derive(Serialize, Deserialize)]
struct CompactProducer(i64, i16, i32, i32, i64, i64, i64);

const FLUSH_FORMAT: u8 = 1;

fn encode_flush(r: &FlushRecord) -> Result<Vec<u8>> {
    let mut topics: Vec<TopicId> = Vec::new();
    let mut parts = Vec::with_capacity(r.partitions.len());
    for p in &r.partitions {
        let ti = match topics.iter().position(|t| *t == p.partition.topic) {
            Some(i) => i,
            None => {
                topics.push(p.partition.topic);
                topics.len() - 1
            }
        };
        parts.push(CompactPart(
            ti as u32,
            p.partition.partition,
            p.base_offset,
            p.last_offset.wrapping_sub(p.base_offset),
            p.max_timestamp,
            p.position,
            p.length,
            p.producers
                .iter()
                .map(|b| {
                    CompactProducer(
                        b.producer_id,
                        b.epoch,
                        b.first_seq,
                        b.last_seq,
                        b.base_offset,
                        b.last_offset,
                        b.max_timestamp,
                    )
                })
                .collect(),
        ));
    }
    json(&CompactFlush {
        v: FLUSH_FORMAT,
        k: r.object_key.clone(),
        l: r.object_len,
        c: r.created_ms,
        t: topics,
        p: parts,
    })
}

fn decode_flush(item: &Item) -> Result<FlushRecord> {
    let pk = string(item, "pk")?;
    let stream =
        parse_flush_pk(pk).ok_or_else(|| Error::Corrupt(format!("flush item key {pk:?}")))?;
    let seq: u64 = string(item, "sk")?
        .parse()
        .map_err(|_| Error::Corrupt(format!("flush item sort key in {pk}")))?;
    let c: CompactFlush = blob(item, "r")?;
    if c.v != FLUSH_FORMAT {
        return Err(Error::Corrupt(format!(
            "flush item {pk} #{seq} has format {}, this build reads {FLUSH_FORMAT}",
            c.v
        )));
    }
    let mut partitions = Vec::with_capacity(c.p.len());
    for CompactPart(ti, partition, base, span, max_ts, position, length, producers) in c.p {
        let topic = *c
            .t
            .get(ti as usize)
            .ok_or_else(|| Error::Corrupt(format!("flush item {pk} #{seq}: topic index {ti}")))?;
        partitions.push(FlushPartition {
            partition: PartitionId::new(topic, partition),
            base_offset: base,
            last_offset: base.wrapping_add(span),
            max_timestamp: max_ts,
            position,
            length,
            producers: producers
                .into_iter()
                .map(
                    |CompactProducer(pid, epoch, first, last, bo, lo, ts)| ProducerBatch {
                        producer_id: pid,
                        epoch,
                        first_seq: first,
                        last_seq: last,
                        base_offset: bo,
                        last_offset: lo,
                        max_timestamp: ts,
                    },
                )
                .collect(),
        });
    }
    Ok(FlushRecord {
        stream,
        seq,
        object_key: c.k,
        object_len: c.l,
        created_ms: c.c,
        partitions,
    })
}

/// The flush item `commit_flush` writes for `record`, expiring at `expires_at`
/// (epoch seconds).
fn flush_item(record: &FlushRecord, expires_at: u64) -> Result<Item> {
    let mut item = key(flush_pk(&record.stream), seq_sk(record.seq));
    item.insert("r".into(), b(encode_flush(record)?));
    item.insert(TTL_ATTRIBUTE.into(), n(expires_at));
    Ok(item)
}

/// Write units one `commit_flush` of `record` costs on DynamoDB: a transaction
/// bills 2 WRU per started KiB of each item, the ConditionCheck on the (< 1 KiB)
/// epoch item included. (Emulators do not report transactional capacity.)
pub fn commit_flush_write_units(record: &FlushRecord) -> Result<u64> {
    let flush_kib = item_size(&flush_item(record, unix_secs())?).div_ceil(1024) as u64;
    Ok(2 * (1 + flush_kib.max(1)))
}

impl DynamoMetaStore {
    pub fn new(client: Client, table: impl Into<String>, stats: Arc<AwsStats>) -> Self {
        DynamoMetaStore {
            client,
            table: table.into(),
            stats,
            flush_ttl: DEFAULT_FLUSH_RECORD_TTL,
        }
    }

    /// How long flush items live before DynamoDB's TTL deletes them.
    pub fn with_flush_record_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.flush_ttl = ttl;
        self
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

    /// Whether `stream` has a flush item above `seq` (one single-item Query).
    async fn any_flush_after(&self, stream: &StreamId, seq: u64) -> Result<bool> {
        self.request();
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk > :v")
            .expression_attribute_values(":pk", s(flush_pk(stream)))
            .expression_attribute_values(":v", s(seq_sk(seq)))
            .projection_expression("pk")
            .limit(1)
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| classify(&self.what("Query (flush items)"), e))?;
        self.account(out.consumed_capacity(), false);
        Ok(out.count > 0)
    }

    pub fn client(config: &aws_config::SdkConfig) -> Client {
        Client::new(config)
    }

    pub fn stats(&self) -> &Arc<AwsStats> {
        &self.stats
    }

    fn what(&self, op: &str) -> String {
        format!("dynamodb {op} on table {}", self.table)
    }

    fn request(&self) {
        AwsStats::inc(&self.stats.ddb_requests);
    }

    fn account(&self, cc: Option<&ConsumedCapacity>, write: bool) {
        let Some(cc) = cc else { return };
        let (r, w) = (cc.read_capacity_units(), cc.write_capacity_units());
        if r.is_some() || w.is_some() {
            AwsStats::add_units(&self.stats.ddb_read_units, r.unwrap_or(0.0));
            AwsStats::add_units(&self.stats.ddb_write_units, w.unwrap_or(0.0));
        } else if let Some(c) = cc.capacity_units() {
            let counter = if write {
                &self.stats.ddb_write_units
            } else {
                &self.stats.ddb_read_units
            };
            AwsStats::add_units(counter, c);
        }
    }

    async fn get_item(&self, pk: String, sk: String) -> Result<Option<Item>> {
        self.request();
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| classify(&self.what("GetItem"), e))?;
        self.account(out.consumed_capacity(), false);
        Ok(out.item)
    }

    /// All items of `pk` (with `sk` matching `sk_cond`, e.g. `sk > :v`), in `sk`
    /// order, strongly consistent, paginated.
    async fn query(
        &self,
        pk: &str,
        sk_cond: Option<(&str, AttributeValue)>,
        keys_only: bool,
    ) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        let expr = match &sk_cond {
            Some((c, _)) => format!("pk = :pk AND {c}"),
            None => "pk = :pk".to_string(),
        };
        loop {
            self.request();
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(&expr)
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .set_exclusive_start_key(start.take());
            if let Some((_, v)) = &sk_cond {
                req = req.expression_attribute_values(":v", v.clone());
            }
            if keys_only {
                req = req.projection_expression("pk, sk");
            }
            let page = req
                .send()
                .await
                .map_err(|e| classify(&self.what("Query"), e))?;
            self.account(page.consumed_capacity(), false);
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Writes `requests` with BatchWriteItem, 25 per call, retrying unprocessed
    /// items with bounded backoff.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<()> {
        for chunk in requests.chunks(BATCH) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt >= ATTEMPTS {
                    return Err(Error::Unavailable(format!(
                        "{}: {} items still unprocessed after {ATTEMPTS} attempts",
                        self.what("BatchWriteItem"),
                        pending.len()
                    )));
                }
                if attempt > 0 {
                    backoff(attempt).await;
                }
                attempt += 1;
                self.request();
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending.clone())
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| classify(&self.what("BatchWriteItem"), e))?;
                for cc in out.consumed_capacity() {
                    self.account(Some(cc), true);
                }
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
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
        match epoch_item {
            None => Error::Fenced(format!("{stream} is not registered")),
            Some(item) => match num::<u64>(item, "epoch").ok() {
                Some(e) if e == stream.epoch && flag(item, "fenced") => fenced_by_peer(stream),
                Some(e) => super::fenced(stream, Some(e)),
                None => Error::Fenced(format!("{stream} is not current")),
            },
        }
    }

    /// Checks `stream` is current with a strongly consistent read.
    async fn check_fence(&self, stream: &StreamId) -> Result<()> {
        let item = self
            .get_item(gw_pk(&stream.gateway), "epoch".to_string())
            .await?;
        let current = item.as_ref().is_some_and(|i| {
            num::<u64>(i, "epoch").ok() == Some(stream.epoch) && !flag(i, "fenced")
        });
        if current {
            Ok(())
        } else {
            Err(self.fenced(stream, item.as_ref()))
        }
    }

    /// After a conditional put of a flush record failed: the stored record decides.
    async fn resolve_existing(&self, r: &FlushRecord) -> Result<Option<()>> {
        match self.get_item(flush_pk(&r.stream), seq_sk(r.seq)).await? {
            None => Ok(None),
            Some(item) => {
                let stored = decode_flush(&item)?;
                if &stored == r {
                    Ok(Some(()))
                } else {
                    Err(Error::AlreadyExists(format!(
                        "flush {} #{} holds a different record",
                        r.stream, r.seq
                    )))
                }
            }
        }
    }

    /// Sends a conditional UpdateItem of a gateway's epoch item; `Ok(Err(old))`
    /// if the condition failed (`old`: the item then, if DynamoDB returned it).
    /// An update that meets a commit's transaction on the item is rejected
    /// `TransactionConflict`; it is retried here, within a budget.
    async fn update_epoch_item(
        &self,
        req: UpdateItemFluentBuilder,
        op: &str,
    ) -> Result<std::result::Result<Item, Option<Item>>> {
        let req = req
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            self.request();
            let e = match req.clone().send().await {
                Ok(out) => {
                    self.account(out.consumed_capacity(), true);
                    return Ok(Ok(out.attributes.unwrap_or_default()));
                }
                Err(e) => e,
            };
            match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                    return Ok(Err(c.item().cloned()));
                }
                Some(UpdateItemError::TransactionConflictException(_)) => {}
                _ => return Err(classify(&self.what(op), e)),
            }
        }
        Err(Error::Unavailable(format!(
            "{}: still conflicting with transactions after {ATTEMPTS} attempts",
            self.what(op)
        )))
    }

    /// Writes index items (idempotent overwrites, not fenced; see the module docs).
    async fn write_index(&self, entries: &BTreeMap<(PartitionId, i64), &IndexEntry>) -> Result<()> {
        let mut requests = Vec::with_capacity(entries.len());
        for ((p, base), e) in entries {
            let mut item = key(part_pk(*p), idx_sk(*base)?);
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
    ) -> Result<Option<(StreamId, bool)>> {
        let item = match item {
            Some(i) => Some(i),
            None => self.get_item(part_pk(p), "state".into()).await?,
        };
        item.as_ref().map(stored_owner).transpose()
    }

    /// The `Fenced` error for `me` writing `p` it does not own.
    async fn ownership_error(
        &self,
        me: &StreamId,
        p: PartitionId,
        item: Option<Item>,
    ) -> Result<Error> {
        Ok(match self.partition_owner(p, item).await? {
            Some((owner, _)) => not_owner(me, p, &owner),
            None => Error::Fenced(format!("{me} cannot release {p}: never claimed")),
        })
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
                    return Err(self.ownership_error(me, cp.partition, item).await?);
                }
                Err(TxFailure::Unknown) => {
                    self.check_fence(me).await?;
                    for cp in chunk {
                        match self.partition_owner(cp.partition, None).await? {
                            Some((owner, _)) if &owner == me => {}
                            None if !release => {}
                            _ => return Err(self.ownership_error(me, cp.partition, None).await?),
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

    /// Runs one TransactWriteItems whose item 0 is an epoch check.
    /// `Ok(Err(reasons))` hands other cancellations back to the caller; conflicts
    /// are retried here, within a budget.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        token: Option<String>,
    ) -> Result<std::result::Result<(), TxFailure>> {
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            self.request();
            let r = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .set_client_request_token(token.clone())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            let e = match r {
                Ok(out) => {
                    for cc in out.consumed_capacity() {
                        self.account(Some(cc), true);
                    }
                    return Ok(Ok(()));
                }
                Err(e) => e,
            };
            match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(tc)) => {
                    let reasons = tc.cancellation_reasons();
                    let code_of = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("");
                    if code_of(0) == "ConditionalCheckFailed" {
                        let item = reasons.first().and_then(|r| r.item()).cloned();
                        return Ok(Err(TxFailure::Fenced(item)));
                    }
                    if reasons.is_empty() {
                        return Ok(Err(TxFailure::Unknown));
                    }
                    if let Some(i) =
                        (1..reasons.len()).find(|&i| code_of(i) == "ConditionalCheckFailed")
                    {
                        let item = reasons.get(i).and_then(|r| r.item()).cloned();
                        return Ok(Err(TxFailure::Condition(i, item)));
                    }
                    let retriable = reasons.iter().any(|r| {
                        matches!(
                            r.code(),
                            Some(
                                "TransactionConflict"
                                    | "ThrottlingError"
                                    | "ProvisionedThroughputExceeded"
                            )
                        )
                    });
                    if !retriable {
                        return Err(Error::Internal(format!(
                            "{}: transaction cancelled: {:?}",
                            self.what("TransactWriteItems"),
                            reasons
                                .iter()
                                .map(|r| (r.code(), r.message()))
                                .collect::<Vec<_>>()
                        )));
                    }
                }
                Some(TransactWriteItemsError::IdempotentParameterMismatchException(_)) => {
                    return Ok(Err(TxFailure::TokenMismatch));
                }
                Some(TransactWriteItemsError::TransactionInProgressException(_)) => {}
                _ => return Err(classify(&self.what("TransactWriteItems"), e)),
            }
        }
        Err(Error::Unavailable(format!(
            "{}: still conflicting after {ATTEMPTS} attempts",
            self.what("TransactWriteItems")
        )))
    }
}

/// Why a transaction was cancelled, for the caller to resolve.
enum TxFailure {
    /// The epoch ConditionCheck failed; the epoch item as it was, if returned.
    Fenced(Option<Item>),
    /// The condition of item `i` (≥ 1) failed; the item as it was, if returned.
    Condition(usize, Option<Item>),
    /// The same ClientRequestToken was used with different parameters.
    TokenMismatch,
    /// Cancelled without reasons (an emulator may omit them).
    Unknown,
}

/// Creates the table (for `floe init`): `pk` S HASH, `sk` S RANGE, on-demand
/// billing, TTL on `expires_at`. Succeeds if it already exists; waits until it is
/// active (at most two minutes).
pub async fn create_table(client: &Client, table: &str) -> Result<()> {
    let what = |op: &str| format!("dynamodb {op} on table {table}");
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build_err)
    };
    let key_el = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(build_err)
    };
    let r = client
        .create_table()
        .table_name(table)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .key_schema(key_el("pk", KeyType::Hash)?)
        .key_schema(key_el("sk", KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match r {
        Ok(_) => {}
        Err(e) if code(&e) == Some("ResourceInUseException") => {}
        Err(e) => return Err(classify(&what("CreateTable"), e)),
    }
    let mut active = false;
    for _ in 0..120 {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| classify(&what("DescribeTable"), e))?;
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            active = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    if !active {
        return Err(Error::Unavailable(format!(
            "{}: not active after two minutes",
            what("CreateTable")
        )));
    }
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| classify(&what("DescribeTimeToLive"), e))?;
    let status = ttl
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status());
    if !matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .map_err(build_err)?,
            )
            .send()
            .await
            .map_err(|e| classify(&what("UpdateTimeToLive"), e))?;
    }
    Ok(())
}

fn topic_item(t: &TopicMeta) -> Result<Item> {
    let mut item = key("topics", t.name.clone());
    item.insert("id".into(), s(t.id.to_string()));
    item.insert("version".into(), n(t.version));
    item.insert("t".into(), b(json(t)?));
    Ok(item)
}

fn is_condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    e: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    code(e) == Some("ConditionalCheckFailedException")
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
        // Never registered: there is nothing to fence.
        let Some(item) = item else { return Ok(()) };
        if num::<u64>(&item, "epoch")? != target.epoch || flag(&item, "fenced") {
            return Ok(());
        }
        let hb: u64 = if item.contains_key("hb") {
            num(&item, "hb")?
        } else {
            0
        };
        Err(Error::Precondition(format!(
            "{target} heartbeat moved from {observed} to {hb}: it is alive"
        )))
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

    async fn delete_topic(&self, name: &str, id: TopicId) -> Result<()> {
        self.request();
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key("topics", name)))
            .condition_expression("#i = :id")
            .expression_attribute_names("#i", "id")
            .expression_attribute_values(":id", s(id.to_string()))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match r {
            Ok(out) => {
                self.account(out.consumed_capacity(), true);
                Ok(())
            }
            Err(e) if is_condition_failed(&e) => {
                Err(Error::NotFound(format!("topic {name} ({id})")))
            }
            Err(e) => Err(classify(&self.what("DeleteItem (delete topic)"), e)),
        }
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
            match failure {
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
                TxFailure::Condition(..) => {
                    return match self.resolve_existing(record).await? {
                        Some(()) => Ok(()),
                        // Trimmed between the write and the read.
                        None => Err(Error::Unavailable(format!(
                            "flush {} #{}: conditional put failed but no record is stored",
                            record.stream, record.seq
                        ))),
                    };
                }
                TxFailure::Unknown => {
                    self.check_fence(&record.stream).await?;
                    return match self.resolve_existing(record).await? {
                        Some(()) => Ok(()),
                        None => Err(Error::Unavailable(format!(
                            "flush {} #{}: transaction cancelled without a reason",
                            record.stream, record.seq
                        ))),
                    };
                }
                TxFailure::TokenMismatch => {
                    // Another record used this (stream, seq) token. If it landed,
                    // it decides; if not, retry once with a fresh token.
                    if let Some(()) = self.resolve_existing(record).await? {
                        return Ok(());
                    }
                    token = None;
                }
            }
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
        let mut items = vec![self.epoch_check(me)?];
        match previous {
            None => items.push(self.state_put(item, "attribute_not_exists(pk)", Vec::new())?),
            Some(prev) => {
                let stored = self.get_item(part_pk(p), "state".into()).await?;
                let tagged = stored.as_ref().is_some_and(|i| i.contains_key("own"));
                let owner = stored.as_ref().map(stored_owner).transpose()?;
                match &owner {
                    Some((o, true)) if o == prev && tagged => {
                        items.push(self.state_put(
                            item,
                            "#o = :p AND #r = :true",
                            vec![
                                (":p", s(prev.to_string())),
                                (":true", AttributeValue::Bool(true)),
                            ],
                        )?);
                    }
                    // Taking over from a live owner, even from itself, is refused.
                    Some((o, false)) if o == prev && prev != me => {
                        items.push(if tagged {
                            self.state_put(item, "#o = :p", vec![(":p", s(prev.to_string()))])?
                        } else {
                            self.state_put(item, "attribute_not_exists(#o)", Vec::new())?
                        });
                        // An older epoch of my own gateway is superseded (my epoch
                        // check proves it); DynamoDB allows one check per item.
                        if prev.gateway != me.gateway {
                            let cc = ConditionCheck::builder()
                                .table_name(&self.table)
                                .set_key(Some(key(gw_pk(&prev.gateway), "epoch")))
                                .condition_expression(
                                    "attribute_not_exists(#e) OR #e <> :pe OR #f = :true",
                                )
                                .expression_attribute_names("#e", "epoch")
                                .expression_attribute_names("#f", "fenced")
                                .expression_attribute_values(":pe", n(prev.epoch))
                                .expression_attribute_values(":true", AttributeValue::Bool(true))
                                .build()
                                .map_err(build_err)?;
                            items.push(TransactWriteItem::builder().condition_check(cc).build());
                        }
                    }
                    _ => {
                        self.check_fence(me).await?;
                        return Err(claim_conflict(me, p, previous, owner.as_ref()));
                    }
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
                let stored = previous.map(|prev| (prev.clone(), false));
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
        let (_, released) = stored_owner(state_item)?;
        let mut entries = Vec::new();
        for item in &items {
            if string(item, "sk")?.starts_with("idx#") {
                let e: IndexEntry = blob(item, "e")?;
                // Entries past the checkpoint come from a checkpoint that did not
                // land; replay recreates them.
                if e.base_offset < state.next_offset {
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

/// A `groups` item's stored state.
fn group_state(group: &str, item: &Item) -> Result<StoredGroup> {
    serde_json::from_str(string(item, "state")?)
        .map_err(|e| Error::Corrupt(format!("stored state of group {group}: {e}")))
}

/// Partitions per offset-commit UpdateItem (a commit of more partitions of one
/// topic takes one write per this many). DynamoDB's 4 KB expression limit
/// allows about 200; moto's expression parser recurses per clause and fails
/// somewhat above 100.
const OFFSETS_PER_UPDATE: usize = 100;

fn group_pk(group: &str) -> String {
    format!("group#{group}")
}

/// The attribute holding one partition's committed offset.
fn offset_attr(partition: i32) -> String {
    format!("p{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_tokens_are_short_stable_and_distinct() {
        let s1 = StreamId {
            gateway: "gw-1".into(),
            epoch: 3,
        };
        let t = commit_token(&s1, 7);
        assert_eq!(t.len(), 33);
        assert_eq!(t, commit_token(&s1, 7));
        assert_ne!(t, commit_token(&s1, 8));
        let s2 = StreamId {
            gateway: "gw-1".into(),
            epoch: 4,
        };
        assert_ne!(t, commit_token(&s2, 7));
    }

    #[test]
    fn compact_flush_round_trips() {
        let t1 = TopicId::from_u128(1);
        let t2 = TopicId::from_u128(2);
        let part = |topic, p, base: i64, producers: Vec<ProducerBatch>| FlushPartition {
            partition: PartitionId::new(topic, p),
            base_offset: base,
            last_offset: base + 41,
            max_timestamp: 1_700_000_000_000 + base,
            position: base as u64 * 3,
            length: 999,
            producers,
        };
        let batch = ProducerBatch {
            producer_id: 9,
            epoch: 3,
            first_seq: 100,
            last_seq: 141,
            base_offset: 5,
            last_offset: 46,
            max_timestamp: -1,
        };
        let r = FlushRecord {
            stream: StreamId {
                gateway: "gw#7".into(),
                epoch: 42,
            },
            seq: 17,
            object_key: "segments/aa/x.seg".into(),
            object_len: 123_456,
            created_ms: 1_700_000_000_001,
            partitions: vec![
                part(t1, 0, 5, vec![batch]),
                part(t2, 3, 0, Vec::new()),
                part(t1, 1, 7, Vec::new()),
            ],
        };
        let item = flush_item(&r, 1_800_000_000).expect("encode");
        assert_eq!(decode_flush(&item).expect("decode"), r);
        let full_json = serde_json::to_vec(&r).expect("json").len();
        assert!(item_size(&item) * 2 < full_json, "compact form is small");
    }

    #[test]
    fn flush_keys_round_trip() {
        let s = StreamId {
            gateway: "a#b".into(),
            epoch: 12,
        };
        assert_eq!(parse_flush_pk(&flush_pk(&s)), Some(s));
        assert!(seq_sk(9) < seq_sk(10));
        assert_eq!(seq_sk(u64::MAX).len(), 20);
    }
}
