//! The Prometheus scrape endpoint: `GET /metrics` over HTTP/1.1 (hyper), the
//! OpenMetrics text when the scraper asks for it, else the Prometheus 0.0.4
//! text; any other path is 404.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Format, Metrics};

/// A scraper that does not send its request headers within this is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `/metrics` on `listener` until `stop` turns true (or its sender is
/// dropped); open scrape connections are closed then.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let metrics = metrics.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |req| {
                            let resp = respond(&metrics, &req);
                            async move { Ok::<_, Infallible>(resp) }
                        });
                        let conn = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .serve_connection(TokioIo::new(socket), service);
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "metrics connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            // Only ever set to true; an error means the gateway is gone.
            _ = stop.changed() => break,
        }
    }
}

fn respond<B>(metrics: &Metrics, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at GET /metrics\n",
        );
    }
    let openmetrics = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let format = if openmetrics {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    };
    match metrics.encode(format) {
        Ok(text) => {
            let mut resp = Response::new(Full::new(Bytes::from(text)));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            resp
        }
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded\n",
        ),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
