//! Metadata, with auto-creation of requested topics (Kafka's default).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::str_bytes;
use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::error::{Code, KafkaError};
use crate::topics::TopicEntry;
use floe_core::types::GatewayInfo;

fn topic_response(broker: &Broker, t: &TopicEntry, with_ops: bool) -> MetadataResponseTopic {
    let mut r = MetadataResponseTopic::default();
    r.name = Some(TopicName(str_bytes(t.meta.name.clone())));
    r.topic_id = t.meta.id;
    r.topic_authorized_operations = if with_ops {
        super::TOPIC_AUTHORIZED_OPS
    } else {
        i32::MIN
    };
    let view = broker.cluster.view();
    r.partitions = (0..t.meta.partitions)
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p;
            // One broker id of the live gateway chosen to lead it; this one's
            // until the first membership round, or if the view is empty.
            let node = BrokerId(
                broker
                    .cluster
                    .leader_id(&floe_core::types::PartitionId::new(t.meta.id, p)),
            );
            mp.leader_id = node;
            mp.leader_epoch = 0;
            // Every live gateway can serve reads (zone-local reads): the leader
            // first, then the others by their node ids.
            let mut replicas = vec![node];
            replicas.extend(
                view.iter()
                    .filter(|m| !m.info.has_broker_id(node.0))
                    .map(|m| BrokerId(m.info.node_id)),
            );
            mp.isr_nodes = replicas.clone();
            mp.replica_nodes = replicas;
            mp
        })
        .collect();
    r
}

fn error_topic(name: Option<String>, id: uuid::Uuid, e: &KafkaError) -> MetadataResponseTopic {
    let mut r = MetadataResponseTopic::default();
    r.name = name.map(|n| TopicName(str_bytes(n)));
    r.topic_id = id;
    r.error_code = e.code();
    r.topic_authorized_operations = i32::MIN;
    r
}

/// Every broker id of every live gateway, at its advertised address and
/// zone (Kafka's rack).
pub(crate) fn brokers(broker: &Broker) -> Vec<MetadataResponseBroker> {
    let mut out: Vec<MetadataResponseBroker> = Vec::new();
    let mut add = |info: &GatewayInfo, gateway: &dyn std::fmt::Display| {
        let Ok((host, port)) = Cluster::parse_advertised(&info.advertised) else {
            return;
        };
        for (k, id) in info.broker_ids().enumerate() {
            if out.iter().any(|b| b.node_id.0 == id) {
                tracing::warn!(%gateway, broker_id = id, "two live gateways share a broker id; give each its own --node-id (extra --broker-ids are node-id + k x 1000)");
                continue;
            }
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(id);
            b.host = str_bytes(host.clone());
            // Broker id k is at port + k (see `GatewayInfo::broker_ids`).
            b.port = port + k as i32;
            b.rack = info.zone.clone().map(str_bytes);
            out.push(b);
        }
    };
    let view = broker.cluster.view();
    for m in &view {
        add(&m.info, &m.stream);
    }
    if !view.iter().any(|m| m.stream == *broker.cluster.me()) {
        add(broker.cluster.info(), broker.cluster.me());
    }
    out.sort_by_key(|b| b.node_id.0);
    out
}

pub async fn handle(broker: &Arc<Broker>, version: i16, req: MetadataRequest) -> MetadataResponse {
    let mut resp = MetadataResponse::default();
    resp.brokers = brokers(broker);
    resp.cluster_id = Some(str_bytes(broker.cluster.cluster_id().to_string()));
    resp.controller_id = BrokerId(broker.cluster.node_id());
    // The field exists in v8-v10 only (later versions moved it to DescribeCluster).
    resp.cluster_authorized_operations =
        if req.include_cluster_authorized_operations && (8..=10).contains(&version) {
            super::CLUSTER_AUTHORIZED_OPS
        } else {
            i32::MIN
        };
    let with_ops = req.include_topic_authorized_operations;
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    let Some(requested) = requested else {
        resp.topics = broker
            .topics
            .all()
            .iter()
            .map(|t| topic_response(broker, t, with_ops))
            .collect();
        return resp;
    };
    let auto_create =
        broker.settings.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    for t in requested {
        let Some(name) = t.name.map(|n| n.0.to_string()) else {
            // Lookup by topic id (v10+).
            match broker.topics.by_id(&t.topic_id) {
                Some(e) => resp.topics.push(topic_response(broker, &e, with_ops)),
                None => resp.topics.push(error_topic(
                    None,
                    t.topic_id,
                    &KafkaError::new(Code::UnknownTopicId, "unknown topic id"),
                )),
            }
            continue;
        };
        if let Some(e) = broker.topics.get(&name) {
            resp.topics.push(topic_response(broker, &e, with_ops));
            continue;
        }
        if !auto_create {
            resp.topics.push(error_topic(
                Some(name.clone()),
                uuid::Uuid::nil(),
                &KafkaError::new(Code::UnknownTopicOrPartition, "unknown topic"),
            ));
            continue;
        }
        let created = broker
            .create_topic(
                &name,
                broker.settings.default_partitions,
                BTreeMap::new(),
                false,
            )
            .await;
        match created {
            Ok(e) => resp.topics.push(topic_response(broker, &e, with_ops)),
            // Lost a race with another creator: serve what exists now.
            Err(e) if e.code == Code::TopicAlreadyExists => match broker.topics.get(&name) {
                Some(t) => resp.topics.push(topic_response(broker, &t, with_ops)),
                None => resp.topics.push(error_topic(
                    Some(name),
                    uuid::Uuid::nil(),
                    &KafkaError::new(Code::LeaderNotAvailable, "topic is being created"),
                )),
            },
            Err(e) => {
                tracing::info!(topic = %name, error = %e, "auto-create refused");
                resp.topics
                    .push(error_topic(Some(name), uuid::Uuid::nil(), &e));
            }
        }
    }
    resp
}
