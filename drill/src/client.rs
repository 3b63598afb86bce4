//! A minimal Kafka client for drills: one request at a time per connection,
//! a deadline on every call, and a shared view of the cluster (brokers and
//! partition leaders) that any task can refresh from any reachable gateway.
//!
//! Deliberately small and explicit instead of a full client library: a drill
//! must see every error, retry exactly the batch it chose, and never hide a
//! reconnect or a re-ordering behind a buffer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response frame the drill accepts (fetches ask for far less).
const MAX_RESPONSE_BYTES: i32 = 64 << 20;

/// A failed call. Every kind is retriable for a drill: the caller refreshes
/// metadata and tries again (within its own time budget).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: no answer within {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("{addr}: connection lost: {reason}")]
    Connection { addr: String, reason: String },
    #[error("{addr}: bad {api:?} response: {reason}")]
    Protocol {
        addr: String,
        api: ApiKey,
        reason: String,
    },
    #[error("no gateway answered Metadata (tried {tried})")]
    NoGateway { tried: String },
}

struct Connection {
    stream: TcpStream,
    next_correlation_id: i32,
}

/// Connections by address, opened on first use and dropped on any error (a
/// timed-out connection may still carry the late answer, so it is not reused).
pub struct Client {
    conns: HashMap<String, Connection>,
    client_id: StrBytes,
}

impl Client {
    pub fn new(client_id: &str) -> Self {
        Client {
            conns: HashMap::new(),
            client_id: StrBytes::from_string(client_id.to_string()),
        }
    }

    /// Sends `req` to `addr` at `version` and waits for its response, all
    /// within `timeout` (connecting included).
    pub async fn call<R: Request>(
        &mut self,
        addr: &str,
        version: i16,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        let api = ApiKey::try_from(R::KEY).map_err(|()| ClientError::Protocol {
            addr: addr.to_string(),
            api: ApiKey::ApiVersions,
            reason: format!("unknown api key {}", R::KEY),
        })?;
        let conn = self.conns.remove(addr);
        let result = tokio::time::timeout(
            timeout,
            exchange(conn, addr, api, version, req, &self.client_id),
        )
        .await;
        match result {
            Ok(Ok((conn, resp))) => {
                self.conns.insert(addr.to_string(), conn);
                Ok(resp)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Timeout {
                addr: addr.to_string(),
                after: timeout,
            }),
        }
    }

    /// Metadata for `topic` from the first of `addrs` that answers within
    /// `timeout`; returns the address that answered.
    pub async fn metadata(
        &mut self,
        addrs: &[String],
        topic: &str,
        timeout: Duration,
    ) -> Result<(String, MetadataResponse), ClientError> {
        let mut req = MetadataRequest::default();
        let mut t = MetadataRequestTopic::default();
        t.name = Some(TopicName(StrBytes::from_string(topic.to_string())));
        req.topics = Some(vec![t]);
        req.allow_auto_topic_creation = false;
        let mut tried = Vec::new();
        for addr in addrs {
            match self.call(addr, 12, &req, timeout).await {
                Ok(m) => return Ok((addr.clone(), m)),
                Err(e) => tried.push(e.to_string()),
            }
        }
        Err(ClientError::NoGateway {
            tried: tried.join("; "),
        })
    }
}

async fn exchange<R: Request>(
    conn: Option<Connection>,
    addr: &str,
    api: ApiKey,
    version: i16,
    req: &R,
    client_id: &StrBytes,
) -> Result<(Connection, R::Response), ClientError> {
    let lost = |reason: String| ClientError::Connection {
        addr: addr.to_string(),
        reason,
    };
    let bad = |reason: String| ClientError::Protocol {
        addr: addr.to_string(),
        api,
        reason,
    };
    let mut conn = match conn {
        Some(c) => c,
        None => {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|source| ClientError::Connect {
                    addr: addr.to_string(),
                    source,
                })?;
            let _ = stream.set_nodelay(true);
            Connection {
                stream,
                next_correlation_id: 1,
            }
        }
    };
    let correlation_id = conn.next_correlation_id;
    conn.next_correlation_id = conn.next_correlation_id.wrapping_add(1);

    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(client_id.clone());
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api.request_header_version(version))
        .map_err(|e| bad(format!("encode request header: {e}")))?;
    req.encode(&mut body, version)
        .map_err(|e| bad(format!("encode request: {e}")))?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    conn.stream
        .write_all(&frame)
        .await
        .map_err(|e| lost(e.to_string()))?;

    let mut size = [0u8; 4];
    conn.stream
        .read_exact(&mut size)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => lost("closed by the gateway".into()),
            _ => lost(e.to_string()),
        })?;
    let n = i32::from_be_bytes(size);
    if !(4..=MAX_RESPONSE_BYTES).contains(&n) {
        return Err(bad(format!("response frame of {n} bytes")));
    }
    let mut resp = vec![0u8; n as usize];
    conn.stream
        .read_exact(&mut resp)
        .await
        .map_err(|e| lost(e.to_string()))?;
    let mut resp = bytes::Bytes::from(resp);
    let h = ResponseHeader::decode(&mut resp, api.response_header_version(version))
        .map_err(|e| bad(format!("response header: {e}")))?;
    if h.correlation_id != correlation_id {
        return Err(bad(format!(
            "correlation id {} instead of {correlation_id}",
            h.correlation_id
        )));
    }
    let body =
        R::Response::decode(&mut resp, version).map_err(|e| bad(format!("response body: {e}")))?;
    Ok((conn, body))
}

/// What the drill knows of the cluster: gateways (node id → host:port) and
/// the leader of each partition of the drill's topic, as last reported by any
/// gateway. Shared by the producers, the watcher and the verifier.
#[derive(Debug, Default)]
pub struct View {
    bootstrap: Vec<String>,
    /// The gateway that answered Metadata last; asked first next time.
    preferred: Option<String>,
    pub brokers: BTreeMap<i32, String>,
    pub leaders: BTreeMap<i32, i32>,
}

pub type SharedView = Arc<Mutex<View>>;

impl View {
    pub fn new(bootstrap: Vec<String>) -> SharedView {
        Arc::new(Mutex::new(View {
            bootstrap,
            ..View::default()
        }))
    }

    /// Addresses to ask for Metadata: the last one that answered, then every
    /// known gateway, then the bootstrap list (which may all be gone).
    pub fn addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let all = self
            .preferred
            .iter()
            .chain(self.brokers.values())
            .chain(self.bootstrap.iter());
        for a in all {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// Takes in a Metadata response `from` a gateway.
    pub fn apply(&mut self, from: &str, m: &MetadataResponse, topic: &str) {
        self.preferred = Some(from.to_string());
        self.brokers = brokers(m);
        if let Some(t) = find_topic(m, topic) {
            self.leaders = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
        }
    }

    /// The leader of `partition` and its address, if both are known.
    pub fn leader(&self, partition: i32) -> Option<(i32, String)> {
        let node = *self.leaders.get(&partition)?;
        self.brokers.get(&node).map(|a| (node, a.clone()))
    }
}

pub fn brokers(m: &MetadataResponse) -> BTreeMap<i32, String> {
    m.brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect()
}

pub fn find_topic<'a>(
    m: &'a MetadataResponse,
    topic: &str,
) -> Option<&'a kafka_protocol::messages::metadata_response::MetadataResponseTopic> {
    m.topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
}

/// Refreshes `view` from any reachable gateway, using `client`'s connections.
pub async fn refresh(
    client: &mut Client,
    view: &SharedView,
    topic: &str,
    timeout: Duration,
) -> Result<MetadataResponse, ClientError> {
    let addrs = lock(view).addresses();
    let (from, m) = client.metadata(&addrs, topic, timeout).await?;
    lock(view).apply(&from, &m, topic);
    Ok(m)
}

/// Locks the view; a panicked holder left nothing half-written worth refusing.
pub fn lock(view: &SharedView) -> std::sync::MutexGuard<'_, View> {
    view.lock().unwrap_or_else(|p| p.into_inner())
}
