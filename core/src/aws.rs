//! What the S3 and DynamoDB backends share: SDK configuration, the mapping from
//! SDK errors to Floe's error kinds, and request accounting.
//!
//! Error kinds, by what the caller must do:
//! - throttling (`SlowDown`, `ThrottlingException`, `ProvisionedThroughputExceeded…`,
//!   `RequestLimitExceeded`, …), HTTP 5xx, and connection failures before the
//!   request left this process → `Unavailable` (retry with backoff);
//! - timeouts and transport failures after the request may have been sent, and
//!   responses that could not be read → `Ambiguous` (read back before deciding);
//! - access denied, bad or missing credentials → `Denied`, with a message naming
//!   the operation;
//! - a missing bucket or table → `Config` (`floe init` creates them);
//! - anything else → `Internal`, with the service's code and message.
//!
//! The SDK's own retry policy (standard mode, 3 attempts) runs first; these
//! kinds describe what is left after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::Error;

/// Request counters of one process (or one store), shared through an `Arc`.
/// Counted once per API call (the SDK's internal retries are not counted apart).
/// DynamoDB capacity comes from `ReturnConsumedCapacity=TOTAL`, kept in
/// milli-units so it fits an atomic integer.
#[derive(Debug, Default)]
pub struct AwsStats {
    pub s3_put: AtomicU64,
    /// GetObject and HeadObject (same price class).
    pub s3_get: AtomicU64,
    pub s3_delete: AtomicU64,
    pub s3_list: AtomicU64,
    /// DynamoDB API calls of any kind.
    pub ddb_requests: AtomicU64,
    /// Read capacity units consumed, times 1000.
    pub ddb_read_units: AtomicU64,
    /// Write capacity units consumed, times 1000.
    pub ddb_write_units: AtomicU64,
}

/// A point-in-time copy of [`AwsStats`], with capacity in units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AwsStatsSnapshot {
    pub s3_put: u64,
    pub s3_get: u64,
    pub s3_delete: u64,
    pub s3_list: u64,
    pub ddb_requests: u64,
    pub ddb_read_units: f64,
    pub ddb_write_units: f64,
}

impl AwsStats {
    pub fn snapshot(&self) -> AwsStatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AwsStatsSnapshot {
            s3_put: l(&self.s3_put),
            s3_get: l(&self.s3_get),
            s3_delete: l(&self.s3_delete),
            s3_list: l(&self.s3_list),
            ddb_requests: l(&self.ddb_requests),
            ddb_read_units: l(&self.ddb_read_units) as f64 / 1000.0,
            ddb_write_units: l(&self.ddb_write_units) as f64 / 1000.0,
        }
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_units(counter: &AtomicU64, units: f64) {
        if units.is_finite() && units > 0.0 {
            counter.fetch_add((units * 1000.0).round() as u64, Ordering::Relaxed);
        }
    }
}

/// Loads the standard AWS configuration (environment, profile, web identity,
/// ECS/IMDS credentials), optionally pointed at another endpoint (LocalStack,
/// moto) and region.
///
/// Retries and timeouts suit a write path that acknowledges producers: the SDK
/// makes at most 3 attempts with a 50 ms initial backoff (its default of 1 s
/// would add seconds to an ack for one throttled request; longer outages are
/// retried above it with Floe's own backoff), an attempt that takes longer than
/// 20 s is abandoned (an 8 MiB PUT takes well under a second), and a connection
/// attempt gives up after 3 s.
pub async fn load_sdk_config(
    endpoint: Option<&str>,
    region: Option<&str>,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(std::time::Duration::from_millis(50))
                .with_max_backoff(std::time::Duration::from_secs(2)),
        )
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(3))
                .operation_attempt_timeout(std::time::Duration::from_secs(20))
                .build(),
        );
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    loader.load().await
}

const THROTTLING: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceeded",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionInProgressException",
    "ServiceUnavailable",
    "InternalError",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
];

const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "MissingAuthenticationToken",
    "InvalidSignatureException",
    "AllAccessDisabled",
];

const MISSING: &[&str] = &["NoSuchBucket", "ResourceNotFoundException"];

/// The HTTP status of a service error, if the service answered.
pub(crate) fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// The service's error code, if the service answered with one.
pub(crate) fn code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// Maps an SDK error to Floe's error kinds; `what` names the operation
/// ("s3 PutObject bucket/key") so the message says what failed.
pub(crate) fn classify<E>(what: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("");
            let message = s.err().message().unwrap_or("");
            let text = format!("{what}: {code} (HTTP {status}): {message}");
            if THROTTLING.contains(&code) || status == 503 || status == 429 || status >= 500 {
                Error::Unavailable(text)
            } else if DENIED.contains(&code) || status == 403 {
                Error::Denied(format!(
                    "{text}; check the AWS credentials and the IAM policy of this process"
                ))
            } else if MISSING.contains(&code) {
                Error::Config(format!("{text}; create it with `floe init`"))
            } else {
                Error::Internal(text)
            }
        }
        SdkError::TimeoutError(_) => Error::Ambiguous(format!("{what}: timed out: {detail}")),
        SdkError::DispatchFailure(d) => {
            let lower = detail.to_ascii_lowercase();
            if lower.contains("credential") || lower.contains("no identity") {
                Error::Denied(format!(
                    "{what}: no usable AWS credentials; set AWS_PROFILE, \
                     AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an instance role ({detail})"
                ))
            } else if d.is_user() {
                Error::Internal(format!("{what}: {detail}"))
            } else if !d.is_timeout() && is_connect_failure(&lower) {
                // The connection was never made: nothing was sent.
                Error::Unavailable(format!("{what}: cannot connect: {detail}"))
            } else {
                Error::Ambiguous(format!("{what}: transport failed: {detail}"))
            }
        }
        SdkError::ResponseError(_) => {
            Error::Ambiguous(format!("{what}: unreadable response: {detail}"))
        }
        SdkError::ConstructionFailure(_) => {
            let lower = detail.to_ascii_lowercase();
            if lower.contains("credential") || lower.contains("identity") {
                Error::Denied(format!("{what}: no usable AWS credentials: {detail}"))
            } else {
                Error::Internal(format!("{what}: could not build the request: {detail}"))
            }
        }
        _ => Error::Internal(format!("{what}: {detail}")),
    }
}

fn is_connect_failure(lower: &str) -> bool {
    [
        "(connect)",
        "connection refused",
        "dns error",
        "failed to lookup",
    ]
    .iter()
    .any(|p| lower.contains(p))
}

/// A bounded exponential backoff: 20 ms doubling, at most 1 s, for `attempt` 0..
pub(crate) async fn backoff(attempt: u32) {
    let ms = (20u64 << attempt.min(6)).min(1000);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// The S3 object store and DynamoDB metadata store for `bucket` / `table`, from
/// the standard AWS configuration (path-style buckets when `endpoint` is given,
/// as emulators need). Both count requests into one `AwsStats`. With `faults`,
/// the SDK's HTTP client is wrapped in the fault-injecting one
/// (`crate::aws_faults`).
pub async fn open_stores(
    bucket: &str,
    table: &str,
    endpoint: Option<&str>,
    region: Option<&str>,
    faults: Option<Arc<crate::fault::Faults>>,
) -> (crate::object_store::S3Store, crate::meta::DynamoMetaStore) {
    let mut config = load_sdk_config(endpoint, region).await;
    if let Some(f) = faults {
        // The SDK picks its default client only when it builds a service client;
        // this is the same one (hyper 1 with rustls on aws-lc), made explicitly.
        let http = config.http_client().unwrap_or_else(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .build_https()
        });
        config = config
            .into_builder()
            .http_client(crate::aws_faults::faulty_http_client(http, f))
            .build();
    }
    let stats = Arc::new(AwsStats::default());
    let s3 = crate::object_store::S3Store::client(&config, endpoint.is_some());
    let ddb = crate::meta::DynamoMetaStore::client(&config);
    (
        crate::object_store::S3Store::new(s3, bucket, None, stats.clone()),
        crate::meta::DynamoMetaStore::new(ddb, table, stats),
    )
}

/// Creates `bucket` and `table` (for `floe init`); safe to run twice.
pub async fn create_resources(
    bucket: &str,
    table: &str,
    endpoint: Option<&str>,
    region: Option<&str>,
) -> crate::Result<()> {
    let config = load_sdk_config(endpoint, region).await;
    let s3 = crate::object_store::S3Store::client(&config, endpoint.is_some());
    crate::object_store::S3Store::create_bucket(&s3, bucket).await?;
    crate::meta::dynamodb::create_table(&crate::meta::DynamoMetaStore::client(&config), table).await
}
