//! Floe core: the storage model, without the Kafka server around it.
//!
//! - What is stored: the segment object format (`segment`), object keys
//!   (`keys`), Floe's storage types (`types`), a partition's index and the rule
//!   that rebuilds it from a checkpoint plus a replay of flush records
//!   (`index`), idempotent-producer rules (`producer`) and what topic configs
//!   mean for the data (`topic_config`).
//! - Where it is stored: the `ObjectStore` and `MetaStore` traits with their
//!   backends (`object_store`, `meta`; the MetaStore's decisions are pure
//!   functions in `meta::rules`), opened from settings by `backend`, created by
//!   `provision`, wrapped for fault injection by `fault`.
//! - How it is run: `settings` (every setting declared once), `retry` (the one
//!   retry policy), `clock`, and error kinds that tell the caller what to do.
//!
//! Cargo features: `embedded` (local directory + SQLite) and `aws` (S3 +
//! DynamoDB), both on by default; a binary takes only what it needs.
//!
//! Nothing here knows the Kafka wire protocol. Segment objects carry Kafka
//! RecordBatch v2 bytes as opaque payload; the only fact about them this crate
//! relies on is that a batch's first 8 bytes hold its base offset.

pub mod aws;
pub mod backend;
pub mod clock;
pub mod error;
pub mod fault;
pub mod index;
pub mod keys;
pub mod meta;
pub mod object_store;
pub mod producer;
#[cfg(feature = "aws")]
pub mod provision;
pub mod records;
pub mod retry;
pub mod segment;
pub mod settings;
pub mod topic_config;
pub mod types;

pub use error::{Error, ErrorKind, Result};
