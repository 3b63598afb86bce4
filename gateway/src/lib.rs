//! Floe gateway: the Kafka protocol server.
//!
//! `run` is the whole server as a library function, so tests start it in-process
//! on port 0 and stop it cleanly; the `floe` binary only parses settings.

pub mod api;
pub mod batch;
pub mod broker;
pub mod configs;
pub mod error;
pub mod frame;
pub mod read;
pub mod records;
pub mod server;

use std::sync::Arc;

use floe_core::clock::{SharedClock, SystemClock};
use floe_core::fault::{Faults, FaultyMetaStore, FaultyObjectStore};
use floe_core::meta::{SharedMetaStore, SqliteMetaStore};
use floe_core::object_store::{LocalDirStore, SharedObjectStore};
use floe_core::settings::{Backend, Settings};
use tokio::net::TcpListener;

pub use broker::Broker;

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
) -> floe_core::Result<(SharedObjectStore, SharedMetaStore)> {
    let (objects, meta): (SharedObjectStore, SharedMetaStore) = match settings.backend {
        Backend::Embedded => return open_embedded(settings, faults),
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
            (Arc::new(s3), Arc::new(ddb))
        }
    };
    Ok(match faults {
        Some(f) => (
            Arc::new(FaultyObjectStore::new(objects, f.clone())),
            Arc::new(FaultyMetaStore::new(meta, f)),
        ),
        None => (objects, meta),
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
/// resolves, then drains and returns.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    objects: SharedObjectStore,
    meta: SharedMetaStore,
    shutdown: impl std::future::Future<Output = ()>,
) -> floe_core::Result<()> {
    let local = listener
        .local_addr()
        .map_err(|e| floe_core::Error::Config(format!("listener address: {e}")))?;
    let advertised = settings
        .advertised_listener
        .clone()
        .unwrap_or_else(|| local.to_string());
    let clock: SharedClock = Arc::new(SystemClock);
    let broker = Broker::open(settings, meta, objects, clock, advertised).await?;
    tracing::info!(listen = %local, "floe is serving Kafka");
    server::serve(listener, broker, shutdown).await;
    Ok(())
}
