//! Floe's settings: one struct, documented field by field with the trade-off each
//! makes. Values come from defaults, then an optional TOML file, then `FLOE_*`
//! environment variables, then command-line flags; every source goes through
//! [`Settings::apply`], so a value is parsed and checked the same way wherever it
//! comes from. Durations are written like `250ms` or `10s`, sizes like `8MiB`.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Which storage Floe runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Aws,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Address the Kafka listener binds.
    pub listen: String,
    /// `host:port` clients are told to connect to (Metadata). Defaults to `listen`.
    pub advertised_listener: Option<String>,
    /// Where the embedded backend keeps its objects and SQLite database.
    pub data_dir: PathBuf,
    /// `embedded` (local directory + SQLite, the default) or `aws` (S3 +
    /// DynamoDB, standard AWS credential chain).
    pub backend: Backend,
    /// aws: the S3 bucket holding segment objects.
    pub bucket: Option<String>,
    /// aws: the DynamoDB table holding metadata.
    pub table: Option<String>,
    /// aws: region (else from the AWS configuration / environment).
    pub region: Option<String>,
    /// aws: endpoint of an S3/DynamoDB-compatible service (LocalStack, moto);
    /// implies path-style bucket addressing.
    pub endpoint_url: Option<String>,
    /// aws: how long DynamoDB keeps a flush record before its TTL deletes it.
    /// Checkpoints make records obsolete within seconds; the TTL must outlast
    /// the longest time a crashed gateway's records may wait for recovery.
    pub flush_record_ttl: Duration,
    /// Longest a produced batch waits in the buffer before its segment is sealed.
    /// Shorter means lower produce latency and more object PUTs (cost on S3).
    pub flush_interval: Duration,
    /// A segment is sealed as soon as it holds this many bytes. Larger segments
    /// mean fewer PUTs per GiB but more latency under low load and more memory.
    pub segment_bytes: u64,
    /// Bytes of produced data the gateway holds before it stops reading from
    /// producers (backpressure). Bounds memory whatever the load.
    pub max_buffer_bytes: u64,
    /// Segment uploads in flight at once. Commits still happen in seal order.
    pub upload_concurrency: usize,
    /// How long a commit or an upload is retried on retriable errors before the
    /// produce fails with a retriable Kafka error.
    pub retry_budget: Duration,
    /// How often the owner folds new index entries and producer state into the
    /// per-partition checkpoint (bulk metadata write) and trims flush records.
    pub checkpoint_interval: Duration,
    /// Bytes of recently written or read object ranges kept for fetches.
    pub read_cache_bytes: u64,
    /// Create a topic on first Metadata request for it, as Kafka does by default.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic (and of CreateTopics asking for -1).
    pub default_partitions: i32,
    /// Largest request frame accepted (Kafka's socket.request.max.bytes).
    pub max_request_bytes: u64,
    /// Request bytes being handled at once, over all connections (like Kafka's
    /// queued.max.request.bytes). Non-produce requests count 32x their size,
    /// since decoding them can take that much memory. Bounds memory under floods
    /// of large requests; readers wait when it is used up.
    pub max_inflight_request_bytes: u64,
    /// A connection with no complete request for this long is closed.
    pub idle_timeout: Duration,
    /// Default max.message.bytes for topics that don't set it.
    pub max_message_bytes: u64,
    /// This gateway's stable id in the MetaStore.
    pub gateway_id: String,
    /// Kafka node id this gateway reports in Metadata; unique among the
    /// gateways sharing a backend.
    pub node_id: i32,
    /// This gateway's availability zone (Kafka's rack), reported in Metadata.
    pub zone: Option<String>,
    /// How often the gateway proves it is alive and re-reads the membership.
    pub heartbeat_interval: Duration,
    /// A gateway whose heartbeat counter has not moved for this long (on the
    /// observer's own clock) is fenced and its partitions are taken over.
    pub session_timeout: Duration,
    /// Zone-local reads: how often a gateway re-reads the metadata of a
    /// partition led in another zone that consumers of its zone fetch.
    pub follower_refresh: Duration,
    /// Kafka's `group.initial.rebalance.delay.ms`: how long the first join of
    /// an empty consumer group waits for more members (each new one extends
    /// the wait, up to the rebalance timeout), saving a rebalance per member
    /// when a whole group starts at once.
    pub group_initial_rebalance_delay: Duration,
    /// KIP-848 groups (`group.protocol=consumer`): Kafka's
    /// `group.consumer.session.timeout.ms`, set by the coordinator for every
    /// member.
    pub consumer_group_session_timeout: Duration,
    /// KIP-848 groups: Kafka's `group.consumer.heartbeat.interval.ms`, told to
    /// every member.
    pub consumer_group_heartbeat_interval: Duration,
    /// Kafka cluster id reported in Metadata and DescribeCluster.
    pub cluster_id: String,
    /// tracing filter, e.g. `info` or `floe_gateway=debug,info`.
    pub log_level: String,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`); `None`
    /// (the default) serves no endpoint. Counters are kept either way, for the
    /// summary logged at shutdown.
    pub metrics_listen: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:9092".to_string(),
            advertised_listener: None,
            data_dir: PathBuf::from("./floe-data"),
            backend: Backend::Embedded,
            bucket: None,
            table: None,
            region: None,
            endpoint_url: None,
            flush_interval: Duration::from_millis(5),
            flush_record_ttl: crate::meta::dynamodb::DEFAULT_FLUSH_RECORD_TTL,
            segment_bytes: 8 * 1024 * 1024,
            max_buffer_bytes: 64 * 1024 * 1024,
            upload_concurrency: 4,
            retry_budget: Duration::from_secs(10),
            checkpoint_interval: Duration::from_secs(5),
            read_cache_bytes: 256 * 1024 * 1024,
            auto_create_topics: true,
            default_partitions: 1,
            max_request_bytes: 100 * 1024 * 1024,
            max_inflight_request_bytes: 512 * 1024 * 1024,
            idle_timeout: Duration::from_secs(600),
            max_message_bytes: 1024 * 1024 + 12,
            gateway_id: "floe-0".to_string(),
            node_id: 0,
            zone: None,
            heartbeat_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(6),
            follower_refresh: Duration::from_millis(500),
            group_initial_rebalance_delay: Duration::from_secs(3),
            consumer_group_session_timeout: Duration::from_secs(45),
            consumer_group_heartbeat_interval: Duration::from_secs(5),
            cluster_id: "floe-cluster".to_string(),
            log_level: "info".to_string(),
            metrics_listen: None,
        }
    }
}

/// Every key [`Settings::apply`] accepts, in the dashed form flags use; the TOML
/// file and `FLOE_*` variables use the same names (underscored / upper-cased).
pub const KEYS: &[&str] = &[
    "listen",
    "advertised-listener",
    "data-dir",
    "backend",
    "bucket",
    "table",
    "region",
    "endpoint-url",
    "flush-record-ttl",
    "flush-interval",
    "segment-bytes",
    "max-buffer-bytes",
    "upload-concurrency",
    "retry-budget",
    "checkpoint-interval",
    "read-cache-bytes",
    "auto-create-topics",
    "default-partitions",
    "max-request-bytes",
    "max-inflight-request-bytes",
    "idle-timeout",
    "max-message-bytes",
    "gateway-id",
    "node-id",
    "zone",
    "heartbeat-interval",
    "session-timeout",
    "follower-refresh",
    "group-initial-rebalance-delay",
    "consumer-group-session-timeout",
    "consumer-group-heartbeat-interval",
    "cluster-id",
    "log-level",
    "metrics-listen",
];

fn bad(key: &str, value: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("{key} = {value:?}: {why}"))
}

pub fn parse_duration(key: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        bad(
            key,
            value,
            format_args!("{e} (write durations like 250ms, 10s, 5m)"),
        )
    })
}

pub fn parse_size(key: &str, value: &str) -> Result<u64> {
    let v = value.trim();
    if let Ok(n) = v.parse::<u64>() {
        return Ok(n);
    }
    v.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| {
            bad(
                key,
                value,
                format_args!("{e} (write sizes like 8MiB, 512KiB, 1048576)"),
            )
        })
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(bad(key, value, "expected true or false")),
    }
}

fn parse_int<T: std::str::FromStr>(key: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse::<T>().map_err(|e| bad(key, value, e))
}

impl Settings {
    /// Sets one key from its textual value. Keys may be written with dashes or
    /// underscores.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<()> {
        let k = key.replace('_', "-");
        match k.as_str() {
            "listen" => self.listen = value.to_string(),
            "advertised-listener" => {
                self.advertised_listener = (!value.is_empty()).then(|| value.to_string())
            }
            "data-dir" => self.data_dir = PathBuf::from(value),
            "backend" => {
                self.backend = match value.trim() {
                    "embedded" => Backend::Embedded,
                    "aws" => Backend::Aws,
                    _ => return Err(bad(&k, value, "expected embedded or aws")),
                }
            }
            "bucket" => self.bucket = (!value.is_empty()).then(|| value.to_string()),
            "table" => self.table = (!value.is_empty()).then(|| value.to_string()),
            "region" => self.region = (!value.is_empty()).then(|| value.to_string()),
            "endpoint-url" => self.endpoint_url = (!value.is_empty()).then(|| value.to_string()),
            "flush-interval" => self.flush_interval = parse_duration(&k, value)?,
            "flush-record-ttl" => self.flush_record_ttl = parse_duration(&k, value)?,
            "segment-bytes" => self.segment_bytes = parse_size(&k, value)?,
            "max-buffer-bytes" => self.max_buffer_bytes = parse_size(&k, value)?,
            "upload-concurrency" => self.upload_concurrency = parse_int(&k, value)?,
            "retry-budget" => self.retry_budget = parse_duration(&k, value)?,
            "checkpoint-interval" => self.checkpoint_interval = parse_duration(&k, value)?,
            "read-cache-bytes" => self.read_cache_bytes = parse_size(&k, value)?,
            "auto-create-topics" => self.auto_create_topics = parse_bool(&k, value)?,
            "default-partitions" => self.default_partitions = parse_int(&k, value)?,
            "max-request-bytes" => self.max_request_bytes = parse_size(&k, value)?,
            "max-inflight-request-bytes" => {
                self.max_inflight_request_bytes = parse_size(&k, value)?
            }
            "idle-timeout" => self.idle_timeout = parse_duration(&k, value)?,
            "max-message-bytes" => self.max_message_bytes = parse_size(&k, value)?,
            "gateway-id" => self.gateway_id = value.to_string(),
            "node-id" => self.node_id = parse_int(&k, value)?,
            "zone" => self.zone = (!value.is_empty()).then(|| value.to_string()),
            "heartbeat-interval" => self.heartbeat_interval = parse_duration(&k, value)?,
            "session-timeout" => self.session_timeout = parse_duration(&k, value)?,
            "follower-refresh" => self.follower_refresh = parse_duration(&k, value)?,
            "group-initial-rebalance-delay" => {
                self.group_initial_rebalance_delay = parse_duration(&k, value)?
            }
            "consumer-group-session-timeout" => {
                self.consumer_group_session_timeout = parse_duration(&k, value)?
            }
            "consumer-group-heartbeat-interval" => {
                self.consumer_group_heartbeat_interval = parse_duration(&k, value)?
            }
            "cluster-id" => self.cluster_id = value.to_string(),
            "log-level" => self.log_level = value.to_string(),
            "metrics-listen" => {
                self.metrics_listen = (!value.is_empty()).then(|| value.to_string())
            }
            _ => {
                return Err(Error::Config(format!(
                    "unknown setting {key:?}; known settings: {}",
                    KEYS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Applies every key of a TOML document (flat table; values may be strings,
    /// integers or booleans).
    pub fn apply_toml(&mut self, text: &str, origin: &str) -> Result<()> {
        let table: toml::Table = text
            .parse()
            .map_err(|e| Error::Config(format!("{origin}: not valid TOML: {e}")))?;
        for (key, value) in table {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => {
                    return Err(Error::Config(format!(
                        "{origin}: {key} has unsupported type {}",
                        other.type_str()
                    )));
                }
            };
            self.apply(&key, &text)
                .map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        }
        Ok(())
    }

    /// Checks relations between values; called once all sources are applied.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::Config(m));
        if self.segment_bytes < 1024 {
            return fail(format!(
                "segment-bytes {} is below 1KiB",
                self.segment_bytes
            ));
        }
        if self.max_buffer_bytes < self.segment_bytes {
            return fail(format!(
                "max-buffer-bytes ({}) must be at least segment-bytes ({})",
                self.max_buffer_bytes, self.segment_bytes
            ));
        }
        if self.flush_record_ttl < Duration::from_secs(3600) {
            return fail(format!(
                "flush-record-ttl {:?} is too short: at least 1h (it must outlast any outage)",
                self.flush_record_ttl
            ));
        }
        if self.flush_interval.is_zero() {
            return fail("flush-interval must be greater than 0".into());
        }
        if self.default_partitions < 1 {
            return fail(format!(
                "default-partitions must be at least 1, got {}",
                self.default_partitions
            ));
        }
        if self.upload_concurrency == 0 {
            return fail("upload-concurrency must be at least 1".into());
        }
        if self.max_request_bytes < 1024 {
            return fail("max-request-bytes must be at least 1KiB".into());
        }
        if self.max_inflight_request_bytes < self.max_request_bytes {
            return fail(format!(
                "max-inflight-request-bytes ({}) must be at least max-request-bytes ({})",
                self.max_inflight_request_bytes, self.max_request_bytes
            ));
        }
        if self.gateway_id.is_empty()
            || !self
                .gateway_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return fail(format!(
                "gateway-id {:?} must be non-empty ASCII letters, digits, - or _",
                self.gateway_id
            ));
        }
        if self.heartbeat_interval < Duration::from_millis(50)
            || self.session_timeout < 3 * self.heartbeat_interval
        {
            return fail(format!(
                "session-timeout ({:?}) must be at least 3 x heartbeat-interval ({:?}, at least 50ms)",
                self.session_timeout, self.heartbeat_interval
            ));
        }
        if self.consumer_group_heartbeat_interval < Duration::from_millis(100)
            || self.consumer_group_session_timeout < 2 * self.consumer_group_heartbeat_interval
        {
            return fail(format!(
                "consumer-group-session-timeout ({:?}) must be at least twice consumer-group-heartbeat-interval ({:?}), which must be at least 100ms",
                self.consumer_group_session_timeout, self.consumer_group_heartbeat_interval
            ));
        }
        if self.follower_refresh < Duration::from_millis(10) {
            return fail("follower-refresh must be at least 10ms".into());
        }
        if self.backend == Backend::Aws && (self.bucket.is_none() || self.table.is_none()) {
            return fail("backend aws needs --bucket and --table".into());
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() && !self.listen.contains(':') {
            return fail(format!("listen {:?} is not host:port", self.listen));
        }
        if let Some(m) = &self.metrics_listen
            && m.parse::<std::net::SocketAddr>().is_err()
            && !m.contains(':')
        {
            return fail(format!("metrics-listen {m:?} is not host:port"));
        }
        if let Some(a) = &self.advertised_listener
            && a.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
        {
            return fail(format!("advertised-listener {a:?} is not host:port"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_rejects_garbage() {
        let mut s = Settings::default();
        s.apply("flush-interval", "250ms").unwrap();
        s.apply("segment_bytes", "8MiB").unwrap();
        s.apply("read-cache-bytes", "1048576").unwrap();
        assert_eq!(s.flush_interval, Duration::from_millis(250));
        assert_eq!(s.segment_bytes, 8 * 1024 * 1024);
        assert_eq!(s.read_cache_bytes, 1 << 20);
        let e = s.apply("flush-interval", "fast").unwrap_err();
        assert!(e.to_string().contains("flush-interval"), "{e}");
        assert!(s.apply("segment-bytes", "lots").is_err());
        assert!(s.apply("auto-create-topics", "maybe").is_err());
        assert!(s.apply("no-such-key", "1").is_err());
    }

    #[test]
    fn flush_record_ttl_has_a_floor() {
        let mut s = Settings::default();
        assert_eq!(s.flush_record_ttl, Duration::from_secs(7 * 24 * 3600));
        s.apply("flush-record-ttl", "2d").unwrap();
        assert_eq!(s.flush_record_ttl, Duration::from_secs(2 * 24 * 3600));
        assert!(s.validate().is_ok());
        s.apply("flush-record-ttl", "10m").unwrap();
        let e = s.validate().unwrap_err();
        assert!(e.to_string().contains("flush-record-ttl"), "{e}");
    }

    #[test]
    fn toml_and_validation() {
        let mut s = Settings::default();
        s.apply_toml(
            "flush_interval = \"20ms\"\ndefault_partitions = 3\nauto_create_topics = false\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(s.default_partitions, 3);
        assert!(!s.auto_create_topics);
        s.validate().unwrap();
        s.default_partitions = 0;
        assert!(s.validate().is_err());
        s.default_partitions = 1;
        s.apply("metrics_listen", "127.0.0.1:9464").unwrap();
        assert_eq!(s.metrics_listen.as_deref(), Some("127.0.0.1:9464"));
        s.validate().unwrap();
        s.apply("metrics-listen", "nohost").unwrap();
        let e = s.validate().unwrap_err();
        assert!(e.to_string().contains("metrics-listen"), "{e}");
        s.apply("metrics-listen", "").unwrap();
        assert_eq!(s.metrics_listen, None);
        assert!(Settings::default().apply_toml("x = [1]", "t").is_err());
    }
}
