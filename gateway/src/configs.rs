//! Topic configs Floe understands, their defaults and validation. Unknown names
//! are refused with INVALID_CONFIG, as Kafka does.

use std::collections::BTreeMap;

use floe_core::settings::Settings;

/// Kafka's DescribeConfigs config types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    pub doc: &'static str,
}

pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        kind: ConfigType::List,
        doc: "delete or compact (compaction of keys is not enforced yet)",
    },
    ConfigDef {
        name: "compression.type",
        kind: ConfigType::String,
        doc: "only 'producer': batches are stored as produced",
    },
    ConfigDef {
        name: "delete.retention.ms",
        kind: ConfigType::Long,
        doc: "tombstone retention for compacted topics",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        kind: ConfigType::Long,
        doc: "compaction lag bound",
    },
    ConfigDef {
        name: "max.message.bytes",
        kind: ConfigType::Int,
        doc: "largest record batch accepted",
    },
    ConfigDef {
        name: "message.timestamp.type",
        kind: ConfigType::String,
        doc: "CreateTime or LogAppendTime",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        kind: ConfigType::Long,
        doc: "compaction lag bound",
    },
    ConfigDef {
        name: "min.insync.replicas",
        kind: ConfigType::Int,
        doc: "accepted for compatibility: object storage is the replica",
    },
    ConfigDef {
        name: "retention.bytes",
        kind: ConfigType::Long,
        doc: "bytes kept per partition (-1: unlimited)",
    },
    ConfigDef {
        name: "retention.ms",
        kind: ConfigType::Long,
        doc: "time data is kept (-1: forever)",
    },
    ConfigDef {
        name: "segment.bytes",
        kind: ConfigType::Int,
        doc: "accepted for compatibility: segments are per flush",
    },
    ConfigDef {
        name: "segment.ms",
        kind: ConfigType::Long,
        doc: "accepted for compatibility: segments are per flush",
    },
];

pub fn default_value(name: &str, settings: &Settings) -> Option<String> {
    Some(match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "delete.retention.ms" => "86400000".into(),
        "max.compaction.lag.ms" => i64::MAX.to_string(),
        "max.message.bytes" => settings.max_message_bytes.to_string(),
        "message.timestamp.type" => "CreateTime".into(),
        "min.compaction.lag.ms" => "0".into(),
        "min.insync.replicas" => "1".into(),
        "retention.bytes" => "-1".into(),
        "retention.ms" => "604800000".into(),
        "segment.bytes" => "1073741824".into(),
        "segment.ms" => "604800000".into(),
        _ => return None,
    })
}

pub fn def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

fn long_at_least(v: &str, min: i64) -> Result<(), String> {
    match v.trim().parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        _ => Err(format!("expected an integer >= {min}")),
    }
}

/// Checks one config value. Errors carry Kafka's style of message.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let r = match name {
        "cleanup.policy" => {
            if value
                .split(',')
                .map(str::trim)
                .all(|p| p == "delete" || p == "compact")
                && !value.trim().is_empty()
            {
                Ok(())
            } else {
                Err("expected delete, compact or compact,delete".to_string())
            }
        }
        "compression.type" => {
            if value == "producer" {
                Ok(())
            } else {
                Err("Floe stores batches as the producer compressed them; only 'producer' is supported".to_string())
            }
        }
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err("expected CreateTime or LogAppendTime".to_string()),
        },
        "max.message.bytes" => long_at_least(value, 0).and_then(|_| {
            value
                .trim()
                .parse::<i32>()
                .map(|_| ())
                .map_err(|_| "out of range".to_string())
        }),
        "min.insync.replicas" => long_at_least(value, 1),
        "retention.bytes" | "retention.ms" => long_at_least(value, -1),
        "segment.bytes" => long_at_least(value, 14),
        "segment.ms" | "delete.retention.ms" | "min.compaction.lag.ms" => long_at_least(value, 0),
        "max.compaction.lag.ms" => long_at_least(value, 1),
        _ => return Err(format!("Unknown topic config name: {name}")),
    };
    r.map_err(|e| format!("Invalid value {value} for configuration {name}: {e}"))
}

pub fn validate_all(configs: &BTreeMap<String, String>) -> Result<(), String> {
    configs.iter().try_for_each(|(k, v)| validate(k, v))
}

/// The effective value of `name` for a topic with `overrides`.
pub fn effective(
    name: &str,
    overrides: &BTreeMap<String, String>,
    settings: &Settings,
) -> Option<String> {
    overrides
        .get(name)
        .cloned()
        .or_else(|| default_value(name, settings))
}

/// Broker-level configs reported for a BROKER resource (read-only).
pub fn broker_configs(settings: &Settings) -> Vec<(&'static str, String)> {
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
