//! Floe gateway: the Kafka protocol server.
//!
//! `run` is the whole server as a library function, so tests start it in-process
//! on port 0 and stop it cleanly; the `floe` binary only parses settings.

pub mod api;
pub mod batch;
pub mod broker;
pub mod configs;
pub mod drill;
pub mod error;
pub mod frame;
pub mod groups;
pub mod metrics;
pub mod ownership;
pub mod read;
pub mod records;
pub mod replica;
pub mod server;

use std::sync::Arc;

use floe_core::aws::AwsStats;
use floe_core::clock::{SharedClock, SystemClock};
use floe_core::fault::{Faults, FaultyMetaStore, FaultyObjectStore};
use floe_core::meta::{SharedMetaStore, SqliteMetaStore};
use floe_core::object_store::{LocalDirStore, SharedObjectStore};
use floe_core::settings::{Backend, Settings};
use tokio::net::TcpListener;

pub use broker::Broker;

/// What a gateway runs on: its object and metadata stores and, on the AWS
/// backend, the request counters they share (for metrics and the cost summary).
#[derive(Clone)]
pub struct Stores {
    pub objects: SharedObjectStore,
    pub meta: SharedMetaStore,
    pub aws_stats: Option<Arc<AwsStats>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("aws_stats", &self.aws_stats)
            .finish_non_exhaustive()
    }
}

/// Opens the embedded backend under `settings.data_dir`: objects in
/// `objects/`, metadata in `meta.sqlite`. With `faults`, both are wrapped in the
/// fault-injecting stores.
pub fn open_embedded(
    settings: &Settings,
    faults: Option<Arc<Faults>>,
) -> floe_core::Result<(SharedObjectStore, SharedMetaStore)> {
    let objects: SharedObjectStore =
        Arc::new(LocalDirStore::open(settings.data_dir.join("objects"))?);
    let meta: SharedMetaStore = Arc::new(SqliteMetaStore::open(
        &settings.data_dir.join("meta.sqlite"),
    )?);
    Ok(match faults {
        Some(f) => (
            Arc::new(FaultyObjectStore::new(objects, f.clone())),
            Arc::new(FaultyMetaStore::new(meta, f)),
        ),
        None => (objects, meta),
    })
}

/// Opens the backend `settings.backend` names, wrapped in the fault-injecting
/// stores when `faults` is given.
pub async fn open_backend(
    settings: &Settings,
    faults: Option<Arc<Faults>>,
) -> floe_core::Result<Stores> {
    let mut aws_stats = None;
    let (objects, meta): (SharedObjectStore, SharedMetaStore) = match settings.backend {
        Backend::Embedded => {
            let (objects, meta) = open_embedded(settings, faults)?;
            return Ok(Stores {
                objects,
                meta,
                aws_stats,
            });
        }
        Backend::Aws => {
            let (bucket, table) = aws_names(settings)?;
            let (s3, ddb) = floe_core::aws::open_stores(
                &bucket,
                &table,
                settings.endpoint_url.as_deref(),
                settings.region.as_deref(),
                faults.clone(),
            )
            .await;
            aws_stats = Some(s3.stats().clone());
            let ddb = ddb.with_flush_record_ttl(settings.flush_record_ttl);
            (Arc::new(s3), Arc::new(ddb))
        }
    };
    let (objects, meta): (SharedObjectStore, SharedMetaStore) = match faults {
        Some(f) => (
            Arc::new(FaultyObjectStore::new(objects, f.clone())),
            Arc::new(FaultyMetaStore::new(meta, f)),
        ),
        None => (objects, meta),
    };
    Ok(Stores {
        objects,
        meta,
        aws_stats,
    })
}

fn aws_names(settings: &Settings) -> floe_core::Result<(String, String)> {
    match (&settings.bucket, &settings.table) {
        (Some(b), Some(t)) => Ok((b.clone(), t.clone())),
        _ => Err(floe_core::Error::Config(
            "backend aws needs --bucket and --table".into(),
        )),
    }
}

/// `floe init`: creates what the backend needs (for development and
/// LocalStack; production uses the IaC templates): the data directory, or the
/// S3 bucket and the DynamoDB table (pk/sk strings, on-demand, TTL on
/// `expires_at`). Safe to run twice.
pub async fn init_backend(settings: &Settings) -> floe_core::Result<String> {
    match settings.backend {
        Backend::Embedded => {
            open_embedded(settings, None)?;
            Ok(format!(
                "embedded backend ready in {}",
                settings.data_dir.display()
            ))
        }
        Backend::Aws => {
            let (bucket, table) = aws_names(settings)?;
            floe_core::aws::create_resources(
                &bucket,
                &table,
                settings.endpoint_url.as_deref(),
                settings.region.as_deref(),
            )
            .await?;
            Ok(format!("bucket {bucket} and table {table} ready"))
        }
    }
}

/// Runs a gateway on `listener` with the given stores until `shutdown`
/// resolves, then drains and returns. Without AWS request counters; see
/// [`run_stores`].
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    objects: SharedObjectStore,
    meta: SharedMetaStore,
    shutdown: impl std::future::Future<Output = ()>,
) -> floe_core::Result<()> {
    let stores = Stores {
        objects,
        meta,
        aws_stats: None,
    };
    run_stores(listener, settings, stores, shutdown).await
}

/// Runs a gateway on `listener` until `shutdown` resolves, then drains, stops
/// the metrics endpoint (`settings.metrics_listen`, bound before anything else
/// starts so a bad address fails fast) and logs the request summary.
pub async fn run_stores(
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
    let broker = Broker::open(
        settings,
        stores.meta,
        stores.objects,
        clock,
        advertised,
        stores.aws_stats,
    )
    .await?;
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
    match broker.fenced_reason() {
        Some(why) => Err(floe_core::Error::Fenced(why)),
        None => Ok(()),
    }
}
