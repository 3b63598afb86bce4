//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and a
//! read-only view of broker configs).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::str_bytes;
use super::topics::{SOURCE_DEFAULT, SOURCE_TOPIC};
use floe_core::settings::Settings;
use floe_core::topic_config::{self as defs, ConfigType};

use crate::broker::Broker;
use crate::error::{Code, KafkaError};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's source code for static broker config.
const SOURCE_STATIC_BROKER: i8 = 4;

/// Kafka's DescribeConfigs code of a config type.
fn type_code(kind: ConfigType) -> i8 {
    match kind {
        ConfigType::Boolean => 1,
        ConfigType::String => 2,
        ConfigType::Int => 3,
        ConfigType::Long => 5,
        ConfigType::Double => 6,
        ConfigType::List => 7,
    }
}

/// Broker-level configs reported for a BROKER resource (read-only: they are
/// this gateway's settings).
fn broker_configs(settings: &Settings) -> Vec<(&'static str, String)> {
    vec![
        (
            "auto.create.topics.enable",
            settings.auto_create_topics.to_string(),
        ),
        ("num.partitions", settings.default_partitions.to_string()),
        ("message.max.bytes", settings.max_message_bytes.to_string()),
        (
            "socket.request.max.bytes",
            settings.max_request_bytes.to_string(),
        ),
        ("log.retention.ms", "604800000".to_string()),
        ("default.replication.factor", "1".to_string()),
        (
            "connections.max.idle.ms",
            settings.idle_timeout.as_millis().to_string(),
        ),
    ]
}

fn wanted(keys: &Option<Vec<kafka_protocol::protocol::StrBytes>>, name: &str) -> bool {
    keys.as_ref()
        .is_none_or(|k| k.is_empty() || k.iter().any(|x| x.as_str() == name))
}

fn describe_one(
    broker: &Broker,
    version: i16,
    req: &DescribeConfigsRequest,
    res: &kafka_protocol::messages::describe_configs_request::DescribeConfigsResource,
) -> DescribeConfigsResult {
    let mut out = DescribeConfigsResult::default();
    out.resource_type = res.resource_type;
    out.resource_name = res.resource_name.clone();
    let mut entry =
        |name: &str, value: String, source: i8, kind: i8, read_only: bool, doc: &str| {
            let mut c = DescribeConfigsResourceResult::default();
            c.name = str_bytes(name);
            c.value = Some(str_bytes(value.clone()));
            c.read_only = read_only;
            c.config_source = source;
            c.config_type = kind;
            if req.include_documentation {
                c.documentation = Some(str_bytes(doc));
            }
            if req.include_synonyms && version >= 1 {
                let mut s = DescribeConfigsSynonym::default();
                s.name = str_bytes(name);
                s.value = Some(str_bytes(value));
                s.source = source;
                c.synonyms = vec![s];
            }
            out.configs.push(c);
        };
    match res.resource_type {
        RESOURCE_TOPIC => {
            let Some(topic) = broker.topics.get(res.resource_name.as_str()) else {
                out.error_code = Code::UnknownTopicOrPartition.code();
                out.error_message = Some(str_bytes(format!(
                    "topic {} does not exist",
                    res.resource_name.as_str()
                )));
                return out;
            };
            for d in defs::TOPIC_CONFIGS {
                if !wanted(&res.configuration_keys, d.name) {
                    continue;
                }
                let over = topic.meta.configs.get(d.name);
                let value = defs::effective(d.name, &topic.meta.configs, &broker.settings)
                    .unwrap_or_default();
                let source = if over.is_some() {
                    SOURCE_TOPIC
                } else {
                    SOURCE_DEFAULT
                };
                entry(d.name, value, source, type_code(d.kind), false, d.doc);
            }
        }
        RESOURCE_BROKER => {
            let mine = res
                .resource_name
                .parse::<i32>()
                .is_ok_and(|id| broker.cluster.info().has_broker_id(id));
            if !mine && !res.resource_name.is_empty() {
                out.error_code = Code::InvalidRequest.code();
                out.error_message = Some(str_bytes("unknown broker id"));
                return out;
            }
            for (name, value) in broker_configs(&broker.settings) {
                if wanted(&res.configuration_keys, name) {
                    entry(
                        name,
                        value,
                        SOURCE_STATIC_BROKER,
                        type_code(ConfigType::String),
                        true,
                        "",
                    );
                }
            }
        }
        other => {
            out.error_code = Code::InvalidRequest.code();
            out.error_message = Some(str_bytes(format!("resource type {other} is not supported")));
        }
    }
    out
}

pub async fn describe(
    broker: &Arc<Broker>,
    version: i16,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut resp = DescribeConfigsResponse::default();
    for res in &req.resources {
        resp.results.push(describe_one(broker, version, &req, res));
    }
    resp
}

fn not_topic(resource_type: i8) -> KafkaError {
    if resource_type == RESOURCE_BROKER {
        KafkaError::new(
            Code::InvalidRequest,
            "broker configs are read-only in Floe; set them with flags or FLOE_* variables",
        )
    } else {
        KafkaError::new(
            Code::InvalidRequest,
            format!("resource type {resource_type} is not supported"),
        )
    }
}

pub async fn alter(
    broker: &Arc<Broker>,
    _version: i16,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let mut r =
            kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse::default(
            );
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let result = if res.resource_type != RESOURCE_TOPIC {
            Err(not_topic(res.resource_type))
        } else {
            let configs: BTreeMap<String, String> = res
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            broker
                .topics
                .set_configs(res.resource_name.as_str(), configs, req.validate_only)
                .await
        };
        if let Err(e) = result {
            r.error_code = e.code();
            r.error_message = Some(str_bytes(e.message));
        }
        resp.responses.push(r);
    }
    resp
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

fn apply_ops(
    broker: &Broker,
    current: &BTreeMap<String, String>,
    ops: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<BTreeMap<String, String>, KafkaError> {
    let mut next = current.clone();
    for op in ops {
        let name = op.name.to_string();
        let def = defs::def(&name).ok_or_else(|| {
            KafkaError::new(
                Code::InvalidConfig,
                format!("Unknown topic config name: {name}"),
            )
        })?;
        let value = op.value.as_ref().map(|v| v.to_string());
        match op.config_operation {
            OP_SET => {
                let v = value.ok_or_else(|| {
                    KafkaError::new(Code::InvalidConfig, format!("{name}: SET needs a value"))
                })?;
                next.insert(name, v);
            }
            OP_DELETE => {
                next.remove(&name);
            }
            OP_APPEND | OP_SUBTRACT => {
                if def.kind != ConfigType::List {
                    return Err(KafkaError::new(
                        Code::InvalidConfig,
                        format!("{name} is not a list config"),
                    ));
                }
                let base = defs::effective(&name, &next, &broker.settings).unwrap_or_default();
                let mut items: Vec<String> = base
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for v in value
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    if op.config_operation == OP_APPEND {
                        if !items.iter().any(|i| i == v) {
                            items.push(v.to_string());
                        }
                    } else {
                        items.retain(|i| i != v);
                    }
                }
                next.insert(name, items.join(","));
            }
            other => {
                return Err(KafkaError::new(
                    Code::InvalidRequest,
                    format!("unknown config operation {other}"),
                ));
            }
        }
    }
    Ok(next)
}

pub async fn incremental_alter(
    broker: &Arc<Broker>,
    _version: i16,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut r = kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let result = async {
            if res.resource_type != RESOURCE_TOPIC {
                return Err(not_topic(res.resource_type));
            }
            let topic = broker
                .topics
                .get(res.resource_name.as_str())
                .ok_or_else(|| {
                    KafkaError::new(
                        Code::UnknownTopicOrPartition,
                        format!("topic {} does not exist", res.resource_name.as_str()),
                    )
                })?;
            let next = apply_ops(broker, &topic.meta.configs, &res.configs)?;
            broker
                .topics
                .set_configs(res.resource_name.as_str(), next, req.validate_only)
                .await
        }
        .await;
        if let Err(e) = result {
            r.error_code = e.code();
            r.error_message = Some(str_bytes(e.message));
        }
        resp.responses.push(r);
    }
    resp
}
