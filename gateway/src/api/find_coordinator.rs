//! FindCoordinator: the coordinator of a consumer group is the live gateway
//! the ownership role picks for the group (`Cluster::coordinator_of`), so every
//! gateway names the same one and a group moves only when its coordinator
//! leaves. Batched keys (v4+) are answered one by one. Transaction coordinators
//! are not served yet: transactional keys get COORDINATOR_NOT_AVAILABLE.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::error::Code;

/// Kafka's key types.
const GROUP: i8 = 0;

/// The coordinator of one key, or the error and its message.
fn lookup(broker: &Broker, key: &str, key_type: i8) -> Result<(i32, String, i32), (Code, String)> {
    if key_type != GROUP {
        return Err((
            Code::CoordinatorNotAvailable,
            "Floe does not run transaction or share-group coordinators yet".into(),
        ));
    }
    if key.is_empty() {
        return Err((Code::InvalidRequest, "the group id is empty".into()));
    }
    let m = broker.cluster.coordinator_of(key).ok_or_else(|| {
        (
            Code::CoordinatorNotAvailable,
            "no live gateway yet".to_string(),
        )
    })?;
    let (host, port) = Cluster::parse_advertised(&m.info.advertised).map_err(|_| {
        (
            Code::CoordinatorNotAvailable,
            format!("gateway {} advertises no host:port", m.stream),
        )
    })?;
    Ok((m.info.node_id, host, port))
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let mut r = FindCoordinatorResponse::default();
    if version >= 4 {
        r.coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let mut c = Coordinator::default();
                c.key = k.clone();
                match lookup(broker, k.as_str(), req.key_type) {
                    Ok((node, host, port)) => {
                        c.node_id = BrokerId(node);
                        c.host = str_bytes(host);
                        c.port = port;
                    }
                    Err((code, message)) => {
                        c.node_id = BrokerId(-1);
                        c.host = StrBytes::default();
                        c.port = -1;
                        c.error_code = code.code();
                        c.error_message = Some(str_bytes(message));
                    }
                }
                c
            })
            .collect();
    } else {
        match lookup(broker, req.key.as_str(), req.key_type) {
            Ok((node, host, port)) => {
                r.node_id = BrokerId(node);
                r.host = str_bytes(host);
                r.port = port;
            }
            Err((code, message)) => {
                r.node_id = BrokerId(-1);
                r.port = -1;
                r.error_code = code.code();
                r.error_message = Some(str_bytes(message));
            }
        }
    }
    r
}
