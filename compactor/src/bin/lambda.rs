//! `floe-compactor-lambda`: a compaction pass as an AWS Lambda function
//! (build with `cargo lambda build --release --features lambda`), for an
//! EventBridge schedule (any event payload starts a pass).
//!
//! Configured like the gateway, by `FLOE_*` environment variables (every
//! setting has one: `FLOE_BACKEND=aws`, `FLOE_BUCKET`, `FLOE_TABLE`,
//! `FLOE_REGION`, `FLOE_COMPACT_REGION_BYTES`, `FLOE_OBJECT_DELETE_DELAY`, ...;
//! `FLOE_ENDPOINT_URL` for emulators). The pass watches the invocation's
//! deadline: it starts no partition, object or collection once less than a
//! fifth of the invocation's time (at most a minute) remains, so every step
//! it starts can finish; every step is idempotent, so the next scheduled
//! invocation resumes. It answers with the pass's figures as JSON.

use std::time::{Duration, SystemTime};

use floe_core::backend::Stores;
use floe_core::settings::{SETTINGS, Settings};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

/// Settings from the `FLOE_*` environment variables (unset: the default).
fn settings_from_env() -> floe_core::Result<Settings> {
    let mut settings = Settings::default();
    for d in SETTINGS {
        if let Ok(v) = std::env::var(d.env()) {
            settings.apply(d.name, &v)?;
        }
    }
    settings.validate()?;
    Ok(settings)
}

/// When to stop starting steps: a fifth of the time left (at most a minute)
/// before the invocation's deadline, `deadline_ms` (Lambda's
/// `Lambda-Runtime-Deadline-Ms`: Unix milliseconds). cargo-lambda's emulator
/// sends the time allowed instead (600000); a value below a year's worth of
/// milliseconds is read that way.
fn stop_at(deadline_ms: u64) -> (std::time::Instant, Duration) {
    const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
    let left = if deadline_ms < YEAR_MS {
        Duration::from_millis(deadline_ms)
    } else {
        (SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms))
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    };
    let margin = (left / 5).min(Duration::from_secs(60));
    (std::time::Instant::now() + (left - margin), left)
}

async fn pass(
    stores: &Stores,
    config: &floe_compactor::Config,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    let (until, left) = stop_at(event.context.deadline);
    tracing::info!(
        seconds_left = left.as_secs_f64(),
        "compaction pass starting"
    );
    let clock = floe_core::clock::SystemClock;
    let r = floe_compactor::run_pass_until(stores, config, &clock, Some(until)).await?;
    tracing::info!(report = %r, request = %event.context.request_id, "compaction pass");
    Ok(json!({
        "partitions_seen": r.partitions_seen,
        "partitions_compacted": r.partitions_compacted,
        "swaps_lost": r.swaps_lost,
        "partitions_failed": r.partitions_failed,
        "get_requests": r.get_requests,
        "bytes_read": r.bytes_read,
        "put_requests": r.put_requests,
        "objects_written": r.objects_written,
        "bytes_written": r.bytes_written,
        "entries_merged": r.entries_merged,
        "entries_written": r.entries_written,
        "entries_deleted": r.entries_deleted,
        "topics_forgotten": r.topics_forgotten,
        "topics_forget_failed": r.topics_forget_failed,
        "objects_listed": r.gc.objects_listed,
        "objects_referenced": r.gc.objects_referenced,
        "objects_pending_delete": r.gc.objects_pending,
        "objects_deleted": r.gc.objects_deleted,
        "bytes_deleted": r.gc.bytes_deleted,
        "cut_short": r.cut_short,
        "seconds": r.duration.as_secs_f64(),
        "requests": r.requests.map(|q| json!({
            "s3_put": q.s3_put,
            "s3_get": q.s3_get,
            "s3_list": q.s3_list,
            "s3_delete": q.s3_delete,
            "dynamodb": q.ddb_requests,
            "dynamodb_read_units": q.ddb_read_units,
            "dynamodb_write_units": q.ddb_write_units,
        })),
        "estimated_cost_usd": estimated_cost(&r),
    }))
}

/// The pass's requests at list prices, plus this invocation's compute: its
/// duration at the function's memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`,
/// which Lambda sets; 128 MB, the minimum, when absent) on this architecture.
/// The runtime's start-up and Lambda's rounding up to the millisecond are not
/// in it.
fn estimated_cost(r: &floe_compactor::Report) -> Value {
    use floe_core::aws::cost::lambda_invocation;
    let memory_mb = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let arm64 = std::env::consts::ARCH == "aarch64";
    let lambda = lambda_invocation(r.duration, memory_mb, arm64);
    let requests = r.cost().unwrap_or_default();
    let mut items: serde_json::Map<String, Value> = requests
        .items()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    items.insert("lambda".into(), json!(lambda));
    items.insert("total".into(), json!(requests.total() + lambda));
    Value::Object(items)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .without_time() // CloudWatch stamps each line
        .init();
    let settings = settings_from_env()?;
    let config = floe_compactor::Config::from_settings(&settings);
    config.validate()?;
    let stores = floe_core::backend::open_backend(&settings, None).await?;
    lambda_runtime::run(service_fn(|event| pass(&stores, &config, event))).await
}
