//! InitProducerId for idempotent producers: a fresh producer id, or (KIP-360,
//! v3+) the same id with a bumped epoch. Transactional ids are not supported yet.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::error::Code;

pub async fn handle(
    broker: &Arc<Broker>,
    _version: i16,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    if req.transactional_id.is_some() {
        // No transaction coordinator yet: refuse clearly rather than pretend.
        r.error_code = Code::TransactionalIdAuthorizationFailed.code();
        return r;
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        r.producer_id = req.producer_id;
        r.producer_epoch = req.producer_epoch + 1;
        return r;
    }
    match broker.producer_ids.next().await {
        Ok(id) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
        }
        Err(e) => {
            tracing::warn!(error = %e, "producer id allocation failed");
            r.error_code = Code::CoordinatorNotAvailable.code();
        }
    }
    r
}
