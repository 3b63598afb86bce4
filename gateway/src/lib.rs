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
    // Broker id k (k >= 1) of this gateway listens, and is advertised, at
    // port + k: every broker id has its own address, as in a Kafka cluster.
    let (_, advertised_port) = cluster::Cluster::parse_advertised(&advertised)?;
    if advertised_port + settings.broker_ids as i32 - 1 > i32::from(u16::MAX) {
        return Err(floe_core::Error::Config(format!(
            "broker-ids {}: advertised port {advertised_port} + {} is past 65535",
            settings.broker_ids,
            settings.broker_ids - 1
        )));
    }
    let mut listeners = vec![listener];
    for k in 1..settings.broker_ids {
        let port = u16::try_from(u32::from(local.port()) + k).map_err(|_| {
            floe_core::Error::Config(format!(
                "broker-ids {}: listen port {} + {k} is past 65535",
                settings.broker_ids,
                local.port()
            ))
        })?;
        let addr = std::net::SocketAddr::new(local.ip(), port);
        listeners.push(TcpListener::bind(addr).await.map_err(|e| {
            floe_core::Error::Config(format!(
                "cannot listen on {addr} for broker id {} (broker-ids: one port per id): {e}",
                settings.node_id + k as i32 * floe_core::types::BROKER_ID_STRIDE
            ))
        })?);
    }
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
    server::serve(listeners, broker.clone(), controller, shutdown).await;
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
