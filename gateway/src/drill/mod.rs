//! Operator drills that run against any set of running gateways.
//!
//! `floe drill failover` produces continuously through an idempotent producer
//! while gateways are killed, frozen, added or removed, prints ownership moves
//! and each partition's unavailability, then reads everything back and counts
//! acknowledged records lost, duplicated, or missing offsets.

mod client;
mod failover;
mod verify;

pub use failover::{DrillError, FailoverOptions, PartitionReport, Report, run as failover};
pub use verify::Check;
