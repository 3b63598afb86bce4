//! What the S3 and DynamoDB backends share: SDK configuration, the mapping from
//! SDK errors to Floe's error kinds, and request accounting. A leaf: it knows
//! neither store (`crate::backend` builds them, `crate::provision` creates
//! their bucket and table).
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

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::Error;

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
