//! Request accounting: what the gateway moved for clients and what it asked of
//! its stores, as Prometheus metrics (`GET /metrics` on `metrics_listen`) and as
//! one summary line logged at shutdown. Both read the same counters.
//!
//! Counting is cheap on the hot path: relaxed atomics, label sets created once
//! (per API at start, per error code on its first occurrence). The write path's
//! counters ([`FlusherStats`]: produced bytes and records, flushes) and the AWS
//! request counters ([`AwsStats`]) are not copied: a collector reads them when
//! the metrics are encoded. Produced data is counted where the write path
//! acknowledges it, so acks=0 appends and appends that became durable after
//! their request timed out count too.

pub mod endpoint;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytesize::ByteSize;
use floe_core::aws::AwsStats;
use floe_flusher::FlusherStats;
use kafka_protocol::messages::ApiKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::error::Code;
use floe_core::aws::cost::Cost;

/// Produce acknowledgement latency buckets, seconds: 1 ms to 10 s.
const ACK_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const GIB: f64 = (1u64 << 30) as f64;

/// The label set `api="<Kafka API name>"`, e.g. `api="Produce"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct ApiLabel(ApiKey);

impl EncodeLabelSet for ApiLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("api", format!("{:?}", self.0)).encode(encoder.encode_label())
    }
}

/// The label set `error="<Kafka error name>"`, e.g. `error="NOT_LEADER_OR_FOLLOWER"`.
/// Holds the code; the name is only spelled out when encoded.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct ErrorLabel(i16);

impl EncodeLabelSet for ErrorLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("error", error_name(self.0)).encode(encoder.encode_label())
    }
}

/// Kafka's name for an error code, as its protocol guide spells it
/// (`UNKNOWN_TOPIC_OR_PARTITION`).
pub fn error_name(code: i16) -> String {
    match Code::try_from_code(code) {
        None => "NONE".to_string(),
        Some(Code::Unknown(c)) => format!("UNKNOWN_CODE_{c}"),
        Some(known) => {
            let camel = known.to_string();
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

/// The gateway's counters and the registry that exports them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    fetch_bytes: Counter,
    /// Indexed by API key; `None` for APIs Floe does not answer.
    requests: Vec<Option<Counter>>,
    errors: Family<ErrorLabel, Counter>,
    connections_open: Gauge,
    connections_accepted: Counter,
    produce_ack: Histogram,
    stores: Arc<StoreCounters>,
    compaction: Family<KindLabel, Counter>,
    compaction_cost: Family<ItemLabel, Counter<f64, AtomicU64>>,
}

/// The label set `item="<price item>"` of the compaction cost counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct ItemLabel(&'static str);

impl EncodeLabelSet for ItemLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("item", self.0).encode(encoder.encode_label())
    }
}

/// The label set `kind="<what>"` of the compaction counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct KindLabel(&'static str);

impl EncodeLabelSet for KindLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("kind", self.0).encode(encoder.encode_label())
    }
}

/// Ends a connection's share of the open-connections gauge when dropped.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Which text format `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (what Prometheus asks for).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (for older scrapers).
    Prometheus,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

impl Metrics {
    /// Counters for one gateway. `flusher` are its write path's counters; `aws`
    /// the S3/DynamoDB request counters (None on the embedded backend).
    pub fn new(flusher: Arc<FlusherStats>, aws: Option<Arc<AwsStats>>) -> Metrics {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("floe");
        let fetch_bytes = Counter::default();
        r.register_with_unit(
            "fetch",
            "Record bytes returned to consumers by fetch responses",
            Unit::Bytes,
            fetch_bytes.clone(),
        );
        let by_api = Family::<ApiLabel, Counter>::default();
        let mut requests = Vec::new();
        let answered = crate::api::SUPPORTED
            .iter()
            .map(|(k, _, _)| *k)
            .chain([ApiKey::FindCoordinator]);
        for key in answered {
            let i = key as usize;
            if requests.len() <= i {
                requests.resize(i + 1, None);
            }
            requests[i] = Some(by_api.get_or_create_owned(&ApiLabel(key)));
        }
        r.register("requests", "Kafka requests answered, by API", by_api);
        let errors = Family::<ErrorLabel, Counter>::default();
        r.register(
            "error_responses",
            "Error codes in Kafka responses, by Kafka error name (each partition or resource with an error counts once)",
            errors.clone(),
        );
        let connections_open = Gauge::default();
        r.register(
            "connections_open",
            "Kafka client connections open now",
            connections_open.clone(),
        );
        let connections_accepted = Counter::default();
        r.register(
            "connections_accepted",
            "Kafka client connections accepted",
            connections_accepted.clone(),
        );
        let produce_ack = Histogram::new(ACK_BUCKETS);
        r.register_with_unit(
            "produce_ack_duration",
            "Time from a produce request read to its response (acks=1/all: durable in the object and metadata stores)",
            Unit::Seconds,
            produce_ack.clone(),
        );
        let stores = Arc::new(StoreCounters { flusher, aws });
        r.register_collector(Box::new(stores.clone()));
        let compaction = Family::<KindLabel, Counter>::default();
        r.register(
            "compaction",
            "Compaction passes run by this gateway (compact-interval), summed: passes; partitions compacted, lost (another swap won) and failed; GETs and PUTs; bytes read and written; index entries merged, written and deleted; unreferenced objects and bytes deleted; milliseconds spent",
            compaction.clone(),
        );
        let compaction_cost = Family::<ItemLabel, Counter<f64, AtomicU64>>::default();
        r.register_with_unit(
            "compaction_estimated_cost",
            "Estimated request cost of this gateway's compaction passes on the AWS backend (their own stores, apart from floe_estimated_cost), by price item, at the same list prices",
            Unit::Other("dollars".into()),
            compaction_cost.clone(),
        );
        Metrics {
            registry: root,
            fetch_bytes,
            requests,
            errors,
            connections_open,
            connections_accepted,
            produce_ack,
            stores,
            compaction,
            compaction_cost,
        }
    }

    /// Adds a compaction pass's figures (`floe_compaction_total{kind=...}`).
    pub fn compaction_pass(&self, r: &floe_compactor::Report) {
        for (kind, n) in [
            ("passes", 1),
            ("partitions_compacted", r.partitions_compacted),
            ("partitions_lost", r.swaps_lost),
            ("partitions_failed", r.partitions_failed),
            ("get_requests", r.get_requests),
            ("put_requests", r.put_requests),
            ("bytes_read", r.bytes_read),
            ("bytes_written", r.bytes_written),
            ("entries_merged", r.entries_merged),
            ("entries_written", r.entries_written),
            ("entries_deleted", r.entries_deleted),
            ("partitions_key_compacted", r.partitions_cleaned),
            ("records_removed", r.records_removed),
            ("topics_forgotten", r.topics_forgotten),
            ("topics_forget_failed", r.topics_forget_failed),
            ("objects_deleted", r.gc.objects_deleted),
            ("bytes_deleted", r.gc.bytes_deleted),
            ("milliseconds", r.duration.as_millis() as u64),
        ] {
            self.compaction.get_or_create(&KindLabel(kind)).inc_by(n);
        }
        if let (Some(requests), Some(cost)) = (&r.requests, r.cost()) {
            for (kind, n) in [
                ("s3_list_requests", requests.s3_list),
                ("s3_delete_requests", requests.s3_delete),
                ("dynamodb_requests", requests.ddb_requests),
                // Whole units: writes are billed per started KiB.
                (
                    "dynamodb_write_units",
                    requests.ddb_write_units.ceil() as u64,
                ),
            ] {
                self.compaction.get_or_create(&KindLabel(kind)).inc_by(n);
            }
            for (item, dollars) in cost.items() {
                self.compaction_cost
                    .get_or_create(&ItemLabel(item))
                    .inc_by(dollars);
            }
        }
    }

    /// Counts a request of `api` (one Floe answers).
    pub fn request(&self, api: ApiKey) {
        if let Some(Some(c)) = self.requests.get(api as usize) {
            c.inc();
        }
    }

    /// Counts one error code put in a response; 0 (no error) is ignored.
    pub fn error_code(&self, code: i16) {
        if code != 0 {
            self.errors.get_or_create(&ErrorLabel(code)).inc();
        }
    }

    /// Counts record bytes sent to a consumer.
    pub fn fetched(&self, bytes: u64) {
        self.fetch_bytes.inc_by(bytes);
    }

    /// Records a produce response's latency.
    pub fn produce_acked(&self, elapsed: Duration) {
        self.produce_ack.observe(elapsed.as_secs_f64());
    }

    /// Counts an accepted connection; it stays open until the guard drops.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections_accepted.inc();
        self.connections_open.inc();
        OpenConnection(self.connections_open.clone())
    }

    /// Everything, in `format`.
    pub fn encode(&self, format: Format) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)?
            }
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?
            }
        }
        Ok(out)
    }

    /// The shutdown summary: bytes and records in and out, flushes, store
    /// requests and their estimated cost per GiB produced.
    pub fn summary(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let f = &self.stores.flusher;
        let bytes_in = f.appended_bytes.load(Relaxed);
        let records_in = f.appended_records.load(Relaxed);
        let bytes_out = self.fetch_bytes.get();
        let flushes = f.flushes.load(Relaxed);
        let flushed = f.flushed_bytes.load(Relaxed);
        let mut s = format!(
            "summary: in {} ({bytes_in} bytes, {records_in} records), out {} ({bytes_out} bytes); \
             flushes {flushes} ({})",
            ByteSize(bytes_in).display().iec(),
            ByteSize(bytes_out).display().iec(),
            ByteSize(flushed).display().iec(),
        );
        let Some(aws) = &self.stores.aws else {
            s.push_str("; backend embedded (no request cost)");
            return s;
        };
        let a = aws.snapshot();
        let cost = Cost::of(&a);
        let _ = write!(
            s,
            "; S3 PUT {} GET {} DELETE {} LIST {}; DynamoDB {} requests, {:.1} WRU, {:.1} RRU; \
             cost ${:.6} total",
            a.s3_put,
            a.s3_get,
            a.s3_delete,
            a.s3_list,
            a.ddb_requests,
            a.ddb_write_units,
            a.ddb_read_units,
            cost.total(),
        );
        if bytes_in > 0 {
            let _ = write!(
                s,
                ", ${:.6} per GiB in",
                cost.total() / (bytes_in as f64 / GIB)
            );
        } else {
            s.push_str(", nothing produced");
        }
        s
    }
}

/// Counters kept by the stores and the write path, read at encode time.
#[derive(Debug)]
struct StoreCounters {
    flusher: Arc<FlusherStats>,
    aws: Option<Arc<AwsStats>>,
}

fn counter<N>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> Result<(), std::fmt::Error>
where
    ConstCounter<N>: EncodeMetric,
{
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

impl Collector for StoreCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let f = &self.flusher;
        counter(
            &mut encoder,
            "produce",
            "Record batch bytes produced and made durable (acknowledged, or for acks=0 committed); idempotent duplicates count once.",
            Some(&Unit::Bytes),
            f.appended_bytes.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "produce_records",
            "Records produced and made durable; idempotent duplicates count once.",
            None,
            f.appended_records.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "flushes",
            "Flushes committed: one segment object and one flush record each.",
            None,
            f.flushes.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "flush",
            "Bytes of the segment objects of committed flushes.",
            Some(&Unit::Bytes),
            f.flushed_bytes.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "flush_failures",
            "Flushes that failed to commit (their produce requests got retriable errors).",
            None,
            f.failed_flushes.load(Relaxed),
        )?;
        let Some(aws) = &self.aws else {
            return Ok(());
        };
        let a = aws.snapshot();
        {
            let mut m = encoder.encode_descriptor(
                "s3_requests",
                "S3 requests by operation (get includes HEAD); SDK retries inside one call are not counted apart.",
                None,
                MetricType::Counter,
            )?;
            for (op, n) in [
                ("put", a.s3_put),
                ("get", a.s3_get),
                ("delete", a.s3_delete),
                ("list", a.s3_list),
            ] {
                ConstCounter::new(n).encode(m.encode_family(&[("op", op)])?)?;
            }
        }
        counter(
            &mut encoder,
            "dynamodb_requests",
            "DynamoDB requests of any kind.",
            None,
            a.ddb_requests,
        )?;
        counter(
            &mut encoder,
            "dynamodb_write_units",
            "DynamoDB write request units consumed (ReturnConsumedCapacity).",
            None,
            a.ddb_write_units,
        )?;
        counter(
            &mut encoder,
            "dynamodb_read_units",
            "DynamoDB read request units consumed (ReturnConsumedCapacity).",
            None,
            a.ddb_read_units,
        )?;
        let dollars = Unit::Other("dollars".into());
        let mut m = encoder.encode_descriptor(
            "estimated_cost",
            "Estimated request cost at S3 Standard and DynamoDB on-demand list prices (us-east-1), by price item; s3_put includes LIST, DELETE is free.",
            Some(&dollars),
            MetricType::Counter,
        )?;
        for (item, v) in Cost::of(&a).items() {
            ConstCounter::new(v).encode(m.encode_family(&[("item", item)])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_follow_kafka() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(9999), "UNKNOWN_CODE_9999");
    }

    fn sample(text: &str, line_start: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
    }

    #[test]
    fn counters_feed_the_endpoint_and_the_summary() {
        let flusher = Arc::new(FlusherStats::default());
        let aws = Arc::new(AwsStats::default());
        let m = Metrics::new(flusher.clone(), Some(aws.clone()));
        m.request(ApiKey::Produce);
        m.request(ApiKey::Produce);
        m.request(ApiKey::Heartbeat); // not answered by Floe: ignored
        m.error_code(0);
        m.error_code(6);
        flusher
            .appended_bytes
            .store(1 << 30, std::sync::atomic::Ordering::Relaxed);
        flusher
            .appended_records
            .store(1000, std::sync::atomic::Ordering::Relaxed);
        m.fetched(512);
        m.produce_acked(Duration::from_millis(3));
        let conn = m.connection_opened();
        flusher
            .flushes
            .store(4, std::sync::atomic::Ordering::Relaxed);
        aws.s3_put.store(4000, std::sync::atomic::Ordering::Relaxed);
        aws.ddb_write_units
            .store(8_000_000, std::sync::atomic::Ordering::Relaxed); // 8000 WRU

        let text = m.encode(Format::OpenMetrics).expect("encode");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(sample(&text, "floe_requests_total{api=\"Produce\"} "), 2.0);
        assert_eq!(sample(&text, "floe_requests_total{api=\"Fetch\"} "), 0.0);
        assert_eq!(
            sample(
                &text,
                "floe_error_responses_total{error=\"NOT_LEADER_OR_FOLLOWER\"} "
            ),
            1.0
        );
        assert_eq!(sample(&text, "floe_produce_bytes_total "), GIB);
        assert_eq!(sample(&text, "floe_produce_records_total "), 1000.0);
        assert_eq!(sample(&text, "floe_fetch_bytes_total "), 512.0);
        assert_eq!(sample(&text, "floe_connections_open "), 1.0);
        assert_eq!(sample(&text, "floe_flushes_total "), 4.0);
        assert_eq!(sample(&text, "floe_s3_requests_total{op=\"put\"} "), 4000.0);
        assert_eq!(sample(&text, "floe_dynamodb_write_units_total "), 8000.0);
        assert_eq!(
            sample(&text, "floe_estimated_cost_dollars_total{item=\"s3_put\"} "),
            0.02
        );
        assert_eq!(
            sample(
                &text,
                "floe_produce_ack_duration_seconds_bucket{le=\"0.005\"} "
            ),
            1.0
        );
        drop(conn);
        let text = m.encode(Format::Prometheus).expect("encode");
        assert_eq!(sample(&text, "floe_connections_open "), 0.0);
        assert!(!text.contains("# EOF"), "{text}");

        let s = m.summary();
        assert!(s.starts_with("summary: in 1.0 GiB"), "{s}");
        assert!(s.contains("1000 records"), "{s}");
        assert!(s.contains("S3 PUT 4000 GET 0 DELETE 0 LIST 0"), "{s}");
        assert!(s.contains("8000.0 WRU"), "{s}");
        // $0.02 of PUTs + $0.005 of WRU, for 1 GiB in.
        assert!(
            s.contains("cost $0.025000 total, $0.025000 per GiB in"),
            "{s}"
        );
    }

    #[test]
    fn compaction_passes_add_their_requests_and_cost() {
        let m = Metrics::new(Arc::new(FlusherStats::default()), None);
        let mut r = floe_compactor::Report {
            partitions_compacted: 3,
            get_requests: 40,
            ..Default::default()
        };
        m.compaction_pass(&r); // embedded: no requests known, no cost
        r.requests = Some(floe_core::aws::AwsStatsSnapshot {
            s3_put: 4,
            s3_list: 996,
            s3_get: 40,
            s3_delete: 7,
            ddb_requests: 12,
            ddb_read_units: 30.0,
            ddb_write_units: 1_600_000.0,
        });
        m.compaction_pass(&r);
        let text = m.encode(Format::OpenMetrics).expect("encode");
        assert_eq!(
            sample(&text, "floe_compaction_total{kind=\"passes\"} "),
            2.0
        );
        assert_eq!(
            sample(
                &text,
                "floe_compaction_total{kind=\"partitions_compacted\"} "
            ),
            6.0
        );
        assert_eq!(
            sample(&text, "floe_compaction_total{kind=\"s3_list_requests\"} "),
            996.0
        );
        assert_eq!(
            sample(&text, "floe_compaction_total{kind=\"dynamodb_requests\"} "),
            12.0
        );
        // 1,000 PUT and LIST requests at $0.005 per 1,000; 1.6 M WRU at $0.625 per million.
        let cost = |item: &str| {
            sample(
                &text,
                &format!("floe_compaction_estimated_cost_dollars_total{{item=\"{item}\"}} "),
            )
        };
        assert!((cost("s3_put") - 0.005).abs() < 1e-12, "{text}");
        assert!((cost("dynamodb_write") - 1.0).abs() < 1e-12, "{text}");
        assert!((cost("s3_get") - 0.000_016).abs() < 1e-12, "{text}");
    }

    #[test]
    fn embedded_summary_says_so_and_has_no_aws_series() {
        let m = Metrics::new(Arc::new(FlusherStats::default()), None);
        let text = m.encode(Format::OpenMetrics).expect("encode");
        assert!(!text.contains("floe_s3_requests"), "{text}");
        assert!(text.contains("floe_flushes_total 0"), "{text}");
        let s = m.summary();
        assert!(s.contains("backend embedded (no request cost)"), "{s}");
    }
}
