//! Committed offsets: OffsetCommit / OffsetFetch / OffsetDelete and
//! FindCoordinator, byte for byte at their versions, then with librdkafka: a
//! consumer commits, a new consumer (and a restarted gateway) resumes exactly
//! after the committed offset, and with three gateways every one names the same
//! coordinator and the others answer NOT_COORDINATOR.

mod common;

use std::time::Duration;

use common::InProcess;
use common::wire::{connect, create_topic, roundtrip, sb};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::net::TcpStream;

/// (topic, partition, committed offset) in an OffsetFetch v8 answer.
type Row = (String, i32, i64);

const NOT_COORDINATOR: i16 = 16;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_GROUP_ID: i16 = 24;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const GROUP_ID_NOT_FOUND: i16 = 69;

fn commit_req(
    group: &str,
    topic: &str,
    rows: &[(i32, i64, i32, Option<&str>)],
) -> OffsetCommitRequest {
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(sb(topic));
    for &(p, o, e, md) in rows {
        let mut pr = OffsetCommitRequestPartition::default();
        pr.partition_index = p;
        pr.committed_offset = o;
        pr.committed_leader_epoch = e;
        pr.committed_metadata = md.map(sb);
        t.partitions.push(pr);
    }
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(sb(group));
    r.generation_id_or_member_epoch = -1;
    r.retention_time_ms = -1;
    r.topics.push(t);
    r
}

async fn commit(s: &mut TcpStream, v: i16, req: &OffsetCommitRequest) -> Vec<i16> {
    let resp: OffsetCommitResponse = roundtrip(s, ApiKey::OffsetCommit, v, req).await;
    resp.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// (partition, offset, leader epoch, metadata, error) of one group at v1-v7.
async fn fetch_v(
    s: &mut TcpStream,
    v: i16,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> (i16, Vec<(i32, i64, i32, Option<String>, i16)>) {
    let mut t = OffsetFetchRequestTopic::default();
    t.name = TopicName(sb(topic));
    t.partition_indexes = partitions.to_vec();
    let mut r = OffsetFetchRequest::default();
    r.group_id = GroupId(sb(group));
    r.topics = Some(vec![t]);
    let resp: OffsetFetchResponse = roundtrip(s, ApiKey::OffsetFetch, v, &r).await;
    let rows = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.metadata.as_ref().map(|m| m.to_string()),
                    p.error_code,
                )
            })
        })
        .collect();
    (resp.error_code, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_commit_fetch_and_delete_at_every_version() {
    let gw = InProcess::start().await;
    create_topic(gw.addr, "o1", &[]).await;
    create_topic(gw.addr, "o2", &[]).await;
    let mut s = connect(gw.addr).await;

    // FindCoordinator names this gateway, single key and batched.
    for v in 0..=6i16 {
        let mut r = FindCoordinatorRequest::default();
        if v >= 4 {
            r.coordinator_keys = vec![sb("g"), sb("other")];
        } else {
            r.key = sb("g");
        }
        let resp: FindCoordinatorResponse = roundtrip(&mut s, ApiKey::FindCoordinator, v, &r).await;
        if v >= 4 {
            assert_eq!(resp.coordinators.len(), 2);
            for c in &resp.coordinators {
                assert_eq!((c.error_code, c.port), (0, gw.addr.port() as i32), "v{v}");
            }
        } else {
            assert_eq!(
                (resp.error_code, resp.port),
                (0, gw.addr.port() as i32),
                "v{v}"
            );
        }
        // Transactions have no coordinator yet: a retriable error, not a lie.
        if v == 0 {
            continue; // key types arrived in v1
        }
        let mut r = FindCoordinatorRequest::default();
        r.key_type = 1;
        if v >= 4 {
            r.coordinator_keys = vec![sb("txn")];
        } else {
            r.key = sb("txn");
        }
        let resp: FindCoordinatorResponse = roundtrip(&mut s, ApiKey::FindCoordinator, v, &r).await;
        let code = if v >= 4 {
            resp.coordinators[0].error_code
        } else {
            resp.error_code
        };
        assert_eq!(code, 15, "v{v}: COORDINATOR_NOT_AVAILABLE for transactions");
    }

    for v in 2..=8i16 {
        let group = format!("g{v}");
        let req = commit_req(&group, "o1", &[(0, 10 + v as i64, 3, Some("meta"))]);
        assert_eq!(commit(&mut s, v, &req).await, vec![0], "commit v{v}");
        for fv in 1..=7i16 {
            let (err, rows) = fetch_v(&mut s, fv, &group, "o1", &[0]).await;
            assert_eq!(err, 0);
            let epoch = if fv >= 5 && v >= 6 { 3 } else { -1 };
            assert_eq!(
                rows,
                vec![(0, 10 + v as i64, epoch, Some("meta".into()), 0)],
                "commit v{v} fetch v{fv}"
            );
        }
    }

    // A later commit of one partition keeps the others; null metadata comes
    // back as "" (Kafka's); an unknown partition is -1.
    let mut s8 = connect(gw.addr).await;
    assert_eq!(
        commit(&mut s8, 8, &commit_req("g", "o1", &[(0, 5, 1, None)])).await,
        vec![0]
    );
    assert_eq!(
        commit(&mut s8, 8, &commit_req("g", "o2", &[(0, 7, 1, Some("x"))])).await,
        vec![0]
    );
    let (_, rows) = fetch_v(&mut s8, 7, "g", "o1", &[0, 5]).await;
    assert_eq!(
        rows,
        vec![
            (0, 5, 1, Some(String::new()), 0),
            (5, -1, -1, Some(String::new()), 0)
        ]
    );

    // Errors, per partition, Kafka's codes.
    let big = "m".repeat(5000);
    assert_eq!(
        commit(&mut s8, 8, &commit_req("g", "o1", &[(0, 6, 1, Some(&big))])).await,
        vec![OFFSET_METADATA_TOO_LARGE]
    );
    assert_eq!(
        commit(&mut s8, 8, &commit_req("g", "nope", &[(0, 6, 1, None)])).await,
        vec![UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(
        commit(&mut s8, 8, &commit_req("g", "o1", &[(3, 6, 1, None)])).await,
        vec![UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(
        commit(&mut s8, 8, &commit_req("", "o1", &[(0, 6, 1, None)])).await,
        vec![INVALID_GROUP_ID]
    );
    let mut member = commit_req("g", "o1", &[(0, 6, 1, None)]);
    member.generation_id_or_member_epoch = 4;
    member.member_id = sb("consumer-1");
    // As Kafka: a commit naming a member the group does not have.
    assert_eq!(commit(&mut s8, 8, &member).await, vec![UNKNOWN_MEMBER_ID]);
    let (_, rows) = fetch_v(&mut s8, 7, "g", "o1", &[0]).await;
    assert_eq!(rows[0].1, 5, "refused commits changed nothing");

    // v8: several groups at once, null topics = everything committed.
    let mut r = OffsetFetchRequest::default();
    for (g, topics) in [("g", None), ("g2", Some(vec!["o1"])), ("empty", None)] {
        let mut gr = OffsetFetchRequestGroup::default();
        gr.group_id = GroupId(sb(g));
        gr.topics = topics.map(|ts: Vec<&str>| {
            ts.into_iter()
                .map(|t| {
                    let mut x = OffsetFetchRequestTopics::default();
                    x.name = TopicName(sb(t));
                    x.partition_indexes = vec![0];
                    x
                })
                .collect()
        });
        r.groups.push(gr);
    }
    let resp: OffsetFetchResponse = roundtrip(&mut s8, ApiKey::OffsetFetch, 8, &r).await;
    let got: Vec<(String, Vec<Row>)> = resp
        .groups
        .iter()
        .map(|g| {
            assert_eq!(g.error_code, 0);
            (
                g.group_id.0.to_string(),
                g.topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(|p| (t.name.0.to_string(), p.partition_index, p.committed_offset))
                    })
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("g".into(), vec![("o1".into(), 0, 5), ("o2".into(), 0, 7)]),
            ("g2".into(), vec![("o1".into(), 0, 12)]),
            ("empty".into(), vec![]),
        ]
    );

    // OffsetDelete: the group's offsets of one topic go; others stay.
    let mut d = OffsetDeleteRequest::default();
    d.group_id = GroupId(sb("g"));
    let mut t = OffsetDeleteRequestTopic::default();
    t.name = TopicName(sb("o1"));
    let mut p = OffsetDeleteRequestPartition::default();
    p.partition_index = 0;
    t.partitions.push(p);
    d.topics.push(t);
    let resp: OffsetDeleteResponse = roundtrip(&mut s8, ApiKey::OffsetDelete, 0, &d).await;
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    let (_, rows) = fetch_v(&mut s8, 7, "g", "o1", &[0]).await;
    assert_eq!(rows[0].1, -1);
    let (_, rows) = fetch_v(&mut s8, 7, "g", "o2", &[0]).await;
    assert_eq!(rows[0].1, 7);
    d.group_id = GroupId(sb("never-committed"));
    let resp: OffsetDeleteResponse = roundtrip(&mut s8, ApiKey::OffsetDelete, 0, &d).await;
    assert_eq!(resp.error_code, GROUP_ID_NOT_FOUND);
    gw.stop().await;
}

fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

/// Reads `n` records of `topic` partition 0 from the committed offset (or the
/// beginning): their offsets.
fn read_from_stored(c: &BaseConsumer, topic: &str, n: usize) -> Vec<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Stored)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < n && std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(m.offset()),
            // A gateway that died is reported, then routed around.
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    out
}

async fn produce(bootstrap: &str, topic: &str, n: usize) {
    let producer = common::kafka::durable_producer(bootstrap);
    for i in 0..n {
        producer
            .send(
                rdkafka::producer::FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&format!("r{i}")),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_consumer_and_a_restarted_gateway_resume_after_the_committed_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gw = common::Process::start(dir.path(), common::free_port(), &[]);
    let bootstrap = gw.bootstrap();
    common::kafka::create_topic(&bootstrap, "resume", 1).await;
    produce(&bootstrap, "resume", 30).await;

    let c = consumer(&bootstrap, "readers");
    assert_eq!(
        read_from_stored(&c, "resume", 10),
        (0..10).collect::<Vec<_>>()
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("resume", 0, Offset::Offset(10))
        .expect("tpl");
    tpl.find_partition("resume", 0)
        .expect("partition")
        .set_metadata("checkpoint-10");
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    let committed = c
        .committed_offsets(tpl.clone(), Duration::from_secs(10))
        .expect("committed");
    let e = committed.find_partition("resume", 0).expect("partition");
    assert_eq!(e.offset(), Offset::Offset(10));
    assert_eq!(e.metadata(), "checkpoint-10");
    drop(c);

    // A new consumer of the group starts exactly at the committed offset.
    let c = consumer(&bootstrap, "readers");
    assert_eq!(
        read_from_stored(&c, "resume", 5),
        (10..15).collect::<Vec<_>>()
    );
    drop(c);
    // Another group has its own position.
    let other = consumer(&bootstrap, "others");
    assert_eq!(read_from_stored(&other, "resume", 3), vec![0, 1, 2]);
    drop(other);

    // Across a restart of the gateway (kill -9: nothing graceful).
    gw.kill9();
    gw.restart();
    let c = consumer(&bootstrap, "readers");
    assert_eq!(
        read_from_stored(&c, "resume", 5),
        (10..15).collect::<Vec<_>>()
    );
    drop(c);
    assert_eq!(gw.terminate(), Some(0));
}

/// A topic deleted and created again under its name starts with no
/// committed offsets, as on Kafka (which deletes them with the topic): a
/// group resumes it by its reset policy, not at an offset of the old topic.
/// Another topic's offsets in the same group stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recreated_topic_has_no_committed_offsets_of_its_predecessor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gw = common::Process::start(dir.path(), common::free_port(), &[]);
    let bootstrap = gw.bootstrap();
    for t in ["reborn", "steady"] {
        common::kafka::create_topic(&bootstrap, t, 1).await;
        produce(&bootstrap, t, 10).await;
    }
    let c = consumer(&bootstrap, "rebirth");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("reborn", 0, Offset::Offset(2))
        .expect("tpl");
    tpl.add_partition_offset("steady", 0, Offset::Offset(4))
        .expect("tpl");
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(c);

    common::kafka::delete_topic(&bootstrap, "reborn").await;
    common::kafka::create_topic(&bootstrap, "reborn", 1).await;
    produce(&bootstrap, "reborn", 5).await;

    let c = consumer(&bootstrap, "rebirth");
    let committed = c
        .committed_offsets(tpl.clone(), Duration::from_secs(10))
        .expect("committed");
    let offset = |t: &str| committed.find_partition(t, 0).expect(t).offset();
    assert_eq!(offset("reborn"), Offset::Invalid, "none for the new topic");
    assert_eq!(
        offset("steady"),
        Offset::Offset(4),
        "the other topic's stays"
    );
    // The reset policy (earliest) applies: every record of the new topic.
    assert_eq!(read_from_stored(&c, "reborn", 5), vec![0, 1, 2, 3, 4]);
    drop(c);
    assert_eq!(gw.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_gateway_names_one_coordinator_and_commits_survive_its_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let mut gws: Vec<common::Process> = (0..3)
        .map(|n| {
            let (id, node) = (format!("gw-{n}"), n.to_string());
            common::Process::start(
                dir.path(),
                ports[n],
                &[
                    ("gateway-id", &id),
                    ("node-id", &node),
                    ("heartbeat-interval", "200ms"),
                    ("session-timeout", "1500ms"),
                ],
            )
        })
        .collect();
    let bootstrap = gws
        .iter()
        .map(|g| g.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    // Let every gateway see the other two.
    tokio::time::sleep(Duration::from_secs(1)).await;
    common::kafka::create_topic(&bootstrap, "coord", 1).await;
    produce(&bootstrap, "coord", 20).await;

    // Every gateway names the same coordinator; the others refuse commits.
    let mut named = Vec::new();
    for g in &gws {
        let mut s = connect(format!("127.0.0.1:{}", g.port).parse().expect("addr")).await;
        let mut r = FindCoordinatorRequest::default();
        r.key = sb("team");
        let resp: FindCoordinatorResponse = roundtrip(&mut s, ApiKey::FindCoordinator, 3, &r).await;
        assert_eq!(resp.error_code, 0);
        named.push(resp.port);
    }
    assert!(
        named.iter().all(|p| *p == named[0]),
        "one coordinator: {named:?}"
    );
    let coordinator = ports
        .iter()
        .position(|p| *p as i32 == named[0])
        .expect("a gateway");
    let other = (coordinator + 1) % 3;
    let mut s = connect(format!("127.0.0.1:{}", ports[other]).parse().expect("addr")).await;
    let codes = commit(&mut s, 8, &commit_req("team", "coord", &[(0, 1, -1, None)])).await;
    assert_eq!(codes, vec![NOT_COORDINATOR]);

    let c = consumer(&bootstrap, "team");
    assert_eq!(read_from_stored(&c, "coord", 8), (0..8).collect::<Vec<_>>());
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("coord", 0, Offset::Offset(8))
        .expect("tpl");
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(c);

    // The coordinator dies; another gateway takes the group over and serves
    // the committed offset.
    gws[coordinator].kill9();
    let c = consumer(&bootstrap, "team");
    assert_eq!(
        read_from_stored(&c, "coord", 4),
        (8..12).collect::<Vec<_>>()
    );
    drop(c);
    for (n, g) in gws.iter_mut().enumerate() {
        if n != coordinator {
            assert_eq!(g.terminate(), Some(0));
        }
    }
}

/// Commits pipelined on one connection (librdkafka's async commits) land in
/// request order: the last one wins, as on Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commits_on_one_connection_land_in_order() {
    use common::wire::{Reply, decode_response, reply, request, send};
    let gw = InProcess::start().await;
    create_topic(gw.addr, "piped", &[]).await;
    let mut s = connect(gw.addr).await;
    let mut frames = Vec::new();
    for offset in 1..=50i64 {
        frames.extend(request(
            ApiKey::OffsetCommit,
            8,
            offset as i32,
            &commit_req("piped-group", "piped", &[(0, offset, -1, None)]),
        ));
    }
    send(&mut s, &frames).await;
    for offset in 1..=50i32 {
        let Reply::Frame(f) = reply(&mut s).await else {
            panic!("connection closed at commit {offset}");
        };
        let r: OffsetCommitResponse = decode_response(f, ApiKey::OffsetCommit, 8, offset);
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    }
    let (_, rows) = fetch_v(&mut s, 7, "piped-group", "piped", &[0]).await;
    assert_eq!(rows[0].1, 50, "the last commit wins");
    gw.stop().await;
}
