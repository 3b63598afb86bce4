//! Request counters of the AWS backend, kept whatever the build's features:
//! metrics and the cost summary read them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Request counters of one process (or one store), shared through an `Arc`.
/// Counted once per API call (the SDK's internal retries are not counted apart).
/// DynamoDB capacity comes from `ReturnConsumedCapacity=TOTAL`, kept in
/// milli-units so it fits an atomic integer.
#[derive(Debug, Default)]
pub struct AwsStats {
    pub s3_put: AtomicU64,
    /// GetObject and HeadObject (same price class).
    pub s3_get: AtomicU64,
    pub s3_delete: AtomicU64,
    pub s3_list: AtomicU64,
    /// DynamoDB API calls of any kind.
    pub ddb_requests: AtomicU64,
    /// Read capacity units consumed, times 1000.
    pub ddb_read_units: AtomicU64,
    /// Write capacity units consumed, times 1000.
    pub ddb_write_units: AtomicU64,
}

/// A point-in-time copy of [`AwsStats`], with capacity in units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AwsStatsSnapshot {
    pub s3_put: u64,
    pub s3_get: u64,
    pub s3_delete: u64,
    pub s3_list: u64,
    pub ddb_requests: u64,
    pub ddb_read_units: f64,
    pub ddb_write_units: f64,
}

impl AwsStatsSnapshot {
    /// The requests made between `earlier` and this snapshot (of the same
    /// counters).
    pub fn since(&self, earlier: &AwsStatsSnapshot) -> AwsStatsSnapshot {
        AwsStatsSnapshot {
            s3_put: self.s3_put.saturating_sub(earlier.s3_put),
            s3_get: self.s3_get.saturating_sub(earlier.s3_get),
            s3_delete: self.s3_delete.saturating_sub(earlier.s3_delete),
            s3_list: self.s3_list.saturating_sub(earlier.s3_list),
            ddb_requests: self.ddb_requests.saturating_sub(earlier.ddb_requests),
            ddb_read_units: (self.ddb_read_units - earlier.ddb_read_units).max(0.0),
            ddb_write_units: (self.ddb_write_units - earlier.ddb_write_units).max(0.0),
        }
    }
}

// Only the AWS stores count; without them the counters stay zero.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
impl AwsStats {
    pub fn snapshot(&self) -> AwsStatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AwsStatsSnapshot {
            s3_put: l(&self.s3_put),
            s3_get: l(&self.s3_get),
            s3_delete: l(&self.s3_delete),
            s3_list: l(&self.s3_list),
            ddb_requests: l(&self.ddb_requests),
            ddb_read_units: l(&self.ddb_read_units) as f64 / 1000.0,
            ddb_write_units: l(&self.ddb_write_units) as f64 / 1000.0,
        }
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_units(counter: &AtomicU64, units: f64) {
        if units.is_finite() && units > 0.0 {
            counter.fetch_add((units * 1000.0).round() as u64, Ordering::Relaxed);
        }
    }
}
