//! The router: decodes the request header, checks the API and version against
//! what Floe advertises, decodes the body and calls the API's handler (one module
//! per API), then encodes the response. Kafka error codes live only here and in
//! the handlers.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use tracing::Instrument;

use crate::broker::Broker;
use error_codes::ErrorCodes;

pub mod api_versions;
pub mod configs;
pub mod delete_records;
pub mod describe_cluster;
pub mod error_codes;
pub mod fetch;
pub mod find_coordinator;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
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
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
];

pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// Kafka ACL operation bits (AclOperation codes) a principal holds on a topic
/// and on the cluster. Floe has no ACLs yet, so every client holds all of them:
/// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub const TOPIC_AUTHORIZED_OPS: i32 =
    1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 10 | 1 << 11;
/// CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
/// IDEMPOTENT_WRITE.
pub const CLUSTER_AUTHORIZED_OPS: i32 =
    1 << 5 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 12;

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// A request's place in its connection's order. Each request waits for the
/// previous one to pass, then passes (Produce only after enqueueing its appends),
/// so appends from one connection reach the write path in request order while
/// the requests themselves still run concurrently.
#[derive(Debug, Default)]
pub struct Turn {
    prev: Option<tokio::sync::oneshot::Receiver<()>>,
    next: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Turn {
    /// The turn after `prev` (None for a connection's first request); returns it
    /// and the receiver the following request waits on.
    pub fn after(
        prev: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> (Turn, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (
            Turn {
                prev,
                next: Some(tx),
            },
            rx,
        )
    }

    /// Waits until the previous request has passed (or ended).
    pub async fn wait(&mut self) {
        if let Some(p) = self.prev.take() {
            let _ = p.await;
        }
    }

    /// Lets the next request pass.
    pub fn done(&mut self) {
        if let Some(n) = self.next.take() {
            let _ = n.send(());
        }
    }
}

impl Drop for Turn {
    /// A request that does not append (or ends early) still keeps the chain:
    /// the next request passes once this one's predecessor has.
    fn drop(&mut self) {
        let Some(next) = self.next.take() else {
            return;
        };
        match self.prev.take() {
            None => {
                let _ = next.send(());
            }
            Some(prev) => match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        let _ = prev.await;
                        let _ = next.send(());
                    });
                }
                Err(_) => {
                    let _ = next.send(());
                }
            },
        }
    }
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

/// Counts the response's error codes, then encodes it.
fn answer<R: Encodable + ErrorCodes>(
    broker: &Broker,
    correlation_id: i32,
    header_version: i16,
    body: &R,
    version: i16,
) -> Result<Option<BytesMut>, Close> {
    body.error_codes(&mut |code| broker.metrics.error_code(code));
    encode_response(correlation_id, header_version, body, version).map(Some)
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16, what: &str) -> Result<T, Close> {
    T::decode(body, version).map_err(|e| Close(format!("malformed {what} v{version} request: {e}")))
}

/// A decoded request body, one variant per API Floe serves.
#[derive(Debug)]
pub enum Body {
    ApiVersions(m::ApiVersionsRequest),
    Metadata(m::MetadataRequest),
    Produce(m::ProduceRequest),
    Fetch(m::FetchRequest),
    ListOffsets(m::ListOffsetsRequest),
    CreateTopics(m::CreateTopicsRequest),
    DeleteTopics(m::DeleteTopicsRequest),
    CreatePartitions(m::CreatePartitionsRequest),
    DeleteRecords(m::DeleteRecordsRequest),
    DescribeConfigs(m::DescribeConfigsRequest),
    AlterConfigs(m::AlterConfigsRequest),
    IncrementalAlterConfigs(m::IncrementalAlterConfigsRequest),
    DescribeCluster(m::DescribeClusterRequest),
    InitProducerId(m::InitProducerIdRequest),
    FindCoordinator(m::FindCoordinatorRequest),
    OffsetCommit(m::OffsetCommitRequest),
    OffsetFetch(m::OffsetFetchRequest),
    OffsetDelete(m::OffsetDeleteRequest),
    JoinGroup(m::JoinGroupRequest),
    SyncGroup(m::SyncGroupRequest),
    Heartbeat(m::HeartbeatRequest),
    LeaveGroup(m::LeaveGroupRequest),
    ListGroups(m::ListGroupsRequest),
    DescribeGroups(m::DescribeGroupsRequest),
    DeleteGroups(m::DeleteGroupsRequest),
    ConsumerGroupHeartbeat(m::ConsumerGroupHeartbeatRequest),
}

/// What a request frame decodes to.
// One per request, moved once: boxing the body would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded {
    Request {
        api: ApiKey,
        header: RequestHeader,
        version: i16,
        body: Body,
        /// Bytes after the body, ignored (logged).
        trailing: usize,
    },
    /// ApiVersions newer than Floe speaks: answered per KIP-511, not closed.
    UnsupportedApiVersions { correlation_id: i32 },
}

/// Decodes one request frame (header and body) without touching any state: the
/// whole untrusted-input surface of a request, and the fuzzing entry point.
/// `Err` means the connection must be closed.
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, Close> {
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
            return Ok(Decoded::UnsupportedApiVersions { correlation_id });
        }
        return Err(Close(format!(
            "{api:?} v{version} is not supported (supported: v{lo}-v{hi})"
        )));
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| Close(format!("malformed request header: {e}")))?;
    let b = &mut frame;
    let v = version;
    let body = match api {
        ApiKey::ApiVersions => Body::ApiVersions(decode(b, v, "api_versions")?),
        ApiKey::Metadata => Body::Metadata(decode(b, v, "metadata")?),
        ApiKey::Produce => Body::Produce(decode(b, v, "produce")?),
        ApiKey::Fetch => Body::Fetch(decode(b, v, "fetch")?),
        ApiKey::ListOffsets => Body::ListOffsets(decode(b, v, "list_offsets")?),
        ApiKey::CreateTopics => Body::CreateTopics(decode(b, v, "create_topics")?),
        ApiKey::DeleteTopics => Body::DeleteTopics(decode(b, v, "delete_topics")?),
        ApiKey::CreatePartitions => Body::CreatePartitions(decode(b, v, "create_partitions")?),
        ApiKey::DeleteRecords => Body::DeleteRecords(decode(b, v, "delete_records")?),
        ApiKey::DescribeConfigs => Body::DescribeConfigs(decode(b, v, "describe_configs")?),
        ApiKey::AlterConfigs => Body::AlterConfigs(decode(b, v, "alter_configs")?),
        ApiKey::IncrementalAlterConfigs => {
            Body::IncrementalAlterConfigs(decode(b, v, "incremental_alter_configs")?)
        }
        ApiKey::DescribeCluster => Body::DescribeCluster(decode(b, v, "describe_cluster")?),
        ApiKey::InitProducerId => Body::InitProducerId(decode(b, v, "init_producer_id")?),
        ApiKey::FindCoordinator => Body::FindCoordinator(decode(b, v, "find_coordinator")?),
        ApiKey::OffsetCommit => Body::OffsetCommit(decode(b, v, "offset_commit")?),
        ApiKey::OffsetFetch => Body::OffsetFetch(decode(b, v, "offset_fetch")?),
        ApiKey::OffsetDelete => Body::OffsetDelete(decode(b, v, "offset_delete")?),
        ApiKey::JoinGroup => Body::JoinGroup(decode(b, v, "join_group")?),
        ApiKey::SyncGroup => Body::SyncGroup(decode(b, v, "sync_group")?),
        ApiKey::Heartbeat => Body::Heartbeat(decode(b, v, "heartbeat")?),
        ApiKey::LeaveGroup => Body::LeaveGroup(decode(b, v, "leave_group")?),
        ApiKey::ListGroups => Body::ListGroups(decode(b, v, "list_groups")?),
        ApiKey::DescribeGroups => Body::DescribeGroups(decode(b, v, "describe_groups")?),
        ApiKey::DeleteGroups => Body::DeleteGroups(decode(b, v, "delete_groups")?),
        ApiKey::ConsumerGroupHeartbeat => {
            Body::ConsumerGroupHeartbeat(decode(b, v, "consumer_group_heartbeat")?)
        }
        other => return Err(Close(format!("API {other:?} is not supported"))),
    };
    Ok(Decoded::Request {
        api,
        header,
        version,
        body,
        trailing: frame.remaining(),
    })
}

/// Handles one request frame. `Ok(None)` means no response is sent (acks=0).
pub async fn handle_frame(
    broker: &Arc<Broker>,
    frame: Bytes,
    turn: Turn,
    client_host: &str,
) -> Result<Option<BytesMut>, Close> {
    let (api, header, version, body, trailing) = match decode_request(frame)? {
        Decoded::UnsupportedApiVersions { correlation_id } => {
            // KIP-511: answer with a v0 response carrying UNSUPPORTED_VERSION and
            // our ranges, so the client can retry with a version we speak.
            broker.metrics.request(ApiKey::ApiVersions);
            let resp = api_versions::unsupported_version_response();
            return answer(broker, correlation_id, 0, &resp, 0);
        }
        Decoded::Request {
            api,
            header,
            version,
            body,
            trailing,
        } => (api, header, version, body, trailing),
    };
    broker.metrics.request(api);
    let correlation_id = header.correlation_id;
    let span = tracing::debug_span!("request", api = ?api, version, correlation_id);
    if trailing > 0 {
        span.in_scope(
            || tracing::debug!(client = ?header.client_id, trailing, "request had trailing bytes"),
        );
    }
    let client = groups::Client {
        id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        host: client_host.to_string(),
    };
    dispatch(broker, api, version, correlation_id, body, turn, client)
        .instrument(span)
        .await
}

async fn dispatch(
    broker: &Arc<Broker>,
    api: ApiKey,
    v: i16,
    correlation_id: i32,
    body: Body,
    turn: Turn,
    client: groups::Client,
) -> Result<Option<BytesMut>, Close> {
    let rv = api.response_header_version(v);
    // Produce holds its turn until its appends are enqueued; OffsetCommit
    // until its write is done, so pipelined commits on one connection land in
    // request order (the last one wins, as on Kafka).
    let turn = match body {
        Body::Produce(_) | Body::OffsetCommit(_) => Some(turn),
        _ => {
            drop(turn);
            None
        }
    };
    macro_rules! respond {
        ($resp:expr) => {
            answer(broker, correlation_id, rv, &$resp, v)
        };
    }
    match body {
        Body::ApiVersions(_) => {
            // ApiVersions responses always use header v0.
            answer(broker, correlation_id, 0, &api_versions::response(), v)
        }
        Body::Metadata(req) => respond!(metadata::handle(broker, v, req).await),
        Body::Produce(req) => match produce::handle(broker, v, req, turn.unwrap_or_default()).await
        {
            Some(resp) => respond!(resp),
            None => Ok(None),
        },
        Body::Fetch(req) => respond!(fetch::handle(broker, v, req).await),
        Body::ListOffsets(req) => respond!(list_offsets::handle(broker, v, req).await),
        Body::CreateTopics(req) => respond!(topics::create_topics(broker, v, req).await),
        Body::DeleteTopics(req) => respond!(topics::delete_topics(broker, v, req).await),
        Body::CreatePartitions(req) => respond!(topics::create_partitions(broker, v, req).await),
        Body::DeleteRecords(req) => respond!(delete_records::handle(broker, v, req).await),
        Body::DescribeConfigs(req) => respond!(configs::describe(broker, v, req).await),
        Body::AlterConfigs(req) => respond!(configs::alter(broker, v, req).await),
        Body::IncrementalAlterConfigs(req) => {
            respond!(configs::incremental_alter(broker, v, req).await)
        }
        Body::DescribeCluster(req) => respond!(describe_cluster::handle(broker, v, req).await),
        Body::InitProducerId(req) => respond!(init_producer_id::handle(broker, v, req).await),
        Body::FindCoordinator(req) => respond!(find_coordinator::handle(broker, v, req).await),
        Body::OffsetCommit(req) => {
            let mut turn = turn.unwrap_or_default();
            turn.wait().await;
            let resp = offsets::commit(broker, v, req).await;
            turn.done();
            respond!(resp)
        }
        Body::OffsetFetch(req) => respond!(offsets::fetch(broker, v, req).await),
        Body::OffsetDelete(req) => respond!(offsets::delete(broker, v, req).await),
        Body::JoinGroup(req) => respond!(groups::join(broker, v, req, client).await),
        Body::SyncGroup(req) => respond!(groups::sync(broker, v, req).await),
        Body::Heartbeat(req) => respond!(groups::heartbeat(broker, v, req).await),
        Body::LeaveGroup(req) => respond!(groups::leave(broker, v, req).await),
        Body::ListGroups(req) => respond!(groups::list(broker, v, req).await),
        Body::DescribeGroups(req) => respond!(groups::describe(broker, v, req).await),
        Body::DeleteGroups(req) => respond!(groups::delete(broker, v, req).await),
        Body::ConsumerGroupHeartbeat(req) => {
            respond!(groups::consumer_heartbeat(broker, v, req, client).await)
        }
    }
}
