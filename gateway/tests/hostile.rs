//! Hostile input over real TCP: hand-built and corrupted frames, requests and
//! record batches. Every case asserts the gateway answers with a clear Kafka error
//! code or closes that one connection (never panics, hangs or allocates what the
//! input claims), and that a well-behaved client is still served afterwards.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::InProcess;
use common::batches::{self, BatchBuilder, Compression, Record};
use common::wire::*;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, ProduceRequest, ProduceResponse, TopicName,
};
use tokio::io::AsyncWriteExt;

const CORRUPT_MESSAGE: i16 = 2;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_REQUIRED_ACKS: i16 = 21;
const UNSUPPORTED_VERSION: i16 = 35;
const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;

// ---------------------------------------------------------------------------
// Helpers

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Unsigned varint, as compact arrays and strings count (length + 1).
fn uvarint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

// ---------------------------------------------------------------------------
// Topic and produce helpers

fn produce_request(topic: &str, records: Option<Vec<u8>>, acks: i16) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = records.map(Bytes::from);
    let mut t = TopicProduceData::default();
    t.name = TopicName(sb(topic));
    t.partition_data.push(p);
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 10_000;
    req.topic_data.push(t);
    req
}

/// Produces `records` to partition 0 of `topic` and returns that partition's
/// response, at a non-flexible (v3) and a flexible (v9) version alike.
async fn produce(
    addr: SocketAddr,
    version: i16,
    topic: &str,
    records: Option<Vec<u8>>,
    acks: i16,
) -> PartitionProduceResponse {
    let mut s = connect(addr).await;
    let resp: ProduceResponse = roundtrip(
        &mut s,
        ApiKey::Produce,
        version,
        &produce_request(topic, records, acks),
    )
    .await;
    assert_eq!(resp.responses.len(), 1);
    let mut parts = resp.responses[0].partition_responses.clone();
    assert_eq!(parts.len(), 1);
    parts.remove(0)
}

/// Produces a batch that must be rejected with `code`, at v3 and v9.
async fn produce_rejected(addr: SocketAddr, topic: &str, records: Vec<u8>, code: i16, what: &str) {
    for version in [3, 9] {
        let p = produce(addr, version, topic, Some(records.clone()), -1).await;
        assert_eq!(
            p.error_code, code,
            "{what} (Produce v{version}): got {} {:?}",
            p.error_code, p.error_message
        );
        assert_eq!(p.base_offset, -1, "{what}: no offset assigned");
    }
}

/// A gateway with a topic `t` whose partition already holds one good batch.
async fn gateway_with_topic(configs: &[(&str, &str)]) -> InProcess {
    let gw = InProcess::start().await;
    create_topic(gw.addr, "t", configs).await;
    let ok = produce(gw.addr, 9, "t", Some(batches::simple_batch(3, 1_000)), -1).await;
    assert_eq!(ok.error_code, 0, "control batch: {:?}", ok.error_message);
    assert_eq!(ok.base_offset, 0);
    gw
}

/// After hostile batches: a good batch still lands right after the control
/// batch (nothing half-appended), and the gateway still serves.
async fn assert_partition_intact(addr: SocketAddr) {
    let ok = produce(addr, 9, "t", Some(batches::simple_batch(2, 2_000)), -1).await;
    assert_eq!(ok.error_code, 0, "{:?}", ok.error_message);
    assert_eq!(ok.base_offset, 3, "rejected batches took no offsets");
    assert_healthy(addr).await;
}

// ---------------------------------------------------------------------------
// Framing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frames_then_close() {
    let gw = InProcess::start().await;
    let mut req = ApiVersionsRequest::default();
    req.client_software_name = sb("x");
    req.client_software_version = sb("1");
    let full = request(ApiKey::ApiVersions, 3, 1, &req);
    // A claimed size with only part of the body, a body cut mid-header, and a
    // size prefix cut short.
    let mut cases: Vec<Vec<u8>> = vec![
        [&100i32.to_be_bytes()[..], &[0u8; 10]].concat(),
        full[..full.len() - 3].to_vec(),
        full[..9].to_vec(),
        vec![0, 0],
    ];
    cases.push(Vec::new());
    for (i, bytes) in cases.iter().enumerate() {
        let mut s = connect(gw.addr).await;
        send(&mut s, bytes).await;
        s.shutdown().await.expect("half-close");
        expect_closed(&mut s, &format!("truncated case {i}")).await;
    }
    assert_healthy(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_negative_sizes_close_without_allocating() {
    let gw = InProcess::start().await;
    assert_healthy(gw.addr).await;
    let rss_before = vm_kib("VmRSS:");
    let virt_before = vm_kib("VmSize:");
    for size in [
        0x7fff_ffffu32,
        0x8000_0000,
        0xffff_ffff,
        0xffff_fff0,
        0,
        7,
        100 * 1024 * 1024 + 1, // just over max_request_bytes
    ] {
        let mut s = connect(gw.addr).await;
        let started = Instant::now();
        send(&mut s, &size.to_be_bytes()).await;
        send(&mut s, &[0x41; 4096]).await;
        expect_closed(&mut s, &format!("frame size {size:#x}")).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "frame size {size:#x}: closed after {:?}",
            started.elapsed()
        );
    }
    // Sizes within the limit, barely sent: memory follows the bytes received,
    // not the claim (40 × 99 MiB claimed ≈ 3.9 GiB).
    let mut open = Vec::new();
    for _ in 0..40 {
        let mut s = connect(gw.addr).await;
        send(&mut s, &(99 * 1024 * 1024i32).to_be_bytes()).await;
        send(&mut s, &[0x42; 1024]).await;
        open.push(s);
    }
    assert_healthy(gw.addr).await;
    let rss_grew = vm_kib("VmRSS:").saturating_sub(rss_before);
    let virt_grew = vm_kib("VmSize:").saturating_sub(virt_before);
    assert!(rss_grew < 64 * 1024, "RSS grew by {rss_grew} KiB");
    // Address space is noisier (allocator arenas, threads of parallel tests) but
    // would jump by gigabytes if claimed sizes were reserved up front.
    assert!(virt_grew < 1536 * 1024, "VmSize grew by {virt_grew} KiB");
    for mut s in open {
        s.shutdown().await.expect("half-close");
        expect_closed(&mut s, "partial 99 MiB frame").await;
    }
    assert_healthy(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_eight_byte_frames() {
    let gw = InProcess::start().await;
    // A fixed one that is certainly an unknown API key (0xdead < 0).
    let mut s = connect(gw.addr).await;
    send(
        &mut s,
        &size_prefixed(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1]),
    )
    .await;
    expect_closed(&mut s, "0xdeadbeef frame").await;
    for seed in 0..64 {
        let mut s = connect(gw.addr).await;
        let payload = noise(seed, 8);
        send(&mut s, &size_prefixed(&payload)).await;
        // Only ApiVersions at an unknown version may be answered (KIP-511).
        if let Reply::Frame(f) = reply(&mut s).await {
            assert_eq!(&payload[0..2], &18i16.to_be_bytes(), "seed {seed} answered");
            let v: ApiVersionsResponse = decode_response(
                f,
                ApiKey::ApiVersions,
                0,
                i32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]),
            );
            assert_eq!(v.error_code, UNSUPPORTED_VERSION);
        }
    }
    assert_healthy(gw.addr).await;
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Header: API key and version

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_key_closes() {
    let gw = InProcess::start().await;
    for key in [9999i16, -1, 10_000, i16::MAX] {
        let mut s = connect(gw.addr).await;
        let mut payload = Vec::new();
        payload.extend_from_slice(&key.to_be_bytes());
        payload.extend_from_slice(&0i16.to_be_bytes());
        payload.extend_from_slice(&7i32.to_be_bytes());
        payload.extend_from_slice(&1i16.to_be_bytes());
        payload.push(b'x');
        send(&mut s, &size_prefixed(&payload)).await;
        expect_closed(&mut s, &format!("API key {key}")).await;
    }
    // A real Kafka API Floe does not serve (ElectLeaders: there are no
    // replicas to elect) is closed the same way.
    let mut s = connect(gw.addr).await;
    send(&mut s, &request_raw(ApiKey::ElectLeaders, 0, 1, &[0; 16])).await;
    expect_closed(&mut s, "ElectLeaders").await;
    assert_healthy(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_versions_close() {
    let gw = InProcess::start().await;
    for (api, version) in [
        (ApiKey::Metadata, 99),
        (ApiKey::Metadata, -1),
        (ApiKey::Produce, 2), // below Floe's range: magic 0/1 era
        (ApiKey::Fetch, i16::MAX),
    ] {
        let mut s = connect(gw.addr).await;
        // A plausible v1 header, then the version patched in.
        let mut payload = header_bytes(api, 1, 11).to_vec();
        payload[2..4].copy_from_slice(&version.to_be_bytes());
        payload.extend_from_slice(&[0; 8]);
        send(&mut s, &size_prefixed(&payload)).await;
        expect_closed(&mut s, &format!("{api:?} v{version}")).await;
    }
    assert_healthy(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_too_new_gets_kip511_answer() {
    let gw = InProcess::start().await;
    let mut s = connect(gw.addr).await;
    // v99 with a body no version defines: only the first 8 bytes are read.
    let mut payload = Vec::new();
    payload.extend_from_slice(&18i16.to_be_bytes());
    payload.extend_from_slice(&99i16.to_be_bytes());
    payload.extend_from_slice(&77i32.to_be_bytes());
    payload.extend_from_slice(&noise(99, 40));
    send(&mut s, &size_prefixed(&payload)).await;
    let Reply::Frame(f) = reply(&mut s).await else {
        panic!("ApiVersions v99 must be answered, not closed");
    };
    let v: ApiVersionsResponse = decode_response(f, ApiKey::ApiVersions, 0, 77);
    assert_eq!(v.error_code, UNSUPPORTED_VERSION);
    assert!(!v.api_keys.is_empty());
    let av = v
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("ApiVersions listed");
    assert_eq!((av.min_version, av.max_version), (0, 3));
    // The client then retries on the same connection with a version we speak.
    let mut req = ApiVersionsRequest::default();
    req.client_software_name = sb("retry");
    req.client_software_version = sb("1");
    let again: ApiVersionsResponse = roundtrip(&mut s, ApiKey::ApiVersions, 3, &req).await;
    assert_eq!(again.error_code, 0);
    assert_healthy(gw.addr).await;
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Body: lengths that lie

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_array_and_string_lengths_close() {
    let gw = InProcess::start().await;
    let huge_compact = uvarint(0x8000_0000); // length + 1 = 0x7fffffff + 1
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "Metadata v1 topics = 0x7fffffff",
            request_raw(ApiKey::Metadata, 1, 1, &0x7fff_ffffi32.to_be_bytes()),
        ),
        (
            "Metadata v4 topics = 0x7fffffff + flags",
            request_raw(
                ApiKey::Metadata,
                4,
                2,
                &[&0x7fff_ffffi32.to_be_bytes()[..], &[1]].concat(),
            ),
        ),
        (
            "Metadata v12 compact topics = 0x7fffffff",
            request_raw(ApiKey::Metadata, 12, 3, &huge_compact),
        ),
        (
            "Metadata v12 compact topics = u32::MAX varint",
            request_raw(ApiKey::Metadata, 12, 4, &uvarint(u32::MAX as u64)),
        ),
        (
            "Metadata v12 over-long varint",
            request_raw(ApiKey::Metadata, 12, 5, &[0xff; 12]),
        ),
        (
            "Metadata v1 one topic, name length 0x7fff",
            request_raw(
                ApiKey::Metadata,
                1,
                6,
                &[&1i32.to_be_bytes()[..], &0x7fffi16.to_be_bytes(), b"abc"].concat(),
            ),
        ),
        (
            "Produce v3 topic_data = 0x7fffffff",
            request_raw(
                ApiKey::Produce,
                3,
                7,
                &[
                    &(-1i16).to_be_bytes()[..],
                    &1i16.to_be_bytes(),
                    &1000i32.to_be_bytes(),
                    &0x7fff_ffffi32.to_be_bytes(),
                ]
                .concat(),
            ),
        ),
        (
            "Produce v9 compact topic_data = 0x7fffffff",
            request_raw(
                ApiKey::Produce,
                9,
                8,
                &[
                    &[0u8][..],
                    &1i16.to_be_bytes(),
                    &1000i32.to_be_bytes(),
                    &huge_compact,
                ]
                .concat(),
            ),
        ),
        (
            "Produce v3 records length 0x7fffffff",
            request_raw(
                ApiKey::Produce,
                3,
                9,
                &[
                    &(-1i16).to_be_bytes()[..],
                    &1i16.to_be_bytes(),
                    &1000i32.to_be_bytes(),
                    &1i32.to_be_bytes(),
                    &1i16.to_be_bytes(),
                    b"t",
                    &1i32.to_be_bytes(),
                    &0i32.to_be_bytes(),
                    &0x7fff_ffffi32.to_be_bytes(),
                ]
                .concat(),
            ),
        ),
        (
            "CreateTopics v2 topics = 0x7fffffff",
            request_raw(ApiKey::CreateTopics, 2, 10, &0x7fff_ffffi32.to_be_bytes()),
        ),
        ("Header v2 tagged fields count 0x7fffffff", {
            // Metadata v12 header with a bogus tagged-field count.
            let mut p = header_bytes(ApiKey::Metadata, 12, 11).to_vec();
            p.pop(); // the empty tagged-fields byte
            p.extend_from_slice(&uvarint(0x7fff_ffff));
            size_prefixed(&p)
        }),
    ];
    let virt_before = vm_kib("VmSize:");
    for (what, bytes) in &cases {
        let mut s = connect(gw.addr).await;
        send(&mut s, bytes).await;
        expect_closed(&mut s, what).await;
    }
    let virt_grew = vm_kib("VmSize:").saturating_sub(virt_before);
    assert!(virt_grew < 1536 * 1024, "VmSize grew by {virt_grew} KiB");
    assert_healthy(gw.addr).await;
    gw.stop().await;
}

/// A full-size (just under 100 MiB) CreateTopics v2 frame whose topics count
/// is as large as the bytes that follow. The count passes the vendored decoder's
/// "count <= remaining bytes" bound, but reserving count × 112-byte elements
/// asked the allocator for 11.7 GB up front: on a host with less RAM + swap (or
/// strict overcommit) that allocation failed and aborted the whole gateway. Run
/// against the `floe` binary with its address space capped at 4 GiB.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_size_array_frame_does_not_abort_a_small_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 4194304 && exec "$0" "$@""#)
        .arg(common::floe_bin())
        .args(["--listen", &addr.to_string(), "--log-level", "error"])
        .arg("--data-dir")
        .arg(dir.path())
        // Keep the normal address-space use small whatever the core count:
        // every worker thread would otherwise reserve a 64 MiB malloc arena.
        .env("TOKIO_WORKER_THREADS", "2")
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn floe");
    common::wait_for_port(port, Duration::from_secs(30));
    let frame_len = 100 * 1024 * 1024 - 1024;
    let mut payload = header_bytes(ApiKey::CreateTopics, 2, 1).to_vec();
    let count = (frame_len - payload.len() - 4) as i32;
    payload.extend_from_slice(&count.to_be_bytes());
    // 0xff: the first topic's name length is -1, so decoding fails at once and
    // only the up-front reservation is exercised.
    payload.resize(frame_len, 0xff);
    let mut s = connect(addr).await;
    send(&mut s, &size_prefixed(&payload)).await;
    drop(payload);
    expect_closed(&mut s, "CreateTopics with a full-size topics count").await;
    let alive = child.try_wait().expect("try_wait").is_none();
    if alive {
        assert_healthy(addr).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(alive, "the gateway process died (allocation failure abort)");
}

// ---------------------------------------------------------------------------
// Record batches

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_with_bad_crc_is_corrupt_message() {
    let gw = gateway_with_topic(&[]).await;
    let good = batches::simple_batch(3, 5_000);
    let mut payload_flip = good.clone();
    let n = payload_flip.len();
    payload_flip[n - 2] ^= 0x40;
    let mut crc_flip = good.clone();
    crc_flip[batches::CRC] ^= 0xff;
    // The attributes are covered by the CRC too.
    let mut attr_flip = good.clone();
    attr_flip[batches::ATTRIBUTES + 1] ^= 0x01;
    for (what, b) in [
        ("payload bit flip", payload_flip),
        ("crc bit flip", crc_flip),
        ("attributes bit flip", attr_flip),
    ] {
        produce_rejected(gw.addr, "t", b, CORRUPT_MESSAGE, what).await;
    }
    // One good batch followed by a bad one: the whole set is refused.
    let mut two = good.clone();
    let mut bad = good.clone();
    bad[batches::HEADER_LEN] ^= 1;
    two.extend_from_slice(&bad);
    produce_rejected(gw.addr, "t", two, CORRUPT_MESSAGE, "good then bad batch").await;
    assert_partition_intact(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_with_old_magic_is_unsupported_for_message_format() {
    let gw = gateway_with_topic(&[]).await;
    for magic in [0u8, 1] {
        let mut b = batches::simple_batch(1, 5_000);
        b[batches::MAGIC] = magic; // magic is outside the CRC
        produce_rejected(
            gw.addr,
            "t",
            b,
            UNSUPPORTED_FOR_MESSAGE_FORMAT,
            &format!("magic {magic}"),
        )
        .await;
    }
    assert_partition_intact(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_records_are_corrupt_message() {
    let gw = gateway_with_topic(&[]).await;
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("0xAB × 64".into(), vec![0xAB; 64]),
        ("0xFF × 200".into(), vec![0xFF; 200]),
        ("3 bytes".into(), vec![1, 2, 3]),
        ("16 zero bytes".into(), vec![0; 16]),
        ("empty record set".into(), Vec::new()),
        (
            "text".into(),
            b"this is not a record batch, it is a sentence!".repeat(3),
        ),
    ];
    // Random garbage, except where the magic byte happens to read 0 or 1 (that
    // is a legacy message set: UNSUPPORTED_FOR_MESSAGE_FORMAT, tested above).
    for seed in 0..40 {
        let g = noise(1000 + seed, 20 + (seed as usize * 37) % 500);
        if g[batches::MAGIC] <= 1 {
            continue;
        }
        cases.push((format!("noise seed {seed}"), g));
    }
    for (what, b) in cases {
        produce_rejected(gw.addr, "t", b, CORRUPT_MESSAGE, &what).await;
    }
    assert_partition_intact(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_length_past_the_end_is_corrupt_message() {
    let gw = gateway_with_topic(&[]).await;
    let good = batches::simple_batch(3, 5_000);
    let with_len = |len: i32| {
        let mut b = good.clone();
        b[batches::BATCH_LENGTH..batches::BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
        b
    };
    let real = (good.len() - batches::LOG_OVERHEAD) as i32;
    let mut truncated_second = good.clone();
    truncated_second.extend_from_slice(&good[..good.len() - 5]);
    for (what, b) in [
        ("batchLength + 1", with_len(real + 1)),
        ("batchLength + 100", with_len(real + 100)),
        ("batchLength 0x7fffffff", with_len(i32::MAX)),
        ("batchLength -1", with_len(-1)),
        ("batchLength i32::MIN", with_len(i32::MIN)),
        ("batchLength 0", with_len(0)),
        ("batchLength below the header", with_len(48)),
        ("batch cut before its end", good[..good.len() - 1].to_vec()),
        ("batch cut inside the header", good[..40].to_vec()),
        ("second batch truncated", truncated_second),
    ] {
        produce_rejected(gw.addr, "t", b, CORRUPT_MESSAGE, what).await;
    }
    assert_partition_intact(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_over_max_message_bytes_is_message_too_large() {
    let gw = gateway_with_topic(&[("max.message.bytes", "1000")]).await;
    let big = BatchBuilder::new(5_000)
        .record(Some(b"k"), Some(&[7u8; 1500]))
        .build();
    assert!(big.len() > 1000);
    produce_rejected(
        gw.addr,
        "t",
        big,
        MESSAGE_TOO_LARGE,
        "1.5 KB batch, limit 1000",
    )
    .await;
    // Compression does not help: the limit is on the batch as sent, and a
    // compressed batch under the limit is accepted.
    let incompressible = noise(5, 1500);
    let big_gz = BatchBuilder::new(5_000)
        .compression(Compression::Gzip)
        .record(None, Some(&incompressible))
        .build();
    produce_rejected(gw.addr, "t", big_gz, MESSAGE_TOO_LARGE, "1.5 KB gzip batch").await;
    let small_gz = BatchBuilder::new(5_000)
        .compression(Compression::Gzip)
        .record(None, Some(&[0u8; 1500]))
        .build();
    assert!(small_gz.len() < 1000);
    let p = produce(gw.addr, 9, "t", Some(small_gz), -1).await;
    assert_eq!(p.error_code, 0, "{:?}", p.error_message);
    assert_eq!(p.base_offset, 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_acks_is_invalid_required_acks() {
    let gw = gateway_with_topic(&[]).await;
    for acks in [5i16, 2, -2, i16::MIN] {
        for version in [3, 9] {
            let p = produce(
                gw.addr,
                version,
                "t",
                Some(batches::simple_batch(1, 5_000)),
                acks,
            )
            .await;
            assert_eq!(
                p.error_code, INVALID_REQUIRED_ACKS,
                "acks={acks} v{version}"
            );
        }
    }
    assert_partition_intact(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_records_are_refused() {
    let gw = gateway_with_topic(&[]).await;
    let p = produce(gw.addr, 9, "t", None, -1).await;
    assert_eq!(p.error_code, CORRUPT_MESSAGE, "{:?}", p.error_message);
    assert_partition_intact(gw.addr).await;
    gw.stop().await;
}

async fn list_offsets(addr: SocketAddr, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.current_leader_epoch = -1;
    p.timestamp = timestamp;
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(sb(topic));
    t.partitions.push(p);
    let mut req = ListOffsetsRequest::default();
    req.replica_id = kafka_protocol::messages::BrokerId(-1);
    req.topics.push(t);
    let mut s = connect(addr).await;
    let resp: ListOffsetsResponse = roundtrip(&mut s, ApiKey::ListOffsets, 7, &req).await;
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

/// Records are only read back by ListOffsets-by-time, long after produce
/// validated the batch header: a record timestamp delta that overflows i64 must
/// not panic the request (it wraps, as Kafka's Java arithmetic does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_timestamp_overflow_is_survived() {
    let gw = InProcess::start().await;
    create_topic(gw.addr, "ts", &[]).await;
    let mut b = BatchBuilder::new(1_000)
        .push(Record {
            timestamp_delta: i64::MAX - 10,
            ..Record::new(None, Some(b"far future"))
        })
        .push(Record {
            timestamp_delta: 5,
            ..Record::new(None, Some(b"sane"))
        })
        .build();
    b[35..43].copy_from_slice(&1_005i64.to_be_bytes()); // header maxTimestamp
    batches::fix_crc(&mut b);
    let p = produce(gw.addr, 9, "ts", Some(b), -1).await;
    assert_eq!(p.error_code, 0, "{:?}", p.error_message);
    assert_eq!(list_offsets(gw.addr, "ts", 1_001).await, (0, 1, 1_005));
    assert_healthy(gw.addr).await;
    gw.stop().await;
}

/// A 32 KiB gzip batch whose 32 MiB records section claims 32 million
/// one-byte records: reading timestamps must refuse the count, not allocate
/// gigabytes of (offset, timestamp) pairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_count_bomb_does_not_allocate() {
    let gw = InProcess::start().await;
    create_topic(gw.addr, "bomb", &[]).await;
    let section = vec![0u8; 32 << 20];
    let b = BatchBuilder::new(1_000)
        .compression(Compression::Gzip)
        .build_raw(&section, 32 << 20, 5_000);
    drop(section);
    assert!(b.len() < 1 << 20, "bomb is {} bytes", b.len());
    let p = produce(gw.addr, 9, "bomb", Some(b), -1).await;
    assert_eq!(p.error_code, 0, "headers are fine: {:?}", p.error_message);
    // Peak RSS: the pairs would be freed again before an RSS sample.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let rss_before = vm_kib("VmRSS:");
    let started = Instant::now();
    // Unreadable records: answered at batch granularity (the batch start), so
    // one bad producer does not break time lookups on the partition.
    let (code, offset, _) = list_offsets(gw.addr, "bomb", 1).await;
    assert_eq!((code, offset), (0, 0));
    let peak_grew = vm_kib("VmHWM:").saturating_sub(rss_before);
    // The capped decompression itself may hold the 32 MiB section.
    assert!(peak_grew < 192 * 1024, "peak RSS grew by {peak_grew} KiB");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_healthy(gw.addr).await;
    gw.stop().await;
}

/// The builder other tests rely on yields batches the gateway's own validator
/// and timestamp reader accept, for every codec.
#[test]
fn batch_builder_matches_the_gateway() {
    for c in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let b = BatchBuilder::new(1_000)
            .compression(c)
            .record(Some(b"k"), Some(b"v"))
            .record(None, None)
            .push(Record {
                headers: vec![("h".into(), Some(b"x".to_vec()))],
                timestamp_delta: 7,
                ..Record::new(Some(b"k2"), Some(&[1u8; 300]))
            })
            .build();
        let hs = floe_gateway::batch::validate_batches(&Bytes::from(b.clone()), 1 << 20)
            .expect("valid batch");
        assert_eq!(hs[0].record_count, 3);
        assert_eq!(hs[0].compression(), c as i16);
        assert_eq!(hs[0].max_timestamp, 1_007);
        let ts = floe_gateway::records::record_timestamps(&b, 1 << 20).expect("records");
        assert_eq!(ts, vec![(0, 1_000), (1, 1_001), (2, 1_007)], "{c:?}");
    }
}

// ---------------------------------------------------------------------------
// Slow and many clients

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_do_not_block_others_and_time_out() {
    let gw = InProcess::start_with(|s| s.idle_timeout = Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(connect(gw.addr).await);
    }
    // A slowloris: a frame started and never finished.
    let mut slow = connect(gw.addr).await;
    send(&mut slow, &[0, 0, 0, 100, 0, 3, 0]).await;
    // Everyone else is served while they sit there.
    assert_healthy(gw.addr).await;
    create_topic(gw.addr, "t", &[]).await;
    let p = produce(gw.addr, 9, "t", Some(batches::simple_batch(1, 1)), -1).await;
    assert_eq!(p.error_code, 0);
    for s in silent.iter_mut().chain(std::iter::once(&mut slow)) {
        expect_closed(s, "idle client").await;
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "idle clients closed after {waited:?}, before the 300 ms idle timeout"
    );
    assert!(
        waited < Duration::from_secs(5),
        "idle clients closed after {waited:?}"
    );
    assert_healthy(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_with_default_timeout_does_not_block_others() {
    let gw = InProcess::start().await;
    let _silent = connect(gw.addr).await;
    let mut half = connect(gw.addr).await;
    send(&mut half, &[0, 0, 1, 0, 0, 18]).await;
    let t = Instant::now();
    assert_healthy(gw.addr).await;
    assert!(t.elapsed() < Duration::from_secs(5));
    // Shutdown does not wait for the idle timeout (10 min) of silent clients.
    let t = Instant::now();
    gw.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        t.elapsed()
    );
}

/// Every kind of hostile connection above, 50 at once, while a good client
/// keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_garbage_connections_and_one_good_client() {
    let gw = InProcess::start().await;
    create_topic(gw.addr, "t", &[]).await;
    let addr = gw.addr;
    let payloads: Vec<Vec<u8>> = vec![
        0x7fff_ffffu32.to_be_bytes().to_vec(),
        0xffff_ffffu32.to_be_bytes().to_vec(),
        size_prefixed(&noise(1, 8)),
        size_prefixed(&noise(2, 300)),
        request_raw(ApiKey::Metadata, 1, 1, &0x7fff_ffffi32.to_be_bytes()),
        request_raw(ApiKey::Metadata, 12, 1, &uvarint(0x8000_0000)),
        {
            let mut p = header_bytes(ApiKey::Metadata, 12, 1).to_vec();
            p[2..4].copy_from_slice(&99i16.to_be_bytes());
            size_prefixed(&p)
        },
        size_prefixed(&[&9999i16.to_be_bytes()[..], &[0; 8]].concat()),
    ];
    // A frame left unfinished: waiting for the rest is right, so these hang up.
    let unfinished = [&1000i32.to_be_bytes()[..], &noise(3, 100)].concat();
    let mut garbage = tokio::task::JoinSet::new();
    for i in 0..50 {
        let k = i % (payloads.len() + 1);
        let bytes = payloads.get(k).unwrap_or(&unfinished).clone();
        let hang_up = i % 2 == 0 || k == payloads.len();
        garbage.spawn(async move {
            let mut s = connect(addr).await;
            send(&mut s, &bytes).await;
            if hang_up {
                // Half of them also hang up their side right away.
                let _ = s.shutdown().await;
            }
            // Closed, or (only for noise that is valid ApiVersions) answered.
            let _ = reply(&mut s).await;
            // An answered connection must then close on the next bad frame.
            send(&mut s, &0x7fff_ffffu32.to_be_bytes()).await;
            loop {
                if let Reply::Closed = reply(&mut s).await {
                    break;
                }
            }
        });
    }
    let good = async {
        for round in 0..10 {
            assert_healthy(addr).await;
            let p = produce(addr, 9, "t", Some(batches::simple_batch(2, round)), -1).await;
            assert_eq!(p.error_code, 0, "{:?}", p.error_message);
            assert_eq!(p.base_offset, round * 2);
        }
    };
    let drain = async {
        while let Some(r) = garbage.join_next().await {
            r.expect("garbage connection task");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(good, drain) })
        .await
        .expect("no hang under concurrent garbage");
    assert_healthy(addr).await;
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Fuzz seeds

/// Regenerates the seed corpora of the cargo-fuzz targets in `fuzz/` from the
/// same encoders these tests use: `cargo test -p floe-gateway --test hostile
/// write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand when request or batch formats change"]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    };
    let batch = BatchBuilder::new(1_000)
        .record(Some(b"key"), Some(b"value"))
        .push(Record {
            headers: vec![("h".into(), Some(b"x".to_vec()))],
            timestamp_delta: 3,
            ..Record::new(None, Some(b"second"))
        })
        .build();
    // request_frame: frames without their size prefix.
    let frame = |v: Vec<u8>| v[4..].to_vec();
    let mut av = ApiVersionsRequest::default();
    av.client_software_name = sb("seed");
    av.client_software_version = sb("1");
    for version in [0, 3] {
        write(
            "request_frame",
            &format!("api_versions_v{version}"),
            &frame(request(ApiKey::ApiVersions, version, 1, &av)),
        );
    }
    let mut md = MetadataRequest::default();
    let mut t = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
    t.name = Some(TopicName(sb("t")));
    md.topics = Some(vec![t]);
    for version in [1, 4, 12] {
        write(
            "request_frame",
            &format!("metadata_v{version}"),
            &frame(request(ApiKey::Metadata, version, 2, &md)),
        );
    }
    for version in [3, 9, 11] {
        write(
            "request_frame",
            &format!("produce_v{version}"),
            &frame(request(
                ApiKey::Produce,
                version,
                3,
                &produce_request("t", Some(batch.clone()), -1),
            )),
        );
    }
    let mut ct = CreatableTopic::default();
    ct.name = TopicName(sb("t"));
    ct.num_partitions = 3;
    let mut c = CreatableTopicConfig::default();
    c.name = sb("max.message.bytes");
    c.value = Some(sb("1000"));
    ct.configs.push(c);
    let mut create = CreateTopicsRequest::default();
    create.topics.push(ct);
    for version in [2, 5, 7] {
        write(
            "request_frame",
            &format!("create_topics_v{version}"),
            &frame(request(ApiKey::CreateTopics, version, 4, &create)),
        );
    }
    let mut fetch = kafka_protocol::messages::FetchRequest::default();
    let mut ft = kafka_protocol::messages::fetch_request::FetchTopic::default();
    ft.topic = TopicName(sb("t"));
    ft.partitions
        .push(kafka_protocol::messages::fetch_request::FetchPartition::default());
    fetch.topics.push(ft);
    fetch.max_bytes = 1 << 20;
    for version in [4, 11] {
        write(
            "request_frame",
            &format!("fetch_v{version}"),
            &frame(request(ApiKey::Fetch, version, 5, &fetch)),
        );
    }
    // record_batch: a mode byte (bit 0: fix CRCs, bit 1: 1000-byte limit), then
    // the record set.
    for (c, name) in [
        (Compression::None, "none"),
        (Compression::Gzip, "gzip"),
        (Compression::Snappy, "snappy"),
        (Compression::Lz4, "lz4"),
        (Compression::Zstd, "zstd"),
    ] {
        let mut b = BatchBuilder::new(1_000)
            .compression(c)
            .idempotent(7, 0, 0)
            .record(Some(b"k"), Some(&[b'a'; 200]))
            .record(None, Some(b"v"))
            .build();
        b.extend_from_slice(&batches::simple_batch(2, 2_000));
        write(
            "record_batch",
            &format!("two_batches_{name}"),
            &[[0u8].as_slice(), &b].concat(),
        );
    }
}
