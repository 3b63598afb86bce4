//! Produce pipelining is bounded by bytes, not by a count of requests: a
//! producer that sends many small requests on one connection gets them all
//! into the next flush, instead of a fixed number per flush interval (on S3 a
//! flush every few hundred milliseconds would otherwise divide throughput).
//! Embedded backend: the test counts the segment objects, one per flush.

mod common;

use common::batches::BatchBuilder;
use common::wire::{Reply, connect, create_topic, decode_response, request, send};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;

fn produce_req(topic: &str, records: Vec<u8>) -> ProduceRequest {
    let mut pd = PartitionProduceData::default();
    pd.index = 0;
    pd.records = Some(records.into());
    let mut td = TopicProduceData::default();
    td.name = TopicName(common::wire::sb(topic));
    td.partition_data = vec![pd];
    let mut r = ProduceRequest::default();
    r.acks = -1;
    r.timeout_ms = 30_000;
    r.topic_data = vec![td];
    r
}

/// Segment objects in an embedded gateway's data directory.
fn segments(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.join("objects")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "seg") {
                n += 1;
            }
        }
    }
    n
}

/// 200 produce requests pipelined on one connection, a 1 s flush interval:
/// all of them wait for the same flush (or two, if the timer ticks while
/// they arrive), and are answered in request order with consecutive offsets.
/// At 32 requests in flight per connection this took at least 7 flushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_produce_requests_share_a_flush() {
    let g = common::InProcess::start_with(|s| {
        s.flush_interval = Some(std::time::Duration::from_secs(1));
        s.backend = floe_core::settings::Backend::Embedded;
    })
    .await;
    if std::env::var("FLOE_TEST_BACKEND").is_ok_and(|b| b == "aws") {
        panic!("this test counts segment files: run it on the embedded backend");
    }
    create_topic(g.addr, "pipe", &[]).await;
    let before = segments(g.dir.path());
    let mut s = connect(g.addr).await;
    const N: i32 = 200;
    for i in 0..N {
        let batch = BatchBuilder::new(1_000).record(None, Some(b"v")).build();
        send(
            &mut s,
            &request(ApiKey::Produce, 9, i, &produce_req("pipe", batch)),
        )
        .await;
    }
    for i in 0..N {
        let Reply::Frame(f) = common::wire::reply(&mut s).await else {
            panic!("closed at response {i}")
        };
        let r: ProduceResponse = decode_response(f, ApiKey::Produce, 9, i);
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, i as i64), "response {i}");
    }
    let flushes = segments(g.dir.path()) - before;
    assert!(
        (1..=2).contains(&flushes),
        "{N} pipelined requests took {flushes} flushes"
    );
    g.stop().await;
}
