//! The retry policy, in one place: which errors are retried (those whose
//! [`ErrorKind`](crate::ErrorKind) is retriable: `Unavailable`, `Ambiguous`),
//! how far apart (a capped exponential [`Backoff`]), and for how long (a
//! [`RetryPolicy`]'s budget, or a number of attempts). Nothing retries without
//! a bound: the write path's budget is the `retry-budget` setting, the
//! ownership loop's releases use the same budget, and the AWS backends bound
//! their conflict and unprocessed-item retries by attempts.

use std::time::Duration;

use crate::error::{Error, Result};

/// A capped exponential backoff: `first`, doubling, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Between attempts at a storage operation: 10 ms doubling to 1 s.
    pub const STORAGE: Backoff = Backoff {
        first: Duration::from_millis(10),
        max: Duration::from_secs(1),
    };

    /// Between DynamoDB attempts that met a conflicting transaction or left
    /// items unprocessed: 20 ms doubling to 1 s.
    pub const CONFLICT: Backoff = Backoff {
        first: Duration::from_millis(20),
        max: Duration::from_secs(1),
    };

    /// The wait before retry number `attempt` (0 is the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.first
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max)
    }

    /// Sleeps [`Backoff::delay`]`(attempt)`.
    pub async fn wait(&self, attempt: u32) {
        tokio::time::sleep(self.delay(attempt)).await;
    }
}

/// Retries retriable errors with [`Backoff::STORAGE`] until the operation
/// succeeds, fails definitively, or `budget` has passed since the first
/// attempt: then the last error is returned, with its kind, so the caller
/// still knows whether the outcome is unknown (`Ambiguous`) or the operation
/// did not happen (`Unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    pub budget: Duration,
}

impl RetryPolicy {
    pub fn new(budget: Duration) -> Self {
        RetryPolicy {
            backoff: Backoff::STORAGE,
            budget,
        }
    }

    /// Runs `op` under the policy. `cancel` is asked before every retry; once
    /// it says yes (a shutdown past its deadline) the last error is returned
    /// at once. `what` names the operation in logs and errors.
    pub async fn run<T, F, Fut>(
        &self,
        what: &str,
        cancel: impl Fn() -> bool,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let start = tokio::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            let e = match op().await {
                Ok(v) => {
                    if attempt > 0 {
                        tracing::info!(what, attempts = attempt + 1, "storage recovered");
                    }
                    return Ok(v);
                }
                Err(e) if e.is_retriable() => e,
                Err(e) => return Err(e),
            };
            if cancel() {
                return Err(e.context(&format!("{what} abandoned at shutdown")));
            }
            let wait = self.backoff.delay(attempt);
            if start.elapsed() + wait > self.budget {
                tracing::warn!(what, attempts = attempt + 1, budget = ?self.budget, error = %e, "retry budget spent");
                return Err(e.context(&format!(
                    "{what} still failing after {} attempts over the {:?} retry budget",
                    attempt + 1,
                    self.budget
                )));
            }
            if attempt == 0 || (attempt + 1).is_power_of_two() {
                tracing::warn!(what, attempt = attempt + 1, error = %e, "retrying");
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

impl Error {
    /// The same error, its message prefixed with `context`; the kind stays.
    pub fn context(self, context: &str) -> Error {
        let kind = self.kind();
        let message = format!("{context}: {}", self.message());
        Error::of_kind(kind, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::STORAGE;
        assert_eq!(b.delay(0), Duration::from_millis(10));
        assert_eq!(b.delay(1), Duration::from_millis(20));
        assert_eq!(b.delay(6), Duration::from_millis(640));
        assert_eq!(b.delay(7), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn budget_bounds_retries_and_keeps_the_kind() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::new(Duration::from_secs(2));
        let r: Result<()> = policy
            .run(
                "put",
                || false,
                || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Err(Error::Ambiguous("timed out".into())) }
                },
            )
            .await;
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Ambiguous);
        assert!(e.to_string().contains("retry budget"), "{e}");
        // 10+20+...+640 ms, then 1 s waits: 8 attempts fit in 2 s.
        assert_eq!(calls.load(Ordering::SeqCst), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn definite_errors_and_success_stop_at_once() {
        let policy = RetryPolicy::new(Duration::from_secs(60));
        let calls = AtomicU32::new(0);
        let r: Result<u32> = policy
            .run(
                "commit",
                || false,
                || {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n < 3 {
                            Err(Error::Unavailable("throttled".into()))
                        } else {
                            Ok(n)
                        }
                    }
                },
            )
            .await;
        assert_eq!(r.unwrap(), 3);
        let r: Result<()> = policy
            .run(
                "commit",
                || false,
                || async { Err(Error::Fenced("stale".into())) },
            )
            .await;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Fenced);
        let r: Result<()> = policy
            .run(
                "commit",
                || true,
                || async { Err(Error::Unavailable("down".into())) },
            )
            .await;
        assert!(r.unwrap_err().to_string().contains("abandoned"));
    }
}
