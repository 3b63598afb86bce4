//! The AWS backend's shared layer: SDK configuration, error classification
//! (`sdk`), request accounting (`stats`, kept in every build for metrics) and
//! fault injection below the SDK's HTTP client (`faults`). The stores
//! themselves are `object_store::S3Store` and `meta::DynamoMetaStore`;
//! `crate::backend` opens them and `crate::provision` creates their bucket and
//! table.

#[cfg(feature = "aws")]
pub mod faults;
#[cfg(feature = "aws")]
mod sdk;
mod stats;

#[cfg(feature = "aws")]
pub use sdk::load_sdk_config;
#[cfg(feature = "aws")]
pub(crate) use sdk::{classify, code, status};
pub use stats::{AwsStats, AwsStatsSnapshot};
