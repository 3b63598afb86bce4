//! Floe's settings, each declared once below: its name, type, default, the
//! check of its value and its documentation (the trade-off it makes). From that
//! one declaration come the `Settings` struct, `Default`, [`SETTINGS`] (which
//! the `floe` binary turns into flags and `FLOE_*` variables, and README's
//! table is rendered from: [`markdown_table`], checked by a test), the TOML
//! keys and [`Settings::apply`], so a value is parsed and checked the same way
//! wherever it comes from.
//!
//! Sources, lowest precedence first: defaults, an optional TOML file, `FLOE_*`
//! environment variables, command-line flags. Durations are written like
//! `250ms` or `10s`, sizes like `8MiB` or plain bytes (every `u64` setting is a
//! byte size). Each value is checked where it is given, even if a later source
//! overrides it: a configuration error is never hidden. [`Settings::validate`]
//! checks relations between values once all sources are applied.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Which storage Floe runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Aws,
}

/// How a setting's value is read from text and shown (defaults in `--help`
/// and README). The field's type decides.
pub trait SettingValue: Sized {
    fn parse(key: &str, text: &str) -> Result<Self>;
    fn show(&self) -> String;
}

fn bad(key: &str, value: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("{key} = {value:?}: {why}"))
}

impl SettingValue for String {
    fn parse(_: &str, text: &str) -> Result<Self> {
        Ok(text.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

/// Empty text means unset.
impl<T: SettingValue> SettingValue for Option<T> {
    fn parse(key: &str, text: &str) -> Result<Self> {
        if text.is_empty() {
            return Ok(None);
        }
        T::parse(key, text).map(Some)
    }
    fn show(&self) -> String {
        self.as_ref().map(T::show).unwrap_or_default()
    }
}

impl SettingValue for PathBuf {
    fn parse(_: &str, text: &str) -> Result<Self> {
        Ok(PathBuf::from(text))
    }
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl SettingValue for Backend {
    fn parse(key: &str, text: &str) -> Result<Self> {
        match text.trim() {
            "embedded" => Ok(Backend::Embedded),
            "aws" => Ok(Backend::Aws),
            _ => Err(bad(key, text, "expected embedded or aws")),
        }
    }
    fn show(&self) -> String {
        match self {
            Backend::Embedded => "embedded",
            Backend::Aws => "aws",
        }
        .to_string()
    }
}

impl SettingValue for Duration {
    fn parse(key: &str, text: &str) -> Result<Self> {
        parse_duration(key, text)
    }
    /// In the largest unit that divides it: `7d`, `5s`, `250ms`.
    fn show(&self) -> String {
        let ms = self.as_millis();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return format!("{}{unit}", ms / size);
            }
        }
        format!("{ms}ms")
    }
}

/// A byte size.
impl SettingValue for u64 {
    fn parse(key: &str, text: &str) -> Result<Self> {
        parse_size(key, text)
    }
    /// In the largest binary unit that divides it (`8MiB`), else in bytes.
    fn show(&self) -> String {
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if *self >= size && self.is_multiple_of(size) {
                return format!("{}{unit}", *self / size);
            }
        }
        self.to_string()
    }
}

impl SettingValue for bool {
    fn parse(key: &str, text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(bad(key, text, "expected true or false")),
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

macro_rules! integer_setting {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            fn parse(key: &str, text: &str) -> Result<Self> {
                text.trim().parse::<$t>().map_err(|e| bad(key, text, e))
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
integer_setting!(i32, u32, usize);

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

/// One declared setting, as flags, variables, files and docs see it.
#[derive(Debug)]
pub struct SettingDef {
    /// The field name; the flag is `--` + it with dashes, the variable
    /// `FLOE_` + it upper-cased, the TOML key the name itself.
    pub name: &'static str,
    /// What it is for and what it trades, one paragraph.
    pub doc: &'static str,
    /// How README and `--help` describe the default, when `show`ing the
    /// default value would not say it (an unset value that means something).
    pub default_doc: Option<&'static str>,
    /// The setting's value in `s`, as text.
    pub show: fn(&Settings) -> String,
}

impl SettingDef {
    /// `flush-interval`.
    pub fn key(&self) -> String {
        self.name.replace('_', "-")
    }

    /// `FLOE_FLUSH_INTERVAL`.
    pub fn env(&self) -> String {
        format!("FLOE_{}", self.name.to_ascii_uppercase())
    }

    /// The default, as README and `--help` give it.
    pub fn default_text(&self) -> String {
        match self.default_doc {
            Some(d) => d.to_string(),
            None => format!("`{}`", (self.show)(&Settings::default())),
        }
    }
}

/// Declares the settings: for each, its doc comment (the README text), its
/// field, type and default, optionally how README describes the default, and
/// optionally a check of the value alone.
macro_rules! declare_settings {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $ty:ty = $default:expr
        $(, default_doc = $dd:literal)?
        $(, check = $check:expr)?
        ;
    )*) => {
        /// Every setting of a Floe process. See the module docs for where
        /// values come from; each field's doc is its README entry.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Settings {
            $(
                $(#[doc = $doc])+
                pub $name: $ty,
            )*
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings { $($name: $default,)* }
            }
        }

        /// Every setting, in declaration order.
        pub const SETTINGS: &[SettingDef] = &[$(
            SettingDef {
                name: stringify!($name),
                doc: concat!($($doc, "\n"),+),
                default_doc: declare_settings!(@opt $($dd)?),
                show: |s: &Settings| SettingValue::show(&s.$name),
            },
        )*];

        impl Settings {
            /// Sets one setting from its textual value; the key may be written
            /// with dashes or underscores.
            pub fn apply(&mut self, key: &str, value: &str) -> Result<()> {
                let name = key.trim().replace('-', "_");
                $(
                    if name == stringify!($name) {
                        let dashed = name.replace('_', "-");
                        let v: $ty = SettingValue::parse(&dashed, value)?;
                        $(
                            check_value::<$ty>(&v, $check).map_err(|why| bad(&dashed, value, why))?;
                        )?
                        self.$name = v;
                        return Ok(());
                    }
                )*
                Err(Error::Config(format!(
                    "unknown setting {key:?}; known settings: {}",
                    SETTINGS.iter().map(|d| d.key()).collect::<Vec<_>>().join(", ")
                )))
            }
        }
    };
    (@opt $dd:literal) => { Some($dd) };
    (@opt) => { None };
}

/// Runs a declared check (a function of the value alone).
fn check_value<T>(
    v: &T,
    check: impl Fn(&T) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    check(v)
}

fn at_least<T: PartialOrd + SettingValue>(
    min: T,
) -> impl Fn(&T) -> std::result::Result<(), String> {
    move |v| {
        if *v >= min {
            Ok(())
        } else {
            Err(format!("must be at least {}", min.show()))
        }
    }
}

declare_settings! {
    /// Address the Kafka listener binds (`host:port`).
    listen: String = "127.0.0.1:9092".to_string(),
        check = |v| if v.contains(':') { Ok(()) } else { Err("expected host:port".into()) };
    /// `host:port` clients are told to connect to (Metadata).
    advertised_listener: Option<String> = None, default_doc = "the listen address",
        check = |v| match v {
            Some(a) if a.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() =>
                Err("expected host:port".into()),
            _ => Ok(()),
        };
    /// Embedded backend: the directory holding `objects/` and `meta.sqlite`.
    data_dir: PathBuf = PathBuf::from("./floe-data");
    /// `embedded` (local directory + SQLite) or `aws` (S3 + DynamoDB, standard
    /// AWS credential chain).
    backend: Backend = Backend::Embedded;
    /// aws: the S3 bucket holding segment objects (`floe init` creates it).
    bucket: Option<String> = None, default_doc = "none";
    /// aws: the DynamoDB table holding metadata (`floe init` creates it).
    table: Option<String> = None, default_doc = "none";
    /// aws: the region.
    region: Option<String> = None, default_doc = "from the AWS configuration";
    /// aws: endpoint of an S3/DynamoDB-compatible service (LocalStack, moto);
    /// implies path-style bucket addressing.
    endpoint_url: Option<String> = None, default_doc = "AWS's own";
    /// aws: DynamoDB TTL of flush records. Checkpoints make them obsolete
    /// within seconds; TTL deletes are free, where a delete per flush would add
    /// 1 WRU to each flush's 4. Must outlast the longest time a crashed
    /// gateway's records can wait for recovery; at least `1h`.
    flush_record_ttl: Duration = Duration::from_secs(7 * 24 * 3600),
        check = at_least(Duration::from_secs(3600));
    /// Longest a produced batch waits before its segment is sealed: lower
    /// produce latency vs more objects. On S3 every flush is a PUT and a
    /// DynamoDB commit (together about $0.0000075), so a gateway receiving a
    /// trickle pays per interval, not per byte: 4 flushes/s at 250 ms (about
    /// $80 a month), 200/s at 5 ms (about $4,000). Clients keep throughput
    /// at long intervals by keeping more in flight (see README).
    flush_interval: Option<Duration> = None,
        default_doc = "`5ms` (embedded), `250ms` (aws)",
        check = |v| if v.is_some_and(|d| d.is_zero()) { Err("must be greater than 0".into()) } else { Ok(()) };
    /// Seal a segment early once it holds this much: fewer, larger objects vs
    /// memory (the write buffer holds at least one) and latency under high
    /// load. A PUT costs the same at any size, so on S3 a larger segment
    /// means fewer PUTs and commits per GiB at high throughput (64 per GiB at
    /// 16 MiB). At least `1KiB`.
    segment_bytes: Option<u64> = None,
        default_doc = "`8MiB` (embedded), `16MiB` (aws)",
        check = |v| if v.is_some_and(|b| b < 1024) { Err("must be at least 1KiB".into()) } else { Ok(()) };
    /// Produced bytes held before producers are slowed down (backpressure
    /// bounds memory whatever the load); at least `segment-bytes`.
    max_buffer_bytes: u64 = 64 * 1024 * 1024;
    /// Segment uploads in flight at once: more throughput on slow object
    /// stores vs memory; commits still happen in seal order.
    upload_concurrency: usize = 4, check = at_least(1);
    /// How long an upload or a commit is retried on retriable storage errors
    /// (throttling, 5xx, refused connections) before its flush fails and its
    /// producers get a retriable error (they retry, idempotently): rides out
    /// longer outages vs holds produce requests longer. A commit whose outcome
    /// is unknown when the budget runs out is read back before it is failed.
    retry_budget: Duration = Duration::from_secs(30), check = at_least(Duration::from_millis(100));
    /// How often the partitions due for a checkpoint (`checkpoint-delay`)
    /// have their state and unstored index entries written in bulk, and
    /// flush records trimmed: fewer rounds vs a moved log start or a due
    /// partition waiting longer to be stored.
    checkpoint_interval: Duration = Duration::from_secs(5),
        check = at_least(Duration::from_millis(10));
    /// How old a partition's changes get before a checkpoint stores them (its
    /// state, and the index entries no compaction pass stored yet); a moved
    /// log start is stored at the next checkpoint whatever this says. Until
    /// then the flush records are the index: one metadata write per flush,
    /// whatever the number of partitions, and a pass stores their entries
    /// merged (one item per region, not one per flush) vs more flush records
    /// for a takeover or a zone-local reader to read. At most a quarter of
    /// `flush-record-ttl`.
    checkpoint_delay: Option<Duration> = None,
        default_doc = "`0s`: every checkpoint (embedded), `10m` (aws)";
    /// How often the partitions led here are checked against their topics'
    /// `retention.ms` and `retention.bytes` (Kafka's
    /// `log.retention.check.interval.ms`, same default): data past retention
    /// stays readable up to this long vs a pass over every led partition's
    /// oldest index entries (in memory; a checkpoint stores the log starts
    /// that moved).
    retention_check_interval: Duration = Duration::from_secs(300),
        check = at_least(Duration::from_millis(10));
    /// How often a gateway runs a compaction pass itself (over every
    /// partition; several gateways doing so is safe, each swap is
    /// conditional): fewer objects, index entries and catch-up GETs vs the
    /// pass's reads and writes. `0s` turns it off (on AWS, `floe compact`
    /// runs the passes beside the gateways instead).
    compact_interval: Option<Duration> = None,
        default_doc = "`5m` (embedded), `0s`: off (aws)";
    /// Largest region a compaction writes: what one index entry and one
    /// catch-up GET cover (a fetch reads a whole region into the read
    /// cache). At least `1KiB`.
    compact_region_bytes: u64 = 4 * 1024 * 1024, check = at_least(1024);
    /// Largest object a compaction writes (one PUT); at least
    /// `compact-region-bytes`, at most `4GiB`.
    compact_object_bytes: u64 = 64 * 1024 * 1024,
        check = |v| if *v <= u64::from(u32::MAX) { Ok(()) } else { Err("must be at most 4GiB".into()) };
    /// How long objects are found unreferenced (by any stored index entry
    /// from its log start, or untrimmed flush record) before a compaction
    /// pass deletes them: longer than any reader holds an old index (owners
    /// refresh theirs every `retention-check-interval`) and than clock skew
    /// between the machines running passes vs storage kept for deleted data.
    /// A flush older than half this at its commit, or a compaction older
    /// than half this at its swap, is failed instead.
    object_delete_delay: Duration = Duration::from_secs(3600),
        check = at_least(Duration::from_secs(1));
    /// Recently written and read object ranges kept for fetches: tailing
    /// consumers never touch object storage vs memory.
    read_cache_bytes: u64 = 256 * 1024 * 1024;
    /// Create a topic on the first Metadata request for it, as Kafka does.
    auto_create_topics: bool = true;
    /// Partitions of auto-created topics (and of CreateTopics asking for -1).
    default_partitions: i32 = 1,
        check = |v| if (1..=10_000).contains(v) { Ok(()) } else { Err("must be between 1 and 10000".into()) };
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`); at
    /// least `1KiB`.
    max_request_bytes: u64 = 100 * 1024 * 1024, check = at_least(1024);
    /// Request bytes handled at once over all connections (non-produce
    /// requests count 32x, their decoding cost): bounds memory under request
    /// floods; readers wait when it is used up. At least `max-request-bytes`.
    max_inflight_request_bytes: u64 = 512 * 1024 * 1024;
    /// Connections with no request for this long are closed.
    idle_timeout: Duration = Duration::from_secs(600);
    /// Default `max.message.bytes` of topics that do not set it.
    max_message_bytes: u64 = 1024 * 1024 + 12;
    /// This gateway's identity in the metadata store; unique per gateway
    /// sharing a backend (ASCII letters, digits, `-`, `_`).
    gateway_id: String = "floe-0".to_string(),
        check = |v| {
            if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                Ok(())
            } else {
                Err("expected non-empty ASCII letters, digits, - or _".into())
            }
        };
    /// Kafka node id reported to clients; unique per gateway sharing a backend.
    node_id: i32 = 0;
    /// Kafka broker ids this gateway answers as: `node-id` at the listen
    /// (and advertised) port, then `node-id + 1000` at port + 1, `+ 2000` at
    /// port + 2, …; its partitions' leadership is spread evenly over them.
    /// Clients open a connection per broker id, so a client whose in-flight
    /// limit is per connection (an idempotent librdkafka producer: 5 requests
    /// of one partition each) keeps this many times more produce requests
    /// waiting for a flush: lower latency at a long flush interval vs more
    /// connections and ports. 1 to 100; above 1, every gateway's `node-id`
    /// must be below 1000.
    broker_ids: u32 = 1,
        check = |v| if (1..=100).contains(v) { Ok(()) } else { Err("must be between 1 and 100".into()) };
    /// Availability zone, reported to clients as the gateway's rack (set it
    /// from ECS task metadata's `AvailabilityZone`); enables zone-local reads.
    zone: Option<String> = None, default_doc = "none";
    /// How often the gateway proves it is alive and re-reads the membership
    /// (one small write and a few reads each: on DynamoDB ≈ 1 WRU + 1 RRU per
    /// gateway). At least `50ms`.
    heartbeat_interval: Duration = Duration::from_secs(1),
        check = at_least(Duration::from_millis(50));
    /// A gateway whose heartbeat has not moved for this long (on the
    /// observer's own clock) is fenced and its partitions are taken over:
    /// faster failover vs false alarms on a stalled process; at least 3 × the
    /// heartbeat interval.
    session_timeout: Duration = Duration::from_secs(6);
    /// Zone-local reads: how often a gateway re-reads a partition led in
    /// another zone while its zone's consumers fetch it: lower end-to-end
    /// latency for them vs more metadata reads. At least `10ms`.
    follower_refresh: Duration = Duration::from_millis(500),
        check = at_least(Duration::from_millis(10));
    /// Kafka's `group.initial.rebalance.delay.ms`: how long an empty consumer
    /// group's first join waits for more members (each one extends it, up to
    /// the rebalance timeout): fewer rebalances when a whole group starts vs a
    /// slower first assignment.
    group_initial_rebalance_delay: Duration = Duration::from_secs(3);
    /// KIP-848 groups: a member not heard from for this long is removed
    /// (Kafka's `group.consumer.session.timeout.ms`); at least twice the
    /// consumer-group heartbeat interval.
    consumer_group_session_timeout: Duration = Duration::from_secs(45);
    /// KIP-848 groups: how often members heartbeat (Kafka's
    /// `group.consumer.heartbeat.interval.ms`): faster reassignment vs more
    /// requests to the coordinator (no storage cost). At least `100ms`.
    consumer_group_heartbeat_interval: Duration = Duration::from_secs(5),
        check = at_least(Duration::from_millis(100));
    /// Kafka cluster id reported in Metadata and DescribeCluster; the same on
    /// every gateway sharing a backend.
    cluster_id: String = "floe-cluster".to_string(),
        check = |v| if v.is_empty() { Err("must not be empty".into()) } else { Ok(()) };
    /// Log filter, e.g. `info` or `floe_gateway=debug,info`.
    log_level: String = "info".to_string();
    /// `host:port` of the Prometheus endpoint (`GET /metrics`), e.g.
    /// `127.0.0.1:9464`. Counters are kept either way, for the summary logged
    /// at shutdown.
    metrics_listen: Option<String> = None, default_doc = "off",
        check = |v| match v {
            Some(m) if !m.contains(':') => Err("expected host:port".into()),
            _ => Ok(()),
        };
}

impl Settings {
    /// Applies every key of a TOML document (a flat table; values may be
    /// strings, integers, floats or booleans).
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

    /// `flush-interval` as given, else the backend's default: short on the
    /// embedded backend, where a flush costs a file write and an fsync; a
    /// quarter second on S3, where it costs a PUT and a commit.
    pub fn flush_interval(&self) -> Duration {
        self.flush_interval.unwrap_or(match self.backend {
            Backend::Embedded => Duration::from_millis(5),
            Backend::Aws => Duration::from_millis(250),
        })
    }

    /// `segment-bytes` as given, else the backend's default.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes.unwrap_or(match self.backend {
            Backend::Embedded => 8 << 20,
            Backend::Aws => 16 << 20,
        })
    }

    /// `checkpoint-delay` as given, else the backend's default.
    pub fn checkpoint_delay(&self) -> Duration {
        self.checkpoint_delay.unwrap_or(match self.backend {
            Backend::Embedded => Duration::ZERO,
            Backend::Aws => Duration::from_secs(600),
        })
    }

    /// `compact-interval` as given, else the backend's default; `None`: off.
    pub fn compact_interval(&self) -> Option<Duration> {
        let every = self.compact_interval.unwrap_or(match self.backend {
            Backend::Embedded => Duration::from_secs(300),
            Backend::Aws => Duration::ZERO,
        });
        (!every.is_zero()).then_some(every)
    }

    /// Checks relations between values; called once all sources are applied
    /// (each value alone was checked when it was applied).
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::Config(m));
        if self.max_buffer_bytes < self.segment_bytes() {
            return fail(format!(
                "max-buffer-bytes ({}) must be at least segment-bytes ({})",
                self.max_buffer_bytes,
                self.segment_bytes()
            ));
        }
        if self.compact_object_bytes < self.compact_region_bytes {
            return fail(format!(
                "compact-object-bytes ({}) must be at least compact-region-bytes ({})",
                self.compact_object_bytes, self.compact_region_bytes
            ));
        }
        if self.max_inflight_request_bytes < self.max_request_bytes {
            return fail(format!(
                "max-inflight-request-bytes ({}) must be at least max-request-bytes ({})",
                self.max_inflight_request_bytes, self.max_request_bytes
            ));
        }
        if self.session_timeout < 3 * self.heartbeat_interval {
            return fail(format!(
                "session-timeout ({:?}) must be at least 3 x heartbeat-interval ({:?})",
                self.session_timeout, self.heartbeat_interval
            ));
        }
        if self.consumer_group_session_timeout < 2 * self.consumer_group_heartbeat_interval {
            return fail(format!(
                "consumer-group-session-timeout ({:?}) must be at least twice consumer-group-heartbeat-interval ({:?})",
                self.consumer_group_session_timeout, self.consumer_group_heartbeat_interval
            ));
        }
        if self.checkpoint_delay() > self.flush_record_ttl / 4 {
            return fail(format!(
                "checkpoint-delay ({:?}) must be at most a quarter of flush-record-ttl ({:?}): \
                 flush records hold what checkpoints have not stored",
                self.checkpoint_delay(),
                self.flush_record_ttl
            ));
        }
        if self.broker_ids > 1 && !(0..crate::types::BROKER_ID_STRIDE).contains(&self.node_id) {
            return fail(format!(
                "node-id ({}) must be between 0 and {} when broker-ids ({}) is above 1: \
                 the extra ids are node-id + k x {}",
                self.node_id,
                crate::types::BROKER_ID_STRIDE - 1,
                self.broker_ids,
                crate::types::BROKER_ID_STRIDE
            ));
        }
        if self.backend == Backend::Aws && (self.bucket.is_none() || self.table.is_none()) {
            return fail("backend aws needs --bucket and --table".into());
        }
        Ok(())
    }
}

/// README's configuration table, rendered from [`SETTINGS`]: flag, default,
/// what it trades.
pub fn markdown_table() -> String {
    let mut out = String::from("| flag | default | what it trades |\n|---|---|---|\n");
    for d in SETTINGS {
        let doc = d.doc.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push_str(&format!(
            "| `--{}` | {} | {} |\n",
            d.key(),
            d.default_text(),
            doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_defaults_follow_the_backend_unless_given() {
        let mut s = Settings::default();
        assert_eq!(s.flush_interval(), Duration::from_millis(5));
        assert_eq!(s.segment_bytes(), 8 << 20);
        assert_eq!(s.checkpoint_delay(), Duration::ZERO);
        s.apply("backend", "aws").unwrap();
        assert_eq!(s.checkpoint_delay(), Duration::from_secs(600));
        assert_eq!(s.flush_interval(), Duration::from_millis(250));
        assert_eq!(s.segment_bytes(), 16 << 20);
        s.apply("flush-interval", "10ms").unwrap();
        s.apply("segment-bytes", "1MiB").unwrap();
        assert_eq!(s.flush_interval(), Duration::from_millis(10));
        assert_eq!(s.segment_bytes(), 1 << 20);
        assert!(s.apply("flush-interval", "0ms").is_err());
        assert!(s.apply("segment-bytes", "1000").is_err());
        // An empty value goes back to the backend's default.
        s.apply("flush-interval", "").unwrap();
        assert_eq!(s.flush_interval(), Duration::from_millis(250));
        // The buffer must hold a segment of the backend's size.
        s.apply("max-buffer-bytes", "12MiB").unwrap();
        s.apply("segment-bytes", "").unwrap();
        assert!(s.validate().is_err(), "12 MiB cannot hold a 16 MiB segment");
    }

    #[test]
    fn parses_units_and_rejects_garbage() {
        let mut s = Settings::default();
        s.apply("flush-interval", "250ms").unwrap();
        s.apply("segment_bytes", "8MiB").unwrap();
        s.apply("read-cache-bytes", "1048576").unwrap();
        s.apply("retry-budget", "2m").unwrap();
        assert_eq!(s.flush_interval(), Duration::from_millis(250));
        assert_eq!(s.segment_bytes(), 8 * 1024 * 1024);
        assert_eq!(s.read_cache_bytes, 1 << 20);
        assert_eq!(s.retry_budget, Duration::from_secs(120));
        let e = s.apply("flush-interval", "fast").unwrap_err();
        assert!(e.to_string().contains("flush-interval"), "{e}");
        assert!(s.apply("segment-bytes", "lots").is_err());
        assert!(s.apply("auto-create-topics", "maybe").is_err());
        let e = s.apply("no-such-key", "1").unwrap_err();
        assert!(
            e.to_string().contains("retry-budget"),
            "lists the known keys: {e}"
        );
    }

    #[test]
    fn declared_checks_refuse_bad_values_and_name_the_setting() {
        let mut s = Settings::default();
        for (key, value) in [
            ("flush-record-ttl", "10m"),
            ("flush-interval", "0s"),
            ("segment-bytes", "512"),
            ("upload-concurrency", "0"),
            ("retry-budget", "10ms"),
            ("default-partitions", "0"),
            ("default-partitions", "10001"),
            ("gateway-id", "a b"),
            ("heartbeat-interval", "10ms"),
            ("listen", "nohost"),
            ("advertised-listener", "host:port"),
            ("metrics-listen", "nohost"),
            ("cluster-id", ""),
        ] {
            let e = s.apply(key, value).expect_err(key);
            assert!(e.to_string().contains(key), "{e}");
        }
        assert_eq!(s, Settings::default(), "a refused value is not applied");
        s.apply("flush-record-ttl", "2d").unwrap();
        assert_eq!(s.flush_record_ttl, Duration::from_secs(2 * 24 * 3600));
        s.apply("metrics_listen", "127.0.0.1:9464").unwrap();
        assert_eq!(s.metrics_listen.as_deref(), Some("127.0.0.1:9464"));
        s.apply("metrics-listen", "").unwrap();
        assert_eq!(s.metrics_listen, None);
    }

    #[test]
    fn toml_and_relations() {
        let mut s = Settings::default();
        s.apply_toml(
            "flush_interval = \"20ms\"\ndefault_partitions = 3\nauto_create_topics = false\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(s.default_partitions, 3);
        assert!(!s.auto_create_topics);
        s.validate().unwrap();
        s.apply("max-buffer-bytes", "1MiB").unwrap();
        let e = s.validate().unwrap_err();
        assert!(e.to_string().contains("max-buffer-bytes"), "{e}");
        let mut s = Settings::default();
        s.apply("session-timeout", "2s").unwrap();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("session-timeout")
        );
        let mut s = Settings::default();
        s.apply("backend", "aws").unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("--bucket"));
        // Extra broker ids are node-id + k x 1000: node ids stay below 1000.
        let mut s = Settings::default();
        s.apply("broker-ids", "4").unwrap();
        s.apply("node-id", "999").unwrap();
        s.validate().unwrap();
        s.apply("node-id", "1000").unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("node-id"));
        s.apply("broker-ids", "1").unwrap();
        s.validate().unwrap();
        assert!(s.apply("broker-ids", "0").is_err() && s.apply("broker-ids", "101").is_err());
        assert!(Settings::default().apply_toml("x = [1]", "t").is_err());
        let e = Settings::default()
            .apply_toml("flush_interval = 5", "f.toml")
            .unwrap_err();
        assert!(e.to_string().contains("f.toml"), "{e}");
    }

    #[test]
    fn every_setting_is_declared_with_a_flag_a_variable_and_a_default() {
        let keys: Vec<String> = SETTINGS.iter().map(|d| d.key()).collect();
        for k in [
            "upload-concurrency",
            "retry-budget",
            "cluster-id",
            "flush-record-ttl",
        ] {
            assert!(keys.contains(&k.to_string()), "{k}");
        }
        let d = SETTINGS
            .iter()
            .find(|d| d.name == "flush_interval")
            .unwrap();
        assert_eq!(d.env(), "FLOE_FLUSH_INTERVAL");
        assert_eq!(d.default_text(), "`5ms` (embedded), `250ms` (aws)");
        let d = SETTINGS
            .iter()
            .find(|d| d.name == "flush_record_ttl")
            .unwrap();
        assert_eq!(d.default_text(), "`7d`");
        let d = SETTINGS
            .iter()
            .find(|d| d.name == "max_buffer_bytes")
            .unwrap();
        assert_eq!(d.default_text(), "`64MiB`");
        let d = SETTINGS
            .iter()
            .find(|d| d.name == "max_message_bytes")
            .unwrap();
        assert_eq!(d.default_text(), "`1048588`");
        // Every default shown parses back to itself.
        let defaults = Settings::default();
        let mut s = Settings::default();
        for d in SETTINGS.iter().filter(|d| d.default_doc.is_none()) {
            s.apply(&d.key(), &(d.show)(&defaults)).expect(d.name);
        }
        assert_eq!(s, defaults);
        defaults.validate().unwrap();
    }
}
