//! The table's keys: every item's `pk` / `sk`, built and parsed in one place.
//! Zero-padded numbers make `sk` order numeric order; a gateway name is parsed
//! from the right of a key, so it may itself contain `#`.

use std::collections::HashMap;

use super::codec::{Item, s};
use crate::error::{Error, Result};
use crate::types::{PartitionId, StreamId};

/// The TTL attribute of the table.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// The partition key of the stream registry.
pub(super) const STREAMS_PK: &str = "streams";
/// The partition key of the gateway list.
pub(super) const MEMBERS_PK: &str = "members";
/// The partition key of deleted topics whose partitions' items remain
/// (`sk`: the topic id).
pub(super) const DELETED_TOPICS_PK: &str = "deleted-topics";
/// The partition key of the stored group states.
pub(super) const GROUPS_PK: &str = "groups";

pub(super) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

pub(super) fn gw_pk(gateway: &str) -> String {
    format!("gw#{gateway}")
}

pub(super) fn flush_pk(stream: &StreamId) -> String {
    format!("flush#{}#{:020}", stream.gateway, stream.epoch)
}

pub(super) fn seq_sk(seq: u64) -> String {
    format!("{seq:020}")
}

pub(super) fn stream_sk(stream: &StreamId) -> String {
    format!("{}#{:020}", stream.gateway, stream.epoch)
}

/// Parses `<gateway>#<epoch>` (the gateway may contain `#`).
pub(super) fn parse_stream_sk(sk: &str) -> Option<StreamId> {
    let (gateway, epoch) = sk.rsplit_once('#')?;
    Some(StreamId {
        gateway: gateway.to_string(),
        epoch: epoch.parse().ok()?,
    })
}

pub(super) fn part_pk(p: PartitionId) -> String {
    format!("part#{}#{}", p.topic, p.partition)
}

pub(super) fn idx_sk(base_offset: i64) -> Result<String> {
    if base_offset < 0 {
        return Err(Error::InvalidInput(format!(
            "index entry base offset {base_offset} is negative"
        )));
    }
    Ok(format!("idx#{base_offset:020}"))
}

/// The sort key of a compacted index entry: right after the small entry
/// at the same base (which an owner may store again: never overwritten).
pub(super) fn compacted_idx_sk(base_offset: i64) -> Result<String> {
    Ok(format!("{}#c", idx_sk(base_offset)?))
}

/// Where an entry is stored: compacted entries apart from an owner's.
pub(super) fn entry_sk(e: &crate::types::IndexEntry) -> Result<String> {
    if crate::keys::is_compacted(&e.object_key) {
        compacted_idx_sk(e.base_offset)
    } else {
        idx_sk(e.base_offset)
    }
}

/// The item holding a partition's index version (sorts before `idx#`, so a
/// load's Query does not read it).
pub(super) const INDEX_VERSION_SK: &str = "compaction";

/// Parses `flush#<gateway>#<epoch>` (the gateway may contain `#`).
pub(super) fn parse_flush_pk(pk: &str) -> Option<StreamId> {
    parse_stream_sk(pk.strip_prefix("flush#")?)
}

pub(super) fn group_pk(group: &str) -> String {
    format!("group#{group}")
}

/// The attribute holding one partition's committed offset.
pub(super) fn offset_attr(partition: i32) -> String {
    format!("p{partition}")
}
