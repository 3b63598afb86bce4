//! The router: decodes the request header, checks the API and version against
//! what Floe advertises, decodes the body and calls the API's handler (one module
//! per API), then encodes the response. Kafka error codes live only here and in
//! the handlers.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::broker::Broker;

pub mod api_versions;
pub mod configs;
pub mod describe_cluster;
pub mod fetch;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod topics;

/// Every API Floe serves, with the versions it implements and tests.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
];

pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Why a connection is closed instead of answered.
#[derive(Debug)]
pub struct Close(pub String);

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Encodes a size-prefixed response frame.
fn encode_response<R: Encodable>(
    correlation_id: i32,
    header_version: i16,
    body: &R,
    version: i16,
) -> Result<BytesMut, Close> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut buf, header_version)
        .map_err(|e| Close(format!("encode response header: {e}")))?;
    body.encode(&mut buf, version)
        .map_err(|e| Close(format!("encode response: {e}")))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16, what: &str) -> Result<T, Close> {
    T::decode(body, version).map_err(|e| Close(format!("malformed {what} v{version} request: {e}")))
}

/// Handles one request frame. `Ok(None)` means no response is sent (acks=0).
pub async fn handle_frame(
    broker: &Arc<Broker>,
    mut frame: Bytes,
) -> Result<Option<BytesMut>, Close> {
    if frame.len() < 8 {
        return Err(Close("request shorter than its header".into()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api) = ApiKey::try_from(key) else {
        return Err(Close(format!("unknown API key {key}")));
    };
    let Some((lo, hi)) = supported(api) else {
        return Err(Close(format!("API {api:?} is not supported")));
    };
    if version < lo || version > hi {
        if api == ApiKey::ApiVersions {
            // KIP-511: answer with a v0 response carrying UNSUPPORTED_VERSION and
            // our ranges, so the client can retry with a version we speak.
            let resp = api_versions::unsupported_version_response();
            return encode_response(correlation_id, 0, &resp, 0).map(Some);
        }
        return Err(Close(format!(
            "{api:?} v{version} is not supported (supported: v{lo}-v{hi})"
        )));
    }
    let header_version = api.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| Close(format!("malformed request header: {e}")))?;
    let rv = api.response_header_version(version);
    let body = &mut frame;
    let span = tracing::debug_span!("request", api = ?api, version, correlation_id);
    let _e = span.enter();
    drop(_e);
    macro_rules! call {
        ($module:ident, $req:ty) => {{
            let req: $req = decode(body, version, stringify!($module))?;
            let resp = $module::handle(broker, version, req).await;
            encode_response(correlation_id, rv, &resp, version).map(Some)
        }};
    }
    use kafka_protocol::messages as m;
    let out = match api {
        ApiKey::ApiVersions => {
            let _req: m::ApiVersionsRequest = decode(body, version, "api_versions")?;
            let resp = api_versions::response();
            // ApiVersions responses always use header v0.
            encode_response(correlation_id, 0, &resp, version).map(Some)
        }
        ApiKey::Metadata => call!(metadata, m::MetadataRequest),
        ApiKey::Produce => {
            let req: m::ProduceRequest = decode(body, version, "produce")?;
            match produce::handle(broker, version, req).await {
                Some(resp) => encode_response(correlation_id, rv, &resp, version).map(Some),
                None => Ok(None),
            }
        }
        ApiKey::Fetch => call!(fetch, m::FetchRequest),
        ApiKey::ListOffsets => call!(list_offsets, m::ListOffsetsRequest),
        ApiKey::CreateTopics => {
            let req: m::CreateTopicsRequest = decode(body, version, "create_topics")?;
            let resp = topics::create_topics(broker, version, req).await;
            encode_response(correlation_id, rv, &resp, version).map(Some)
        }
        ApiKey::DeleteTopics => {
            let req: m::DeleteTopicsRequest = decode(body, version, "delete_topics")?;
            let resp = topics::delete_topics(broker, version, req).await;
            encode_response(correlation_id, rv, &resp, version).map(Some)
        }
        ApiKey::CreatePartitions => {
            let req: m::CreatePartitionsRequest = decode(body, version, "create_partitions")?;
            let resp = topics::create_partitions(broker, version, req).await;
            encode_response(correlation_id, rv, &resp, version).map(Some)
        }
        ApiKey::DescribeConfigs => {
            let req: m::DescribeConfigsRequest = decode(body, version, "describe_configs")?;
            let resp = configs::describe(broker, version, req).await;
            encode_response(correlation_id, rv, &resp, version).map(Some)
        }
        ApiKey::AlterConfigs => {
            let req: m::AlterConfigsRequest = decode(body, version, "alter_configs")?;
            let resp = configs::alter(broker, version, req).await;
            encode_response(correlation_id, rv, &resp, version).map(Some)
        }
        ApiKey::IncrementalAlterConfigs => {
            let req: m::IncrementalAlterConfigsRequest =
                decode(body, version, "incremental_alter_configs")?;
            let resp = configs::incremental_alter(broker, version, req).await;
            encode_response(correlation_id, rv, &resp, version).map(Some)
        }
        ApiKey::DescribeCluster => call!(describe_cluster, m::DescribeClusterRequest),
        ApiKey::InitProducerId => call!(init_producer_id, m::InitProducerIdRequest),
        other => Err(Close(format!("API {other:?} is not supported"))),
    };
    if body.has_remaining() {
        tracing::debug!(
            client = ?header.client_id,
            trailing = body.remaining(),
            "request had trailing bytes"
        );
    }
    out
}
