//! Fault injection below the AWS SDK: an HTTP client that wraps the SDK's real
//! one and, at armed fail points, answers the way S3 and DynamoDB do when they
//! throttle, conflict, deny or vanish. Everything above it is the production
//! path: the SDK's retry policy and error parsing, Floe's error classification,
//! the stores and the flusher. Used by the fault drills (`FLOE_FAILPOINTS`).
//!
//! Points, most specific first: `http.s3.<method>` (`put`, `get`, `head`,
//! `delete`, `post`) or `http.ddb.<Operation>` (`TransactWriteItems`,
//! `GetItem`, `Query`, …), then `http.s3` / `http.ddb`, then `http`.
//!
//! | action | S3 answer | DynamoDB answer |
//! |---|---|---|
//! | `throttle` | 503 `SlowDown` | 400 `ThrottlingException` |
//! | `conflict` | 409 `OperationAborted` | 400 `TransactionCanceledException`, reason `TransactionConflict` (other operations: `TransactionConflictException`) |
//! | `unavailable` | 500 `InternalError` | 500 `InternalServerError` |
//! | `denied` | 403 `AccessDenied` | 400 `AccessDeniedException` |
//! | `timeout` | the request is forwarded and applied, then the response is dropped: a timeout | same |
//! | `unreachable` | connection refused; nothing is sent | same |
//! | `delay(d)` | waits, then forwards | same |
//! | `ambiguous`, `fenced`, `crash` | as `timeout`, `denied`, a process abort | same |

use std::sync::Arc;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

use super::{Decision, Fault, Faults};

/// Wraps `inner` (the SDK's HTTP client) with the fail points of `faults`.
pub fn faulty_http_client(inner: SharedHttpClient, faults: Arc<Faults>) -> SharedHttpClient {
    SharedHttpClient::new(FaultyHttpClient { inner, faults })
}

#[derive(Debug)]
struct FaultyHttpClient {
    inner: SharedHttpClient,
    faults: Arc<Faults>,
}

impl HttpClient for FaultyHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultyConnector {
            inner: self.inner.http_connector(settings, components),
            faults: self.faults.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    faults: Arc<Faults>,
}

/// Which service and operation a request is, as fail point names.
#[derive(Debug, PartialEq)]
enum Target {
    S3 { method: String },
    Dynamo { operation: String },
}

impl Target {
    fn of(request: &HttpRequest) -> Self {
        match request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.strip_prefix("DynamoDB_20120810."))
        {
            Some(op) => Target::Dynamo {
                operation: op.to_string(),
            },
            None => Target::S3 {
                method: request.method().to_ascii_lowercase(),
            },
        }
    }

    fn points(&self) -> [String; 3] {
        match self {
            Target::S3 { method } => [
                "http.s3.".to_string() + method,
                "http.s3".into(),
                "http".into(),
            ],
            Target::Dynamo { operation } => [
                "http.ddb.".to_string() + operation,
                "http.ddb".into(),
                "http".into(),
            ],
        }
    }
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = Target::of(&request);
        let points = target.points();
        let names: Vec<&str> = points.iter().map(String::as_str).collect();
        let fault = match self.faults.decide_first(&names).1 {
            Decision::Unarmed | Decision::Pass => return self.inner.call(request),
            Decision::Fire(f) => f,
        };
        let inner = self.inner.clone();
        HttpConnectorFuture::new(async move {
            match fault {
                Fault::Delay(_) | Fault::Latency { .. } => {
                    tokio::time::sleep(fault.sample_delay()).await;
                    inner.call(request).await
                }
                Fault::Timeout | Fault::Ambiguous => {
                    let _ = inner.call(request).await;
                    Err(ConnectorError::timeout(
                        "injected fault: the request was sent but no response arrived".into(),
                    ))
                }
                Fault::Unreachable => Err(ConnectorError::io(
                    "injected fault: connection refused (endpoint unreachable)".into(),
                )),
                Fault::Crash => {
                    tracing::error!("fail point: crashing the process");
                    std::process::abort();
                }
                Fault::Throttle
                | Fault::Conflict
                | Fault::Unavailable
                | Fault::Denied
                | Fault::Fenced => Ok(service_error(&target, &fault, &request)),
            }
        })
    }
}

/// The error response the service would send for `fault`.
fn service_error(target: &Target, fault: &Fault, request: &HttpRequest) -> HttpResponse {
    match target {
        Target::S3 { method } => {
            let (status, code, message) = match fault {
                Fault::Throttle => (503, "SlowDown", "Please reduce your request rate."),
                Fault::Conflict => (
                    409,
                    "OperationAborted",
                    "A conflicting conditional operation is currently in progress against this resource.",
                ),
                Fault::Denied | Fault::Fenced => (403, "AccessDenied", "Access Denied"),
                _ => (
                    500,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                ),
            };
            // HEAD responses carry no body; the SDK reads the status alone.
            let body = if method == "head" {
                String::new()
            } else {
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                     <Message>{message}</Message><RequestId>floe-injected</RequestId></Error>"
                )
            };
            response(status, "application/xml", body)
        }
        Target::Dynamo { operation } => {
            let (status, kind, message, reasons) = match fault {
                Fault::Throttle => (
                    400,
                    "ThrottlingException",
                    "Throughput exceeds the current capacity of your table or index.".to_string(),
                    None,
                ),
                Fault::Conflict if operation == "TransactWriteItems" => {
                    let items = transact_items(request).max(1);
                    let mut reasons = vec![serde_json::json!({"Code": "None"}); items];
                    reasons[items - 1] = serde_json::json!({
                        "Code": "TransactionConflict",
                        "Message": "Transaction is ongoing for the item"
                    });
                    let codes: Vec<&str> = reasons
                        .iter()
                        .map(|r| r["Code"].as_str().unwrap_or("None"))
                        .collect();
                    (
                        400,
                        "TransactionCanceledException",
                        format!(
                            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                            codes.join(", ")
                        ),
                        Some(reasons),
                    )
                }
                Fault::Conflict => (
                    400,
                    "TransactionConflictException",
                    "Transaction is ongoing for the item".to_string(),
                    None,
                ),
                Fault::Denied | Fault::Fenced => (
                    400,
                    "AccessDeniedException",
                    format!("User is not authorized to perform: dynamodb:{operation}"),
                    None,
                ),
                _ => (
                    500,
                    "InternalServerError",
                    "Internal server error".to_string(),
                    None,
                ),
            };
            let mut body = serde_json::json!({
                "__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"),
                "message": message,
            });
            if let Some(r) = reasons {
                body["CancellationReasons"] = serde_json::Value::Array(r);
            }
            response(status, "application/x-amz-json-1.0", body.to_string())
        }
    }
}

/// How many items a TransactWriteItems request names (0 if unreadable).
fn transact_items(request: &HttpRequest) -> usize {
    request
        .body()
        .bytes()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| {
            v.get("TransactItems")
                .and_then(|t| t.as_array())
                .map(Vec::len)
        })
        .unwrap_or(0)
}

fn response(status: u16, content_type: &str, body: String) -> HttpResponse {
    let status = StatusCode::from(
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
    );
    let mut r = HttpResponse::new(status, SdkBody::from(body));
    r.headers_mut()
        .insert("content-type", content_type.to_string());
    r.headers_mut()
        .insert("x-amz-request-id", "floe-injected".to_string());
    r
}
