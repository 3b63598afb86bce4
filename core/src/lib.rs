//! Floe core: the segment object format, the storage traits (`ObjectStore`,
//! `MetaStore`) with their backends, fault injection, settings and error kinds.
//!
//! Nothing here knows the Kafka wire protocol. Segment objects carry Kafka
//! RecordBatch v2 bytes as opaque payload; the only fact about them this crate
//! relies on is that a batch's first 8 bytes hold its base offset.

pub mod aws;
pub mod aws_faults;
pub mod clock;
pub mod error;
pub mod fault;
pub mod meta;
pub mod object_store;
pub mod segment;
pub mod settings;
pub mod types;

pub use error::{Error, ErrorKind, Result};
