//! Every version of every API Floe advertises, answered: a populated request at
//! each version must come back as a response that decodes at that version. A
//! response field set that the version lacks makes the encoder fail, and the
//! gateway then closes the connection; old clients (kcat / librdkafka 2.0.2
//! sends ListOffsets v2) see "Disconnected" with no error code at all.

mod common;

use bytes::Bytes;
use common::InProcess;
use common::batches;
use common::wire::*;
use kafka_protocol::messages as m;
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable};

fn topic(name: &str) -> TopicName {
    TopicName(sb(name))
}

/// Sends `req` at `version` and checks the answer decodes as `Resp` at that
/// version. Returns the failure, if any, so one run reports every broken pair.
async fn check<Req: Encodable, Resp: Decodable>(
    addr: std::net::SocketAddr,
    api: ApiKey,
    version: i16,
    req: Req,
) -> Result<(), String> {
    let correlation_id = 1000 + version as i32;
    // The request itself must be valid at this version (a test bug otherwise).
    req.encode(&mut bytes::BytesMut::new(), version)
        .map_err(|e| format!("{api:?} v{version}: test request does not encode: {e}"))?;
    let mut s = connect(addr).await;
    send(&mut s, &request(api, version, correlation_id, &req)).await;
    match reply(&mut s).await {
        Reply::Closed => Err(format!(
            "{api:?} v{version}: connection closed instead of a response"
        )),
        Reply::Frame(f) => try_decode_response::<Resp>(f, api, version, correlation_id).map(drop),
    }
}

fn produce(version: i16) -> m::ProduceRequest {
    let mut p = m::produce_request::PartitionProduceData::default();
    p.index = 0;
    p.records = Some(Bytes::from(batches::simple_batch(
        2,
        1_000 + version as i64,
    )));
    let mut t = m::produce_request::TopicProduceData::default();
    t.name = topic("t");
    t.partition_data.push(p);
    let mut r = m::ProduceRequest::default();
    r.acks = -1;
    r.timeout_ms = 10_000;
    r.topic_data.push(t);
    r
}

fn fetch() -> m::FetchRequest {
    let mut p = m::fetch_request::FetchPartition::default();
    p.partition = 0;
    p.fetch_offset = 0;
    p.partition_max_bytes = 1 << 20;
    let mut t = m::fetch_request::FetchTopic::default();
    t.topic = topic("t");
    t.partitions.push(p);
    let mut r = m::FetchRequest::default();
    r.replica_id = BrokerId(-1);
    r.max_wait_ms = 0;
    r.min_bytes = 1;
    r.max_bytes = 1 << 20;
    r.topics.push(t);
    r
}

fn list_offsets() -> m::ListOffsetsRequest {
    let mut t = m::list_offsets_request::ListOffsetsTopic::default();
    t.name = topic("t");
    // Latest, earliest and by time (the found and the not-found paths).
    for ts in [-1i64, -2, 0, i64::MAX] {
        let mut p = m::list_offsets_request::ListOffsetsPartition::default();
        p.partition_index = 0;
        p.timestamp = ts;
        t.partitions.push(p);
    }
    let mut unknown = m::list_offsets_request::ListOffsetsPartition::default();
    unknown.partition_index = 99;
    unknown.timestamp = -1;
    t.partitions.push(unknown);
    let mut r = m::ListOffsetsRequest::default();
    r.replica_id = BrokerId(-1);
    r.topics.push(t);
    r
}

fn delete_records() -> m::DeleteRecordsRequest {
    let mut t = m::delete_records_request::DeleteRecordsTopic::default();
    t.name = topic("t");
    // Below the high watermark, past it (OFFSET_OUT_OF_RANGE), an unknown
    // partition.
    for (partition, offset) in [(0, 0i64), (0, i64::MAX), (99, 0)] {
        let mut p = m::delete_records_request::DeleteRecordsPartition::default();
        p.partition_index = partition;
        p.offset = offset;
        t.partitions.push(p);
    }
    let mut r = m::DeleteRecordsRequest::default();
    r.timeout_ms = 10_000;
    r.topics.push(t);
    r
}

fn metadata(version: i16) -> m::MetadataRequest {
    let mut r = m::MetadataRequest::default();
    let mut names = vec!["t", "metadata-auto"];
    if version >= 1 {
        names.push(""); // invalid name: an error entry
    }
    r.topics = Some(
        names
            .into_iter()
            .map(|n| {
                let mut t = m::metadata_request::MetadataRequestTopic::default();
                t.name = Some(topic(n));
                t
            })
            .collect(),
    );
    if (8..=10).contains(&version) {
        r.include_cluster_authorized_operations = true;
    }
    if version >= 8 {
        r.include_topic_authorized_operations = true;
    }
    r
}

fn api_versions(version: i16) -> m::ApiVersionsRequest {
    let mut r = m::ApiVersionsRequest::default();
    if version >= 3 {
        r.client_software_name = sb("versions-test");
        r.client_software_version = sb("1.0");
    }
    r
}

fn create_topics(version: i16) -> m::CreateTopicsRequest {
    let mut r = m::CreateTopicsRequest::default();
    for (name, partitions) in [(format!("created-v{version}"), 2), ("t".to_string(), 1)] {
        let mut t = m::create_topics_request::CreatableTopic::default();
        t.name = topic(&name);
        t.num_partitions = partitions;
        t.replication_factor = 1;
        let mut c = m::create_topics_request::CreatableTopicConfig::default();
        c.name = sb("retention.ms");
        c.value = Some(sb("3600000"));
        t.configs.push(c);
        r.topics.push(t);
    }
    r.timeout_ms = 10_000;
    r
}

fn delete_topics(version: i16) -> m::DeleteTopicsRequest {
    let names = [format!("doomed-v{version}"), "never-existed".to_string()];
    let mut r = m::DeleteTopicsRequest::default();
    if version >= 6 {
        for n in names {
            let mut t = m::delete_topics_request::DeleteTopicState::default();
            t.name = Some(topic(&n));
            r.topics.push(t);
        }
    } else {
        r.topic_names = names.iter().map(|n| topic(n)).collect();
    }
    r.timeout_ms = 10_000;
    r
}

fn create_partitions(version: i16) -> m::CreatePartitionsRequest {
    let mut r = m::CreatePartitionsRequest::default();
    for (name, count) in [
        (format!("grow-v{version}"), 3),
        ("never-existed".to_string(), 2),
    ] {
        let mut t = m::create_partitions_request::CreatePartitionsTopic::default();
        t.name = topic(&name);
        t.count = count;
        r.topics.push(t);
    }
    r.timeout_ms = 10_000;
    r
}

fn describe_configs(version: i16) -> m::DescribeConfigsRequest {
    let mut r = m::DescribeConfigsRequest::default();
    for (ty, name) in [(2i8, "t"), (4, "0"), (2, "never-existed")] {
        let mut res = m::describe_configs_request::DescribeConfigsResource::default();
        res.resource_type = ty;
        res.resource_name = sb(name);
        r.resources.push(res);
    }
    r.include_synonyms = true;
    if version >= 3 {
        r.include_documentation = true;
    }
    r
}

fn alter_configs() -> m::AlterConfigsRequest {
    let mut c = m::alter_configs_request::AlterableConfig::default();
    c.name = sb("retention.ms");
    c.value = Some(sb("7200000"));
    let mut res = m::alter_configs_request::AlterConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = sb("t");
    res.configs.push(c);
    let mut r = m::AlterConfigsRequest::default();
    r.resources.push(res);
    r.validate_only = true;
    r
}

fn incremental_alter_configs() -> m::IncrementalAlterConfigsRequest {
    let mut c = m::incremental_alter_configs_request::AlterableConfig::default();
    c.name = sb("retention.ms");
    c.config_operation = 0; // SET
    c.value = Some(sb("7200000"));
    let mut res = m::incremental_alter_configs_request::AlterConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = sb("t");
    res.configs.push(c);
    let mut r = m::IncrementalAlterConfigsRequest::default();
    r.resources.push(res);
    r.validate_only = true;
    r
}

fn init_producer_id() -> m::InitProducerIdRequest {
    let mut r = m::InitProducerIdRequest::default();
    r.transaction_timeout_ms = 60_000;
    r
}

fn find_coordinator(version: i16) -> m::FindCoordinatorRequest {
    let mut r = m::FindCoordinatorRequest::default();
    if version >= 4 {
        r.coordinator_keys = vec![sb("group-a"), sb("group-b")];
    } else {
        r.key = sb("group-a");
    }
    r
}

fn offset_commit() -> m::OffsetCommitRequest {
    let mut p = m::offset_commit_request::OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = 1;
    p.committed_leader_epoch = -1;
    p.committed_metadata = Some(sb("md"));
    let mut t = m::offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = topic("t");
    t.partitions.push(p);
    let mut r = m::OffsetCommitRequest::default();
    r.group_id = m::GroupId(sb("group-a"));
    r.generation_id_or_member_epoch = -1;
    r.retention_time_ms = -1;
    r.topics.push(t);
    r
}

fn offset_fetch(version: i16) -> m::OffsetFetchRequest {
    let mut r = m::OffsetFetchRequest::default();
    if version >= 8 {
        let mut g = m::offset_fetch_request::OffsetFetchRequestGroup::default();
        g.group_id = m::GroupId(sb("group-a"));
        g.topics = None;
        r.groups.push(g);
    } else {
        let mut t = m::offset_fetch_request::OffsetFetchRequestTopic::default();
        t.name = topic("t");
        t.partition_indexes = vec![0];
        r.group_id = m::GroupId(sb("group-a"));
        r.topics = Some(vec![t]);
    }
    r
}

fn offset_delete() -> m::OffsetDeleteRequest {
    let mut p = m::offset_delete_request::OffsetDeleteRequestPartition::default();
    p.partition_index = 0;
    let mut t = m::offset_delete_request::OffsetDeleteRequestTopic::default();
    t.name = topic("t");
    t.partitions.push(p);
    let mut r = m::OffsetDeleteRequest::default();
    r.group_id = m::GroupId(sb("group-a"));
    r.topics.push(t);
    r
}

fn group(name: &str) -> m::GroupId {
    m::GroupId(sb(name))
}

fn join_group(version: i16) -> m::JoinGroupRequest {
    let mut p = m::join_group_request::JoinGroupRequestProtocol::default();
    p.name = sb("range");
    p.metadata = Bytes::from_static(b"\0\x01md");
    let mut r = m::JoinGroupRequest::default();
    r.group_id = group(&format!("join-v{version}"));
    r.session_timeout_ms = 10_000;
    r.rebalance_timeout_ms = 10_000;
    r.protocol_type = sb("consumer");
    r.protocols.push(p);
    if version >= 5 {
        r.group_instance_id = Some(sb(&format!("static-v{version}")));
    }
    if version >= 8 {
        r.reason = Some(sb("versions test"));
    }
    r
}

fn sync_group(version: i16) -> m::SyncGroupRequest {
    let mut a = m::sync_group_request::SyncGroupRequestAssignment::default();
    a.member_id = sb("nobody");
    a.assignment = Bytes::from_static(b"x");
    let mut r = m::SyncGroupRequest::default();
    r.group_id = group("group-a");
    r.generation_id = 1;
    r.member_id = sb("nobody");
    if version >= 5 {
        r.protocol_type = Some(sb("consumer"));
        r.protocol_name = Some(sb("range"));
    }
    r.assignments.push(a);
    r
}

fn heartbeat() -> m::HeartbeatRequest {
    let mut r = m::HeartbeatRequest::default();
    r.group_id = group("group-a");
    r.generation_id = 1;
    r.member_id = sb("nobody");
    r
}

fn leave_group(version: i16) -> m::LeaveGroupRequest {
    let mut r = m::LeaveGroupRequest::default();
    r.group_id = group("group-a");
    if version >= 3 {
        let mut who = m::leave_group_request::MemberIdentity::default();
        who.member_id = sb("nobody");
        who.group_instance_id = Some(sb("nowhere"));
        if version >= 5 {
            who.reason = Some(sb("versions test"));
        }
        r.members.push(who);
    } else {
        r.member_id = sb("nobody");
    }
    r
}

fn list_groups(version: i16) -> m::ListGroupsRequest {
    let mut r = m::ListGroupsRequest::default();
    if version >= 4 {
        r.states_filter = vec![sb("Stable"), sb("Empty")];
    }
    r
}

fn describe_groups(version: i16) -> m::DescribeGroupsRequest {
    let mut r = m::DescribeGroupsRequest::default();
    // A group with members (joined at every JoinGroup version above) and one
    // that does not exist.
    r.groups = vec![group("join-v5"), group("no-such-group")];
    r.include_authorized_operations = version >= 3;
    r
}

fn delete_groups() -> m::DeleteGroupsRequest {
    let mut r = m::DeleteGroupsRequest::default();
    r.groups_names = vec![group("group-a"), group("no-such-group")];
    r
}

fn consumer_group_heartbeat(version: i16) -> m::ConsumerGroupHeartbeatRequest {
    let mut r = m::ConsumerGroupHeartbeatRequest::default();
    r.group_id = group(&format!("kip848-v{version}"));
    // v0: the coordinator names the member; v1: the client does.
    r.member_id = if version >= 1 {
        sb("5f0d2a9e-7a51-4f0c-9d43-6a1c1f4e9b10")
    } else {
        sb("")
    };
    r.member_epoch = 0;
    r.rebalance_timeout_ms = 30_000;
    r.subscribed_topic_names = Some(vec![topic("t")]);
    r.server_assignor = Some(sb("uniform"));
    r.topic_partitions = Some(Vec::new());
    r
}

/// The (api, version) pairs to check: everything advertised.
fn pairs() -> Vec<(ApiKey, i16)> {
    let mut out = Vec::new();
    for &(api, lo, hi) in floe_gateway::api::SUPPORTED {
        out.extend((lo..=hi).map(|v| (api, v)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_is_answered() {
    // Joins complete at once (one member each): no initial rebalance delay.
    let gw = InProcess::start_with(|s| {
        s.group_initial_rebalance_delay = std::time::Duration::ZERO;
    })
    .await;
    let addr = gw.addr;
    create_topic(addr, "t", &[]).await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for (api, v) in pairs() {
        // Topics the version's request acts on.
        match api {
            ApiKey::DeleteTopics => create_topic(addr, &format!("doomed-v{v}"), &[]).await,
            ApiKey::CreatePartitions => create_topic(addr, &format!("grow-v{v}"), &[]).await,
            _ => {}
        }
        let r = match api {
            ApiKey::Produce => check::<_, m::ProduceResponse>(addr, api, v, produce(v)).await,
            ApiKey::Fetch => check::<_, m::FetchResponse>(addr, api, v, fetch()).await,
            ApiKey::ListOffsets => {
                check::<_, m::ListOffsetsResponse>(addr, api, v, list_offsets()).await
            }
            ApiKey::Metadata => check::<_, m::MetadataResponse>(addr, api, v, metadata(v)).await,
            ApiKey::ApiVersions => {
                check::<_, m::ApiVersionsResponse>(addr, api, v, api_versions(v)).await
            }
            ApiKey::CreateTopics => {
                check::<_, m::CreateTopicsResponse>(addr, api, v, create_topics(v)).await
            }
            ApiKey::DeleteTopics => {
                check::<_, m::DeleteTopicsResponse>(addr, api, v, delete_topics(v)).await
            }
            ApiKey::CreatePartitions => {
                check::<_, m::CreatePartitionsResponse>(addr, api, v, create_partitions(v)).await
            }
            ApiKey::DeleteRecords => {
                check::<_, m::DeleteRecordsResponse>(addr, api, v, delete_records()).await
            }
            ApiKey::DescribeConfigs => {
                check::<_, m::DescribeConfigsResponse>(addr, api, v, describe_configs(v)).await
            }
            ApiKey::AlterConfigs => {
                check::<_, m::AlterConfigsResponse>(addr, api, v, alter_configs()).await
            }
            ApiKey::IncrementalAlterConfigs => {
                check::<_, m::IncrementalAlterConfigsResponse>(
                    addr,
                    api,
                    v,
                    incremental_alter_configs(),
                )
                .await
            }
            ApiKey::DescribeCluster => {
                let req = m::DescribeClusterRequest::default();
                check::<_, m::DescribeClusterResponse>(addr, api, v, req).await
            }
            ApiKey::InitProducerId => {
                check::<_, m::InitProducerIdResponse>(addr, api, v, init_producer_id()).await
            }
            ApiKey::FindCoordinator => {
                check::<_, m::FindCoordinatorResponse>(addr, api, v, find_coordinator(v)).await
            }
            ApiKey::OffsetCommit => {
                check::<_, m::OffsetCommitResponse>(addr, api, v, offset_commit()).await
            }
            ApiKey::OffsetFetch => {
                check::<_, m::OffsetFetchResponse>(addr, api, v, offset_fetch(v)).await
            }
            ApiKey::OffsetDelete => {
                check::<_, m::OffsetDeleteResponse>(addr, api, v, offset_delete()).await
            }
            ApiKey::JoinGroup => {
                check::<_, m::JoinGroupResponse>(addr, api, v, join_group(v)).await
            }
            ApiKey::SyncGroup => {
                check::<_, m::SyncGroupResponse>(addr, api, v, sync_group(v)).await
            }
            ApiKey::Heartbeat => check::<_, m::HeartbeatResponse>(addr, api, v, heartbeat()).await,
            ApiKey::LeaveGroup => {
                check::<_, m::LeaveGroupResponse>(addr, api, v, leave_group(v)).await
            }
            ApiKey::ListGroups => {
                check::<_, m::ListGroupsResponse>(addr, api, v, list_groups(v)).await
            }
            ApiKey::DescribeGroups => {
                check::<_, m::DescribeGroupsResponse>(addr, api, v, describe_groups(v)).await
            }
            ApiKey::DeleteGroups => {
                check::<_, m::DeleteGroupsResponse>(addr, api, v, delete_groups()).await
            }
            ApiKey::ConsumerGroupHeartbeat => {
                let req = consumer_group_heartbeat(v);
                check::<_, m::ConsumerGroupHeartbeatResponse>(addr, api, v, req).await
            }
            other => Err(format!(
                "{other:?} is served but this test has no request for it: add one"
            )),
        };
        checked += 1;
        if let Err(e) = r {
            failures.push(e);
        }
    }
    assert!(checked > 60, "only {checked} pairs checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} (api, version) pairs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_healthy(addr).await;
    gw.stop().await;
}
