//! Raw Kafka wire helpers for tests that speak bytes over TCP: hand-built
//! frames, responses decoded with kafka_protocol, and "answered or closed"
//! checks that fail on a hang instead of waiting forever.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any answer or close may take; beyond it the gateway is hung.
pub const PROMPT: Duration = Duration::from_secs(10);

pub fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn size_prefixed(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// The request header bytes (no size prefix) for `api` at `version`.
pub fn header_bytes(api: ApiKey, version: i16, correlation_id: i32) -> BytesMut {
    let mut h = RequestHeader::default();
    h.request_api_key = api as i16;
    h.request_api_version = version;
    h.correlation_id = correlation_id;
    h.client_id = Some(sb("hostile"));
    let mut buf = BytesMut::new();
    h.encode(&mut buf, api.request_header_version(version))
        .expect("encode header");
    buf
}

/// A complete size-prefixed request frame.
pub fn request<R: Encodable>(api: ApiKey, version: i16, correlation_id: i32, req: &R) -> Vec<u8> {
    let mut buf = header_bytes(api, version, correlation_id);
    req.encode(&mut buf, version).expect("encode request");
    size_prefixed(&buf)
}

/// A size-prefixed frame: a valid header followed by `body` verbatim.
pub fn request_raw(api: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut buf = header_bytes(api, version, correlation_id);
    buf.extend_from_slice(body);
    size_prefixed(&buf)
}

#[derive(Debug)]
pub enum Reply {
    Frame(Bytes),
    Closed,
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Writes, tolerating a gateway that already closed (that is a valid outcome).
pub async fn send(s: &mut TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes).await;
}

/// The next response frame, or `Closed` on EOF or reset. Panics if neither comes
/// within `PROMPT`: that is a hang.
pub async fn reply(s: &mut TcpStream) -> Reply {
    let read = async {
        let mut size = [0u8; 4];
        if s.read_exact(&mut size).await.is_err() {
            return Reply::Closed;
        }
        let n = i32::from_be_bytes(size);
        assert!(
            (4..64 << 20).contains(&n),
            "gateway sent an absurd frame size {n}"
        );
        let mut body = vec![0u8; n as usize];
        match s.read_exact(&mut body).await {
            Ok(_) => Reply::Frame(Bytes::from(body)),
            Err(_) => Reply::Closed,
        }
    };
    tokio::time::timeout(PROMPT, read)
        .await
        .expect("the gateway answers or closes promptly, never hangs")
}

pub async fn expect_closed(s: &mut TcpStream, what: &str) {
    match reply(s).await {
        Reply::Closed => {}
        Reply::Frame(f) => panic!(
            "{what}: expected the connection closed, got a {}-byte reply",
            f.len()
        ),
    }
}

pub fn response_header_version(api: ApiKey, version: i16) -> i16 {
    // ApiVersions responses always use header v0 (KIP-511).
    if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    }
}

/// Decodes a response frame, checking the correlation id and that the whole
/// frame was consumed.
pub fn try_decode_response<T: Decodable>(
    mut frame: Bytes,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Result<T, String> {
    let h = ResponseHeader::decode(&mut frame, response_header_version(api, version))
        .map_err(|e| format!("{api:?} v{version}: response header: {e}"))?;
    if h.correlation_id != correlation_id {
        return Err(format!(
            "{api:?} v{version}: correlation id {} instead of {correlation_id}",
            h.correlation_id
        ));
    }
    let body = T::decode(&mut frame, version)
        .map_err(|e| format!("{api:?} v{version}: response body: {e}"))?;
    if frame.has_remaining() {
        return Err(format!(
            "{api:?} v{version}: {} trailing response bytes",
            frame.remaining()
        ));
    }
    Ok(body)
}

pub fn decode_response<T: Decodable>(
    frame: Bytes,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
) -> T {
    try_decode_response(frame, api, version, correlation_id).unwrap_or_else(|e| panic!("{e}"))
}

pub async fn roundtrip<Req: Encodable, Resp: Decodable>(
    s: &mut TcpStream,
    api: ApiKey,
    version: i16,
    req: &Req,
) -> Resp {
    let correlation_id = 4242 + version as i32;
    send(s, &request(api, version, correlation_id, req)).await;
    match reply(s).await {
        Reply::Frame(f) => decode_response(f, api, version, correlation_id),
        Reply::Closed => panic!("{api:?} v{version}: the gateway closed a valid request"),
    }
}

/// A fresh, well-behaved client still gets correct ApiVersions and Metadata.
pub async fn assert_healthy(addr: SocketAddr) {
    let mut s = connect(addr).await;
    let mut req = ApiVersionsRequest::default();
    req.client_software_name = sb("hostile-test");
    req.client_software_version = sb("1.0");
    let v: ApiVersionsResponse = roundtrip(&mut s, ApiKey::ApiVersions, 3, &req).await;
    assert_eq!(v.error_code, 0);
    assert!(
        v.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Metadata as i16 && k.max_version >= 12),
        "ApiVersions lists Metadata v12"
    );
    for version in [1, 12] {
        let m: MetadataResponse = roundtrip(
            &mut s,
            ApiKey::Metadata,
            version,
            &MetadataRequest::default(),
        )
        .await;
        assert_eq!(m.brokers.len(), 1, "Metadata v{version} names this gateway");
        assert_eq!(m.brokers[0].port, addr.port() as i32);
    }
}

pub async fn create_topic(addr: SocketAddr, name: &str, configs: &[(&str, &str)]) {
    let mut t = CreatableTopic::default();
    t.name = TopicName(sb(name));
    t.num_partitions = 1;
    t.replication_factor = -1;
    for (k, v) in configs {
        let mut c = CreatableTopicConfig::default();
        c.name = sb(k);
        c.value = Some(sb(v));
        t.configs.push(c);
    }
    let mut req = CreateTopicsRequest::default();
    req.topics.push(t);
    req.timeout_ms = 10_000;
    let mut s = connect(addr).await;
    let resp: CreateTopicsResponse = roundtrip(&mut s, ApiKey::CreateTopics, 5, &req).await;
    assert_eq!(resp.topics.len(), 1);
    assert_eq!(
        resp.topics[0].error_code, 0,
        "create {name}: {:?}",
        resp.topics[0].error_message
    );
}
