//! Opening and creating backends from settings: the one place that turns
//! `Settings` into stores. The gateway, tools and (with only the `aws`
//! feature) a compactor function all open their stores here.
//!
//! | backend | objects | metadata | feature |
//! |---|---|---|---|
//! | `embedded` | `LocalDirStore` in `<data-dir>/objects` | `SqliteMetaStore` in `<data-dir>/meta.sqlite` | `embedded` |
//! | `aws` | `S3Store` on `bucket` | `DynamoMetaStore` on `table` | `aws` |
//!
//! A build without a backend's feature refuses it with a `Config` error
//! naming the feature.

use std::sync::Arc;

use crate::aws::AwsStats;
use crate::error::{Error, Result};
use crate::fault::{Faults, FaultyMetaStore, FaultyObjectStore};
use crate::meta::SharedMetaStore;
use crate::object_store::SharedObjectStore;
use crate::settings::{Backend, Settings};

/// What a process runs on: its object and metadata stores and, on the AWS
/// backend, the request counters they share (metrics and cost reports).
#[derive(Clone)]
pub struct Stores {
    pub objects: SharedObjectStore,
    pub meta: SharedMetaStore,
    pub aws_stats: Option<Arc<AwsStats>>,
    /// The fail points both stores were wrapped in (`open_backend`'s), so a
    /// second set opened for the same process (`reopen`) fails alike.
    pub faults: Option<Arc<Faults>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("objects", &self.objects)
            .field("meta", &self.meta)
            .finish()
    }
}

impl Stores {
    /// Stores without request counters (tests, the embedded backend).
    pub fn new(objects: SharedObjectStore, meta: SharedMetaStore) -> Stores {
        Stores {
            objects,
            meta,
            aws_stats: None,
            faults: None,
        }
    }

    /// A second set of the same backend's stores, with request counters of
    /// its own and the same fail points: a compaction pass in a gateway
    /// counts its requests apart from the gateway's.
    pub async fn reopen(&self, settings: &Settings) -> Result<Stores> {
        open_backend(settings, self.faults.clone()).await
    }

    /// Both stores wrapped in the fault-injecting ones (`crate::fault`).
    fn with_faults(self, faults: Option<Arc<Faults>>) -> Stores {
        let Some(f) = faults else { return self };
        Stores {
            objects: Arc::new(FaultyObjectStore::new(self.objects, f.clone())),
            meta: Arc::new(FaultyMetaStore::new(self.meta, f.clone())),
            aws_stats: self.aws_stats,
            faults: Some(f),
        }
    }
}

/// Opens the backend `settings.backend` names. With `faults`, both stores are
/// wrapped in the fault-injecting ones and, on AWS, the SDK's HTTP client too.
pub async fn open_backend(settings: &Settings, faults: Option<Arc<Faults>>) -> Result<Stores> {
    let stores = match settings.backend {
        Backend::Embedded => open_embedded(settings)?,
        Backend::Aws => open_aws(settings, faults.clone()).await?,
    };
    Ok(stores.with_faults(faults))
}

/// `floe init`: creates what the backend needs (for development and
/// emulators; production uses the IaC templates): the data directory, or the
/// S3 bucket and the DynamoDB table. Safe to run twice. Returns what it did.
pub async fn init_backend(settings: &Settings) -> Result<String> {
    match settings.backend {
        Backend::Embedded => {
            open_embedded(settings)?;
            Ok(format!(
                "embedded backend ready in {}",
                settings.data_dir.display()
            ))
        }
        Backend::Aws => init_aws(settings).await,
    }
}

#[cfg(feature = "embedded")]
fn open_embedded(settings: &Settings) -> Result<Stores> {
    use crate::meta::SqliteMetaStore;
    use crate::object_store::LocalDirStore;
    Ok(Stores::new(
        Arc::new(LocalDirStore::open(settings.data_dir.join("objects"))?),
        Arc::new(SqliteMetaStore::open(
            &settings.data_dir.join("meta.sqlite"),
        )?),
    ))
}

#[cfg(not(feature = "embedded"))]
fn open_embedded(_: &Settings) -> Result<Stores> {
    Err(missing_feature("embedded"))
}

#[cfg(feature = "aws")]
fn aws_names(settings: &Settings) -> Result<(&str, &str)> {
    match (&settings.bucket, &settings.table) {
        (Some(b), Some(t)) => Ok((b, t)),
        _ => Err(Error::Config(
            "backend aws needs --bucket and --table".into(),
        )),
    }
}

/// The S3 and DynamoDB stores (path-style buckets when an endpoint is given,
/// as emulators need), counting requests into one `AwsStats`.
#[cfg(feature = "aws")]
async fn open_aws(settings: &Settings, faults: Option<Arc<Faults>>) -> Result<Stores> {
    use crate::meta::DynamoMetaStore;
    use crate::object_store::S3Store;
    let (bucket, table) = aws_names(settings)?;
    let endpoint = settings.endpoint_url.as_deref();
    let mut config = crate::aws::load_sdk_config(endpoint, settings.region.as_deref()).await;
    if let Some(f) = faults {
        // The SDK picks its default client only when it builds a service
        // client; this is the same one (hyper 1, rustls on aws-lc), made
        // explicitly so the fault-injecting one can wrap it.
        let http = config.http_client().unwrap_or_else(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .build_https()
        });
        config = config
            .into_builder()
            .http_client(crate::fault::http::faulty_http_client(http, f))
            .build();
    }
    let stats = Arc::new(AwsStats::default());
    let s3 = S3Store::client(&config, endpoint.is_some());
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    Ok(Stores {
        objects: Arc::new(S3Store::new(s3, bucket, None, stats.clone())),
        meta: Arc::new(DynamoMetaStore::new(
            ddb,
            table,
            stats.clone(),
            settings.flush_record_ttl,
        )),
        aws_stats: Some(stats),
        faults: None,
    })
}

#[cfg(not(feature = "aws"))]
async fn open_aws(_: &Settings, _: Option<Arc<Faults>>) -> Result<Stores> {
    Err(missing_feature("aws"))
}

#[cfg(feature = "aws")]
async fn init_aws(settings: &Settings) -> Result<String> {
    let (bucket, table) = aws_names(settings)?;
    crate::provision::create_aws_resources(
        bucket,
        table,
        settings.endpoint_url.as_deref(),
        settings.region.as_deref(),
    )
    .await?;
    Ok(format!("bucket {bucket} and table {table} ready"))
}

#[cfg(not(feature = "aws"))]
async fn init_aws(_: &Settings) -> Result<String> {
    Err(missing_feature("aws"))
}

#[cfg(not(all(feature = "aws", feature = "embedded")))]
fn missing_feature(feature: &str) -> Error {
    Error::Config(format!(
        "backend {feature} is not in this build (floe-core feature `{feature}`)"
    ))
}
