//! Consumer groups: the classic rebalance protocol on the wire (member ids,
//! generations, protocol selection, static members, session expiry and every
//! error code a client can meet) and the KIP-848 one (member epochs,
//! revoke-before-assign reconciliation, static members, fencing), group state
//! surviving a gateway restart, then librdkafka consumers that subscribe with
//! either protocol: range, roundrobin, cooperative-sticky and the server-side
//! uniform and range assignors splitting a topic, members leaving, static
//! members returning, and the group coordinator's gateway killed under a
//! consuming group.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::wire::{connect, create_topic, roundtrip, sb};
use common::{InProcess, Process};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use tokio::net::TcpStream;

const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const REBALANCE_IN_PROGRESS: i16 = 27;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;
const FENCED_MEMBER_EPOCH: i16 = 110;
const UNRELEASED_INSTANCE_ID: i16 = 111;
const UNSUPPORTED_ASSIGNOR: i16 = 112;
const STALE_MEMBER_EPOCH: i16 = 113;

fn gid(g: &str) -> GroupId {
    GroupId(sb(g))
}

fn join_req(
    group: &str,
    member: &str,
    instance: Option<&str>,
    protocols: &[&str],
) -> JoinGroupRequest {
    let mut r = JoinGroupRequest::default();
    r.group_id = gid(group);
    r.session_timeout_ms = 6_000;
    r.rebalance_timeout_ms = 10_000;
    r.member_id = sb(member);
    r.group_instance_id = instance.map(sb);
    r.protocol_type = sb("consumer");
    for p in protocols {
        let mut jp = JoinGroupRequestProtocol::default();
        jp.name = sb(p);
        // Like a consumer's subscription: the same across its restarts.
        jp.metadata = Bytes::from(format!("meta-{p}-{}", instance.unwrap_or("dynamic")));
        r.protocols.push(jp);
    }
    r
}

async fn join(s: &mut TcpStream, req: &JoinGroupRequest) -> JoinGroupResponse {
    roundtrip(s, ApiKey::JoinGroup, 7, req).await
}

/// A new dynamic member: JoinGroup v7 twice (MEMBER_ID_REQUIRED, then with the
/// id), run on its own connection so several can wait for one join.
fn spawn_new_member(
    addr: std::net::SocketAddr,
    group: &'static str,
    protocols: &'static [&'static str],
) -> tokio::task::JoinHandle<(TcpStream, JoinGroupResponse)> {
    tokio::spawn(async move {
        let mut s = connect(addr).await;
        let first = join(&mut s, &join_req(group, "", None, protocols)).await;
        assert_eq!(
            first.error_code, MEMBER_ID_REQUIRED,
            "v4+ asks for a member id"
        );
        assert!(!first.member_id.is_empty());
        let second = join(&mut s, &join_req(group, &first.member_id, None, protocols)).await;
        (s, second)
    })
}

fn rejoin(
    mut s: TcpStream,
    req: JoinGroupRequest,
) -> tokio::task::JoinHandle<(TcpStream, JoinGroupResponse)> {
    tokio::spawn(async move {
        let r = join(&mut s, &req).await;
        (s, r)
    })
}

fn sync_req(
    group: &str,
    generation: i32,
    member: &str,
    assign: &[(&str, &str)],
) -> SyncGroupRequest {
    let mut r = SyncGroupRequest::default();
    r.group_id = gid(group);
    r.generation_id = generation;
    r.member_id = sb(member);
    for (m, a) in assign {
        let mut x = SyncGroupRequestAssignment::default();
        x.member_id = sb(m);
        x.assignment = Bytes::from(a.to_string());
        r.assignments.push(x);
    }
    r
}

async fn sync(s: &mut TcpStream, req: &SyncGroupRequest) -> SyncGroupResponse {
    roundtrip(s, ApiKey::SyncGroup, 5, req).await
}

async fn heartbeat(
    s: &mut TcpStream,
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
) -> i16 {
    let mut r = HeartbeatRequest::default();
    r.group_id = gid(group);
    r.generation_id = generation;
    r.member_id = sb(member);
    r.group_instance_id = instance.map(sb);
    let resp: HeartbeatResponse = roundtrip(s, ApiKey::Heartbeat, 4, &r).await;
    resp.error_code
}

async fn commit(s: &mut TcpStream, group: &str, generation: i32, member: &str) -> i16 {
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = 1;
    p.committed_leader_epoch = -1;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(sb("t"));
    t.partitions.push(p);
    let mut r = OffsetCommitRequest::default();
    r.group_id = gid(group);
    r.generation_id_or_member_epoch = generation;
    r.member_id = sb(member);
    r.retention_time_ms = -1;
    r.topics.push(t);
    let resp: OffsetCommitResponse = roundtrip(s, ApiKey::OffsetCommit, 8, &r).await;
    resp.topics[0].partitions[0].error_code
}

async fn describe(s: &mut TcpStream, group: &str) -> describe_groups_response::DescribedGroup {
    let mut r = DescribeGroupsRequest::default();
    r.groups = vec![gid(group)];
    let mut resp: DescribeGroupsResponse = roundtrip(s, ApiKey::DescribeGroups, 5, &r).await;
    resp.groups.remove(0)
}

async fn list(s: &mut TcpStream, states: &[&str]) -> Vec<(String, String, String)> {
    let mut r = ListGroupsRequest::default();
    r.states_filter = states.iter().map(|x| sb(x)).collect();
    let resp: ListGroupsResponse = roundtrip(s, ApiKey::ListGroups, 4, &r).await;
    assert_eq!(resp.error_code, 0);
    resp.groups
        .into_iter()
        .map(|g| {
            (
                g.group_id.0.to_string(),
                g.protocol_type.to_string(),
                g.group_state.to_string(),
            )
        })
        .collect()
}

async fn delete(s: &mut TcpStream, group: &str) -> i16 {
    let mut r = DeleteGroupsRequest::default();
    r.groups_names = vec![gid(group)];
    let resp: DeleteGroupsResponse = roundtrip(s, ApiKey::DeleteGroups, 2, &r).await;
    resp.results[0].error_code
}

async fn leave(s: &mut TcpStream, group: &str, members: &[(&str, Option<&str>)]) -> Vec<i16> {
    let mut r = LeaveGroupRequest::default();
    r.group_id = gid(group);
    for (m, i) in members {
        let mut who = MemberIdentity::default();
        who.member_id = sb(m);
        who.group_instance_id = i.map(sb);
        r.members.push(who);
    }
    let resp: LeaveGroupResponse = roundtrip(s, ApiKey::LeaveGroup, 5, &r).await;
    assert_eq!(resp.error_code, 0);
    resp.members.iter().map(|m| m.error_code).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebalance_protocol_on_the_wire() {
    let gw = InProcess::start().await;
    let addr = gw.addr;
    create_topic(addr, "t", &[]).await;
    let mut admin = connect(addr).await;

    // Bad joins are refused at once.
    let mut bad = join_req("g", "", None, &["range"]);
    bad.session_timeout_ms = 1_000;
    assert_eq!(
        join(&mut admin, &bad).await.error_code,
        INVALID_SESSION_TIMEOUT
    );
    let mut bad = join_req("g", "", None, &["range"]);
    bad.protocol_type = sb("");
    assert_eq!(
        join(&mut admin, &bad).await.error_code,
        INCONSISTENT_GROUP_PROTOCOL
    );
    let bad = join_req("g", "no-such-member", None, &["range"]);
    assert_eq!(join(&mut admin, &bad).await.error_code, UNKNOWN_MEMBER_ID);

    // One member: the join completes after the initial rebalance delay.
    let (mut a, ja) = spawn_new_member(addr, "g", &["range", "roundrobin"])
        .await
        .expect("consumer thread");
    assert_eq!(ja.error_code, 0);
    assert_eq!(ja.generation_id, 1);
    assert_eq!(ja.leader, ja.member_id, "the only member leads");
    assert_eq!(ja.protocol_name.as_deref(), Some("range"));
    assert_eq!(ja.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(ja.members.len(), 1);
    let a_id = ja.member_id.to_string();
    // Wrong generation, unknown member, then the leader's assignment.
    let s = sync(&mut a, &sync_req("g", 2, &a_id, &[])).await;
    assert_eq!(s.error_code, ILLEGAL_GENERATION);
    let s = sync(&mut a, &sync_req("g", 1, "stranger", &[])).await;
    assert_eq!(s.error_code, UNKNOWN_MEMBER_ID);
    let s = sync(&mut a, &sync_req("g", 1, &a_id, &[(&a_id, "all-of-it")])).await;
    assert_eq!(s.error_code, 0);
    assert_eq!(&s.assignment[..], b"all-of-it");
    assert_eq!(s.protocol_name.as_deref(), Some("range"));
    assert_eq!(heartbeat(&mut a, "g", 1, &a_id, None).await, 0);
    assert_eq!(
        heartbeat(&mut a, "g", 0, &a_id, None).await,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        heartbeat(&mut a, "g", 1, "stranger", None).await,
        UNKNOWN_MEMBER_ID
    );
    // Member commits: current generation only; no generation-less commits
    // while the group has members.
    assert_eq!(commit(&mut a, "g", 1, &a_id).await, 0);
    assert_eq!(commit(&mut a, "g", 2, &a_id).await, ILLEGAL_GENERATION);
    assert_eq!(commit(&mut a, "g", -1, "").await, UNKNOWN_MEMBER_ID);
    // OffsetFetch v9 naming a classic member and a generation (franz-go sends
    // them) is not checked against them, as in Kafka: whoever asks gets the
    // group's offsets.
    for (member, generation) in [(a_id.as_str(), 1), ("someone-else", 7)] {
        let mut fg = offset_fetch_request::OffsetFetchRequestGroup::default();
        fg.group_id = gid("g");
        fg.member_id = Some(sb(member));
        fg.member_epoch = generation;
        fg.topics = None; // every committed offset
        let mut f = OffsetFetchRequest::default();
        f.groups.push(fg);
        let r: OffsetFetchResponse = roundtrip(&mut a, ApiKey::OffsetFetch, 9, &f).await;
        assert_eq!(r.groups[0].error_code, 0, "classic fetch as {member}");
        assert!(
            !r.groups[0].topics.is_empty(),
            "the committed offset is returned"
        );
    }

    // A member whose protocols the group does not share is refused.
    let mut other = connect(addr).await;
    let r = join(&mut other, &join_req("g", "", None, &["sticky-only"])).await;
    assert_eq!(r.error_code, INCONSISTENT_GROUP_PROTOCOL);

    // A second member: the group rebalances; the first learns it from its
    // heartbeat and rejoins; both get generation 2; the only protocol both
    // support is chosen.
    let b_join = spawn_new_member(addr, "g", &["roundrobin"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let code = heartbeat(&mut a, "g", 1, &a_id, None).await;
        if code == REBALANCE_IN_PROGRESS {
            break;
        }
        assert_eq!(code, 0);
        assert!(Instant::now() < deadline, "no rebalance announced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Commits of the old generation are still accepted while members rejoin
    // (consumers commit in their revoke callback).
    assert_eq!(commit(&mut a, "g", 1, &a_id).await, 0);
    let a_join = rejoin(a, join_req("g", &a_id, None, &["range", "roundrobin"]));
    let (mut a, ja) = a_join.await.expect("member task");
    let (mut b, jb) = b_join.await.expect("member task");
    assert_eq!((ja.error_code, jb.error_code), (0, 0));
    assert_eq!((ja.generation_id, jb.generation_id), (2, 2));
    assert_eq!(ja.protocol_name.as_deref(), Some("roundrobin"));
    assert_eq!(ja.leader.as_str(), a_id, "the leader stays the leader");
    assert_eq!(jb.leader.as_str(), a_id);
    assert_eq!(ja.members.len(), 2, "the leader sees every member");
    assert!(jb.members.is_empty(), "followers see none");
    let b_id = jb.member_id.to_string();
    let b_meta = ja
        .members
        .iter()
        .find(|m| m.member_id.as_str() == b_id)
        .map(|m| m.metadata.clone())
        .expect("b in the leader's view");
    assert_eq!(&b_meta[..], b"meta-roundrobin-dynamic");
    // Between join and the leader's sync: the follower's sync waits, member
    // commits get REBALANCE_IN_PROGRESS.
    assert_eq!(commit(&mut b, "g", 2, &b_id).await, REBALANCE_IN_PROGRESS);
    let b_sync = tokio::spawn({
        let b_id = b_id.clone();
        async move {
            let r = sync(&mut b, &sync_req("g", 2, &b_id, &[])).await;
            (b, r)
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !b_sync.is_finished(),
        "a follower's sync waits for the leader's"
    );
    let s = sync(
        &mut a,
        &sync_req("g", 2, &a_id, &[(&a_id, "p0"), (&b_id, "p1")]),
    )
    .await;
    assert_eq!((s.error_code, &s.assignment[..]), (0, &b"p0"[..]));
    let (mut b, sb_) = b_sync.await.expect("member task");
    assert_eq!((sb_.error_code, &sb_.assignment[..]), (0, &b"p1"[..]));

    // Described, listed, not deletable while it has members.
    let d = describe(&mut admin, "g").await;
    assert_eq!(d.error_code, 0);
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.protocol_type.as_str(), "consumer");
    assert_eq!(d.protocol_data.as_str(), "roundrobin");
    let assigned: BTreeMap<String, Bytes> = d
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.member_assignment.clone()))
        .collect();
    assert_eq!(assigned.get(&a_id).map(|b| &b[..]), Some(&b"p0"[..]));
    assert_eq!(assigned.get(&b_id).map(|b| &b[..]), Some(&b"p1"[..]));
    assert!(
        d.members
            .iter()
            .all(|m| m.client_host.starts_with("/127.0.0.1"))
    );
    assert!(list(&mut admin, &["Stable"]).await.contains(&(
        "g".to_string(),
        "consumer".to_string(),
        "Stable".to_string()
    )));
    assert!(
        list(&mut admin, &["Empty"])
            .await
            .iter()
            .all(|(g, _, _)| g != "g")
    );
    assert_eq!(delete(&mut admin, "g").await, NON_EMPTY_GROUP);

    // Batched leave: both members plus a stranger.
    let codes = leave(
        &mut admin,
        "g",
        &[(&a_id, None), ("stranger", None), (&b_id, None)],
    )
    .await;
    assert_eq!(codes, vec![0, UNKNOWN_MEMBER_ID, 0]);
    assert_eq!(
        heartbeat(&mut b, "g", 2, &b_id, None).await,
        UNKNOWN_MEMBER_ID
    );
    let d = describe(&mut admin, "g").await;
    assert_eq!(d.group_state.as_str(), "Empty");
    assert!(d.members.is_empty());
    assert!(
        list(&mut admin, &["empty"])
            .await
            .iter()
            .any(|(g, _, _)| g == "g")
    );
    // Empty: generation-less commits are accepted again; then it is deleted
    // with its offsets.
    assert_eq!(commit(&mut a, "g", -1, "").await, 0);
    assert_eq!(delete(&mut admin, "g").await, 0);
    assert_eq!(delete(&mut admin, "g").await, GROUP_ID_NOT_FOUND);
    assert_eq!(describe(&mut admin, "g").await.group_state.as_str(), "Dead");
    let mut fetch = OffsetFetchRequest::default();
    let mut fg = offset_fetch_request::OffsetFetchRequestGroup::default();
    fg.group_id = gid("g");
    fg.topics = None;
    fetch.groups.push(fg);
    let f: OffsetFetchResponse = roundtrip(&mut admin, ApiKey::OffsetFetch, 8, &fetch).await;
    assert!(f.groups[0].topics.is_empty(), "deleted with its offsets");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_members_rejoin_without_a_rebalance_and_silent_members_expire() {
    let gw = InProcess::start_with(|s| s.group_initial_rebalance_delay = Duration::ZERO).await;
    let addr = gw.addr;
    let mut admin = connect(addr).await;

    // A static member joins without MEMBER_ID_REQUIRED, a dynamic one with it.
    let static_join = tokio::spawn(async move {
        let mut s = connect(addr).await;
        let r = join(&mut s, &join_req("sg", "", Some("instance-1"), &["range"])).await;
        (s, r)
    });
    let (mut a, ja) = static_join.await.expect("member task");
    assert_eq!(ja.error_code, 0);
    assert_eq!(ja.generation_id, 1);
    let a_id = ja.member_id.to_string();
    assert!(a_id.starts_with("instance-1-"), "{a_id}");
    let s = sync(&mut a, &sync_req("sg", 1, &a_id, &[(&a_id, "mine")])).await;
    assert_eq!(s.error_code, 0);
    let b_join = spawn_new_member(addr, "sg", &["range"]);
    // a rejoins when told (its metadata unchanged).
    let deadline = Instant::now() + Duration::from_secs(10);
    while heartbeat(&mut a, "sg", 1, &a_id, Some("instance-1")).await != REBALANCE_IN_PROGRESS {
        assert!(Instant::now() < deadline, "no rebalance announced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (a, ja) = rejoin(a, join_req("sg", &a_id, Some("instance-1"), &["range"]))
        .await
        .expect("consumer thread");
    let (b, jb) = b_join.await.expect("member task");
    assert_eq!((ja.generation_id, jb.generation_id), (2, 2));
    let b_id = jb.member_id.to_string();
    let leader = ja.leader.to_string();
    let (mut lead, lead_id, mut follow, follow_id) = if leader == a_id {
        (a, a_id.clone(), b, b_id.clone())
    } else {
        (b, b_id.clone(), a, a_id.clone())
    };
    let f_sync = tokio::spawn({
        let id = follow_id.clone();
        async move {
            let r = sync(&mut follow, &sync_req("sg", 2, &id, &[])).await;
            (follow, r)
        }
    });
    let assignment = [(a_id.as_str(), "a-part"), (b_id.as_str(), "b-part")];
    assert_eq!(
        sync(&mut lead, &sync_req("sg", 2, &lead_id, &assignment))
            .await
            .error_code,
        0
    );
    let (follow, fs) = f_sync.await.expect("member task");
    assert_eq!(fs.error_code, 0);
    let (mut a, mut b) = if leader == a_id {
        (lead, follow)
    } else {
        (follow, lead)
    };

    // The static member restarts: a new member id, the same generation and
    // assignment, no rebalance for the other member.
    let mut a2 = connect(addr).await;
    let ja2 = join(&mut a2, &join_req("sg", "", Some("instance-1"), &["range"])).await;
    assert_eq!(ja2.error_code, 0);
    assert_eq!(ja2.generation_id, 2, "no new generation");
    let a2_id = ja2.member_id.to_string();
    assert_ne!(a2_id, a_id);
    let s = sync(&mut a2, &sync_req("sg", 2, &a2_id, &[])).await;
    assert_eq!((s.error_code, &s.assignment[..]), (0, &b"a-part"[..]));
    assert_eq!(
        heartbeat(&mut b, "sg", 2, &b_id, None).await,
        0,
        "b is not rebalanced"
    );
    // The old incarnation is fenced.
    assert_eq!(
        heartbeat(&mut a, "sg", 2, &a_id, Some("instance-1")).await,
        FENCED_INSTANCE_ID
    );
    assert_eq!(
        leave(&mut admin, "sg", &[(&a_id, Some("instance-1"))]).await,
        vec![FENCED_INSTANCE_ID]
    );

    // b goes silent: after its session timeout (6 s) it is removed and the
    // static member is told to rejoin.
    let silent_since = Instant::now();
    let deadline = silent_since + Duration::from_secs(20);
    loop {
        let code = heartbeat(&mut a2, "sg", 2, &a2_id, Some("instance-1")).await;
        if code == REBALANCE_IN_PROGRESS {
            break;
        }
        assert_eq!(code, 0);
        assert!(Instant::now() < deadline, "the silent member never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        silent_since.elapsed() >= Duration::from_secs(5),
        "b expired before its session timeout"
    );
    let ja3 = join(
        &mut a2,
        &join_req("sg", &a2_id, Some("instance-1"), &["range"]),
    )
    .await;
    assert_eq!(ja3.error_code, 0);
    assert_eq!(ja3.generation_id, 3);
    assert_eq!(ja3.members.len(), 1, "only the static member is left");
    assert_eq!(
        heartbeat(&mut b, "sg", 2, &b_id, None).await,
        UNKNOWN_MEMBER_ID
    );
    gw.stop().await;
}

/// The group's state is stored when a generation completes: a restarted
/// gateway (or a new coordinator) serves the same members at the same
/// generation, without a rebalance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stable_group_survives_a_gateway_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port();
    let backend = common::test_backend("floe-groups");
    let mut args = vec![("group-initial-rebalance-delay", "0s")];
    args.extend(backend.iter().map(|(k, v)| (*k, v.as_str())));
    let mut gw = Process::start(dir.path(), port, &args);
    let addr: std::net::SocketAddr = gw.bootstrap().parse().expect("gateway address");
    let mut s = connect(addr).await;
    let j = join(&mut s, &join_req("kept", "", Some("keeper"), &["range"])).await;
    assert_eq!(j.error_code, 0);
    let id = j.member_id.to_string();
    let r = sync(
        &mut s,
        &sync_req("kept", j.generation_id, &id, &[(&id, "kept-part")]),
    )
    .await;
    assert_eq!(r.error_code, 0);
    drop(s);
    gw.kill9();
    gw.restart();
    let mut s = connect(addr).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        let code = heartbeat(&mut s, "kept", j.generation_id, &id, Some("keeper")).await;
        // Retriable while the restarted gateway finds itself coordinator.
        if ![14, 15, 16].contains(&code) || Instant::now() > deadline {
            break code;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, 0, "the member is still in its generation");
    let r = sync(&mut s, &sync_req("kept", j.generation_id, &id, &[])).await;
    assert_eq!((r.error_code, &r.assignment[..]), (0, &b"kept-part"[..]));
    let d = describe(&mut s, "kept").await;
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].group_instance_id.as_deref(), Some("keeper"));
    gw.terminate();
}

/// One KIP-848 member's view: (error, member epoch, assignment if sent).
type Beat = (i16, i32, Option<BTreeMap<i32, Vec<i32>>>);

/// A ConsumerGroupHeartbeat v1. `owned` None: unchanged since the last one.
#[allow(clippy::too_many_arguments)]
async fn beat(
    s: &mut TcpStream,
    group: &str,
    member: &str,
    epoch: i32,
    instance: Option<&str>,
    topic: Option<(&str, uuid::Uuid)>,
    owned: Option<&[i32]>,
    assignor: Option<&str>,
) -> Beat {
    use consumer_group_heartbeat_request::TopicPartitions;
    let mut r = ConsumerGroupHeartbeatRequest::default();
    r.group_id = gid(group);
    r.member_id = sb(member);
    r.member_epoch = epoch;
    r.instance_id = instance.map(sb);
    r.rebalance_timeout_ms = 30_000;
    r.server_assignor = assignor.map(sb);
    if let Some((name, _)) = topic {
        r.subscribed_topic_names = Some(vec![TopicName(sb(name))]);
    }
    r.topic_partitions = match (owned, topic) {
        (Some(ps), Some((_, id))) => {
            let mut tp = TopicPartitions::default();
            tp.topic_id = id;
            tp.partitions = ps.to_vec();
            Some(vec![tp])
        }
        (Some(_), None) => Some(Vec::new()),
        (None, _) => None,
    };
    let resp: ConsumerGroupHeartbeatResponse =
        roundtrip(s, ApiKey::ConsumerGroupHeartbeat, 1, &r).await;
    let assignment = resp.assignment.map(|a| {
        // Keyed by a small number per topic id, for readable assertions.
        a.topic_partitions
            .into_iter()
            .map(|tp| (tp.topic_id.as_u128() as i32, tp.partitions))
            .collect()
    });
    (resp.error_code, resp.member_epoch, assignment)
}

fn parts(a: &Option<BTreeMap<i32, Vec<i32>>>) -> Vec<i32> {
    let mut v: Vec<i32> = a
        .iter()
        .flat_map(|m| m.values().flatten().copied())
        .collect();
    v.sort();
    v
}

async fn commit_v9(s: &mut TcpStream, group: &str, epoch: i32, member: &str) -> i16 {
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = 1;
    p.committed_leader_epoch = -1;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(sb("k"));
    t.partitions.push(p);
    let mut r = OffsetCommitRequest::default();
    r.group_id = gid(group);
    r.generation_id_or_member_epoch = epoch;
    r.member_id = sb(member);
    r.topics.push(t);
    let resp: OffsetCommitResponse = roundtrip(s, ApiKey::OffsetCommit, 9, &r).await;
    resp.topics[0].partitions[0].error_code
}

/// The topic id of `name`, from Metadata.
async fn topic_id(s: &mut TcpStream, name: &str) -> uuid::Uuid {
    let mut t = metadata_request::MetadataRequestTopic::default();
    t.name = Some(TopicName(sb(name)));
    let mut r = MetadataRequest::default();
    r.topics = Some(vec![t]);
    let resp: MetadataResponse = roundtrip(s, ApiKey::Metadata, 12, &r).await;
    resp.topics[0].topic_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_group_protocol_on_the_wire() {
    let gw = InProcess::start_with(|s| {
        s.consumer_group_session_timeout = Duration::from_secs(2);
        s.consumer_group_heartbeat_interval = Duration::from_millis(200);
    })
    .await;
    let addr = gw.addr;
    common::kafka::create_topic(&gw.bootstrap(), "k", 4).await;
    let mut s = connect(addr).await;
    let id = topic_id(&mut s, "k").await;
    let k = Some(("k", id));
    let key = id.as_u128() as i32;
    let (a, b) = ("member-a", "member-b");

    // Refused joins.
    let r = beat(&mut s, "kg", a, 0, None, k, Some(&[]), Some("sticky-x")).await;
    assert_eq!(r.0, UNSUPPORTED_ASSIGNOR);
    assert_eq!(
        beat(&mut s, "kg", "nobody", 3, None, k, None, None).await.0,
        UNKNOWN_MEMBER_ID
    );

    // The first member gets everything.
    let (code, a_epoch, got) = beat(&mut s, "kg", a, 0, None, k, Some(&[]), None).await;
    assert_eq!(code, 0);
    assert!(a_epoch > 0);
    assert_eq!(parts(&got), vec![0, 1, 2, 3]);
    assert_eq!(
        got.as_ref()
            .expect("an assignment")
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![key]
    );
    let r = beat(&mut s, "kg", a, a_epoch + 5, None, None, None, None).await;
    assert_eq!(r.0, FENCED_MEMBER_EPOCH);
    // Nothing changed: no assignment in the answer.
    let r = beat(&mut s, "kg", a, a_epoch, None, None, None, None).await;
    assert_eq!((r.0, r.1, r.2.clone()), (0, a_epoch, None));
    // A classic member cannot join a KIP-848 group.
    let mut other = connect(addr).await;
    let j = join(&mut other, &join_req("kg", "", None, &["range"])).await;
    assert_eq!(j.error_code, INCONSISTENT_GROUP_PROTOCOL);

    // A second member: it gets the new epoch but nothing yet (a still holds
    // everything); a is told to keep only half, at its old epoch.
    let (code, b_epoch, got) = beat(&mut s, "kg", b, 0, None, k, Some(&[]), None).await;
    assert_eq!(code, 0);
    assert!(b_epoch > a_epoch);
    assert_eq!(parts(&got), Vec::<i32>::new(), "b waits for a's revocation");
    let (code, epoch, got) = beat(
        &mut s,
        "kg",
        a,
        a_epoch,
        None,
        None,
        Some(&[0, 1, 2, 3]),
        None,
    )
    .await;
    assert_eq!(
        (code, epoch),
        (0, a_epoch),
        "a revokes before its epoch moves"
    );
    let keep = parts(&got);
    assert_eq!(keep.len(), 2);
    // Commits: current epochs only.
    assert_eq!(commit_v9(&mut s, "kg", a_epoch, a).await, 0);
    assert_eq!(commit_v9(&mut s, "kg", b_epoch, b).await, 0);
    assert_eq!(
        commit_v9(&mut s, "kg", b_epoch - 1, b).await,
        STALE_MEMBER_EPOCH
    );
    assert_eq!(commit_v9(&mut s, "kg", -1, "").await, UNKNOWN_MEMBER_ID);
    // OffsetFetch v9 checks the member's epoch too.
    for (epoch, code) in [(b_epoch, 0), (b_epoch - 1, STALE_MEMBER_EPOCH)] {
        let mut fg = offset_fetch_request::OffsetFetchRequestGroup::default();
        fg.group_id = gid("kg");
        fg.member_id = Some(sb(b));
        fg.member_epoch = epoch;
        fg.topics = None;
        let mut f = OffsetFetchRequest::default();
        f.groups.push(fg);
        let r: OffsetFetchResponse = roundtrip(&mut s, ApiKey::OffsetFetch, 9, &f).await;
        assert_eq!(r.groups[0].error_code, code, "fetch at epoch {epoch}");
    }
    // b still waits; a confirms by listing only what it kept.
    assert_eq!(
        parts(
            &beat(&mut s, "kg", b, b_epoch, None, None, None, None)
                .await
                .2
        ),
        Vec::<i32>::new()
    );
    let (code, epoch, _) = beat(&mut s, "kg", a, a_epoch, None, None, Some(&keep), None).await;
    assert_eq!((code, epoch), (0, b_epoch), "a reaches the group's epoch");
    let a_epoch = epoch;
    let (_, _, got) = beat(&mut s, "kg", b, b_epoch, None, None, Some(&[]), None).await;
    let b_has = parts(&got);
    assert_eq!(b_has.len(), 2);
    assert!(
        b_has.iter().all(|p| !keep.contains(p)),
        "{b_has:?} vs {keep:?}"
    );

    let d = describe(&mut s, "kg").await;
    assert_eq!(
        (d.group_state.as_str(), d.protocol_type.as_str()),
        ("Stable", "consumer")
    );
    assert_eq!(d.members.len(), 2);
    assert!(list(&mut s, &["Stable"]).await.contains(&(
        "kg".to_string(),
        "consumer".to_string(),
        "Stable".to_string()
    )));
    assert_eq!(delete(&mut s, "kg").await, NON_EMPTY_GROUP);

    // a leaves: b gets everything at a new epoch.
    assert_eq!(beat(&mut s, "kg", a, -1, None, None, None, None).await.0, 0);
    let (code, epoch, got) = beat(&mut s, "kg", b, b_epoch, None, None, Some(&b_has), None).await;
    assert_eq!(code, 0);
    assert!(epoch > b_epoch);
    assert_eq!(parts(&got), vec![0, 1, 2, 3]);
    let b_epoch = epoch;
    let _ = a_epoch;

    // A static member leaves for a restart (-2) and its instance comes back
    // under a new member id with the same partitions; a second member naming
    // a live instance id is refused.
    let (c1, c2) = ("static-1", "static-2");
    let (code, c_epoch, _) = beat(&mut s, "kg", c1, 0, Some("inst"), k, Some(&[]), None).await;
    assert_eq!(code, 0);
    // Let the two split the topic.
    let mut c_has = Vec::new();
    let mut b_owned = vec![0, 1, 2, 3];
    let mut c_epoch = c_epoch;
    let mut b_epoch = b_epoch;
    for _ in 0..10 {
        let (_, e, got) = beat(&mut s, "kg", b, b_epoch, None, None, Some(&b_owned), None).await;
        b_epoch = e;
        if got.is_some() {
            b_owned = parts(&got);
        }
        let (_, e, got) = beat(
            &mut s,
            "kg",
            c1,
            c_epoch,
            Some("inst"),
            None,
            Some(&c_has),
            None,
        )
        .await;
        c_epoch = e;
        if got.is_some() {
            c_has = parts(&got);
        }
    }
    assert_eq!(
        (b_owned.len(), c_has.len()),
        (2, 2),
        "split between b and the static member"
    );
    let r = beat(
        &mut s,
        "kg",
        "static-x",
        0,
        Some("inst"),
        k,
        Some(&[]),
        None,
    )
    .await;
    assert_eq!(r.0, UNRELEASED_INSTANCE_ID);
    assert_eq!(
        beat(&mut s, "kg", c1, -2, Some("inst"), None, None, None)
            .await
            .0,
        0
    );
    let (code, epoch, got) = beat(&mut s, "kg", c2, 0, Some("inst"), k, Some(&[]), None).await;
    assert_eq!(code, 0);
    assert_eq!(epoch, c_epoch, "the instance resumes at its epoch");
    assert_eq!(parts(&got), c_has, "with its partitions");

    // b goes silent: after the session timeout (2 s here) the static member
    // gets everything.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c_owned = c_has.clone();
    let mut c_epoch = epoch;
    while c_owned.len() < 4 {
        assert!(Instant::now() < deadline, "b never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (code, e, got) = beat(
            &mut s,
            "kg",
            c2,
            c_epoch,
            Some("inst"),
            None,
            Some(&c_owned),
            None,
        )
        .await;
        assert_eq!(code, 0);
        c_epoch = e;
        if got.is_some() {
            c_owned = parts(&got);
        }
    }
    assert_eq!(
        beat(&mut s, "kg", b, b_epoch, None, None, None, None)
            .await
            .0,
        UNKNOWN_MEMBER_ID
    );
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// librdkafka consumers that subscribe.

/// Records every rebalance a consumer goes through.
#[derive(Default, Clone)]
struct Rebalances(Arc<Mutex<RebalanceLog>>);

/// ("assign" | "revoke" | "error ...", partitions), in order.
type RebalanceLog = Vec<(String, BTreeSet<i32>)>;

impl ClientContext for Rebalances {}
impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let mut log = self.0.lock().expect("rebalance log");
        match r {
            Rebalance::Assign(tpl) => log.push((
                "assign".into(),
                tpl.elements().iter().map(|e| e.partition()).collect(),
            )),
            Rebalance::Revoke(tpl) => log.push((
                "revoke".into(),
                tpl.elements().iter().map(|e| e.partition()).collect(),
            )),
            Rebalance::Error(e) => log.push((format!("error {e}"), BTreeSet::new())),
        }
    }
}

type Member = BaseConsumer<Rebalances>;

fn member(
    bootstrap: &str,
    group: &str,
    strategy: &str,
    extra: &[(&str, &str)],
) -> (Member, Rebalances) {
    let ctx = Rebalances::default();
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100");
    // "consumer:<assignor>": the KIP-848 protocol with a server-side assignor;
    // otherwise the classic protocol with a client-side one.
    match strategy.strip_prefix("consumer:") {
        Some(assignor) => cfg
            .set("group.protocol", "consumer")
            .set("group.remote.assignor", assignor),
        None => cfg
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("partition.assignment.strategy", strategy),
    };
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    let c: Member = cfg.create_with_context(ctx.clone()).expect("consumer");
    (c, ctx)
}

fn assigned(c: &Member) -> BTreeSet<i32> {
    c.assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Polls every member until `done` holds of their assignments; collects
/// what they consume (partition → offsets) meanwhile.
fn poll_until(
    members: &[&Member],
    seen: &mut BTreeMap<i32, BTreeSet<i64>>,
    within: Duration,
    what: &str,
    done: impl Fn(&[BTreeSet<i32>]) -> bool,
) {
    poll_loop(members, seen, within, what, false, done)
}

/// `poll_until` while the group's coordinator moves (its gateway was
/// killed): until every surviving gateway has seen the kill (within a
/// heartbeat interval of each other), one may still name the dead
/// coordinator and another answer NOT_COORDINATOR. librdkafka retries an
/// auto-commit a few times and then reports it failed ("Offset commit
/// failed"), as it does during a Kafka coordinator migration; the next
/// auto-commit succeeds. Those reports are tolerated here, nothing else:
/// every record must still be consumed and the group must re-form.
fn poll_through_coordinator_move(
    members: &[&Member],
    seen: &mut BTreeMap<i32, BTreeSet<i64>>,
    within: Duration,
    what: &str,
    done: impl Fn(&[BTreeSet<i32>]) -> bool,
) {
    poll_loop(members, seen, within, what, true, done)
}

fn poll_loop(
    members: &[&Member],
    seen: &mut BTreeMap<i32, BTreeSet<i64>>,
    within: Duration,
    what: &str,
    coordinator_moving: bool,
    done: impl Fn(&[BTreeSet<i32>]) -> bool,
) {
    use rdkafka::types::RDKafkaErrorCode as E;
    let deadline = Instant::now() + within;
    loop {
        for c in members {
            while let Some(m) = c.poll(Duration::from_millis(20)) {
                match m {
                    Ok(m) => {
                        seen.entry(m.partition()).or_default().insert(m.offset());
                    }
                    // librdkafka reports a lost connection (a killed gateway)
                    // and carries on, as applications do.
                    Err(rdkafka::error::KafkaError::MessageConsumption(
                        E::BrokerTransportFailure | E::AllBrokersDown,
                    )) => {}
                    Err(rdkafka::error::KafkaError::MessageConsumption(
                        code @ (E::NotCoordinator | E::CoordinatorNotAvailable),
                    )) if coordinator_moving => {
                        eprintln!("{what}: commit reported {code:?} while the coordinator moved");
                    }
                    Err(e) => panic!("{what}: {e}"),
                }
            }
        }
        let sets: Vec<BTreeSet<i32>> = members.iter().map(|c| assigned(c)).collect();
        if done(&sets) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: assignments stuck at {sets:?}"
        );
    }
}

fn split_evenly(sets: &[BTreeSet<i32>], partitions: i32) -> bool {
    let all: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    let total: usize = sets.iter().map(|s| s.len()).sum();
    let n = sets.len() as i32;
    total == partitions as usize
        && all == (0..partitions).collect()
        && sets.iter().all(|s| s.len() as i32 == partitions / n)
}

async fn produce_n(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize) {
    let p = common::kafka::durable_producer(bootstrap);
    for i in 0..per_partition {
        for part in 0..partitions {
            let payload = format!("{part}-{i}");
            let rec = rdkafka::producer::FutureRecord::<(), _>::to(topic)
                .partition(part)
                .payload(&payload);
            p.send(rec, Duration::from_secs(30)).await.expect("ack");
        }
    }
}

/// A gateway whose KIP-848 members heartbeat every 500 ms (Kafka's 5 s
/// default would only slow the tests down).
async fn gateway() -> InProcess {
    InProcess::start_with(|s| {
        s.consumer_group_heartbeat_interval = Duration::from_millis(500);
        s.consumer_group_session_timeout = Duration::from_secs(6);
    })
    .await
}

/// Three members of each assignor, classic (client-side) and KIP-848
/// (server-side), split 12 partitions 4/4/4; one closes and the other two split
/// them 6/6, having read every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribed_members_split_a_topic_with_each_assignor() {
    let gw = gateway().await;
    let bs = gw.bootstrap();
    common::kafka::create_topic(&bs, "split", 12).await;
    produce_n(&bs, "split", 12, 5).await;
    for strategy in [
        "range",
        "roundrobin",
        "cooperative-sticky",
        "consumer:uniform",
        "consumer:range",
    ] {
        let group = format!("split-{}", strategy.replace(':', "-"));
        let bs = bs.clone();
        tokio::task::spawn_blocking(move || {
            let (c1, _) = member(&bs, &group, strategy, &[]);
            let (c2, _) = member(&bs, &group, strategy, &[]);
            let (c3, _) = member(&bs, &group, strategy, &[]);
            for c in [&c1, &c2, &c3] {
                c.subscribe(&["split"]).expect("subscribe");
            }
            let mut seen = BTreeMap::new();
            poll_until(
                &[&c1, &c2, &c3],
                &mut seen,
                Duration::from_secs(60),
                strategy,
                |s| split_evenly(s, 12),
            );
            drop(c3);
            poll_until(
                &[&c1, &c2],
                &mut seen,
                Duration::from_secs(60),
                strategy,
                |s| split_evenly(s, 12),
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while seen.values().map(|o| o.len()).sum::<usize>() < 60 {
                poll_until(
                    &[&c1, &c2],
                    &mut seen,
                    Duration::from_secs(30),
                    strategy,
                    |_| true,
                );
                assert!(Instant::now() < deadline, "{strategy}: read only {seen:?}");
            }
            for p in 0..12 {
                assert_eq!(
                    seen.get(&p),
                    Some(&(0..5).collect()),
                    "{strategy}: partition {p}"
                );
            }
        })
        .await
        .expect("consumer thread");
    }
    gw.stop().await;
}

/// cooperative-sticky: a member joining takes partitions away incrementally:
/// the first member's revocations name only the partitions that move, and it
/// never gives up the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cooperative_sticky_rebalances_incrementally() {
    let gw = gateway().await;
    let bs = gw.bootstrap();
    common::kafka::create_topic(&bs, "coop", 8).await;
    tokio::task::spawn_blocking(move || {
        let (c1, log1) = member(&bs, "coop-g", "cooperative-sticky", &[]);
        c1.subscribe(&["coop"]).expect("subscribe");
        let mut seen = BTreeMap::new();
        poll_until(&[&c1], &mut seen, Duration::from_secs(30), "first", |s| {
            s[0].len() == 8
        });
        let (c2, _) = member(&bs, "coop-g", "cooperative-sticky", &[]);
        c2.subscribe(&["coop"]).expect("subscribe");
        poll_until(
            &[&c1, &c2],
            &mut seen,
            Duration::from_secs(60),
            "second",
            |s| split_evenly(s, 8),
        );
        let log = log1.0.lock().expect("rebalance log").clone();
        let revoked: BTreeSet<i32> = log
            .iter()
            .filter(|(k, _)| k == "revoke")
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        assert_eq!(
            revoked.len(),
            4,
            "only the moved partitions are revoked: {log:?}"
        );
        assert!(revoked.is_disjoint(&assigned(&c1)), "{log:?}");
        assert!(log.iter().all(|(k, _)| !k.starts_with("error")), "{log:?}");
    })
    .await
    .expect("consumer thread");
    gw.stop().await;
}

/// A static member (`group.instance.id`) closes and a new consumer with the
/// same instance id takes its place within the session timeout: it gets the
/// same partitions and the other member is not rebalanced. Both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_member_returns_to_its_partitions_without_a_rebalance() {
    let gw = gateway().await;
    let bs = gw.bootstrap();
    common::kafka::create_topic(&bs, "static", 4).await;
    tokio::task::spawn_blocking(move || {
        for strategy in ["range", "consumer:uniform"] {
            let group = format!("static-{}", strategy.replace(':', "-"));
            let stat = [("group.instance.id", "instance-7")];
            let (other, other_log) = member(&bs, &group, strategy, &[]);
            let (first, _) = member(&bs, &group, strategy, &stat);
            other.subscribe(&["static"]).expect("subscribe");
            first.subscribe(&["static"]).expect("subscribe");
            let mut seen = BTreeMap::new();
            poll_until(
                &[&other, &first],
                &mut seen,
                Duration::from_secs(60),
                strategy,
                |s| split_evenly(s, 4),
            );
            let held = assigned(&first);
            let others = assigned(&other);
            let events_before = other_log.0.lock().expect("rebalance log").len();
            drop(first);
            let (second, _) = member(&bs, &group, strategy, &stat);
            second.subscribe(&["static"]).expect("subscribe");
            poll_until(
                &[&other, &second],
                &mut seen,
                Duration::from_secs(30),
                strategy,
                |s| s[1] == held,
            );
            // A little longer: a rebalance would show up on the other member.
            let settle = Instant::now() + Duration::from_secs(3);
            while Instant::now() < settle {
                poll_until(
                    &[&other, &second],
                    &mut seen,
                    Duration::from_secs(5),
                    strategy,
                    |_| true,
                );
            }
            assert_eq!(
                assigned(&other),
                others,
                "{strategy}: the other member kept its partitions"
            );
            let log = other_log.0.lock().expect("rebalance log").clone();
            assert_eq!(
                log.len(),
                events_before,
                "{strategy}: the other member was rebalanced: {log:?}"
            );
        }
    })
    .await
    .expect("consumer thread");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_classic_group_survives_its_coordinator_gateway_being_killed() {
    coordinator_killed("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kip848_group_survives_its_coordinator_gateway_being_killed() {
    coordinator_killed("consumer:uniform").await;
}

/// Three gateways; the group's coordinator is killed under a consuming group
/// (formed, and every record produced so far read): the members find the new
/// coordinator and keep every partition consumed, reading every record
/// produced after.
async fn coordinator_killed(strategy: &'static str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let backend = common::test_backend("floe-groups-ha");
    let mut gws: Vec<Process> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let node = i.to_string();
            let gw_id = format!("gw-{i}");
            let mut args = vec![
                ("gateway-id", gw_id.as_str()),
                ("node-id", node.as_str()),
                ("heartbeat-interval", "200ms"),
                ("session-timeout", "1500ms"),
                ("consumer-group-heartbeat-interval", "500ms"),
            ];
            args.extend(backend.iter().map(|(k, v)| (*k, v.as_str())));
            Process::start(dir.path(), *port, &args)
        })
        .collect();
    let all: String = gws
        .iter()
        .map(|g| g.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    // Every gateway sees the others before the group forms.
    tokio::time::sleep(Duration::from_secs(2)).await;
    common::kafka::create_topic(&all, "ha", 6).await;
    produce_n(&all, "ha", 6, 3).await;

    let bs = all.clone();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (formed_tx, formed_rx) = std::sync::mpsc::channel::<()>();
    let consumers = tokio::task::spawn_blocking(move || {
        let (c1, _) = member(&bs, "ha-group", strategy, &[]);
        let (c2, _) = member(&bs, "ha-group", strategy, &[]);
        c1.subscribe(&["ha"]).expect("subscribe");
        c2.subscribe(&["ha"]).expect("subscribe");
        let mut seen = BTreeMap::new();
        poll_until(
            &[&c1, &c2],
            &mut seen,
            Duration::from_secs(60),
            "formed",
            |s| split_evenly(s, 6),
        );
        // Consuming: both members have read what was produced so far (their
        // committed-offset lookups are done), so the kill below hits a group
        // that is consuming, not one still starting its fetchers.
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.values().map(|o| o.len()).sum::<usize>() < 18 {
            poll_until(
                &[&c1, &c2],
                &mut seen,
                Duration::from_secs(60),
                "consuming",
                |_| true,
            );
            assert!(Instant::now() < deadline, "before the kill only {seen:?}");
        }
        // The test now kills the coordinator and produces more.
        formed_tx.send(()).expect("consumer thread");
        rx.recv().expect("test thread");
        let deadline = Instant::now() + Duration::from_secs(90);
        while seen.values().map(|o| o.len()).sum::<usize>() < 36 {
            poll_through_coordinator_move(
                &[&c1, &c2],
                &mut seen,
                Duration::from_secs(90),
                "after kill",
                |_| true,
            );
            assert!(Instant::now() < deadline, "after the kill only {seen:?}");
        }
        poll_through_coordinator_move(
            &[&c1, &c2],
            &mut seen,
            Duration::from_secs(60),
            "re-formed",
            |s| split_evenly(s, 6),
        );
        for p in 0..6 {
            assert_eq!(seen.get(&p), Some(&(0..6).collect()), "partition {p}");
        }
    });
    formed_rx
        .recv_timeout(Duration::from_secs(90))
        .expect("group formed");
    // The coordinator, as any gateway names it.
    let first: std::net::SocketAddr = gws[0].bootstrap().parse().expect("gateway address");
    let mut s = connect(first).await;
    let mut fc = FindCoordinatorRequest::default();
    fc.coordinator_keys = vec![sb("ha-group")];
    let r: FindCoordinatorResponse = roundtrip(&mut s, ApiKey::FindCoordinator, 4, &fc).await;
    let port = r.coordinators[0].port as u16;
    let victim = ports
        .iter()
        .position(|p| *p == port)
        .expect("a known gateway");
    gws[victim].kill9();
    let survivors: Vec<String> = gws
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, g)| g.bootstrap())
        .collect();
    produce_n(&survivors.join(","), "ha", 6, 3).await;
    tx.send(()).expect("consumer thread");
    consumers.await.expect("consumer thread");
    for (i, g) in gws.iter_mut().enumerate() {
        if i != victim {
            g.terminate();
        }
    }
}
