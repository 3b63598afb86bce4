//! The consumer-group APIs of the classic protocol: JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup (batched members from v3), ListGroups (state filter
//! from v4), DescribeGroups and DeleteGroups; and the KIP-848
//! ConsumerGroupHeartbeat. The protocols live in `crate::groups`; this module
//! translates the wire messages.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::error::Code;
use crate::groups::Join;
use crate::groups::consumer::{Assignment, Beat};

/// Who sent a request: the header's client id and the connection's host.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub id: String,
    pub host: String,
}

/// READ, DELETE and DESCRIBE on a group (Floe has no ACLs yet).
const GROUP_AUTHORIZED_OPS: i32 = 1 << 3 | 1 << 6 | 1 << 8;

fn code(c: Option<Code>) -> i16 {
    c.map_or(0, |c| c.code())
}

pub async fn join(
    broker: &Arc<Broker>,
    version: i16,
    req: JoinGroupRequest,
    client: Client,
) -> JoinGroupResponse {
    let j = Join {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout serves.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        client_id: client.id,
        client_host: client.host,
        require_known_member_id: version >= 4,
    };
    let joined = broker.groups.join(req.group_id.0.as_str(), j).await;
    let mut r = JoinGroupResponse::default();
    r.error_code = code(joined.error);
    r.generation_id = joined.generation;
    r.protocol_type = joined.protocol_type.map(str_bytes);
    // Before v7 the protocol name is not nullable.
    r.protocol_name = Some(str_bytes(joined.protocol.unwrap_or_default()));
    r.leader = str_bytes(joined.leader);
    r.skip_assignment = joined.skip_assignment && version >= 9;
    r.member_id = str_bytes(joined.member_id);
    r.members = joined
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = str_bytes(id);
            m.group_instance_id = instance.map(str_bytes);
            m.metadata = metadata;
            m
        })
        .collect();
    r
}

pub async fn sync(broker: &Arc<Broker>, _version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
    let synced = broker
        .groups
        .sync(
            req.group_id.0.as_str(),
            req.generation_id,
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            req.protocol_type.as_deref(),
            req.protocol_name.as_deref(),
            req.assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect(),
        )
        .await;
    let mut r = SyncGroupResponse::default();
    r.error_code = code(synced.error);
    r.protocol_type = synced.protocol_type.map(str_bytes);
    r.protocol_name = synced.protocol.map(str_bytes);
    r.assignment = synced.assignment;
    r
}

pub async fn heartbeat(
    broker: &Arc<Broker>,
    _version: i16,
    req: HeartbeatRequest,
) -> HeartbeatResponse {
    let mut r = HeartbeatResponse::default();
    r.error_code = code(
        broker
            .groups
            .heartbeat(
                req.group_id.0.as_str(),
                req.generation_id,
                req.member_id.as_str(),
                req.group_instance_id.as_deref(),
            )
            .await,
    );
    r
}

pub async fn leave(
    broker: &Arc<Broker>,
    version: i16,
    req: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let mut r = LeaveGroupResponse::default();
    match broker.groups.leave(req.group_id.0.as_str(), &members).await {
        Ok(codes) if version >= 3 => {
            r.members = members
                .into_iter()
                .zip(codes)
                .map(|((id, instance), c)| {
                    let mut m = MemberResponse::default();
                    m.member_id = str_bytes(id);
                    m.group_instance_id = instance.map(str_bytes);
                    m.error_code = code(c);
                    m
                })
                .collect();
        }
        Ok(codes) => r.error_code = code(codes.into_iter().next().flatten()),
        Err(c) => r.error_code = c.code(),
    }
    r
}

pub async fn list(
    broker: &Arc<Broker>,
    version: i16,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    let mut r = ListGroupsResponse::default();
    match broker.groups.list().await {
        Ok(groups) => {
            let states: Vec<String> = if version >= 4 {
                req.states_filter
                    .iter()
                    .map(|s| s.to_ascii_lowercase())
                    .collect()
            } else {
                Vec::new()
            };
            r.groups = groups
                .into_iter()
                .filter(|(_, _, state)| {
                    states.is_empty() || states.contains(&state.to_ascii_lowercase())
                })
                .map(|(id, protocol_type, state)| {
                    let mut g = ListedGroup::default();
                    g.group_id = GroupId(str_bytes(id));
                    g.protocol_type = str_bytes(protocol_type);
                    g.group_state = str_bytes(state);
                    g.group_type = str_bytes("classic");
                    g
                })
                .collect();
        }
        Err(c) => r.error_code = c.code(),
    }
    r
}

pub async fn describe(
    broker: &Arc<Broker>,
    version: i16,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut r = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut d = DescribedGroup::default();
        d.group_id = id.clone();
        d.authorized_operations = if version >= 3 && req.include_authorized_operations {
            GROUP_AUTHORIZED_OPS
        } else {
            i32::MIN
        };
        match broker.groups.describe(id.0.as_str()).await {
            Ok(Some(g)) => {
                d.group_state = str_bytes(g.state);
                d.protocol_type = str_bytes(g.protocol_type);
                d.protocol_data = str_bytes(g.protocol);
                d.members = g
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut dm = DescribedGroupMember::default();
                        dm.member_id = str_bytes(m.member_id);
                        dm.group_instance_id = m.instance_id.map(str_bytes);
                        dm.client_id = str_bytes(m.client_id);
                        dm.client_host = str_bytes(m.client_host);
                        dm.member_metadata = m.metadata;
                        dm.member_assignment = m.assignment;
                        dm
                    })
                    .collect();
            }
            // Kafka describes an unknown group as Dead, with no error.
            Ok(None) => d.group_state = str_bytes("Dead"),
            Err(c) => {
                d.error_code = c.code();
                d.group_state = str_bytes("Dead");
            }
        }
        r.groups.push(d);
    }
    r
}

pub async fn delete(
    broker: &Arc<Broker>,
    _version: i16,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut r = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let mut d = DeletableGroupResult::default();
        d.error_code = code(match broker.groups.refuse(id.0.as_str()) {
            Some(c) => Some(c),
            None => broker.groups.delete(id.0.as_str()).await,
        });
        d.group_id = id;
        r.results.push(d);
    }
    r
}

pub async fn consumer_heartbeat(
    broker: &Arc<Broker>,
    _version: i16,
    req: ConsumerGroupHeartbeatRequest,
    client: Client,
) -> ConsumerGroupHeartbeatResponse {
    use kafka_protocol::messages::consumer_group_heartbeat_response::{
        Assignment as WireAssignment, TopicPartitions,
    };
    let owned = req.topic_partitions.as_ref().map(|tps| {
        let mut a = Assignment::new();
        for tp in tps {
            a.entry(tp.topic_id)
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
        a
    });
    let beat = Beat {
        member_id: req.member_id.to_string(),
        epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|i| i.to_string()),
        rack: req.rack_id.as_ref().map(|r| r.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.0.to_string()).collect()),
        regex: req.subscribed_topic_regex.as_ref().map(|r| r.to_string()),
        assignor: req.server_assignor.as_ref().map(|a| a.to_string()),
        owned,
        client_id: client.id,
        client_host: client.host,
    };
    let answer = broker
        .groups
        .consumer_heartbeat(req.group_id.0.as_str(), beat)
        .await;
    let mut r = ConsumerGroupHeartbeatResponse::default();
    r.error_code = code(answer.error);
    r.error_message = answer.message.map(str_bytes);
    r.member_id = Some(str_bytes(if answer.member_id.is_empty() {
        req.member_id.to_string()
    } else {
        answer.member_id
    }));
    r.member_epoch = answer.epoch;
    r.heartbeat_interval_ms = broker
        .settings
        .consumer_group_heartbeat_interval
        .as_millis() as i32;
    r.assignment = answer.assignment.map(|a| {
        let mut w = WireAssignment::default();
        w.topic_partitions = a
            .into_iter()
            .map(|(id, ps)| {
                let mut tp = TopicPartitions::default();
                tp.topic_id = id;
                tp.partitions = ps.into_iter().collect();
                tp
            })
            .collect();
        w
    });
    r
}
