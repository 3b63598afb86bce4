//! `floe`: parse settings, open the backend, serve until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use floe_core::fault::Faults;
use floe_core::settings::Settings;

/// Floe: a Kafka-compatible broker whose data lives in object storage.
///
/// Every flag has a FLOE_* environment variable (e.g. FLOE_FLUSH_INTERVAL) and can
/// be set in a TOML file given with --config. Precedence: flag, then environment,
/// then file, then default.
#[derive(Subcommand, Debug)]
enum Command {
    /// Create what the backend needs (the data directory, or the S3 bucket and
    /// DynamoDB table for development and LocalStack), then exit.
    Init,
    /// Failure drills against running gateways.
    #[command(subcommand)]
    Drill(Drill),
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
    let opts = floe_gateway::drill::FailoverOptions {
        bootstrap: args.bootstrap.clone(),
        topic: args.topic.clone(),
        partitions: args.partitions,
        rate: args.rate,
        duration: args.duration,
        disrupt_after: args.disrupt_after,
        disrupt: args.disrupt.clone(),
        timeout: args.timeout,
    };
    match runtime.block_on(floe_gateway::drill::failover(opts)) {
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
    /// TOML file with settings (keys as below, with underscores).
    #[arg(long, global = true, env = "FLOE_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9092].
    #[arg(long, global = true, env = "FLOE_LISTEN")]
    listen: Option<String>,
    /// host:port announced to clients in Metadata [default: the listen address].
    #[arg(long, global = true, env = "FLOE_ADVERTISED_LISTENER")]
    advertised_listener: Option<String>,
    /// Storage: embedded (local directory + SQLite) or aws (S3 + DynamoDB) [default: embedded].
    #[arg(long, global = true, env = "FLOE_BACKEND")]
    backend: Option<String>,
    /// aws: S3 bucket for segment objects.
    #[arg(long, global = true, env = "FLOE_BUCKET")]
    bucket: Option<String>,
    /// aws: DynamoDB table for metadata.
    #[arg(long, global = true, env = "FLOE_TABLE")]
    table: Option<String>,
    /// aws: region [default: from the AWS configuration].
    #[arg(long, global = true, env = "FLOE_REGION")]
    region: Option<String>,
    /// aws: endpoint of an S3/DynamoDB-compatible service (LocalStack, moto).
    #[arg(long, global = true, env = "FLOE_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Directory of the embedded backend [default: ./floe-data].
    #[arg(long, global = true, env = "FLOE_DATA_DIR")]
    data_dir: Option<String>,
    /// aws: how long DynamoDB keeps flush records (TTL) [default: 7d].
    #[arg(long, global = true, env = "FLOE_FLUSH_RECORD_TTL")]
    flush_record_ttl: Option<String>,
    /// Longest a batch waits before its segment is sealed, e.g. 5ms, 250ms [default: 5ms].
    #[arg(long, global = true, env = "FLOE_FLUSH_INTERVAL")]
    flush_interval: Option<String>,
    /// Seal a segment once it holds this much, e.g. 8MiB [default: 8MiB].
    #[arg(long, global = true, env = "FLOE_SEGMENT_BYTES")]
    segment_bytes: Option<String>,
    /// Produced bytes buffered before producers are slowed down [default: 64MiB].
    #[arg(long, global = true, env = "FLOE_MAX_BUFFER_BYTES")]
    max_buffer_bytes: Option<String>,
    /// Create topics on first use, as Kafka does [default: true].
    #[arg(long, global = true, env = "FLOE_AUTO_CREATE_TOPICS")]
    auto_create_topics: Option<String>,
    /// Partitions of auto-created topics [default: 1].
    #[arg(long, global = true, env = "FLOE_DEFAULT_PARTITIONS")]
    default_partitions: Option<String>,
    /// Log filter, e.g. info or floe_gateway=debug [default: info].
    #[arg(long, global = true, env = "FLOE_LOG_LEVEL")]
    log_level: Option<String>,
    /// How often partition checkpoints are written [default: 5s].
    #[arg(long, global = true, env = "FLOE_CHECKPOINT_INTERVAL")]
    checkpoint_interval: Option<String>,
    /// Bytes of object ranges cached for fetches [default: 256MiB].
    #[arg(long, global = true, env = "FLOE_READ_CACHE_BYTES")]
    read_cache_bytes: Option<String>,
    /// Largest request accepted [default: 100MiB].
    #[arg(long, global = true, env = "FLOE_MAX_REQUEST_BYTES")]
    max_request_bytes: Option<String>,
    /// Request bytes handled at once over all connections (non-produce
    /// requests count 32x) [default: 512MiB].
    #[arg(long, global = true, env = "FLOE_MAX_INFLIGHT_REQUEST_BYTES")]
    max_inflight_request_bytes: Option<String>,
    /// Default max.message.bytes of topics [default: 1048588].
    #[arg(long, global = true, env = "FLOE_MAX_MESSAGE_BYTES")]
    max_message_bytes: Option<String>,
    /// Close connections idle this long [default: 10m].
    #[arg(long, global = true, env = "FLOE_IDLE_TIMEOUT")]
    idle_timeout: Option<String>,
    /// This gateway's id in the metadata store [default: floe-0].
    #[arg(long, global = true, env = "FLOE_GATEWAY_ID")]
    gateway_id: Option<String>,
    /// Kafka node id reported to clients [default: 0].
    #[arg(long, global = true, env = "FLOE_NODE_ID")]
    node_id: Option<String>,
    /// Availability zone (Kafka rack) of this gateway, e.g. from ECS task metadata [default: none].
    #[arg(long, global = true, env = "FLOE_ZONE")]
    zone: Option<String>,
    /// How often this gateway heartbeats and re-reads the membership [default: 1s].
    #[arg(long, global = true, env = "FLOE_HEARTBEAT_INTERVAL")]
    heartbeat_interval: Option<String>,
    /// A gateway silent this long is fenced and its partitions move [default: 6s].
    #[arg(long, global = true, env = "FLOE_SESSION_TIMEOUT")]
    session_timeout: Option<String>,
    /// Zone-local reads: how often a partition led in another zone is re-read for this zone's consumers [default: 500ms].
    #[arg(long, global = true, env = "FLOE_FOLLOWER_REFRESH")]
    follower_refresh: Option<String>,
    /// How long an empty consumer group's first join waits for more members (Kafka's group.initial.rebalance.delay.ms) [default: 3s].
    #[arg(long, global = true, env = "FLOE_GROUP_INITIAL_REBALANCE_DELAY")]
    group_initial_rebalance_delay: Option<String>,
    /// KIP-848 consumer groups: member session timeout (Kafka's group.consumer.session.timeout.ms) [default: 45s].
    #[arg(long, global = true, env = "FLOE_CONSUMER_GROUP_SESSION_TIMEOUT")]
    consumer_group_session_timeout: Option<String>,
    /// KIP-848 consumer groups: heartbeat interval told to members (Kafka's group.consumer.heartbeat.interval.ms) [default: 5s].
    #[arg(long, global = true, env = "FLOE_CONSUMER_GROUP_HEARTBEAT_INTERVAL")]
    consumer_group_heartbeat_interval: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464 [default: off].
    #[arg(long, global = true, env = "FLOE_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Fail points for drills and tests, e.g. "object.put=delay(50ms)" (see floe-core fault).
    #[arg(long, global = true, env = "FLOE_FAILPOINTS", hide = true)]
    failpoints: Option<String>,
}

fn settings(args: &Args) -> Result<Settings, floe_core::Error> {
    let mut s = Settings::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).map_err(|e| {
            floe_core::Error::Config(format!("cannot read {}: {e}", path.display()))
        })?;
        s.apply_toml(&text, &path.display().to_string())?;
    }
    let flags = [
        ("listen", &args.listen),
        ("advertised-listener", &args.advertised_listener),
        ("data-dir", &args.data_dir),
        ("backend", &args.backend),
        ("bucket", &args.bucket),
        ("table", &args.table),
        ("region", &args.region),
        ("endpoint-url", &args.endpoint_url),
        ("flush-interval", &args.flush_interval),
        ("flush-record-ttl", &args.flush_record_ttl),
        ("segment-bytes", &args.segment_bytes),
        ("max-buffer-bytes", &args.max_buffer_bytes),
        ("auto-create-topics", &args.auto_create_topics),
        ("default-partitions", &args.default_partitions),
        ("log-level", &args.log_level),
        ("checkpoint-interval", &args.checkpoint_interval),
        ("read-cache-bytes", &args.read_cache_bytes),
        ("max-request-bytes", &args.max_request_bytes),
        (
            "max-inflight-request-bytes",
            &args.max_inflight_request_bytes,
        ),
        ("max-message-bytes", &args.max_message_bytes),
        ("idle-timeout", &args.idle_timeout),
        ("gateway-id", &args.gateway_id),
        ("node-id", &args.node_id),
        ("zone", &args.zone),
        ("heartbeat-interval", &args.heartbeat_interval),
        ("session-timeout", &args.session_timeout),
        ("follower-refresh", &args.follower_refresh),
        (
            "group-initial-rebalance-delay",
            &args.group_initial_rebalance_delay,
        ),
        (
            "consumer-group-session-timeout",
            &args.consumer_group_session_timeout,
        ),
        (
            "consumer-group-heartbeat-interval",
            &args.consumer_group_heartbeat_interval,
        ),
        ("metrics-listen", &args.metrics_listen),
    ];
    for (key, value) in flags {
        if let Some(v) = value {
            s.apply(key, v)?;
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

fn main() -> ExitCode {
    let args = Args::parse();
    // A drill is a client of running gateways: no gateway settings apply.
    if let Some(Command::Drill(Drill::Failover(f))) = &args.command {
        return drill_failover(f);
    }
    let settings = match settings(&args) {
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
        return match runtime.block_on(floe_gateway::init_backend(&settings)) {
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
    let result = runtime.block_on(async move {
        let stores = floe_gateway::open_backend(&settings, faults).await?;
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .map_err(|e| {
                floe_core::Error::Config(format!("cannot listen on {}: {e}", settings.listen))
            })?;
        floe_gateway::run_stores(listener, settings, stores, shutdown_signal()).await
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
