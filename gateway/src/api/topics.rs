//! CreateTopics, DeleteTopics, CreatePartitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::error::{Code, KafkaError};
use floe_core::topic_config as defs;

/// Kafka's config source code for topic overrides and defaults.
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_DEFAULT: i8 = 5;

/// A replica list is valid when it names only live brokers (gateways), once
/// each. Replicas are nominal in Floe: object storage holds the data.
fn check_replicas(broker: &Broker, ids: impl Iterator<Item = i32>) -> Result<(), KafkaError> {
    let ids: Vec<i32> = ids.collect();
    if ids.is_empty() {
        return Err(KafkaError::new(
            Code::InvalidReplicaAssignment,
            "a partition needs at least one replica",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !broker.cluster.knows_broker_id(id) {
            return Err(KafkaError::new(
                Code::InvalidReplicaAssignment,
                format!("Unknown broker {id} in the replica assignment"),
            ));
        }
        if !seen.insert(id) {
            return Err(KafkaError::new(
                Code::InvalidReplicaAssignment,
                format!("Duplicate broker {id} in the replica assignment"),
            ));
        }
    }
    Ok(())
}

pub async fn create_topics(
    broker: &Arc<Broker>,
    version: i16,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    let mut seen = std::collections::HashSet::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        r.num_partitions = -1;
        r.replication_factor = -1;
        let result: Result<_, KafkaError> = async {
            if !seen.insert(name.clone()) {
                return Err(KafkaError::new(
                    Code::InvalidRequest,
                    format!("topic {name} appears twice in the request"),
                ));
            }
            let partitions = if !t.assignments.is_empty() {
                if t.num_partitions != -1 || t.replication_factor != -1 {
                    return Err(KafkaError::new(
                        Code::InvalidRequest,
                        "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                    ));
                }
                let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
                indexes.sort_unstable();
                if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
                    return Err(KafkaError::new(
                        Code::InvalidReplicaAssignment,
                        "partitions in the replica assignment must be 0..n without gaps",
                    ));
                }
                for a in &t.assignments {
                    check_replicas(broker, a.broker_ids.iter().map(|b| b.0))?;
                }
                t.assignments.len() as i32
            } else {
                if t.replication_factor != -1 && t.replication_factor < 1 {
                    return Err(KafkaError::new(
                        Code::InvalidReplicationFactor,
                        "replication factor must be at least 1",
                    ));
                }
                if t.num_partitions == -1 {
                    broker.settings.default_partitions
                } else {
                    t.num_partitions
                }
            };
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                if let Some(v) = &c.value {
                    configs.insert(c.name.to_string(), v.to_string());
                }
            }
            broker
                .create_topic(&name, partitions, configs, req.validate_only)
                .await
        }
        .await;
        match result {
            Ok(entry) => {
                r.topic_id = if req.validate_only {
                    uuid::Uuid::nil()
                } else {
                    entry.meta.id
                };
                r.num_partitions = entry.meta.partitions;
                // Data is durable in object storage; Kafka's replica count has no
                // meaning here, so report what the client asked for (or 1).
                r.replication_factor = if t.replication_factor > 0 {
                    t.replication_factor
                } else {
                    1
                };
                if version >= 5 {
                    r.configs = Some(
                        defs::TOPIC_CONFIGS
                            .iter()
                            .map(|d| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = str_bytes(d.name);
                                let over = entry.meta.configs.get(d.name);
                                c.value =
                                    defs::effective(d.name, &entry.meta.configs, &broker.settings)
                                        .map(str_bytes);
                                c.config_source = if over.is_some() {
                                    SOURCE_TOPIC
                                } else {
                                    SOURCE_DEFAULT
                                };
                                c
                            })
                            .collect(),
                    );
                }
            }
            Err(e) => {
                r.error_code = e.code();
                r.error_message = Some(str_bytes(e.message));
            }
        }
        resp.topics.push(r);
    }
    resp
}

pub async fn delete_topics(
    broker: &Arc<Broker>,
    version: i16,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut resp = DeleteTopicsResponse::default();
    // v0-5 name topics in topic_names; v6 uses topics with a name or an id.
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
        r.name = name.clone().map(|n| TopicName(str_bytes(n)));
        r.topic_id = id;
        let entry = match &name {
            Some(n) => broker.topics.get(n),
            None => broker.topics.by_id(&id),
        };
        let result = match entry {
            None => Err(if name.is_some() {
                KafkaError::new(
                    Code::UnknownTopicOrPartition,
                    "This server does not host this topic-partition.",
                )
            } else {
                KafkaError::new(Code::UnknownTopicId, "unknown topic id")
            }),
            Some(e) => {
                r.name = Some(TopicName(str_bytes(e.meta.name.clone())));
                r.topic_id = e.meta.id;
                broker.topics.delete(&e).await
            }
        };
        if let Err(e) = result {
            r.error_code = e.code();
            r.error_message = Some(str_bytes(e.message));
        }
        resp.responses.push(r);
    }
    resp
}

pub async fn create_partitions(
    broker: &Arc<Broker>,
    _version: i16,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let checked = match (&t.assignments, broker.topics.get(t.name.0.as_str())) {
            (Some(a), Some(topic)) if !a.is_empty() => {
                if a.len() as i32 != t.count - topic.meta.partitions {
                    Err(KafkaError::new(
                        Code::InvalidReplicaAssignment,
                        format!(
                            "Increasing the number of partitions by {} but {} assignments provided.",
                            t.count - topic.meta.partitions,
                            a.len()
                        ),
                    ))
                } else {
                    a.iter()
                        .try_for_each(|x| check_replicas(broker, x.broker_ids.iter().map(|b| b.0)))
                }
            }
            _ => Ok(()),
        };
        let result = match checked {
            Err(e) => Err(e),
            Ok(()) => {
                broker
                    .create_partitions(t.name.0.as_str(), t.count, req.validate_only)
                    .await
            }
        };
        if let Err(e) = result {
            r.error_code = e.code();
            r.error_message = Some(str_bytes(e.message));
        }
        resp.results.push(r);
    }
    resp
}
