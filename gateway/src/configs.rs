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
    Double = 6,
    List = 7,
}

#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    pub doc: &'static str,
}

/// Effect in Floe, per config: enforced ones say so; "kept for compatibility"
/// ones concern a broker-local log or replication that Floe does not have and are
/// stored and reported so Kafka tooling works unchanged.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        kind: ConfigType::List,
        doc: "delete or compact; compacted topics refuse records without a key (key compaction itself runs in the compactor)",
    },
    ConfigDef {
        name: "compression.type",
        kind: ConfigType::String,
        doc: "kept for compatibility: batches are stored exactly as the producer compressed them",
    },
    ConfigDef {
        name: "delete.retention.ms",
        kind: ConfigType::Long,
        doc: "tombstone retention for compacted topics",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        kind: ConfigType::Long,
        doc: "kept for compatibility: no local log files",
    },
    ConfigDef {
        name: "flush.messages",
        kind: ConfigType::Long,
        doc: "kept for compatibility: every acknowledged batch is durable",
    },
    ConfigDef {
        name: "flush.ms",
        kind: ConfigType::Long,
        doc: "kept for compatibility: every acknowledged batch is durable",
    },
    ConfigDef {
        name: "follower.replication.throttled.replicas",
        kind: ConfigType::List,
        doc: "kept for compatibility: no replicas",
    },
    ConfigDef {
        name: "index.interval.bytes",
        kind: ConfigType::Int,
        doc: "kept for compatibility: the index is per flush",
    },
    ConfigDef {
        name: "leader.replication.throttled.replicas",
        kind: ConfigType::List,
        doc: "kept for compatibility: no replicas",
    },
    ConfigDef {
        name: "local.retention.bytes",
        kind: ConfigType::Long,
        doc: "kept for compatibility: no local tier",
    },
    ConfigDef {
        name: "local.retention.ms",
        kind: ConfigType::Long,
        doc: "kept for compatibility: no local tier",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        kind: ConfigType::Long,
        doc: "compaction lag bound",
    },
    ConfigDef {
        name: "max.message.bytes",
        kind: ConfigType::Int,
        doc: "largest record batch accepted (enforced)",
    },
    ConfigDef {
        name: "message.downconversion.enable",
        kind: ConfigType::Boolean,
        doc: "kept for compatibility: only v2 batches exist",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        kind: ConfigType::Long,
        doc: "kept for compatibility: not enforced yet",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        kind: ConfigType::Long,
        doc: "kept for compatibility: not enforced yet",
    },
    ConfigDef {
        name: "message.timestamp.difference.max.ms",
        kind: ConfigType::Long,
        doc: "kept for compatibility: not enforced yet",
    },
    ConfigDef {
        name: "message.timestamp.type",
        kind: ConfigType::String,
        doc: "CreateTime or LogAppendTime (enforced)",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        kind: ConfigType::Double,
        doc: "compaction trigger",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        kind: ConfigType::Long,
        doc: "compaction lag bound",
    },
    ConfigDef {
        name: "min.insync.replicas",
        kind: ConfigType::Int,
        doc: "kept for compatibility: object storage is the replica",
    },
    ConfigDef {
        name: "preallocate",
        kind: ConfigType::Boolean,
        doc: "kept for compatibility: no local log files",
    },
    ConfigDef {
        name: "remote.storage.enable",
        kind: ConfigType::Boolean,
        doc: "kept for compatibility: all data is in object storage",
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
        doc: "kept for compatibility: segments are per flush",
    },
    ConfigDef {
        name: "segment.index.bytes",
        kind: ConfigType::Int,
        doc: "kept for compatibility: segments are per flush",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        kind: ConfigType::Long,
        doc: "kept for compatibility: segments are per flush",
    },
    ConfigDef {
        name: "segment.ms",
        kind: ConfigType::Long,
        doc: "kept for compatibility: segments are per flush",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        kind: ConfigType::Boolean,
        doc: "kept for compatibility: no replicas to elect",
    },
];

pub fn default_value(name: &str, settings: &Settings) -> Option<String> {
    Some(match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "delete.retention.ms" => "86400000".into(),
        "file.delete.delay.ms" => "60000".into(),
        "flush.messages" | "flush.ms" => i64::MAX.to_string(),
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => {
            String::new()
        }
        "index.interval.bytes" => "4096".into(),
        "local.retention.bytes" | "local.retention.ms" => "-2".into(),
        "message.downconversion.enable" => "true".into(),
        "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.difference.max.ms" => i64::MAX.to_string(),
        "min.cleanable.dirty.ratio" => "0.5".into(),
        "preallocate" | "remote.storage.enable" | "unclean.leader.election.enable" => {
            "false".into()
        }
        "segment.index.bytes" => "10485760".into(),
        "segment.jitter.ms" => "0".into(),
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
        "compression.type" => match value {
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
            _ => Err("expected producer, uncompressed, gzip, snappy, lz4 or zstd".to_string()),
        },
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
        "file.delete.delay.ms"
        | "flush.messages"
        | "flush.ms"
        | "segment.jitter.ms"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.difference.max.ms" => long_at_least(value, 0),
        "index.interval.bytes" => long_at_least(value, 0),
        "segment.index.bytes" => long_at_least(value, 4),
        "local.retention.bytes" | "local.retention.ms" => long_at_least(value, -2),
        "message.downconversion.enable"
        | "preallocate"
        | "remote.storage.enable"
        | "unclean.leader.election.enable" => match value {
            "true" | "false" => Ok(()),
            _ => Err("expected true or false".to_string()),
        },
        "min.cleanable.dirty.ratio" => match value.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
            _ => Err("expected a number between 0 and 1".to_string()),
        },
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => {
            Ok(())
        }
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
