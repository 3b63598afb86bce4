//! Floe gateway: the Kafka protocol server.
//!
//! `run` is the whole server as a library function, so tests start it in-process
//! on port 0 and stop it cleanly; the `floe` binary only parses settings and
//! opens the backend (`floe_core::backend`).

pub mod api;
pub mod batch;
pub mod broker;
pub mod cluster;
pub mod error;
pub mod frame;
pub mod groups;
pub mod leases;
pub mod metrics;
pub mod ownership;
pub mod producer_ids;
pub mod read;
pub use floe_core::records;
pub mod server;
pub mod topics;

use std::sync::Arc;

use floe_core::backend::Stores;
use floe_core::clock::{SharedClock, SystemClock};
use floe_core::settings::Settings;
use tokio::net::TcpListener;

pub use broker::Broker;

/// Runs a gateway on `listener` with `stores` until `shutdown` resolves,
/// then drains, stops the metrics endpoint (`settings.metrics_listen`, bound
/// before anything else starts so a bad address fails fast) and logs the
/// request summary. `Err(Fenced)` if another gateway fenced this one.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    stores: Stores,
    shutdown: impl std::future::Future<Output = ()>,
) -> floe_core::Result<()> {
    let local = listener
        .local_addr()
        .map_err(|e| floe_core::Error::Config(format!("listener address: {e}")))?;
    let metrics_listener = match &settings.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
            floe_core::Error::Config(format!("metrics-listen: cannot listen on {addr}: {e}"))
        })?),
        None => None,
    };
    let advertised = settings
        .advertised_listener
        .clone()
        .unwrap_or_else(|| local.to_string());
    let clock: SharedClock = Arc::new(SystemClock);
    let broker = Broker::open(settings, stores, clock, advertised).await?;
    let controller = broker.start_ownership().await?;
    let (stop_metrics, stopped) = tokio::sync::watch::channel(false);
    let endpoint = metrics_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(listen = %addr, "serving metrics at /metrics");
        }
        tokio::spawn(metrics::endpoint::serve(l, broker.metrics.clone(), stopped))
    });
    tracing::info!(listen = %local, "floe is serving Kafka");
    server::serve(listener, broker.clone(), controller, shutdown).await;
    let _ = stop_metrics.send(true);
    if let Some(e) = endpoint {
        let _ = e.await;
    }
    tracing::info!("{}", broker.metrics.summary());
    match broker.cluster.fenced_reason() {
        Some(why) => Err(floe_core::Error::Fenced(why)),
        None => Ok(()),
    }
}
