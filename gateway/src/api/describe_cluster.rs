//! DescribeCluster: this gateway as the cluster's only broker and controller.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::error::Code;

pub async fn handle(
    broker: &Arc<Broker>,
    _version: i16,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut r = DescribeClusterResponse::default();
    // endpoint_type 1 = brokers; 2 = controllers, which Floe does not expose.
    if req.endpoint_type != 1 && req.endpoint_type != 0 {
        r.error_code = Code::UnsupportedEndpointType.code();
        r.error_message = Some(str_bytes("Floe exposes only broker endpoints"));
        return r;
    }
    r.endpoint_type = 1;
    r.cluster_id = str_bytes(broker.cluster.cluster_id().to_string());
    r.controller_id = BrokerId(broker.cluster.node_id());
    r.brokers = super::metadata::brokers(broker)
        .into_iter()
        .map(|m| {
            let mut b = DescribeClusterBroker::default();
            b.broker_id = m.node_id;
            b.host = m.host;
            b.port = m.port;
            b.rack = m.rack;
            b
        })
        .collect();
    r.cluster_authorized_operations = if req.include_cluster_authorized_operations {
        super::CLUSTER_AUTHORIZED_OPS
    } else {
        i32::MIN
    };
    r
}
