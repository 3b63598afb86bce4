//! `floe`: parse settings, open the backend, serve until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, CommandFactory, FromArgMatches, Parser, Subcommand};
use floe_core::fault::Faults;
use floe_core::settings::{SETTINGS, Settings};

/// Floe: a Kafka-compatible broker whose data lives in object storage.
///
/// Every setting is a flag, a FLOE_* environment variable (e.g.
/// FLOE_FLUSH_INTERVAL) and a key in a TOML file given with --config.
/// Precedence: flag, then environment, then file, then default.
#[derive(Subcommand, Debug)]
enum Command {
    /// Create what the backend needs (the data directory, or the S3 bucket and
    /// DynamoDB table for development and LocalStack), then exit.
    Init,
    /// Failure drills against running gateways.
    #[command(subcommand)]
    Drill(Drill),
    /// Measure throughput, latency, gateway CPU and memory, and request cost
    /// per GiB with librdkafka producers and consumers. Starts its own
    /// gateways (the settings given here apply to them) unless --bootstrap
    /// names running brokers. Prints progress and a report, and writes
    /// results.json, throughput.svg and latency.svg to --out.
    Bench(Box<BenchArgs>),
    /// Merge each partition's small regions (one per flush) into
    /// per-partition objects and swap the index to them, on the backend the
    /// settings name, beside running gateways or without any
    /// (--compact-region-bytes and --compact-object-bytes apply). Prints what
    /// each pass read, wrote and deleted.
    Compact(CompactArgs),
}

#[derive(clap::Args, Debug)]
struct CompactArgs {
    /// One pass, then exit (non-zero if a partition failed).
    #[arg(long)]
    once: bool,
    /// Without --once: time between passes, until SIGINT/SIGTERM.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    every: Duration,
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// produce, end-to-end (producers with tailing consumers), catch-up
    /// (consumers reading from the beginning what a fill phase produced) or
    /// all (end-to-end, then catch-up).
    #[arg(long, default_value = "all")]
    workload: floe_bench::Workload,
    /// Gateways to start, sharing one backend.
    #[arg(long, default_value_t = 1, conflicts_with = "bootstrap")]
    gateways: usize,
    /// Drive running brokers instead, HOST:PORT[,HOST:PORT...] (Floe or any
    /// Kafka-compatible broker).
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT")]
    bootstrap: Vec<String>,
    /// With --bootstrap: local processes to measure for CPU and peak memory.
    #[arg(
        long,
        value_delimiter = ',',
        requires = "bootstrap",
        value_name = "PID"
    )]
    pid: Vec<u32>,
    /// With --bootstrap: Floe metrics endpoints (HOST:PORT) to count store
    /// requests and their cost through.
    #[arg(
        long,
        value_delimiter = ',',
        requires = "bootstrap",
        value_name = "HOST:PORT"
    )]
    metrics: Vec<String>,
    /// What the report calls the brokers [default: the backend, or "external"].
    #[arg(long)]
    label: Option<String>,
    /// Topic (created if missing) [default: floe-bench-<random>].
    #[arg(long)]
    topic: Option<String>,
    #[command(flatten)]
    clients: floe_bench::Clients,
    /// Give the started gateways' object store a simulated S3 latency
    /// profile: PUT p50 30 ms / p99 200 ms, GET first byte 20 ms / 100 ms.
    #[arg(long, conflicts_with = "bootstrap")]
    s3_latency: bool,
    /// Directory for results.json, the plots and the gateways' logs.
    #[arg(long, default_value = "bench-results")]
    out: std::path::PathBuf,
}

/// Settings the bench sets per gateway it starts; the others given to
/// `floe bench` pass through to every gateway.
const PER_GATEWAY: [&str; 6] = [
    "listen",
    "advertised_listener",
    "metrics_listen",
    "gateway_id",
    "node_id",
    "data_dir",
];

/// `floe bench`: exit 0 when it ran, 2 when it could not.
fn bench(args: &Args, matches: &clap::ArgMatches, b: &BenchArgs) -> ExitCode {
    let (target, backend, flush_interval) = if b.bootstrap.is_empty() {
        let s = match settings(args, matches) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("floe bench: {e}");
                return ExitCode::from(2);
            }
        };
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("floe bench: cannot find the floe binary: {e}");
                return ExitCode::from(2);
            }
        };
        let mut pass = Vec::new();
        if let Some(c) = &args.config {
            pass.push("--config".into());
            pass.push(c.clone().into_os_string());
        }
        for d in SETTINGS {
            let given =
                matches.value_source(d.name) == Some(clap::parser::ValueSource::CommandLine);
            if given
                && !PER_GATEWAY.contains(&d.name)
                && let Some(v) = matches.get_one::<String>(d.name)
            {
                pass.push(format!("--{}", d.key()).into());
                pass.push(v.into());
            }
        }
        let mut failpoints: Vec<&str> = args.failpoints.iter().map(String::as_str).collect();
        if b.s3_latency {
            failpoints.push(floe_bench::S3_LATENCY_FAILPOINTS);
        }
        let mut env = Vec::new();
        if !failpoints.is_empty() {
            env.push(("FLOE_FAILPOINTS".to_string(), failpoints.join(";")));
        }
        let given_dir = s.data_dir != Settings::default().data_dir;
        let launch = floe_bench::Launch {
            exe,
            args: pass,
            data_dir: given_dir.then(|| s.data_dir.clone()),
            env,
        };
        (
            floe_bench::Target::Start {
                count: b.gateways.max(1),
                launch,
            },
            floe_core::settings::SettingValue::show(&s.backend),
            Some(s.flush_interval()),
        )
    } else {
        (
            floe_bench::Target::Connect {
                bootstrap: b.bootstrap.clone(),
                pids: b.pid.clone(),
                metrics: b.metrics.clone(),
            },
            "external".to_string(),
            None,
        )
    };
    let options = floe_bench::Options {
        target,
        workload: b.workload,
        topic: b.topic.clone(),
        clients: b.clients.clone(),
        s3_latency: b.s3_latency,
        backend,
        flush_interval,
        out: b.out.clone(),
        label: b.label.clone(),
    };
    match floe_bench::run(&options) {
        Ok(report) => {
            println!("{report}");
            println!("results: {}", b.out.join("results.json").display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("floe bench: {e}");
            ExitCode::from(2)
        }
    }
}

#[derive(Subcommand, Debug)]
enum Drill {
    /// Produce and verify continuously against a cluster while gateways are
    /// killed, frozen, added or removed (by you, or by --disrupt); print
    /// ownership moves and per-partition unavailability, then read everything
    /// back. Exits 0 only if no acknowledged record was lost, duplicated or
    /// left a gap, and every partition recovered.
    Failover(FailoverArgs),
}

#[derive(clap::Args, Debug)]
struct FailoverArgs {
    /// Gateways to start from, HOST:PORT[,HOST:PORT...].
    #[arg(long, value_delimiter = ',', required = true, value_name = "HOST:PORT")]
    bootstrap: Vec<String>,
    /// Topic to produce to (created if missing) [default: floe-drill-<random>].
    #[arg(long)]
    topic: Option<String>,
    /// Partitions of the created topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Records per second over all partitions.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// How long to produce.
    #[arg(long, default_value = "30s", value_parser = duration)]
    duration: Duration,
    /// When to run --disrupt, after the drill starts producing.
    #[arg(long, default_value = "5s", value_parser = duration)]
    disrupt_after: Duration,
    /// Shell command run once (sh -c) at --disrupt-after, e.g. 'kill -9 1234'.
    #[arg(long, value_name = "SHELL COMMAND")]
    disrupt: Option<String>,
    /// Give up on a partition unavailable this long (the drill then fails).
    #[arg(long, default_value = "30s", value_parser = duration)]
    timeout: Duration,
}

fn duration(s: &str) -> Result<Duration, String> {
    floe_core::settings::parse_duration("duration", s).map_err(|e| e.to_string())
}

/// `floe drill failover`: exit 0 pass, 1 fail, 2 cannot run.
fn drill_failover(args: &FailoverArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("floe drill: cannot start runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = floe_drill::FailoverOptions {
        bootstrap: args.bootstrap.clone(),
        topic: args.topic.clone(),
        partitions: args.partitions,
        rate: args.rate,
        duration: args.duration,
        disrupt_after: args.disrupt_after,
        disrupt: args.disrupt.clone(),
        timeout: args.timeout,
    };
    match runtime.block_on(floe_drill::failover(opts)) {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("floe drill failover: {e}");
            ExitCode::from(2)
        }
    }
}

#[derive(Parser, Debug)]
#[command(name = "floe", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML file with settings (keys as the flags, with underscores).
    #[arg(long, global = true, env = "FLOE_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Fail points for drills and tests, e.g. "object.put=delay(50ms)" (see floe-core fault).
    #[arg(long, global = true, env = "FLOE_FAILPOINTS", hide = true)]
    failpoints: Option<String>,
}

/// The command line: `Args`, plus one flag (with its `FLOE_*` variable) per
/// declared setting (`floe_core::settings::SETTINGS`).
fn command() -> clap::Command {
    let mut cmd = Args::command();
    for d in SETTINGS {
        let doc = d.doc.split_whitespace().collect::<Vec<_>>().join(" ");
        let default = d.default_text().replace('`', "");
        cmd = cmd.arg(
            Arg::new(d.name)
                .long(d.key())
                .env(d.env())
                .global(true)
                .value_name("VALUE")
                .help_heading("Settings (for `floe`, and for the gateways `floe bench` starts)")
                .help(format!("{doc} [default: {default}]")),
        );
    }
    cmd
}

/// Settings from the file, then the environment and flags (clap gives a
/// flag precedence over its variable).
fn settings(args: &Args, matches: &clap::ArgMatches) -> Result<Settings, floe_core::Error> {
    let mut s = Settings::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).map_err(|e| {
            floe_core::Error::Config(format!("cannot read {}: {e}", path.display()))
        })?;
        s.apply_toml(&text, &path.display().to_string())?;
    }
    for d in SETTINGS {
        if let Some(v) = matches.get_one::<String>(d.name) {
            s.apply(d.name, v)?;
        }
    }
    s.validate()?;
    Ok(s)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("signal received; draining");
}

/// `floe compact`: passes of the compactor over the backend's partitions.
async fn compact(
    settings: &Settings,
    faults: Option<std::sync::Arc<Faults>>,
    c: &CompactArgs,
) -> ExitCode {
    let config = floe_compactor::Config::from_settings(settings);
    if let Err(e) = config.validate() {
        eprintln!("floe compact: {e}");
        return ExitCode::from(2);
    }
    let stores = match floe_core::backend::open_backend(settings, faults).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("floe compact: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        match floe_compactor::run_pass(&stores, &config, &floe_core::clock::SystemClock).await {
            Ok(report) => {
                println!("floe compact: {report}");
                if c.once {
                    return if report.partitions_failed == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    };
                }
            }
            Err(e) => {
                eprintln!("floe compact: {e}");
                if c.once {
                    return ExitCode::FAILURE;
                }
            }
        }
        tokio::select! {
            () = &mut stop => return ExitCode::SUCCESS,
            () = tokio::time::sleep(c.every) => {}
        }
    }
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    // A drill is a client of running gateways: no gateway settings apply.
    if let Some(Command::Drill(Drill::Failover(f))) = &args.command {
        return drill_failover(f);
    }
    if let Some(Command::Bench(b)) = &args.command {
        return bench(&args, &matches, b);
    }
    let settings = match settings(&args, &matches) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("floe: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&settings.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("floe: log-level {:?}: {e}", settings.log_level);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not for files and log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let faults = match args.failpoints.as_deref().map(Faults::parse).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("floe: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("floe: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if matches!(args.command, Some(Command::Init)) {
        return match runtime.block_on(floe_core::backend::init_backend(&settings)) {
            Ok(msg) => {
                println!("floe init: {msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("floe init: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Compact(c)) = &args.command {
        return runtime.block_on(compact(&settings, faults, c));
    }
    let result = runtime.block_on(async move {
        let stores = floe_core::backend::open_backend(&settings, faults).await?;
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .map_err(|e| {
                floe_core::Error::Config(format!("cannot listen on {}: {e}", settings.listen))
            })?;
        floe_gateway::run(listener, settings, stores, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floe: {e}");
            tracing::error!(error = %e, "floe stopped");
            ExitCode::FAILURE
        }
    }
}
