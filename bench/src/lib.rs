//! `floe bench`: drives Floe gateways (started by the bench, or running at an
//! address) with librdkafka and reports what a platform team sizes a
//! deployment by: throughput, produce and end-to-end latency percentiles,
//! gateway CPU-seconds per GiB and peak memory, and the S3 and DynamoDB
//! requests each GiB costs. Figures, not assertions: the report lists the
//! project's targets beside what was measured, and writes JSON and SVG plots.
//!
//! Workloads (`Workload`): `produce` (producers only), `end-to-end`
//! (producers with tailing consumers, each record timed from send to
//! consume), `catch-up` (consumers reading from the beginning what was
//! produced), and `all` (end-to-end, then catch-up over what it produced).

pub mod gateways;
mod plot;
pub mod report;
mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use gateways::{Brokers, ProcessSample};
pub use gateways::{Launch, Target};
use report::{Percentiles, PhaseReport, Point, Report, Throughput};

use workload::{Gate, Shared, Start};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The bench could not start or reach what it measures.
    #[error("setup: {0}")]
    Setup(String),
    /// A Kafka client could not be created or failed outright.
    #[error("client: {0}")]
    Client(String),
    /// A gateway's metrics endpoint could not be read.
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("cannot write results: {0}")]
    Output(String),
}

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    Produce,
    EndToEnd,
    CatchUp,
    All,
}

impl std::str::FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "produce" => Ok(Workload::Produce),
            "end-to-end" | "e2e" => Ok(Workload::EndToEnd),
            "catch-up" => Ok(Workload::CatchUp),
            "all" => Ok(Workload::All),
            _ => Err(format!(
                "unknown workload {s:?}: produce, end-to-end, catch-up or all"
            )),
        }
    }
}

/// The clients a bench runs and what they send (flags of `floe bench`).
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct Clients {
    /// Partitions of the topic the bench creates.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Bytes per record value (at least 16: the timing header).
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    /// Distinct record keys; 0 sends records without keys (placed by the
    /// client's partitioner).
    #[arg(long, default_value_t = 0)]
    pub keys: u64,
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Producer acks: all, 1 or 0.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    #[arg(long, default_value = "5ms", value_parser = duration)]
    #[serde(rename = "linger_ms", serialize_with = "millis")]
    pub linger: Duration,
    /// Producer batch.size in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_bytes: usize,
    /// Idempotent producers (librdkafka then allows 5 requests in flight per
    /// connection; without, up to 1,000,000).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub idempotence: bool,
    /// Records per second over all producers [default: as fast as they can].
    #[arg(long)]
    #[serde(rename = "rate_records_per_s")]
    pub rate: Option<f64>,
    /// How long producers produce (for catch-up alone: how long the fill phase
    /// fills the topic).
    #[arg(long, default_value = "20s", value_parser = duration)]
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// Extra librdkafka property for every client, KEY=VALUE (repeatable).
    #[arg(long = "client-config", value_name = "KEY=VALUE", value_parser = key_value)]
    pub client_config: Vec<(String, String)>,
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// A bench run's options.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    pub workload: Workload,
    /// Topic to use (created with `clients.partitions` if missing); None: a new one.
    pub topic: Option<String>,
    pub clients: Clients,
    /// The gateways' object store answers with a simulated S3 latency profile.
    pub s3_latency: bool,
    /// What the report says of the backend ("embedded", "aws", a broker's name).
    pub backend: String,
    /// The gateways' flush interval, when known (the report states it).
    pub flush_interval: Option<Duration>,
    /// Directory for results.json, the plots and the gateways' logs.
    pub out: PathBuf,
    /// A name for this run in the report.
    pub label: Option<String>,
}

/// The S3 latency profile `--s3-latency` simulates, as fail points of the
/// gateways' object store: PUT p50 30 ms / p99 200 ms, GET (first byte)
/// p50 20 ms / p99 100 ms, log-normally distributed.
pub const S3_LATENCY_FAILPOINTS: &str =
    "object.put=latency(30ms,200ms);object.get=latency(20ms,100ms)";

fn progress(phase: &str, t: Duration, p: &Point, shared: &Shared) {
    let c = &shared.counters;
    let ack = shared.ack.lock().unwrap_or_else(|e| e.into_inner());
    let p99 = if ack.is_empty() {
        String::new()
    } else {
        format!(
            "  ack p99 {:.1} ms",
            ack.value_at_quantile(0.99) as f64 / 1000.0
        )
    };
    drop(ack);
    eprintln!(
        "[bench] {phase:<10} {:>5.0}s  produced {:>7.1} MB/s ({} acked)  consumed {:>7.1} MB/s ({}){p99}",
        t.as_secs_f64(),
        p.produced_mb_s,
        c.acked_records.load(Relaxed),
        p.consumed_mb_s,
        c.consumed_records.load(Relaxed),
    );
}

/// One phase: producers for `produce_for` (if any) and consumers from
/// `consume_from` (if any), sampled every second until both are done.
struct Phase {
    name: &'static str,
    produce_for: Option<Duration>,
    consume_from: Option<From>,
    /// Records consumers must read before the phase ends (catch-up).
    expect_records: Option<u64>,
}

/// Where a phase's consumers start.
#[derive(Debug, Clone, Copy, PartialEq)]
enum From {
    /// The partitions' ends once the producers are warmed up.
    Tail,
    Beginning,
}

/// Waits until `n` clients arrived at the gate; false if one of `handles`
/// ended first (it failed before it was ready).
fn all_arrived<T>(gate: &Gate, n: usize, handles: &[std::thread::ScopedJoinHandle<'_, T>]) -> bool {
    loop {
        if gate.arrived() >= n {
            return true;
        }
        if handles.iter().any(|h| h.is_finished()) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn run_phase(
    o: &Options,
    brokers: &Brokers,
    topic: &str,
    partitions: i32,
    phase: Phase,
) -> Result<PhaseReport, BenchError> {
    let shared = Shared::new()?;
    let gate = Gate::default();
    let done = AtomicBool::new(false);
    let producers = if phase.produce_for.is_some() {
        o.clients.producers
    } else {
        0
    };
    let consumers = if phase.consume_from.is_some() {
        o.clients.consumers
    } else {
        0
    };
    let duration = phase.produce_for.unwrap_or_default();
    let rate = o.clients.rate.map(|r| r / o.clients.producers as f64);
    let mut timeline = Vec::new();
    let mut produce_end = None;
    let mut measured = None;
    let mut measured_from = None;
    let ends = std::sync::OnceLock::new();
    let outcome: Result<(Vec<_>, Vec<_>), BenchError> = std::thread::scope(|s| {
        let (shared, gate, done) = (&shared, &gate, &done);
        let bootstrap = brokers.bootstrap.as_str();
        let producing: Vec<_> = (0..producers)
            .map(|i| {
                s.spawn(move || {
                    workload::produce(
                        o,
                        bootstrap,
                        topic,
                        partitions,
                        i,
                        shared.clone(),
                        gate,
                        duration,
                        rate,
                    )
                })
            })
            .collect();
        // Tailing consumers start where the warmed-up partitions end.
        let mut start = Ok(());
        let ready = all_arrived(gate, producers, &producing);
        if ready && phase.consume_from == Some(From::Tail) {
            match workload::high_watermarks(o, bootstrap, topic, partitions) {
                Ok(e) => {
                    let _ = ends.set(e);
                }
                Err(e) => start = Err(e),
            }
        }
        let ends = ends.get().map_or(&[][..], Vec::as_slice);
        let consuming: Vec<_> = match (&start, ready) {
            (Ok(_), true) => (0..consumers)
                .map(|i| {
                    let from = if phase.consume_from == Some(From::Tail) {
                        Start::Tail(ends)
                    } else {
                        Start::Beginning
                    };
                    // Consumers give up 10 minutes after producing would end.
                    let deadline = Instant::now() + duration + Duration::from_secs(600);
                    s.spawn(move || {
                        workload::consume(
                            o,
                            bootstrap,
                            topic,
                            partitions,
                            i,
                            from,
                            shared.clone(),
                            gate,
                            done,
                            deadline,
                        )
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        let go = ready && start.is_ok() && all_arrived(gate, producers + consumers, &consuming);
        // The clock starts, and the gateways are measured from, here.
        let before = go.then(|| (brokers.processes(), brokers.store_counters()));
        let client_before = own_cpu();
        gate.open(go);
        let started = Instant::now();
        let c = &shared.counters;
        let mut last = (started, 0u64, 0u64);
        if go {
            loop {
                std::thread::sleep(Duration::from_millis(200));
                let now = Instant::now();
                let produced_all = producing.iter().all(|h| h.is_finished());
                if produced_all && produce_end.is_none() {
                    produce_end = Some(now.duration_since(started));
                }
                let consumed = c.consumed_records.load(Relaxed);
                let consumers_done = consumers == 0
                    || consuming.iter().all(|h| h.is_finished())
                    || match phase.expect_records {
                        Some(n) => consumed >= n,
                        None => produced_all && consumed >= c.acked_records.load(Relaxed),
                    };
                let finished = produced_all && consumers_done;
                if now.duration_since(last.0) >= Duration::from_secs(1) || finished {
                    let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
                    let acked = c.acked_bytes.load(Relaxed);
                    let read = c.consumed_bytes.load(Relaxed);
                    let point = Point {
                        t: now.duration_since(started).as_secs_f64(),
                        produced_mb_s: (acked - last.1) as f64 / dt / 1e6,
                        consumed_mb_s: (read - last.2) as f64 / dt / 1e6,
                    };
                    progress(phase.name, now.duration_since(started), &point, shared);
                    timeline.push(point);
                    last = (now, acked, read);
                }
                if finished {
                    measured = Some(now.duration_since(started));
                    break;
                }
            }
        }
        done.store(true, Relaxed);
        let drains: Vec<_> = producing.into_iter().map(|h| h.join()).collect();
        let consumed: Vec<_> = consuming.into_iter().map(|h| h.join()).collect();
        start?;
        if let Some((procs, stores)) = before {
            measured_from = Some((procs, stores?, client_before));
        }
        Ok((drains, consumed))
    });
    let (drains, consumed_ok) = outcome?;
    let mut drain = Duration::ZERO;
    for d in drains {
        match d {
            Ok(Ok(d)) => drain = drain.max(d),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(BenchError::Client("a producer thread panicked".into())),
        }
    }
    for c in consumed_ok {
        match c {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(BenchError::Client("a consumer thread panicked".into())),
        }
    }
    let client_cpu_seconds = own_cpu();
    let (Some((procs_before, stores_before, client_before)), Some(elapsed)) =
        (measured_from, measured)
    else {
        return Err(BenchError::Client(format!(
            "{}: the clients did not get ready",
            phase.name
        )));
    };
    let procs_after = brokers.processes();
    let stores_after = brokers.store_counters()?;
    let c = &shared.counters;
    let produced = (producers > 0).then(|| {
        Throughput::of(
            c.acked_records.load(Relaxed),
            c.acked_bytes.load(Relaxed),
            produce_end.unwrap_or(elapsed).as_secs_f64(),
        )
    });
    let consumed = (consumers > 0).then(|| {
        Throughput::of(
            c.consumed_records.load(Relaxed),
            c.consumed_bytes.load(Relaxed),
            elapsed.as_secs_f64(),
        )
    });
    let lock = |h: &std::sync::Mutex<hdrhistogram::Histogram<u64>>| {
        Percentiles::of(&h.lock().unwrap_or_else(|p| p.into_inner()))
    };
    let bytes = produced
        .as_ref()
        .or(consumed.as_ref())
        .map_or(0, |t| t.bytes);
    Ok(PhaseReport {
        name: phase.name.to_string(),
        produced,
        consumed,
        drain_seconds: (producers > 0).then_some(drain.as_secs_f64()),
        produce_latency_ms: lock(&shared.ack),
        end_to_end_latency_ms: lock(&shared.e2e),
        failed: c.failed.load(Relaxed),
        first_error: shared
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        client_cpu_seconds: client_cpu_seconds - client_before,
        gateway: (procs_after.processes > 0)
            .then(|| gateway_use(&procs_before, &procs_after, bytes)),
        requests: stores_before
            .zip(stores_after)
            .map(|(b, a)| report::RequestUse::of(a.minus(&b), bytes)),
        timeline,
    })
}

/// CPU seconds this process (the bench's clients) has used.
fn own_cpu() -> f64 {
    gateways::read_process(std::process::id()).map_or(0.0, |(cpu, _)| cpu)
}

fn gateway_use(before: &ProcessSample, after: &ProcessSample, bytes: u64) -> report::GatewayUse {
    let cpu = after.cpu_seconds - before.cpu_seconds;
    report::GatewayUse {
        processes: after.processes,
        cpu_seconds: cpu,
        cpu_seconds_per_gib: cpu / report::gib(bytes).max(1e-12),
        peak_rss_bytes: after.peak_rss_bytes,
    }
}

/// Creates the topic (or finds how many partitions an existing one has).
fn prepare_topic(o: &Options, bootstrap: &str, topic: &str) -> Result<i32, BenchError> {
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| BenchError::Client(format!("admin client: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("runtime: {e}")))?;
    let created = runtime.block_on(admin.create_topics(
        &[NewTopic::new(
            topic,
            o.clients.partitions,
            TopicReplication::Fixed(1),
        )],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ));
    match created {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((t, code)) => {
                        return Err(BenchError::Setup(format!(
                            "cannot create topic {t}: {code}"
                        )));
                    }
                }
            }
        }
        Err(e) => {
            return Err(BenchError::Setup(format!(
                "cannot create topic {topic}: {e}"
            )));
        }
    }
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| BenchError::Client(format!("metadata client: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| BenchError::Client(format!("metadata of {topic}: {e}")))?;
        let partitions = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len() as i32);
        if partitions > 0 {
            return Ok(partitions);
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "topic {topic} has no partitions after 30 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the bench: starts or reaches the brokers, runs the workload's
/// phases, and writes `results.json` and the plots to `o.out`.
pub fn run(o: &Options) -> Result<Report, BenchError> {
    std::fs::create_dir_all(&o.out)
        .map_err(|e| BenchError::Output(format!("{}: {e}", o.out.display())))?;
    if o.clients.record_bytes < workload::HEADER_BYTES {
        return Err(BenchError::Setup(format!(
            "record size must be at least {} bytes (the timing header)",
            workload::HEADER_BYTES
        )));
    }
    if o.clients.producers == 0 || o.clients.consumers == 0 || o.clients.partitions < 1 {
        return Err(BenchError::Setup(
            "producers, consumers and partitions must be at least 1".into(),
        ));
    }
    let mut brokers = Brokers::open(&o.target, &o.out)?;
    eprintln!("[bench] brokers at {}", brokers.bootstrap);
    let result = run_on(o, &brokers);
    brokers.stop();
    let report = result?;
    report.write(&o.out)?;
    plot::draw(&report, &o.out)?;
    Ok(report)
}

fn run_on(o: &Options, brokers: &Brokers) -> Result<Report, BenchError> {
    let topic = o.topic.clone().unwrap_or_else(|| {
        format!(
            "floe-bench-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    });
    let partitions = prepare_topic(o, &brokers.bootstrap, &topic)?;
    let mut phases = Vec::new();
    let produce = |name| Phase {
        name,
        produce_for: Some(o.clients.duration),
        consume_from: None,
        expect_records: None,
    };
    let catch_up = |phases: &mut Vec<PhaseReport>| -> Result<(), BenchError> {
        let ends = workload::high_watermarks(o, &brokers.bootstrap, &topic, partitions)?;
        let records = ends.iter().map(|(lo, hi)| (hi - lo).max(0) as u64).sum();
        phases.push(run_phase(
            o,
            brokers,
            &topic,
            partitions,
            Phase {
                name: "catch-up",
                produce_for: None,
                consume_from: Some(From::Beginning),
                expect_records: Some(records),
            },
        )?);
        Ok(())
    };
    match o.workload {
        Workload::Produce => {
            phases.push(run_phase(
                o,
                brokers,
                &topic,
                partitions,
                produce("produce"),
            )?);
        }
        Workload::CatchUp => {
            phases.push(run_phase(o, brokers, &topic, partitions, produce("fill"))?);
            catch_up(&mut phases)?;
        }
        Workload::EndToEnd | Workload::All => {
            phases.push(run_phase(
                o,
                brokers,
                &topic,
                partitions,
                Phase {
                    name: "end-to-end",
                    produce_for: Some(o.clients.duration),
                    consume_from: Some(From::Tail),
                    expect_records: None,
                },
            )?);
            if o.workload == Workload::All {
                catch_up(&mut phases)?;
            }
        }
    }
    let requests_counted = brokers.has_request_counters();
    Ok(Report::new(o, &topic, partitions, phases, requests_counted))
}
