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

/// The `r` attribute of a flush item, format 1: JSON arrays without field names,
/// each topic id written once, stream and seq left to the key. About 50 bytes
/// per partition instead of ~190 for `FlushRecord`'s own JSON, so a 100-partition
/// flush bills 12 WRU instead of 40.
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

pub(super) const FLUSH_FORMAT: u8 = 1;

pub(super) fn encode_flush(r: &FlushRecord) -> Result<Vec<u8>> {
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

pub(super) fn decode_flush(item: &Item) -> Result<FlushRecord> {
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
    let flush_kib = item_size(&flush_item(record, unix_secs())?).div_ceil(1024) as u64;
    Ok(2 * (1 + flush_kib.max(1)))
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
