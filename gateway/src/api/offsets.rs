//! Committed offsets: OffsetCommit, OffsetFetch (multi-group from v8) and
//! OffsetDelete, served by the group's coordinator (the live gateway chosen for
//! the group by the ownership role, see `Cluster::coordinator_of`) and stored in
//! the MetaStore, one write per group and topic.
//!
//! Commits are checked against the group as Kafka checks them
//! (`Coordinator::check_commit`): without a generation (-1, no member id: a
//! consumer that assigns its partitions itself) only while the group has no
//! members; otherwise from a current member, in the current generation (for a
//! KIP-848 group, v9: its current member epoch), and not while the group waits
//! for its leader's assignment.
//!
//! Offsets are not fenced by coordinator: while gateways' views of the
//! membership differ (at most a heartbeat round), two gateways may both accept
//! commits for a group; each commit is atomic and the later one wins.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use floe_core::types::{CommittedOffset, GroupOffsets};

use super::str_bytes;
use crate::broker::Broker;
use crate::error::Code;

/// Kafka's `offset.metadata.max.bytes` default.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Why this gateway will not serve `group` now, if it will not.
fn refuse(broker: &Broker, group: &str) -> Option<Code> {
    broker.groups.refuse(group)
}

/// Storage errors reach consumers as a retriable coordinator error.
fn storage(e: &floe_core::Error, what: &str, group: &str) -> Code {
    tracing::warn!(group, error = %e, "{what} failed");
    Code::CoordinatorNotAvailable
}

pub async fn commit(
    broker: &Arc<Broker>,
    _version: i16,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = req.group_id.0.as_str();
    let group_error = broker
        .groups
        .check_commit(
            group,
            req.generation_id_or_member_epoch,
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
        )
        .await
        .err();
    let now = broker.clock.now_ms();
    let mut resp = OffsetCommitResponse::default();
    for t in &req.topics {
        let name = t.name.0.as_str();
        let topic = broker
            .topics
            .get(name)
            .map(|e| (e.meta.partitions, e.meta.id));
        let partitions = topic.map(|(n, _)| n);
        let mut codes: Vec<(i32, Option<Code>)> = Vec::with_capacity(t.partitions.len());
        let mut offsets = BTreeMap::new();
        for p in &t.partitions {
            let code = if group_error.is_some() {
                group_error
            } else if !partitions.is_some_and(|n| (0..n).contains(&p.partition_index)) {
                Some(Code::UnknownTopicOrPartition)
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
            {
                Some(Code::OffsetMetadataTooLarge)
            } else {
                offsets.insert(
                    p.partition_index,
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_ms: now,
                        topic_id: topic.map(|(_, id)| id),
                    },
                );
                None
            };
            codes.push((p.partition_index, code));
        }
        if !offsets.is_empty()
            && let Err(e) = broker.groups.commit_offsets(group, name, &offsets).await
        {
            let code = storage(&e, "offset commit", group);
            for (p, c) in codes.iter_mut() {
                if offsets.contains_key(p) {
                    *c = Some(code);
                }
            }
        }
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = t.name.clone();
        tr.partitions = codes
            .into_iter()
            .map(|(p, c)| {
                let mut pr = OffsetCommitResponsePartition::default();
                pr.partition_index = p;
                pr.error_code = c.map_or(0, |c| c.code());
                pr
            })
            .collect();
        resp.topics.push(tr);
    }
    resp
}

/// One partition's answer: the committed offset, or -1 with empty metadata.
fn fetched(stored: Option<&CommittedOffset>) -> (i64, i32, Option<StrBytes>) {
    match stored {
        Some(o) => (
            o.offset,
            o.leader_epoch,
            Some(str_bytes(o.metadata.clone().unwrap_or_default())),
        ),
        None => (-1, -1, Some(StrBytes::default())),
    }
}

/// The offsets one group asks for: `topics` None means every committed one.
async fn fetch_group(
    broker: &Broker,
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Result<Vec<(TopicName, Vec<(i32, i64, i32, Option<StrBytes>)>)>, Code> {
    if let Some(c) = refuse(broker, group) {
        return Err(c);
    }
    let mut stored: GroupOffsets = broker
        .groups
        .fetch_offsets(group)
        .await
        .map_err(|e| storage(&e, "offset fetch", group))?;
    forget_other_incarnations(broker, &mut stored).await;
    let wanted = topics.unwrap_or_else(|| {
        stored
            .iter()
            .map(|(t, ps)| {
                (
                    TopicName(str_bytes(t.clone())),
                    ps.keys().copied().collect(),
                )
            })
            .collect()
    });
    Ok(wanted
        .into_iter()
        .map(|(name, partitions)| {
            let t = stored.get(name.0.as_str());
            let rows = partitions
                .into_iter()
                .map(|p| {
                    let (o, e, m) = fetched(t.and_then(|t| t.get(&p)));
                    (p, o, e, m)
                })
                .collect();
            (name, rows)
        })
        .collect())
}

/// Drops offsets committed for an earlier topic of the same name (deleted,
/// then created again: a new id). Kafka deletes a topic's committed offsets
/// with it; here they stay stored by name and are ignored from then on, so a
/// group reading the new topic starts by its reset policy, not at an offset of
/// the old one. The id is checked against the topic as stored when it
/// differs from this gateway's copy (which may be behind); offsets of a
/// topic this gateway does not know, or committed before ids were kept, are
/// returned as committed.
async fn forget_other_incarnations(broker: &Broker, stored: &mut GroupOffsets) {
    for (name, partitions) in stored.iter_mut() {
        let ids: std::collections::BTreeSet<_> =
            partitions.values().filter_map(|o| o.topic_id).collect();
        if ids.is_empty() {
            continue;
        }
        let Some(local) = broker.topics.get(name).map(|e| e.meta.id) else {
            continue;
        };
        let current = if ids.iter().all(|id| *id == local) {
            local
        } else {
            match broker.topics.stored_id(name).await {
                Ok(Some(id)) => id,
                Ok(None) => continue,
                Err(e) => {
                    tracing::info!(topic = %name, error = %e, "topic not read; offsets returned as stored");
                    continue;
                }
            }
        };
        partitions.retain(|_, o| o.topic_id.is_none_or(|id| id == current));
    }
    stored.retain(|_, partitions| !partitions.is_empty());
}

pub async fn fetch(
    broker: &Arc<Broker>,
    version: i16,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if version >= 8 {
        for g in req.groups {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            let mut gr = OffsetFetchResponseGroup::default();
            gr.group_id = g.group_id.clone();
            // v9: a KIP-848 member names itself and its epoch.
            let checked = broker
                .groups
                .check_fetch(
                    g.group_id.0.as_str(),
                    g.member_id.as_deref(),
                    g.member_epoch,
                )
                .await;
            let rows = match checked {
                Ok(()) => fetch_group(broker, g.group_id.0.as_str(), topics).await,
                Err(c) => Err(c),
            };
            match rows {
                Ok(rows) => {
                    gr.topics = rows
                        .into_iter()
                        .map(|(name, parts)| {
                            let mut tr = OffsetFetchResponseTopics::default();
                            tr.name = name;
                            tr.partitions = parts
                                .into_iter()
                                .map(|(p, o, e, m)| {
                                    let mut pr = OffsetFetchResponsePartitions::default();
                                    pr.partition_index = p;
                                    pr.committed_offset = o;
                                    pr.committed_leader_epoch = e;
                                    pr.metadata = m;
                                    pr
                                })
                                .collect();
                            tr
                        })
                        .collect();
                }
                Err(code) => gr.error_code = code.code(),
            }
            resp.groups.push(gr);
        }
        return resp;
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect::<Vec<_>>()
    });
    let asked = topics.clone();
    match fetch_group(broker, req.group_id.0.as_str(), topics).await {
        Ok(rows) => {
            resp.topics = rows
                .into_iter()
                .map(|(name, parts)| {
                    let mut tr = OffsetFetchResponseTopic::default();
                    tr.name = name;
                    tr.partitions = parts
                        .into_iter()
                        .map(|(p, o, e, m)| {
                            let mut pr = OffsetFetchResponsePartition::default();
                            pr.partition_index = p;
                            pr.committed_offset = o;
                            pr.committed_leader_epoch = e;
                            pr.metadata = m;
                            pr
                        })
                        .collect();
                    tr
                })
                .collect();
        }
        Err(code) => {
            // v2+ carry a group-level error; v1 only per partition.
            resp.error_code = code.code();
            resp.topics = asked
                .unwrap_or_default()
                .into_iter()
                .map(|(name, parts)| {
                    let mut tr = OffsetFetchResponseTopic::default();
                    tr.name = name;
                    tr.partitions = parts
                        .into_iter()
                        .map(|p| {
                            let mut pr = OffsetFetchResponsePartition::default();
                            pr.partition_index = p;
                            pr.committed_offset = -1;
                            pr.committed_leader_epoch = -1;
                            pr.metadata = Some(StrBytes::default());
                            pr.error_code = code.code();
                            pr
                        })
                        .collect();
                    tr
                })
                .collect();
        }
    }
    resp
}

pub async fn delete(
    broker: &Arc<Broker>,
    _version: i16,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group = req.group_id.0.as_str();
    let mut resp = OffsetDeleteResponse::default();
    if let Some(c) = refuse(broker, group) {
        resp.error_code = c.code();
        return resp;
    }
    let stored = match broker.groups.fetch_offsets(group).await {
        Ok(s) => s,
        Err(e) => {
            resp.error_code = storage(&e, "offset delete", group).code();
            return resp;
        }
    };
    if stored.is_empty() {
        resp.error_code = Code::GroupIdNotFound.code();
        return resp;
    }
    for t in &req.topics {
        let name = t.name.0.as_str();
        let known = broker.topics.get(name).map(|e| e.meta.partitions);
        let ps: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
        let code = match broker.groups.delete_offsets(group, name, &ps).await {
            Ok(()) => None,
            Err(e) => Some(storage(&e, "offset delete", group)),
        };
        let mut tr = OffsetDeleteResponseTopic::default();
        tr.name = t.name.clone();
        tr.partitions = ps
            .into_iter()
            .map(|p| {
                let mut pr = OffsetDeleteResponsePartition::default();
                pr.partition_index = p;
                let unknown = !known.is_some_and(|n| (0..n).contains(&p));
                pr.error_code = code
                    .or(unknown.then_some(Code::UnknownTopicOrPartition))
                    .map_or(0, |c| c.code());
                pr
            })
            .collect();
        resp.topics.push(tr);
    }
    resp
}
