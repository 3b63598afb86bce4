//! FindCoordinator is not served yet (consumer groups and transactions come in a
//! later release) and is not advertised. librdkafka still asks for a coordinator
//! whenever a consumer has a group.id, even one that only assigns partitions, so
//! instead of closing the connection (which would also drop that client's parked
//! fetches) Floe answers COORDINATOR_NOT_AVAILABLE, a retriable error.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::error::Code;

/// Versions Floe can decode to answer with the error.
pub const VERSIONS: (i16, i16) = (0, 6);

const MESSAGE: &str = "Floe does not run group or transaction coordinators yet";

pub fn not_available(version: i16, req: &FindCoordinatorRequest) -> FindCoordinatorResponse {
    let mut r = FindCoordinatorResponse::default();
    let code = Code::CoordinatorNotAvailable.code();
    if version >= 4 {
        r.coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let mut c = Coordinator::default();
                c.key = k.clone();
                c.node_id = BrokerId(-1);
                c.port = -1;
                c.error_code = code;
                c.error_message = Some(str_bytes(MESSAGE));
                c
            })
            .collect();
    } else {
        r.error_code = code;
        r.error_message = Some(str_bytes(MESSAGE));
        r.node_id = BrokerId(-1);
        r.port = -1;
    }
    r
}
