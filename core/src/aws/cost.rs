//! Request prices, in one place: the public us-east-1 list prices (S3
//! Standard, DynamoDB on-demand, Lambda) that the metrics, `floe bench` and
//! the compactor's reports apply. Costs are estimates: no free tier, storage
//! or transfer.

use std::time::Duration;

use super::AwsStatsSnapshot;

/// S3 Standard PUT, COPY, POST and LIST requests, dollars per 1,000.
pub const S3_PUT_PER_1000: f64 = 0.005;
/// S3 Standard GET (and HEAD) requests, dollars per 1,000. DELETE is free.
pub const S3_GET_PER_1000: f64 = 0.0004;
/// DynamoDB on-demand write request units, dollars per million.
pub const DYNAMODB_WRU_PER_MILLION: f64 = 0.625;
/// DynamoDB on-demand read request units, dollars per million.
pub const DYNAMODB_RRU_PER_MILLION: f64 = 0.125;

/// Lambda compute, dollars per GB-second, on x86_64.
pub const LAMBDA_X86_PER_GB_SECOND: f64 = 0.000_016_666_7;
/// Lambda compute, dollars per GB-second, on arm64 (Graviton).
pub const LAMBDA_ARM_PER_GB_SECOND: f64 = 0.000_013_333_4;
/// Lambda invocations, dollars per million.
pub const LAMBDA_REQUESTS_PER_MILLION: f64 = 0.20;

/// What one Lambda invocation of `billed` duration costs with `memory_mb` of
/// memory (Lambda bills GB-seconds of configured memory, 1 GB = 1,024 MB,
/// plus the request), on arm64 or x86_64.
pub fn lambda_invocation(billed: Duration, memory_mb: u64, arm64: bool) -> f64 {
    let per_gb_second = if arm64 {
        LAMBDA_ARM_PER_GB_SECOND
    } else {
        LAMBDA_X86_PER_GB_SECOND
    };
    billed.as_secs_f64() * memory_mb as f64 / 1024.0 * per_gb_second
        + LAMBDA_REQUESTS_PER_MILLION / 1e6
}

/// Estimated dollars spent on requests, by price item.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// PUT and LIST requests (one price class).
    pub s3_put: f64,
    pub s3_get: f64,
    pub dynamodb_write: f64,
    pub dynamodb_read: f64,
}

impl Cost {
    pub fn of(s: &AwsStatsSnapshot) -> Cost {
        Cost {
            s3_put: (s.s3_put + s.s3_list) as f64 * S3_PUT_PER_1000 / 1000.0,
            s3_get: s.s3_get as f64 * S3_GET_PER_1000 / 1000.0,
            dynamodb_write: s.ddb_write_units * DYNAMODB_WRU_PER_MILLION / 1e6,
            dynamodb_read: s.ddb_read_units * DYNAMODB_RRU_PER_MILLION / 1e6,
        }
    }

    pub fn total(&self) -> f64 {
        self.s3_put + self.s3_get + self.dynamodb_write + self.dynamodb_read
    }

    /// Each item with its label on the cost metric.
    pub fn items(&self) -> [(&'static str, f64); 4] {
        [
            ("s3_put", self.s3_put),
            ("s3_get", self.s3_get),
            ("dynamodb_write", self.dynamodb_write),
            ("dynamodb_read", self.dynamodb_read),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_apply_per_item() {
        let s = AwsStatsSnapshot {
            s3_put: 900,
            s3_list: 100,
            s3_get: 10_000,
            s3_delete: 5_000,
            ddb_requests: 7,
            ddb_write_units: 2_000_000.0,
            ddb_read_units: 4_000_000.0,
        };
        let c = Cost::of(&s);
        assert!((c.s3_put - 0.005).abs() < 1e-12, "{c:?}");
        assert!((c.s3_get - 0.004).abs() < 1e-12, "{c:?}");
        assert!((c.dynamodb_write - 1.25).abs() < 1e-12, "{c:?}");
        assert!((c.dynamodb_read - 0.5).abs() < 1e-12, "{c:?}");
        assert!((c.total() - 1.759).abs() < 1e-12, "DELETE is free: {c:?}");
    }

    #[test]
    fn lambda_bills_gb_seconds_and_the_request() {
        // 10 s at 1,024 MB is 10 GB-seconds.
        let arm = lambda_invocation(Duration::from_secs(10), 1024, true);
        assert!(
            (arm - (10.0 * 0.000_013_333_4 + 0.000_000_2)).abs() < 1e-12,
            "{arm}"
        );
        let x86 = lambda_invocation(Duration::from_millis(500), 2048, false);
        assert!(
            (x86 - (0.000_016_666_7 + 0.000_000_2)).abs() < 1e-12,
            "{x86}"
        );
    }
}
