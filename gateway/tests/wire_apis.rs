//! Every advertised API at every advertised version, spoken byte for byte: what a
//! client library would send, decoded with kafka-protocol. Complements the
//! client-library tests, which each exercise only the versions they prefer.

mod common;

use bytes::Bytes;
use common::batches::{BatchBuilder, Record};
use common::wire::{
    Reply, connect, create_topic, decode_response, reply, request, roundtrip, sb, send,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use tokio::net::TcpStream;

fn produce_req(topic: &str, partition: i32, records: Vec<u8>) -> ProduceRequest {
    let mut pd = PartitionProduceData::default();
    pd.index = partition;
    pd.records = Some(Bytes::from(records));
    let mut td = TopicProduceData::default();
    td.name = TopicName(sb(topic));
    td.partition_data = vec![pd];
    let mut r = ProduceRequest::default();
    r.acks = -1;
    r.timeout_ms = 10_000;
    r.topic_data = vec![td];
    r
}

async fn produce(s: &mut TcpStream, version: i16, topic: &str, records: Vec<u8>) -> (i16, i64) {
    let resp: ProduceResponse =
        roundtrip(s, ApiKey::Produce, version, &produce_req(topic, 0, records)).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_req(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    let mut fp = FetchPartition::default();
    fp.partition = 0;
    fp.fetch_offset = offset;
    fp.partition_max_bytes = 1 << 20;
    let mut ft = FetchTopic::default();
    ft.topic = TopicName(sb(topic));
    ft.partitions = vec![fp];
    let mut r = FetchRequest::default();
    r.replica_id = BrokerId(-1);
    r.max_wait_ms = max_wait_ms;
    r.min_bytes = 1;
    r.max_bytes = 1 << 20;
    r.session_epoch = -1;
    r.topics = vec![ft];
    r
}

fn list_offsets_req(topic: &str, timestamp: i64) -> ListOffsetsRequest {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = timestamp;
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(sb(topic));
    t.partitions = vec![p];
    let mut r = ListOffsetsRequest::default();
    r.replica_id = BrokerId(-1);
    r.topics = vec![t];
    r
}

async fn list_offset(
    s: &mut TcpStream,
    version: i16,
    topic: &str,
    timestamp: i64,
) -> (i16, i64, i64) {
    let r: ListOffsetsResponse = roundtrip(
        s,
        ApiKey::ListOffsets,
        version,
        &list_offsets_req(topic, timestamp),
    )
    .await;
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

/// The batches in a fetched record set: (base offset, record count).
fn batches(records: &[u8]) -> Vec<(i64, i32)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 61 <= records.len() {
        let base = i64::from_be_bytes(records[pos..pos + 8].try_into().expect("8 bytes"));
        let len =
            i32::from_be_bytes(records[pos + 8..pos + 12].try_into().expect("4 bytes")) as usize;
        let count = i32::from_be_bytes(records[pos + 57..pos + 61].try_into().expect("4 bytes"));
        out.push((base, count));
        pos += 12 + len;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_lists_exactly_what_is_served() {
    let g = common::InProcess::start().await;
    let mut s = connect(g.addr).await;
    for v in 0..=3 {
        let r: ApiVersionsResponse = roundtrip(
            &mut s,
            ApiKey::ApiVersions,
            v,
            &ApiVersionsRequest::default(),
        )
        .await;
        assert_eq!(r.error_code, 0);
        let listed: Vec<_> = r
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        let served: Vec<_> = floe_gateway::api::SUPPORTED
            .iter()
            .map(|(k, lo, hi)| (*k as i16, *lo, *hi))
            .collect();
        assert_eq!(listed, served, "ApiVersions v{v}");
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fetch_and_list_offsets_at_every_version() {
    let g = common::InProcess::start().await;
    create_topic(g.addr, "versions", &[]).await;
    let mut s = connect(g.addr).await;
    let mut expected_next = 0i64;
    for v in 3..=11 {
        let batch = BatchBuilder::new(1_000 + v as i64)
            .record(Some(b"k"), Some(format!("v{v}").as_bytes()))
            .record(None, Some(b"x"))
            .build();
        let (err, base) = produce(&mut s, v, "versions", batch).await;
        assert_eq!((err, base), (0, expected_next), "Produce v{v}");
        expected_next += 2;
    }
    for v in 4..=12 {
        let r: FetchResponse =
            roundtrip(&mut s, ApiKey::Fetch, v, &fetch_req("versions", 4, 100)).await;
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v{v}");
        assert_eq!(p.high_watermark, expected_next, "Fetch v{v} high watermark");
        let got = batches(p.records.as_deref().unwrap_or(&[]));
        assert_eq!(
            got.first(),
            Some(&(4, 2)),
            "Fetch v{v} starts at the batch holding offset 4"
        );
        assert_eq!(got.len(), 7, "Fetch v{v} returns the rest");
    }
    for v in 1..=7 {
        assert_eq!(
            list_offset(&mut s, v, "versions", -1).await.1,
            expected_next,
            "ListOffsets v{v} latest"
        );
        assert_eq!(
            list_offset(&mut s, v, "versions", -2).await.1,
            0,
            "ListOffsets v{v} earliest"
        );
        // Produce v{n} wrote offsets 2(n-3) and 2(n-3)+1 at times 1000+n and 1001+n:
        // the first record at or after 1005 is the second one of Produce v4.
        assert_eq!(
            list_offset(&mut s, v, "versions", 1_005).await.1,
            3,
            "ListOffsets v{v} by time"
        );
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_max_timestamp_finds_the_record() {
    let g = common::InProcess::start().await;
    create_topic(g.addr, "maxts", &[]).await;
    let mut s = connect(g.addr).await;
    let mut b = BatchBuilder::new(10_000);
    for (i, delta) in [0i64, 50, 900, 20].iter().enumerate() {
        let mut r = Record::new(None, Some(format!("r{i}").as_bytes()));
        r.timestamp_delta = *delta;
        b = b.push(r);
    }
    assert_eq!(produce(&mut s, 9, "maxts", b.build()).await, (0, 0));
    assert_eq!(
        produce(
            &mut s,
            9,
            "maxts",
            BatchBuilder::new(10_100)
                .record(None, Some(b"later"))
                .build()
        )
        .await,
        (0, 4)
    );
    let (err, offset, ts) = list_offset(&mut s, 7, "maxts", -3).await;
    assert_eq!(
        (err, offset, ts),
        (0, 2, 10_900),
        "the record with the largest timestamp"
    );
    // A time past every record: no offset.
    assert_eq!(list_offset(&mut s, 7, "maxts", 99_999).await.1, -1);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_on_the_wire() {
    let g = common::InProcess::start().await;
    create_topic(g.addr, "idem", &[]).await;
    let mut s = connect(g.addr).await;
    let mut ids = Vec::new();
    for v in 0..=4 {
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = None;
        req.transaction_timeout_ms = 60_000;
        req.producer_id = ProducerId(-1);
        req.producer_epoch = -1;
        let r: InitProducerIdResponse = roundtrip(&mut s, ApiKey::InitProducerId, v, &req).await;
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
        assert_eq!(r.producer_epoch, 0);
        ids.push(r.producer_id.0);
    }
    ids.dedup();
    assert_eq!(ids.len(), 5, "fresh ids each time");
    let pid = ids[0];
    let batch = |epoch: i16, seq: i32, n: usize| {
        let mut b = BatchBuilder::new(1).idempotent(pid, epoch, seq);
        for i in 0..n {
            b = b.record(None, Some(format!("{epoch}-{seq}-{i}").as_bytes()));
        }
        b.build()
    };
    assert_eq!(produce(&mut s, 9, "idem", batch(0, 0, 3)).await, (0, 0));
    assert_eq!(produce(&mut s, 9, "idem", batch(0, 3, 2)).await, (0, 3));
    // A retry of an appended batch is answered with its original offset.
    assert_eq!(produce(&mut s, 9, "idem", batch(0, 0, 3)).await, (0, 0));
    assert_eq!(produce(&mut s, 9, "idem", batch(0, 3, 2)).await, (0, 3));
    // A gap in sequence numbers.
    assert_eq!(produce(&mut s, 9, "idem", batch(0, 9, 1)).await.0, 45);
    // KIP-360: bump the epoch, then the new epoch starts at sequence 0 and fences the old one.
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.transaction_timeout_ms = 60_000;
    req.producer_id = ProducerId(pid);
    req.producer_epoch = 0;
    let r: InitProducerIdResponse = roundtrip(&mut s, ApiKey::InitProducerId, 4, &req).await;
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (0, pid, 1)
    );
    assert_eq!(produce(&mut s, 9, "idem", batch(1, 0, 1)).await, (0, 5));
    assert_eq!(
        produce(&mut s, 9, "idem", batch(0, 5, 1)).await.0,
        47,
        "older epoch is fenced"
    );
    // Nothing else consumed offsets.
    assert_eq!(list_offset(&mut s, 7, "idem", -1).await.1, 6);
    // Transactional ids are refused, not silently accepted.
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = Some(TransactionalId(sb("tx")));
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    let r: InitProducerIdResponse = roundtrip(&mut s, ApiKey::InitProducerId, 4, &req).await;
    assert_ne!(r.error_code, 0);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_semantics_by_version() {
    let g = common::InProcess::start_with(|s| s.auto_create_topics = false).await;
    create_topic(g.addr, "meta-a", &[]).await;
    let mut s = connect(g.addr).await;
    // v0: an empty list means every topic.
    let r: MetadataResponse =
        roundtrip(&mut s, ApiKey::Metadata, 0, &MetadataRequest::default()).await;
    assert_eq!(r.topics.len(), 1);
    // v1+: an empty list means none; null means all.
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![]);
    let r: MetadataResponse = roundtrip(&mut s, ApiKey::Metadata, 1, &req).await;
    assert!(r.topics.is_empty());
    req.topics = None;
    let r: MetadataResponse = roundtrip(&mut s, ApiKey::Metadata, 12, &req).await;
    assert_eq!(r.topics.len(), 1);
    assert!(!r.topics[0].topic_id.is_nil(), "topic ids from v10");
    // Unknown topic with auto-creation off.
    let mut t = MetadataRequestTopic::default();
    t.name = Some(TopicName(sb("missing")));
    req.topics = Some(vec![t]);
    req.allow_auto_topic_creation = true;
    let r: MetadataResponse = roundtrip(&mut s, ApiKey::Metadata, 9, &req).await;
    assert_eq!(r.topics[0].error_code, 3);
    // Invalid topic names are refused.
    let mut t = MetadataRequestTopic::default();
    t.name = Some(TopicName(sb("bad/name")));
    req.topics = Some(vec![t]);
    let g2 = common::InProcess::start().await;
    let mut s2 = connect(g2.addr).await;
    let r: MetadataResponse = roundtrip(&mut s2, ApiKey::Metadata, 9, &req).await;
    assert_eq!(r.topics[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
    g2.stop().await;
    for v in 0..=1 {
        let r: DescribeClusterResponse = roundtrip(
            &mut s,
            ApiKey::DescribeCluster,
            v,
            &DescribeClusterRequest::default(),
        )
        .await;
        assert_eq!(r.error_code, 0);
        assert_eq!(r.brokers.len(), 1);
        assert_eq!(r.brokers[0].port, g.addr.port() as i32);
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_errors_and_sessions() {
    let g = common::InProcess::start().await;
    create_topic(g.addr, "fe", &[]).await;
    let mut s = connect(g.addr).await;
    assert_eq!(
        produce(
            &mut s,
            9,
            "fe",
            BatchBuilder::new(1).record(None, Some(b"a")).build()
        )
        .await,
        (0, 0)
    );
    let r: FetchResponse = roundtrip(&mut s, ApiKey::Fetch, 12, &fetch_req("fe", 5, 0)).await;
    assert_eq!(
        r.responses[0].partitions[0].error_code, 1,
        "OFFSET_OUT_OF_RANGE"
    );
    let r: FetchResponse = roundtrip(&mut s, ApiKey::Fetch, 12, &fetch_req("nope", 0, 0)).await;
    assert_eq!(
        r.responses[0].partitions[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    // A fetch at the end waits up to max_wait_ms and returns empty.
    let t = std::time::Instant::now();
    let r: FetchResponse = roundtrip(&mut s, ApiKey::Fetch, 12, &fetch_req("fe", 1, 300)).await;
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(250),
        "waited for data"
    );
    assert_eq!(
        r.responses[0].partitions[0]
            .records
            .as_ref()
            .map(|b| b.len()),
        Some(0)
    );
    // New session requested: declined with session id 0, data still served.
    let mut req = fetch_req("fe", 0, 0);
    req.session_epoch = 0;
    let r: FetchResponse = roundtrip(&mut s, ApiKey::Fetch, 12, &req).await;
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert_eq!(
        batches(
            r.responses[0].partitions[0]
                .records
                .as_deref()
                .unwrap_or(&[])
        ),
        vec![(0, 1)]
    );
    // An incremental fetch for a session that was never created.
    let mut req = fetch_req("fe", 0, 0);
    req.session_id = 77;
    req.session_epoch = 1;
    let r: FetchResponse = roundtrip(&mut s, ApiKey::Fetch, 12, &req).await;
    assert_eq!(r.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    // Produce to a topic that does not exist (no auto-create on Produce).
    assert_eq!(
        produce(
            &mut s,
            9,
            "nope",
            BatchBuilder::new(1).record(None, Some(b"a")).build()
        )
        .await
        .0,
        3
    );
    g.stop().await;
}

/// A draining gateway answers a parked long-poll fetch at once (empty), as
/// Kafka answers its purgatory on shutdown, instead of holding the drain for
/// the fetch's max_wait_ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_fetch_is_answered_when_the_gateway_drains() {
    let g = common::InProcess::start().await;
    create_topic(g.addr, "drain", &[]).await;
    let mut s = connect(g.addr).await;
    // Parked: nothing to read, min_bytes 1, 30 s to wait (the most Floe waits).
    send(
        &mut s,
        &request(ApiKey::Fetch, 12, 7, &fetch_req("drain", 0, 30_000)),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stop = tokio::spawn(g.stop());
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), reply(&mut s))
        .await
        .expect("answered while draining, long before max_wait_ms");
    let Reply::Frame(r) = r else {
        panic!("the parked fetch's connection closed without an answer")
    };
    let r: FetchResponse = decode_response(r, ApiKey::Fetch, 12, 7);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    assert_eq!(
        r.responses[0].partitions[0]
            .records
            .as_ref()
            .map(|b| b.len()),
        Some(0)
    );
    stop.await.expect("gateway stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_size_limits_follow_kip_74() {
    let g = common::InProcess::start().await;
    create_topic(g.addr, "sizes", &[]).await;
    let mut s = connect(g.addr).await;
    let value = vec![b'v'; 1000];
    for i in 0..10 {
        let b = BatchBuilder::new(i).record(None, Some(&value)).build();
        assert_eq!(produce(&mut s, 9, "sizes", b).await, (0, i));
    }
    let one_batch = {
        let r: FetchResponse =
            roundtrip(&mut s, ApiKey::Fetch, 12, &fetch_req("sizes", 0, 0)).await;
        let recs = r.responses[0].partitions[0]
            .records
            .clone()
            .unwrap_or_default();
        assert_eq!(
            batches(&recs).len(),
            10,
            "everything fits the default limits"
        );
        recs.len() / 10
    };
    // partition_max_bytes below one batch: the first batch is still returned whole.
    let mut req = fetch_req("sizes", 3, 0);
    req.topics[0].partitions[0].partition_max_bytes = 10;
    let r: FetchResponse = roundtrip(&mut s, ApiKey::Fetch, 12, &req).await;
    assert_eq!(
        batches(
            r.responses[0].partitions[0]
                .records
                .as_deref()
                .unwrap_or(&[])
        ),
        vec![(3, 1)]
    );
    // partition_max_bytes of three batches returns three, at batch boundaries.
    let mut req = fetch_req("sizes", 0, 0);
    req.topics[0].partitions[0].partition_max_bytes = (3 * one_batch) as i32;
    let r: FetchResponse = roundtrip(&mut s, ApiKey::Fetch, 12, &req).await;
    assert_eq!(
        batches(
            r.responses[0].partitions[0]
                .records
                .as_deref()
                .unwrap_or(&[])
        )
        .len(),
        3
    );
    // The response-wide max_bytes caps the total too.
    let mut req = fetch_req("sizes", 0, 0);
    req.max_bytes = (2 * one_batch) as i32;
    let r: FetchResponse = roundtrip(&mut s, ApiKey::Fetch, 12, &req).await;
    assert_eq!(
        batches(
            r.responses[0].partitions[0]
                .records
                .as_deref()
                .unwrap_or(&[])
        )
        .len(),
        2
    );
    // min_bytes above what exists: waits max_wait_ms, then returns what there is.
    let mut req = fetch_req("sizes", 0, 300);
    req.min_bytes = 1 << 20;
    let t = std::time::Instant::now();
    let r: FetchResponse = roundtrip(&mut s, ApiKey::Fetch, 12, &req).await;
    assert!(t.elapsed() >= std::time::Duration::from_millis(250));
    assert_eq!(
        batches(
            r.responses[0].partitions[0]
                .records
                .as_deref()
                .unwrap_or(&[])
        )
        .len(),
        10
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_gets_no_response_but_lands() {
    let g = common::InProcess::start().await;
    create_topic(g.addr, "fire", &[]).await;
    let mut s = connect(g.addr).await;
    let mut req = produce_req(
        "fire",
        0,
        BatchBuilder::new(1).record(None, Some(b"a")).build(),
    );
    req.acks = 0;
    common::wire::send(&mut s, &common::wire::request(ApiKey::Produce, 9, 1, &req)).await;
    // The next request's response is the first one on the wire: acks=0 sent none.
    let r: ApiVersionsResponse = roundtrip(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
    assert_eq!(r.error_code, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while list_offset(&mut s, 7, "fire", -1).await.1 != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "acks=0 record never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    g.stop().await;
}

/// Kafka appends a connection's produce requests in the order they arrive, even
/// when a client pipelines them without waiting (librdkafka and kafkajs do).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_produce_requests_keep_their_order() {
    let g = common::InProcess::start().await;
    create_topic(g.addr, "order", &[]).await;
    let mut s = connect(g.addr).await;
    for round in 0..5i64 {
        for i in 0..16i64 {
            let v = format!("{round}-{i}");
            let b = BatchBuilder::new(i)
                .record(None, Some(v.as_bytes()))
                .build();
            let req = produce_req("order", 0, b);
            common::wire::send(
                &mut s,
                &common::wire::request(ApiKey::Produce, 9, i as i32, &req),
            )
            .await;
        }
        for i in 0..16i64 {
            let frame = match common::wire::reply(&mut s).await {
                common::wire::Reply::Frame(f) => f,
                common::wire::Reply::Closed => panic!("closed"),
            };
            let r: ProduceResponse =
                common::wire::decode_response(frame, ApiKey::Produce, 9, i as i32);
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(
                (p.error_code, p.base_offset),
                (0, round * 16 + i),
                "request {i} of round {round}"
            );
        }
    }
    g.stop().await;
}

/// A compacted topic refuses records without a key, naming each one (KIP-467),
/// as Kafka does; keyed batches still land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topics_refuse_null_keys() {
    let g = common::InProcess::start().await;
    create_topic(g.addr, "compacted", &[("cleanup.policy", "compact")]).await;
    let mut s = connect(g.addr).await;
    for codec in [
        common::batches::Compression::None,
        common::batches::Compression::Zstd,
    ] {
        let b = BatchBuilder::new(1)
            .compression(codec)
            .record(Some(b"k0"), Some(b"a"))
            .record(None, Some(b"b"))
            .record(Some(b"k2"), Some(b"c"))
            .record(None, Some(b"d"))
            .build();
        let resp: ProduceResponse =
            roundtrip(&mut s, ApiKey::Produce, 9, &produce_req("compacted", 0, b)).await;
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 87, "INVALID_RECORD");
        let idx: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(idx, vec![1, 3]);
    }
    let keyed = BatchBuilder::new(1).record(Some(b"k"), Some(b"v")).build();
    assert_eq!(produce(&mut s, 9, "compacted", keyed).await, (0, 0));
    g.stop().await;
}
