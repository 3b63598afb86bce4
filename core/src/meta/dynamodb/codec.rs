//! How Floe's types are written as DynamoDB items: attribute values, the
//! partition state item, the compact flush record, topics and groups, item
//! sizes (what DynamoDB bills) and the commit's idempotency token.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::keys::{TTL_ATTRIBUTE, flush_pk, key, parse_flush_pk, part_pk, seq_sk};
use crate::aws::code;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::meta::rules::{EpochRecord, StoredOwner};
use crate::types::{
    FlushPartition, FlushRecord, PartitionCheckpoint, PartitionId, ProducerBatch, ProducerState,
    StoredGroup, StreamId, TopicId, TopicMeta,
};

pub(super) type Item = HashMap<String, AttributeValue>;

/// The `state` item's payload.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredState {
    pub(super) owner: StreamId,
    pub(super) checkpoint_seq: u64,
    pub(super) next_offset: i64,
    pub(super) log_start_offset: i64,
    pub(super) producers: BTreeMap<i64, ProducerState>,
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn b(v: Vec<u8>) -> AttributeValue {
    AttributeValue::B(Blob::new(v))
}

pub(super) fn json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("encode metadata: {e}")))
}

pub(super) fn blob<T: serde::de::DeserializeOwned>(item: &Item, attr: &str) -> Result<T> {
    match item.get(attr) {
        Some(AttributeValue::B(v)) => serde_json::from_slice(v.as_ref())
            .map_err(|e| Error::Corrupt(format!("dynamodb attribute {attr}: {e}"))),
        _ => Err(Error::Corrupt(format!(
            "dynamodb item {:?} has no binary attribute {attr}",
            item.get("pk")
        ))),
    }
}

pub(super) fn num<T: std::str::FromStr>(item: &Item, attr: &str) -> Result<T> {
    match item.get(attr) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| Error::Corrupt(format!("dynamodb attribute {attr}={v} is not valid"))),
        _ => Err(Error::Corrupt(format!(
            "dynamodb item has no number attribute {attr}"
        ))),
    }
}

pub(super) fn string<'a>(item: &'a Item, attr: &str) -> Result<&'a str> {
    match item.get(attr) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(Error::Corrupt(format!(
            "dynamodb item has no string attribute {attr}"
        ))),
    }
}

pub(super) fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::Internal(format!("dynamodb request: {e}"))
}

pub(super) fn unix_secs() -> u64 {
    (SystemClock.now_ms() / 1000).max(0) as u64
}

/// A registry item's trim mark (0 if it has none yet).
pub(super) fn trim_mark(item: &Item) -> Result<u64> {
    if item.contains_key("trimmed") {
        num(item, "trimmed")
    } else {
        Ok(0)
    }
}

/// Whether a boolean attribute is present and true.
pub(super) fn flag(item: &Item, attr: &str) -> bool {
    matches!(item.get(attr), Some(AttributeValue::Bool(true)))
}

/// A gateway's registration, from its epoch item (`None` if it has no epoch).
pub(super) fn epoch_record(item: &Item) -> Option<EpochRecord> {
    Some(EpochRecord {
        epoch: num(item, "epoch").ok()?,
        fenced: flag(item, "fenced"),
    })
}

/// An epoch item's heartbeat counter (0 before the first heartbeat).
pub(super) fn heartbeat_count(item: &Item) -> Result<u64> {
    if item.contains_key("hb") {
        num(item, "hb")
    } else {
        Ok(0)
    }
}

/// The state item `owner` writes for `cp`.
pub(super) fn state_item(
    owner: &StreamId,
    cp: &PartitionCheckpoint,
    released: bool,
) -> Result<Item> {
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
pub(super) fn stored_owner(item: &Item) -> Result<StoredOwner> {
    if !item.contains_key("own") {
        let state: StoredState = blob(item, "s")?;
        return Ok(StoredOwner {
            owner: state.owner,
            released: false,
        });
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
    Ok(StoredOwner {
        owner,
        released: flag(item, "rel"),
    })
}

/// The ClientRequestToken of a commit: a 128-bit FNV-1a hash of (stream, seq),
/// 33 characters. A retried commit reuses it, so DynamoDB applies it at most once
/// within its 10-minute idempotency window.
pub(super) fn commit_token(stream: &StreamId, seq: u64) -> String {
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

/// The `r` attribute of a flush item, format 1 (written until format 2):
/// JSON arrays without field names, each topic id written once, stream and
/// seq left to the key. About 50 bytes per partition. Still read.
#[derive(Serialize, Deserialize)]
pub(super) struct CompactFlush {
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
pub(super) struct CompactPart(u32, i32, i64, i64, i64, u64, u32, Vec<CompactProducer>);

/// (producer id, epoch, first seq, last seq, base offset, last offset, max timestamp).
#[derive(Serialize, Deserialize)]
pub(super) struct CompactProducer(i64, i16, i32, i32, i64, i64, i64);

/// Format 2 of the `r` attribute, written since: the byte 2, then this in
/// postcard (varint integers, zigzag for signed ones). Every number is stored
/// as the difference from one the reader already has (the flush's creation
/// time, the partition's base offset, the end of the previous region), so
/// most take one or two bytes: about 12 bytes per partition and 8 per
/// idempotent batch, against 50 and 60 in format 1. A 100-partition commit
/// then bills 6 WRU instead of 12.
#[derive(Serialize, Deserialize)]
struct FlushV2 {
    key: String,
    len: u64,
    created: i64,
    topics: Vec<TopicId>,
    parts: Vec<PartV2>,
}

#[derive(Serialize, Deserialize)]
struct PartV2 {
    /// Index into `topics`.
    topic: u32,
    partition: i32,
    base: i64,
    /// last offset - base.
    span: i64,
    /// max timestamp - the flush's creation time.
    ts: i64,
    /// position - the end of the previous region (0 when back to back).
    gap: i64,
    len: u32,
    producers: Vec<ProducerV2>,
}

#[derive(Serialize, Deserialize)]
struct ProducerV2 {
    id: i64,
    epoch: i16,
    first_seq: i32,
    /// (last seq - first seq) - (last offset - base offset): 0 for every
    /// well-formed batch (one sequence number per record).
    seq_extra: i64,
    /// base offset - the partition's base offset.
    base: i64,
    /// (last offset - base offset) - the partition's (last - base): 0 when the
    /// batch is the whole region.
    span: i64,
    /// max timestamp - the partition's max timestamp.
    ts: i64,
}

/// The format `commit_flush` writes.
pub(super) const FLUSH_FORMAT: u8 = 2;
const FLUSH_FORMAT_JSON: u8 = 1;

pub(super) fn encode_flush(r: &FlushRecord) -> Result<Vec<u8>> {
    let mut topics: Vec<TopicId> = Vec::new();
    let mut parts = Vec::with_capacity(r.partitions.len());
    let mut end = 0u64;
    for p in &r.partitions {
        let ti = match topics.iter().position(|t| *t == p.partition.topic) {
            Some(i) => i,
            None => {
                topics.push(p.partition.topic);
                topics.len() - 1
            }
        };
        parts.push(PartV2 {
            topic: ti as u32,
            partition: p.partition.partition,
            base: p.base_offset,
            span: p.last_offset.wrapping_sub(p.base_offset),
            ts: p.max_timestamp.wrapping_sub(r.created_ms),
            gap: (p.position as i64).wrapping_sub(end as i64),
            len: p.length,
            producers: p
                .producers
                .iter()
                .map(|b| {
                    let offsets = b.last_offset.wrapping_sub(b.base_offset);
                    let seqs = i64::from(b.last_seq) - i64::from(b.first_seq);
                    ProducerV2 {
                        id: b.producer_id,
                        epoch: b.epoch,
                        first_seq: b.first_seq,
                        seq_extra: seqs.wrapping_sub(offsets),
                        base: b.base_offset.wrapping_sub(p.base_offset),
                        span: offsets.wrapping_sub(p.last_offset.wrapping_sub(p.base_offset)),
                        ts: b.max_timestamp.wrapping_sub(p.max_timestamp),
                    }
                })
                .collect(),
        });
        end = p.position.wrapping_add(u64::from(p.length));
    }
    let body = FlushV2 {
        key: r.object_key.clone(),
        len: r.object_len,
        created: r.created_ms,
        topics,
        parts,
    };
    let mut out = vec![FLUSH_FORMAT];
    let encoded = postcard::to_allocvec(&body)
        .map_err(|e| Error::Internal(format!("encode flush record: {e}")))?;
    out.extend_from_slice(&encoded);
    Ok(out)
}

pub(super) fn decode_flush(item: &Item) -> Result<FlushRecord> {
    let pk = string(item, "pk")?;
    let stream =
        parse_flush_pk(pk).ok_or_else(|| Error::Corrupt(format!("flush item key {pk:?}")))?;
    let seq: u64 = string(item, "sk")?
        .parse()
        .map_err(|_| Error::Corrupt(format!("flush item sort key in {pk}")))?;
    let corrupt = |why: String| Error::Corrupt(format!("flush item {pk} #{seq}: {why}"));
    let bytes = match item.get("r") {
        Some(AttributeValue::B(v)) => v.as_ref(),
        _ => return Err(corrupt("no binary attribute r".into())),
    };
    let (object_key, object_len, created_ms, partitions) = match bytes.first() {
        Some(&FLUSH_FORMAT) => decode_v2(&bytes[1..]).map_err(corrupt)?,
        // Format 1 is JSON: an object.
        Some(b'{') => decode_v1(bytes).map_err(corrupt)?,
        other => {
            return Err(corrupt(format!(
                "format {other:?}, this build reads {FLUSH_FORMAT_JSON} and {FLUSH_FORMAT}"
            )));
        }
    };
    Ok(FlushRecord {
        stream,
        seq,
        object_key,
        object_len,
        created_ms,
        partitions,
    })
}

type FlushBody = (String, u64, i64, Vec<FlushPartition>);

fn decode_v2(bytes: &[u8]) -> std::result::Result<FlushBody, String> {
    let f: FlushV2 = postcard::from_bytes(bytes).map_err(|e| format!("format 2: {e}"))?;
    let mut partitions = Vec::with_capacity(f.parts.len());
    let mut end = 0u64;
    for p in f.parts {
        let topic = *f
            .topics
            .get(p.topic as usize)
            .ok_or_else(|| format!("topic index {}", p.topic))?;
        let max_timestamp = f.created.wrapping_add(p.ts);
        let position = (end as i64).wrapping_add(p.gap) as u64;
        end = position.wrapping_add(u64::from(p.len));
        partitions.push(FlushPartition {
            partition: PartitionId::new(topic, p.partition),
            base_offset: p.base,
            last_offset: p.base.wrapping_add(p.span),
            max_timestamp,
            position,
            length: p.len,
            producers: p
                .producers
                .into_iter()
                .map(|b| {
                    let base_offset = p.base.wrapping_add(b.base);
                    let offsets = p.span.wrapping_add(b.span);
                    let last_seq = i64::from(b.first_seq)
                        .wrapping_add(b.seq_extra)
                        .wrapping_add(offsets);
                    ProducerBatch {
                        producer_id: b.id,
                        epoch: b.epoch,
                        first_seq: b.first_seq,
                        last_seq: last_seq as i32,
                        base_offset,
                        last_offset: base_offset.wrapping_add(offsets),
                        max_timestamp: max_timestamp.wrapping_add(b.ts),
                    }
                })
                .collect(),
        });
    }
    Ok((f.key, f.len, f.created, partitions))
}

fn decode_v1(bytes: &[u8]) -> std::result::Result<FlushBody, String> {
    let c: CompactFlush = serde_json::from_slice(bytes).map_err(|e| format!("format 1: {e}"))?;
    if c.v != FLUSH_FORMAT_JSON {
        return Err(format!("JSON of format {}", c.v));
    }
    let mut partitions = Vec::with_capacity(c.p.len());
    for CompactPart(ti, partition, base, span, max_ts, position, length, producers) in c.p {
        let topic =
            *c.t.get(ti as usize)
                .ok_or_else(|| format!("topic index {ti}"))?;
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
    Ok((c.k, c.l, c.c, partitions))
}

/// The flush item `commit_flush` writes for `record`, expiring at `expires_at`
/// (epoch seconds).
pub(super) fn flush_item(record: &FlushRecord, expires_at: u64) -> Result<Item> {
    let mut item = key(flush_pk(&record.stream), seq_sk(record.seq));
    item.insert("r".into(), b(encode_flush(record)?));
    item.insert(TTL_ATTRIBUTE.into(), n(expires_at));
    Ok(item)
}

/// Write units one `commit_flush` of `record` costs on DynamoDB: a transaction
/// bills 2 WRU per started KiB of each item, the ConditionCheck on the (< 1 KiB)
/// epoch item included. (Emulators do not report transactional capacity.)
pub fn commit_flush_write_units(record: &FlushRecord) -> Result<u64> {
    Ok(2 * (1 + write_units(item_size(&flush_item(record, unix_secs())?))))
}

/// Write units of an item of `bytes` bytes outside a transaction: one per
/// started KiB, at least one.
pub(super) fn write_units(bytes: usize) -> u64 {
    bytes.div_ceil(1024).max(1) as u64
}

pub(super) fn topic_item(t: &TopicMeta) -> Result<Item> {
    let mut item = key("topics", t.name.clone());
    item.insert("id".into(), s(t.id.to_string()));
    item.insert("version".into(), n(t.version));
    item.insert("t".into(), b(json(t)?));
    Ok(item)
}

pub(super) fn is_condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    e: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    code(e) == Some("ConditionalCheckFailedException")
}

/// A `groups` item's stored state.
pub(super) fn group_state(group: &str, item: &Item) -> Result<StoredGroup> {
    serde_json::from_str(string(item, "state")?)
        .map_err(|e| Error::Corrupt(format!("stored state of group {group}: {e}")))
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
        assert!(item_size(&item) * 4 < full_json, "compact form is small");

        // Format 1, as written before format 2, is still read.
        let mut topics = Vec::new();
        let parts = r
            .partitions
            .iter()
            .map(|p| {
                if !topics.contains(&p.partition.topic) {
                    topics.push(p.partition.topic);
                }
                let ti = topics
                    .iter()
                    .position(|t| *t == p.partition.topic)
                    .unwrap_or(0);
                let producers = p
                    .producers
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
                    .collect();
                CompactPart(
                    ti as u32,
                    p.partition.partition,
                    p.base_offset,
                    p.last_offset - p.base_offset,
                    p.max_timestamp,
                    p.position,
                    p.length,
                    producers,
                )
            })
            .collect();
        let v1 = json(&CompactFlush {
            v: 1,
            k: r.object_key.clone(),
            l: r.object_len,
            c: r.created_ms,
            t: topics,
            p: parts,
        })
        .expect("json");
        let mut old = item.clone();
        old.insert("r".into(), b(v1));
        assert_eq!(decode_flush(&old).expect("decode format 1"), r);

        // Anything else is refused, not misread.
        let mut bad = item.clone();
        bad.insert("r".into(), b(vec![9, 1, 2, 3]));
        assert!(decode_flush(&bad).is_err());
        let mut cut = item;
        let AttributeValue::B(full) = &cut["r"] else {
            panic!("r is binary")
        };
        let truncated = full.as_ref()[..full.as_ref().len() / 2].to_vec();
        cut.insert("r".into(), b(truncated));
        assert!(decode_flush(&cut).is_err(), "a truncated record is corrupt");
    }

    #[test]
    fn extreme_values_round_trip() {
        let r = FlushRecord {
            stream: StreamId {
                gateway: "g".into(),
                epoch: 1,
            },
            seq: 1,
            object_key: "k".into(),
            object_len: u64::MAX,
            created_ms: i64::MIN,
            partitions: vec![
                FlushPartition {
                    partition: PartitionId::new(TopicId::from_u128(u128::MAX), i32::MIN),
                    base_offset: i64::MAX,
                    last_offset: i64::MIN,
                    max_timestamp: i64::MAX,
                    position: u64::MAX,
                    length: u32::MAX,
                    producers: vec![ProducerBatch {
                        producer_id: i64::MIN,
                        epoch: i16::MIN,
                        first_seq: i32::MAX,
                        last_seq: i32::MIN,
                        base_offset: i64::MIN,
                        last_offset: i64::MAX,
                        max_timestamp: i64::MIN,
                    }],
                },
                FlushPartition {
                    partition: PartitionId::new(TopicId::from_u128(0), 0),
                    base_offset: 0,
                    last_offset: 0,
                    max_timestamp: -1,
                    position: 0,
                    length: 0,
                    producers: Vec::new(),
                },
            ],
        };
        let item = flush_item(&r, 1).expect("encode");
        assert_eq!(decode_flush(&item).expect("decode"), r);
    }

    /// What a commit bills at 1 and 100 partitions, with and without one
    /// idempotent batch per partition, offsets in the millions.
    #[test]
    fn a_hundred_partition_commit_bills_at_most_eight_units() {
        let topic = TopicId::from_u128(0xabcdef);
        let record = |n: i32, idempotent: bool| FlushRecord {
            stream: StreamId {
                gateway: "floe-gateway-17".into(),
                epoch: 12,
            },
            seq: 987_654,
            object_key: "segments/3f/floe-gateway-17-0000000012-000000987654.seg".into(),
            object_len: 16 << 20,
            created_ms: 1_800_000_000_000,
            partitions: (0..n)
                .map(|p| FlushPartition {
                    partition: PartitionId::new(topic, p),
                    base_offset: 5_000_000 + p as i64 * 1_000,
                    last_offset: 5_000_000 + p as i64 * 1_000 + 163,
                    max_timestamp: 1_800_000_000_000 - 180,
                    position: p as u64 * 167_000,
                    length: 167_000,
                    producers: if idempotent {
                        vec![ProducerBatch {
                            producer_id: 40_123,
                            epoch: 0,
                            first_seq: 1_234_567,
                            last_seq: 1_234_567 + 163,
                            base_offset: 5_000_000 + p as i64 * 1_000,
                            last_offset: 5_000_000 + p as i64 * 1_000 + 163,
                            max_timestamp: 1_800_000_000_000 - 180,
                        }]
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        };
        for (n, idempotent, most) in [(1, false, 4), (1, true, 4), (100, false, 6), (100, true, 8)]
        {
            let r = record(n, idempotent);
            let units = commit_flush_write_units(&r).expect("units");
            let bytes = item_size(&flush_item(&r, 1_800_000_000).expect("item"));
            println!("{n} partitions, idempotent {idempotent}: item {bytes} B, {units} WRU");
            assert!(
                units <= most,
                "{n} partitions, idempotent {idempotent}: {units} WRU"
            );
        }
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
