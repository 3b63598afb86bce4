//! The AWS backend's shared layer: SDK configuration and error
//! classification (`sdk`), request accounting (`stats`) and request prices
//! (`cost`), the last two kept in every build for metrics and reports. A leaf: the stores (`object_store::S3Store`,
//! `meta::DynamoMetaStore`) use it; `crate::backend` opens them,
//! `crate::provision` creates their bucket and table, and
//! `crate::fault::http` injects faults below the SDK's HTTP client.

pub mod cost;
#[cfg(feature = "aws")]
mod sdk;
mod stats;

#[cfg(feature = "aws")]
pub use sdk::load_sdk_config;
#[cfg(feature = "aws")]
pub(crate) use sdk::{classify, code, status};
pub use stats::{AwsStats, AwsStatsSnapshot};
