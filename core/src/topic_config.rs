//! Topic configs: the names Floe understands (Kafka's), their defaults and
//! validation, and what they mean for a topic's data ([`TopicPolicy`]): the
//! write path enforces the record rules, the compactor the retention and
//! cleanup rules. Unknown names are refused (the gateway answers
//! INVALID_CONFIG, as Kafka does).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::settings::Settings;

/// The type of a config's value (Kafka tooling shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
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

/// What a topic's configs mean for its data, read once from its overrides
/// over the defaults. Values that fail to parse (validation refuses them on
/// the way in) fall back to the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPolicy {
    /// `max.message.bytes`: the largest record batch accepted.
    pub max_message_bytes: u64,
    /// `message.timestamp.type=LogAppendTime`: batches carry the time they
    /// were appended, not the producer's.
    pub log_append_time: bool,
    /// `cleanup.policy` has `delete`: retention removes old data.
    pub delete: bool,
    /// `cleanup.policy` has `compact`: records must have keys; compaction keeps
    /// the latest record per key.
    pub compact: bool,
    /// `retention.ms` (`None`: forever, -1).
    pub retention: Option<Duration>,
    /// `retention.bytes` per partition (`None`: unlimited, -1).
    pub retention_bytes: Option<u64>,
}

impl TopicPolicy {
    pub fn of(overrides: &BTreeMap<String, String>, settings: &Settings) -> TopicPolicy {
        let get = |name: &str| effective(name, overrides, settings).unwrap_or_default();
        let long = |name: &str| get(name).trim().parse::<i64>().ok();
        let policy = get("cleanup.policy");
        let has = |p: &str| policy.split(',').any(|x| x.trim() == p);
        TopicPolicy {
            max_message_bytes: long("max.message.bytes")
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(settings.max_message_bytes),
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
            delete: has("delete"),
            compact: has("compact"),
            retention: long("retention.ms")
                .and_then(|v| u64::try_from(v).ok())
                .map(Duration::from_millis),
            retention_bytes: long("retention.bytes").and_then(|v| u64::try_from(v).ok()),
        }
    }

    /// Records whose batch's max timestamp is below this (ms since the epoch)
    /// are past `retention.ms` at `now_ms` and may be deleted; `None` when
    /// time retention does not apply (no `delete` policy, or -1).
    pub fn expired_before(&self, now_ms: i64) -> Option<i64> {
        let keep = self.retention.filter(|_| self.delete)?;
        Some(now_ms.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX)))
    }

    /// Where retention moves a partition's log start at `now_ms`, if it moves
    /// it: past the longest run of oldest entries that are all deletable.
    ///
    /// An entry (the region of one flush, Floe's smallest unit of storage, as
    /// a segment is Kafka's) is deletable by time when its max timestamp is
    /// below `now - retention.ms`, and by size while the entries after it
    /// still hold at least `retention.bytes`, as Kafka deletes segments. An
    /// entry without a timestamp (-1) is never deletable by time: Floe cannot
    /// date it. Deleting every entry moves the log start to the high
    /// watermark, as Kafka rolls and deletes an expired active segment. Only
    /// with `cleanup.policy` including `delete`.
    pub fn retention_start(
        &self,
        index: &crate::index::PartitionIndex,
        high_watermark: i64,
        now_ms: i64,
    ) -> Option<i64> {
        if !self.delete {
            return None;
        }
        let mut drop = 0;
        if let Some(cutoff) = self.expired_before(now_ms) {
            drop = index
                .entries()
                .take_while(|e| e.max_timestamp >= 0 && e.max_timestamp < cutoff)
                .count();
        }
        if let Some(limit) = self.retention_bytes {
            let mut excess = index.bytes().saturating_sub(limit);
            let mut by_size = 0;
            for e in index.entries() {
                let len = u64::from(e.length);
                if excess < len {
                    break;
                }
                excess -= len;
                by_size += 1;
            }
            drop = drop.max(by_size);
        }
        if drop == 0 {
            return None;
        }
        Some(
            index
                .entries()
                .nth(drop)
                .map_or(high_watermark, |e| e.base_offset),
        )
    }
}

/// What key compaction (`cleanup.policy=compact`, Kafka's log cleaner) reads
/// of a topic's configs. None of these depend on the gateway's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanerPolicy {
    /// `min.cleanable.dirty.ratio`: clean once the dirty part (written since
    /// the last cleaning) is at least this share of the log's bytes.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this stay uncleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty records older than this are cleaned
    /// whatever the ratio.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone (a null value) outlives
    /// the values it deletes.
    pub delete_retention_ms: i64,
}

impl CleanerPolicy {
    /// `None` unless the topic's `cleanup.policy` includes `compact`.
    pub fn of(overrides: &BTreeMap<String, String>) -> Option<CleanerPolicy> {
        let settings = Settings::default();
        let get = |name: &str| effective(name, overrides, &settings).unwrap_or_default();
        if !get("cleanup.policy")
            .split(',')
            .any(|x| x.trim() == "compact")
        {
            return None;
        }
        let long = |name: &str, default: i64| get(name).trim().parse::<i64>().unwrap_or(default);
        Some(CleanerPolicy {
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(0.5),
            min_compaction_lag_ms: long("min.compaction.lag.ms", 0).max(0),
            max_compaction_lag_ms: long("max.compaction.lag.ms", i64::MAX).max(1),
            delete_retention_ms: long("delete.retention.ms", 86_400_000).max(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::PartitionIndex;
    use crate::index::tests::entry;

    fn entries(spec: &[(i64, i64, i64, u32)]) -> PartitionIndex {
        PartitionIndex::new(
            spec.iter()
                .map(|&(base, last, ts, len)| entry(base, last, ts, len))
                .collect(),
        )
    }

    #[test]
    fn retention_deletes_the_oldest_run_of_deletable_entries() {
        let ix = entries(&[
            (0, 9, 1_000, 100),
            (10, 19, 5_000, 100),
            (20, 29, 2_000, 100),
        ]);
        let by_time = policy(&[("retention.ms", "3000")]);
        // At 6 s the cutoff is 3 s: the first entry only; the third is older
        // than the second but not deletable before it, as in Kafka.
        assert_eq!(by_time.retention_start(&ix, 30, 6_000), Some(10));
        assert_eq!(by_time.retention_start(&ix, 30, 4_500), Some(10));
        assert_eq!(
            by_time.retention_start(&ix, 30, 4_000),
            None,
            "not below the cutoff"
        );
        // Everything expired: the log start reaches the high watermark.
        assert_eq!(by_time.retention_start(&ix, 30, 9_000), Some(30));
        // By size: 300 bytes held; keep at least 150 → drop one (200 left).
        let by_size = policy(&[("retention.bytes", "150")]);
        assert_eq!(by_size.retention_start(&ix, 30, 0), Some(10));
        assert_eq!(
            policy(&[("retention.bytes", "300")]).retention_start(&ix, 30, 0),
            None
        );
        assert_eq!(
            policy(&[("retention.bytes", "0")]).retention_start(&ix, 30, 0),
            Some(30)
        );
        // Both: the farther one wins.
        let both = policy(&[("retention.ms", "3000"), ("retention.bytes", "100")]);
        assert_eq!(both.retention_start(&ix, 30, 6_000), Some(20));
        // Forever, compact-only, and undatable entries.
        assert_eq!(
            policy(&[("retention.ms", "-1")]).retention_start(&ix, 30, i64::MAX),
            None
        );
        let compact = policy(&[("cleanup.policy", "compact"), ("retention.ms", "1")]);
        assert_eq!(compact.retention_start(&ix, 30, 9_000), None);
        let undated = entries(&[(0, 9, -1, 100), (10, 19, 1_000, 100)]);
        assert_eq!(by_time.retention_start(&undated, 20, 9_000), None);
    }

    fn policy(pairs: &[(&str, &str)]) -> TopicPolicy {
        let overrides = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TopicPolicy::of(&overrides, &Settings::default())
    }

    #[test]
    fn defaults_are_kafkas() {
        let p = policy(&[]);
        assert!(p.delete && !p.compact && !p.log_append_time);
        assert_eq!(p.retention, Some(Duration::from_millis(604_800_000)));
        assert_eq!(p.retention_bytes, None);
        assert_eq!(p.max_message_bytes, Settings::default().max_message_bytes);
        assert_eq!(
            p.expired_before(1_000_000_000_000),
            Some(1_000_000_000_000 - 604_800_000)
        );
    }

    #[test]
    fn overrides_decide() {
        let p = policy(&[
            ("cleanup.policy", "compact"),
            ("retention.ms", "1000"),
            ("retention.bytes", "4096"),
            ("max.message.bytes", "2048"),
            ("message.timestamp.type", "LogAppendTime"),
        ]);
        assert!(p.compact && !p.delete && p.log_append_time);
        assert_eq!(p.max_message_bytes, 2048);
        assert_eq!(p.retention_bytes, Some(4096));
        assert_eq!(
            p.expired_before(5000),
            None,
            "compact only: no time retention"
        );
        let p = policy(&[("cleanup.policy", "compact,delete"), ("retention.ms", "-1")]);
        assert!(p.compact && p.delete);
        assert_eq!(p.expired_before(5000), None, "-1 keeps forever");
        let p = policy(&[("retention.ms", "1000")]);
        assert_eq!(p.expired_before(5000), Some(4000));
    }

    #[test]
    fn validation_names_the_config() {
        assert!(validate("retention.ms", "-1").is_ok());
        let e = validate("retention.ms", "-2").unwrap_err();
        assert!(e.contains("retention.ms"), "{e}");
        assert!(
            validate("no.such.config", "1")
                .unwrap_err()
                .contains("Unknown")
        );
        assert!(validate("cleanup.policy", "compact, delete").is_ok());
        assert!(validate("cleanup.policy", "forever").is_err());
    }

    #[test]
    fn cleaner_policy_reads_the_compaction_configs() {
        let of = |kv: &[(&str, &str)]| {
            CleanerPolicy::of(
                &kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(of(&[]), None, "delete is the default policy");
        let p = of(&[("cleanup.policy", "compact")]).unwrap();
        assert_eq!(
            p,
            CleanerPolicy {
                min_cleanable_dirty_ratio: 0.5,
                min_compaction_lag_ms: 0,
                max_compaction_lag_ms: i64::MAX,
                delete_retention_ms: 86_400_000,
            }
        );
        let p = of(&[
            ("cleanup.policy", "delete, compact"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", "5"),
            ("max.compaction.lag.ms", "6"),
            ("delete.retention.ms", "0"),
        ])
        .unwrap();
        assert_eq!(
            (
                p.min_cleanable_dirty_ratio,
                p.min_compaction_lag_ms,
                p.max_compaction_lag_ms,
                p.delete_retention_ms
            ),
            (0.01, 5, 6, 0)
        );
    }
}
