//! Floe's operator drills, run against any set of running gateways (the
//! `floe drill` subcommands). A client of the cluster, not part of the
//! server: it speaks Kafka through its own minimal client (`client`).
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
