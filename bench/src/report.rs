//! What a bench run measured: per phase figures, the project's targets beside
//! them, as text for people and JSON for tools.

use std::fmt::{self, Write as _};
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::gateways::StoreCounters;
use crate::{BenchError, Options, Workload};

const GIB: f64 = (1u64 << 30) as f64;

pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / GIB
}

/// Records and bytes moved in some seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub records: u64,
    /// Record value bytes.
    pub bytes: u64,
    pub seconds: f64,
    /// Megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    pub records_per_s: f64,
}

impl Throughput {
    pub fn of(records: u64, bytes: u64, seconds: f64) -> Throughput {
        let s = seconds.max(1e-9);
        Throughput {
            records,
            bytes,
            seconds,
            mb_per_s: bytes as f64 / s / 1e6,
            records_per_s: records as f64 / s,
        }
    }
}

/// Latency percentiles in milliseconds, and the curve the plot draws.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub samples: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// (quantile, milliseconds) from p0 to p99.99.
    pub curve: Vec<(f64, f64)>,
}

/// Quantiles the curve is drawn through.
const CURVE: [f64; 12] = [
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

impl Percentiles {
    /// From a histogram of microseconds; None when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Some(Percentiles {
            samples: h.len(),
            p50: ms(0.5),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
            curve: CURVE.iter().map(|q| (*q, ms(*q))).collect(),
        })
    }
}

/// One second of a phase.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Seconds since the phase started.
    pub t: f64,
    pub produced_mb_s: f64,
    pub consumed_mb_s: f64,
}

/// The measured gateways' processes during a phase.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayUse {
    pub processes: usize,
    pub cpu_seconds: f64,
    /// Per GiB of record values produced (or, in a consume-only phase, consumed).
    pub cpu_seconds_per_gib: f64,
    /// Peak resident set size so far, summed over the processes.
    pub peak_rss_bytes: u64,
}

/// Store requests during a phase, in all and per GiB of record values.
#[derive(Debug, Clone, Serialize)]
pub struct RequestUse {
    pub total: StoreCounters,
    pub per_gib: StoreCounters,
    pub dollars_per_gib: f64,
}

impl RequestUse {
    pub fn of(total: StoreCounters, bytes: u64) -> RequestUse {
        let g = gib(bytes).max(1e-12);
        let per = |v: f64| v / g;
        RequestUse {
            per_gib: StoreCounters {
                flushes: per(total.flushes),
                s3_put: per(total.s3_put),
                s3_get: per(total.s3_get),
                s3_list: per(total.s3_list),
                s3_delete: per(total.s3_delete),
                dynamodb_requests: per(total.dynamodb_requests),
                dynamodb_write_units: per(total.dynamodb_write_units),
                dynamodb_read_units: per(total.dynamodb_read_units),
                cost_dollars: per(total.cost_dollars),
            },
            dollars_per_gib: per(total.cost_dollars),
            total,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// produce, fill, end-to-end or catch-up.
    pub name: String,
    pub produced: Option<Throughput>,
    pub consumed: Option<Throughput>,
    /// From the last send to the last acknowledgement.
    pub drain_seconds: Option<f64>,
    /// From handing a record to the client to its delivery report.
    pub produce_latency_ms: Option<Percentiles>,
    /// From handing a record to the producer to a tailing consumer reading it.
    pub end_to_end_latency_ms: Option<Percentiles>,
    pub failed: u64,
    pub first_error: Option<String>,
    /// CPU seconds of the bench's own clients (they share the machine).
    pub client_cpu_seconds: f64,
    pub gateway: Option<GatewayUse>,
    /// None when no gateway metrics endpoint was reachable.
    pub requests: Option<RequestUse>,
    pub timeline: Vec<Point>,
}

/// One of the project's targets, beside what this run measured.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// The options a report was made with.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    pub backend: String,
    pub workload: Workload,
    pub gateways: Option<usize>,
    pub flush_interval_ms: Option<f64>,
    pub s3_latency_profile: bool,
    pub topic: String,
    /// Partitions the topic has (an existing topic keeps its own count).
    pub topic_partitions: i32,
    #[serde(flatten)]
    pub clients: crate::Clients,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub label: String,
    /// Unix seconds when the report was made.
    pub finished_at: u64,
    pub cpus: usize,
    pub settings: RunSettings,
    /// Whether the gateways counted S3 and DynamoDB requests (AWS backend).
    pub requests_counted: bool,
    pub phases: Vec<PhaseReport>,
    pub targets: Vec<TargetCheck>,
}

fn ms(v: f64) -> String {
    format!("{v:.1} ms")
}

impl Report {
    pub fn new(
        o: &Options,
        topic: &str,
        partitions: i32,
        phases: Vec<PhaseReport>,
        requests_counted: bool,
    ) -> Report {
        let settings = RunSettings {
            backend: o.backend.clone(),
            workload: o.workload,
            gateways: match &o.target {
                crate::Target::Start { count, .. } => Some(*count),
                crate::Target::Connect { .. } => None,
            },
            flush_interval_ms: o.flush_interval.map(|d| d.as_secs_f64() * 1000.0),
            s3_latency_profile: o.s3_latency,
            topic: topic.to_string(),
            topic_partitions: partitions,
            clients: o.clients.clone(),
        };
        let mut r = Report {
            label: o.label.clone().unwrap_or_else(|| o.backend.clone()),
            finished_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            settings,
            requests_counted,
            phases,
            targets: Vec::new(),
        };
        r.targets = r.check_targets();
        r
    }

    fn phase(&self, names: &[&str]) -> Option<&PhaseReport> {
        self.phases
            .iter()
            .find(|p| names.contains(&p.name.as_str()))
    }

    /// The targets this run can speak to (README, "Benchmark").
    fn check_targets(&self) -> Vec<TargetCheck> {
        let mut t = Vec::new();
        let producing = self.phase(&["produce", "end-to-end", "fill"]);
        if let Some(g) = producing.and_then(|p| p.gateway.as_ref()) {
            t.push(TargetCheck {
                name: "gateway CPU per GiB produced".into(),
                target: "<= 1.0 CPU-s/GiB".into(),
                measured: format!("{:.2} CPU-s/GiB", g.cpu_seconds_per_gib),
                met: g.cpu_seconds_per_gib <= 1.0,
            });
        }
        if self.settings.s3_latency_profile {
            let at = self
                .settings
                .flush_interval_ms
                .map_or(String::new(), |f| format!(" (flush interval {f:.0} ms)"));
            if let Some(p) = producing.and_then(|p| p.produce_latency_ms.as_ref()) {
                t.push(TargetCheck {
                    name: format!("produce p99 with the simulated S3 profile{at}"),
                    target: "<= 450 ms".into(),
                    measured: ms(p.p99),
                    met: p.p99 <= 450.0,
                });
            }
            if let Some(p) = self
                .phase(&["end-to-end"])
                .and_then(|p| p.end_to_end_latency_ms.as_ref())
            {
                t.push(TargetCheck {
                    name: format!("end-to-end p99 with the simulated S3 profile{at}"),
                    target: "<= 600 ms".into(),
                    measured: ms(p.p99),
                    met: p.p99 <= 600.0,
                });
            }
        }
        if let Some(r) = self
            .phase(&["end-to-end"])
            .and_then(|p| p.requests.as_ref())
            && self.requests_counted
        {
            t.push(TargetCheck {
                name: "S3 GETs caused by tailing consumers".into(),
                target: "0".into(),
                measured: format!("{:.0}", r.total.s3_get),
                met: r.total.s3_get == 0.0,
            });
        }
        if let Some(catch) = self.phase(&["catch-up"]) {
            if let (Some(r), Some(c)) = (catch.requests.as_ref(), catch.consumed.as_ref())
                && self.requests_counted
            {
                let per_4mib =
                    r.total.s3_get / (c.bytes as f64 / (4.0 * 1024.0 * 1024.0)).max(1e-9);
                t.push(TargetCheck {
                    name: "catch-up S3 GETs per 4 MiB read".into(),
                    target: "<= 1 (once compacted)".into(),
                    measured: format!("{per_4mib:.2}"),
                    met: per_4mib <= 1.0,
                });
            }
            if let (Some(c), Some(p)) = (
                catch.consumed.as_ref(),
                producing.and_then(|p| p.produced.as_ref()),
            ) {
                t.push(TargetCheck {
                    name: "catch-up consume throughput vs produce".into(),
                    target: ">= 1.0x".into(),
                    measured: format!(
                        "{:.2}x ({:.1} vs {:.1} MB/s)",
                        c.mb_per_s / p.mb_per_s.max(1e-9),
                        c.mb_per_s,
                        p.mb_per_s
                    ),
                    met: c.mb_per_s >= p.mb_per_s,
                });
            }
        }
        t
    }

    pub fn write(&self, dir: &Path) -> Result<(), BenchError> {
        let path = dir.join("results.json");
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| BenchError::Output(format!("{}: {e}", path.display())))?;
        std::fs::write(&path, json)
            .map_err(|e| BenchError::Output(format!("{}: {e}", path.display())))
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        let c = &s.clients;
        let mut head = format!(
            "floe bench: {} ({}), {} partitions, {} B records, {} producer(s), {} consumer(s), acks={}, compression={}, linger {} ms, idempotence {}",
            self.label,
            s.backend,
            s.topic_partitions,
            c.record_bytes,
            c.producers,
            c.consumers,
            c.acks,
            c.compression,
            c.linger.as_secs_f64() * 1000.0,
            c.idempotence
        );
        if let Some(fi) = s.flush_interval_ms {
            let _ = write!(head, ", flush interval {fi} ms");
        }
        if s.s3_latency_profile {
            head.push_str(", simulated S3 latency");
        }
        if let Some(r) = c.rate {
            let _ = write!(head, ", {r} records/s");
        }
        writeln!(f, "{head}")?;
        for p in &self.phases {
            writeln!(f, "{}:", p.name)?;
            if let Some(t) = &p.produced {
                writeln!(
                    f,
                    "  produced     {} records, {:.1} MiB in {:.1} s: {:.1} MB/s, {:.0} records/s",
                    t.records,
                    mib(t.bytes),
                    t.seconds,
                    t.mb_per_s,
                    t.records_per_s
                )?;
            }
            if let Some(d) = p.drain_seconds {
                writeln!(f, "  last ack     {d:.2} s after the last send")?;
            }
            if let Some(t) = &p.consumed {
                writeln!(
                    f,
                    "  consumed     {} records, {:.1} MiB in {:.1} s: {:.1} MB/s",
                    t.records,
                    mib(t.bytes),
                    t.seconds,
                    t.mb_per_s
                )?;
            }
            for (what, l) in [
                ("produce ack ", &p.produce_latency_ms),
                ("end-to-end  ", &p.end_to_end_latency_ms),
            ] {
                if let Some(l) = l {
                    writeln!(
                        f,
                        "  {what} p50 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
                        ms(l.p50),
                        ms(l.p99),
                        ms(l.p999),
                        ms(l.max),
                        l.samples
                    )?;
                }
            }
            if p.failed > 0 {
                writeln!(
                    f,
                    "  failed       {} ({})",
                    p.failed,
                    p.first_error.as_deref().unwrap_or("")
                )?;
            }
            if let Some(g) = &p.gateway {
                writeln!(
                    f,
                    "  gateway      {:.2} CPU-s ({:.2} per GiB), peak RSS {:.0} MiB ({} process(es))",
                    g.cpu_seconds,
                    g.cpu_seconds_per_gib,
                    mib(g.peak_rss_bytes),
                    g.processes
                )?;
            }
            writeln!(
                f,
                "  clients      {:.2} CPU-s (the bench's producers and consumers, on the same machine)",
                p.client_cpu_seconds
            )?;
            if let Some(r) = &p.requests {
                let (t, g) = (&r.total, &r.per_gib);
                writeln!(
                    f,
                    "  flushes      {:.0} ({:.0} per GiB)",
                    t.flushes, g.flushes
                )?;
                if self.requests_counted {
                    writeln!(
                        f,
                        "  S3           PUT {:.0} GET {:.0} LIST {:.0} DELETE {:.0}; per GiB PUT {:.0} GET {:.0}",
                        t.s3_put, t.s3_get, t.s3_list, t.s3_delete, g.s3_put, g.s3_get
                    )?;
                    writeln!(
                        f,
                        "  DynamoDB     {:.0} requests, {:.1} WRU, {:.1} RRU; per GiB {:.0} requests, {:.0} WRU, {:.0} RRU",
                        t.dynamodb_requests,
                        t.dynamodb_write_units,
                        t.dynamodb_read_units,
                        g.dynamodb_requests,
                        g.dynamodb_write_units,
                        g.dynamodb_read_units
                    )?;
                    writeln!(
                        f,
                        "  request cost ${:.6} in all, ${:.5} per GiB (list prices: S3 Standard, DynamoDB on demand)",
                        t.cost_dollars, r.dollars_per_gib
                    )?;
                } else {
                    writeln!(
                        f,
                        "  requests     not counted (embedded backend: one flush would be one S3 PUT)"
                    )?;
                }
            }
        }
        if !self.targets.is_empty() {
            writeln!(f, "targets:")?;
            for t in &self.targets {
                writeln!(
                    f,
                    "  [{}] {}: {} (target {})",
                    if t.met { "met" } else { "MISSED" },
                    t.name,
                    t.measured,
                    t.target
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram_in_milliseconds() {
        let mut h = crate::workload::histogram().unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let p = Percentiles::of(&h).unwrap();
        assert_eq!(p.samples, 1000);
        assert!((p.p50 - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.max - 1000.0).abs() < 1.0, "{p:?}");
        assert_eq!(p.curve.len(), CURVE.len());
        assert!(Percentiles::of(&crate::workload::histogram().unwrap()).is_none());
    }

    #[test]
    fn requests_per_gib_scale_with_the_bytes_moved() {
        let total = StoreCounters {
            s3_put: 64.0,
            cost_dollars: 0.001,
            ..StoreCounters::default()
        };
        let r = RequestUse::of(total, 1 << 29);
        assert_eq!(r.per_gib.s3_put, 128.0);
        assert!((r.dollars_per_gib - 0.002).abs() < 1e-12);
    }
}
