//! Fault injection: wrappers around any `ObjectStore` / `MetaStore` with named
//! fail points, used by unit tests, crash tests and the `FLOE_FAILPOINTS`
//! environment variable of the gateway binary.
//!
//! Fail points: `object.put`, `object.get`, `object.delete`, `object.list`,
//! `meta.commit`, `meta.checkpoint`, `meta.read`, `meta.topic`, `meta.register`,
//! `meta.heartbeat`, `meta.fence`, `meta.claim`, `meta.offsets`, `meta.groups`,
//! and the compactor's `meta.swap_index`, `meta.delete_index`, `meta.forget_topic`.
//!
//! Below the stores, `http` (feature `aws`) puts the same registry around the AWS
//! SDK's HTTP client, with points `http`, `http.s3`, `http.s3.<method>` and
//! `http.ddb`, `http.ddb.<Operation>` (the most specific armed point decides).
//!
//! A spec string configures several at once:
//! `point=action[*times|~duration][@after];...` where action is `unavailable`,
//! `ambiguous` (the operation runs, then reports an unknown outcome, like a
//! timeout after the request was sent), `fenced`, `denied`, `delay(250ms)`,
//! `latency(30ms,200ms)` (a random delay, log-normal with that median and 99th
//! percentile: a simulated service latency profile, as `floe bench --s3-latency`
//! uses),
//! `crash` (abort the process: a kill -9 at that exact point), or the HTTP-level
//! `throttle` (S3 503 SlowDown / DynamoDB ThrottlingException), `conflict`
//! (DynamoDB TransactionConflict), `timeout` (the request is sent and applied,
//! the response is lost) and `unreachable` (connection refused, nothing sent).
//! `*3` fires three times, `~10s` fires for ten seconds from the first hit, and
//! `@20` lets the first twenty hits pass before the rule arms.
//! Example: `object.put=delay(50ms);meta.commit=unavailable*3;http=unreachable~10s@40`.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

#[cfg(feature = "aws")]
pub mod http;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::meta::MetaStore;
use crate::object_store::{ObjectInfo, ObjectStore};
use crate::types::{
    CommittedOffset, DeletedTopic, FlushRecord, GatewayInfo, GroupOffsets, IndexEntry, Member,
    PartitionCheckpoint, PartitionId, PartitionSnapshot, StoredGroup, StreamId, TopicId, TopicMeta,
};

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Fail before the operation with a retriable error.
    Unavailable,
    /// Run the operation, then report an unknown outcome.
    Ambiguous,
    /// Fail before the operation as if this gateway were fenced.
    Fenced,
    /// Fail before the operation with access denied.
    Denied,
    /// Wait, then run the operation.
    Delay(Duration),
    /// Wait a random time, log-normally distributed with this median and 99th
    /// percentile, then run the operation: a service's latency profile.
    Latency { p50: Duration, p99: Duration },
    /// Abort the process at this point.
    Crash,
    /// The service throttles (S3 503 SlowDown, DynamoDB ThrottlingException);
    /// above the stores: `Unavailable`.
    Throttle,
    /// DynamoDB cancels a transaction for a conflicting one; above the stores:
    /// `Unavailable`.
    Conflict,
    /// The request is sent and applied but no response arrives; above the
    /// stores: like `Ambiguous`.
    Timeout,
    /// The endpoint refuses connections; above the stores: `Unavailable`.
    Unreachable,
}

impl Fault {
    /// How long this fault holds a request: its fixed delay, a sample of its
    /// latency profile, or nothing.
    pub fn sample_delay(&self) -> Duration {
        match self {
            Fault::Delay(d) => *d,
            Fault::Latency { p50, p99 } => log_normal(*p50, *p99, fastrand::f64(), fastrand::f64()),
            _ => Duration::ZERO,
        }
    }
}

/// A log-normal sample with median `p50` and 99th percentile `p99` from two
/// uniform draws in [0, 1) (Box-Muller). Capped at 20 × `p99` so one draw
/// cannot stall a request for minutes.
fn log_normal(p50: Duration, p99: Duration, u1: f64, u2: f64) -> Duration {
    // z of the 99th percentile of the standard normal distribution.
    const Z99: f64 = 2.326_347_874;
    let m = p50.as_secs_f64();
    let sigma = (p99.as_secs_f64() / m).ln() / Z99;
    let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let secs = (m * (sigma * z).exp()).min(20.0 * p99.as_secs_f64());
    Duration::from_secs_f64(secs)
}

#[derive(Debug, Clone)]
struct Rule {
    fault: Fault,
    /// Hits that fire before the rule is removed (None: unbounded).
    remaining: Option<u32>,
    /// Hits that pass before the rule arms.
    skip: u32,
    /// How long the rule fires once it first fires.
    window: Option<Duration>,
    until: Option<std::time::Instant>,
}

/// What a fail point does with one hit.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No rule at this point.
    Unarmed,
    /// A rule, still waiting (`@after`): the operation runs untouched.
    Pass,
    Fire(Fault),
}

/// The fail-point registry shared by the wrappers.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<HashMap<String, Rule>>,
    hits: Mutex<HashMap<String, u64>>,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Arms `point` with `fault`, for `times` hits (None: until cleared).
    pub fn set(&self, point: &str, fault: Fault, times: Option<u32>) {
        self.arm(point, fault, times, None, 0);
    }

    /// Arms `point` with `fault` after `skip` hits pass, for `times` hits and/or
    /// for `window` from its first firing (None: unbounded).
    pub fn arm(
        &self,
        point: &str,
        fault: Fault,
        times: Option<u32>,
        window: Option<Duration>,
        skip: u32,
    ) {
        self.lock_rules().insert(
            point.to_string(),
            Rule {
                fault,
                remaining: times,
                skip,
                window,
                until: None,
            },
        );
    }

    pub fn clear(&self, point: &str) {
        self.lock_rules().remove(point);
    }

    pub fn clear_all(&self) {
        self.lock_rules().clear();
    }

    /// How many times an armed `point` fired.
    pub fn hits(&self, point: &str) -> u64 {
        self.hits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(point)
            .copied()
            .unwrap_or(0)
    }

    /// Parses a spec like `object.put=delay(50ms);meta.commit=unavailable*3;http=unreachable~10s@40`.
    pub fn parse(spec: &str) -> Result<Arc<Self>> {
        let faults = Faults::new();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || {
                Error::Config(format!(
                    "fail point spec {part:?}: expected point=action[*times|~duration][@after]"
                ))
            };
            let (point, action) = part.split_once('=').ok_or_else(bad)?;
            let point = point.trim();
            let (action, skip) = match action.rsplit_once('@') {
                Some((a, n)) => (a, n.parse::<u32>().map_err(|_| bad())?),
                None => (action, 0),
            };
            let (action, times, window) = if let Some((a, n)) = action.rsplit_once('*') {
                (a, Some(n.parse::<u32>().map_err(|_| bad())?), None)
            } else if let Some((a, d)) = action.rsplit_once('~') {
                (a, None, Some(crate::settings::parse_duration(point, d)?))
            } else {
                (action, None, None)
            };
            let fault = match action {
                "unavailable" => Fault::Unavailable,
                "ambiguous" => Fault::Ambiguous,
                "fenced" => Fault::Fenced,
                "denied" => Fault::Denied,
                "crash" => Fault::Crash,
                "throttle" => Fault::Throttle,
                "conflict" => Fault::Conflict,
                "timeout" => Fault::Timeout,
                "unreachable" => Fault::Unreachable,
                a if a.starts_with("delay(") && a.ends_with(')') => {
                    Fault::Delay(crate::settings::parse_duration(point, &a[6..a.len() - 1])?)
                }
                a if a.starts_with("latency(") && a.ends_with(')') => {
                    let (p50, p99) = a[8..a.len() - 1].split_once(',').ok_or_else(bad)?;
                    let p50 = crate::settings::parse_duration(point, p50)?;
                    let p99 = crate::settings::parse_duration(point, p99)?;
                    if p50.is_zero() || p99 < p50 {
                        return Err(Error::Config(format!(
                            "fail point spec {part:?}: latency needs 0 < median <= 99th percentile"
                        )));
                    }
                    Fault::Latency { p50, p99 }
                }
                _ => return Err(bad()),
            };
            faults.arm(point, fault, times, window, skip);
        }
        Ok(faults)
    }

    fn lock_rules(&self) -> std::sync::MutexGuard<'_, HashMap<String, Rule>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, point: &str) -> Option<Fault> {
        match self.decide(point) {
            Decision::Fire(f) => Some(f),
            Decision::Unarmed | Decision::Pass => None,
        }
    }

    /// The first of `points` (most specific first) with a rule decides.
    pub fn decide_first(&self, points: &[&str]) -> (usize, Decision) {
        for (i, p) in points.iter().enumerate() {
            match self.decide(p) {
                Decision::Unarmed => continue,
                d => return (i, d),
            }
        }
        (points.len(), Decision::Unarmed)
    }

    /// Counts one hit of `point` against its rule.
    pub fn decide(&self, point: &str) -> Decision {
        let mut rules = self.lock_rules();
        let Some(rule) = rules.get_mut(point) else {
            return Decision::Unarmed;
        };
        if rule.skip > 0 {
            rule.skip -= 1;
            return Decision::Pass;
        }
        let now = std::time::Instant::now();
        if let Some(w) = rule.window {
            match rule.until {
                None => rule.until = Some(now + w),
                Some(t) if now >= t => {
                    rules.remove(point);
                    return Decision::Pass;
                }
                Some(_) => {}
            }
        }
        let fault = rule.fault.clone();
        match &mut rule.remaining {
            Some(0) => {
                rules.remove(point);
                return Decision::Pass;
            }
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    rules.remove(point);
                }
            }
            None => {}
        }
        drop(rules);
        *self
            .hits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(point.to_string())
            .or_default() += 1;
        // A latency profile fires on every request by design: not worth a warning.
        if !matches!(fault, Fault::Latency { .. }) {
            tracing::warn!(point, fault = ?fault, "fail point fired");
        }
        Decision::Fire(fault)
    }

    /// Runs `op` through fail point `point`.
    pub async fn run<T, F>(&self, point: &str, op: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        match self.take(point) {
            None => op.await,
            Some(Fault::Unavailable | Fault::Throttle | Fault::Conflict | Fault::Unreachable) => {
                Err(Error::Unavailable(format!("injected at {point}")))
            }
            Some(Fault::Fenced) => Err(Error::Fenced(format!("injected at {point}"))),
            Some(Fault::Denied) => Err(Error::Denied(format!("injected at {point}"))),
            Some(Fault::Crash) => {
                tracing::error!(point, "fail point: crashing the process");
                std::process::abort();
            }
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                op.await
            }
            Some(f @ Fault::Latency { .. }) => {
                tokio::time::sleep(f.sample_delay()).await;
                op.await
            }
            Some(Fault::Ambiguous | Fault::Timeout) => {
                let _ = op.await;
                Err(Error::Ambiguous(format!("injected at {point}")))
            }
        }
    }
}

/// An `ObjectStore` with fail points.
#[derive(Debug)]
pub struct FaultyObjectStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
}

impl FaultyObjectStore {
    pub fn new(inner: Arc<dyn ObjectStore>, faults: Arc<Faults>) -> Self {
        FaultyObjectStore { inner, faults }
    }
}

#[async_trait]
impl ObjectStore for FaultyObjectStore {
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<()> {
        self.faults
            .run("object.put", self.inner.put_if_absent(key, body))
            .await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        self.faults.run("object.get", self.inner.get(key)).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.faults
            .run("object.get", self.inner.get_range(key, range))
            .await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.faults
            .run("object.delete", self.inner.delete(key))
            .await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.faults
            .run("object.list", self.inner.list(prefix))
            .await
    }
}

/// A `MetaStore` with fail points.
#[derive(Debug)]
pub struct FaultyMetaStore {
    inner: Arc<dyn MetaStore>,
    faults: Arc<Faults>,
}

impl FaultyMetaStore {
    pub fn new(inner: Arc<dyn MetaStore>, faults: Arc<Faults>) -> Self {
        FaultyMetaStore { inner, faults }
    }
}

#[async_trait]
impl MetaStore for FaultyMetaStore {
    async fn register_gateway(&self, gateway: &str, info: &GatewayInfo) -> Result<u64> {
        self.faults
            .run("meta.register", self.inner.register_gateway(gateway, info))
            .await
    }
    async fn heartbeat(&self, me: &StreamId) -> Result<u64> {
        self.faults
            .run("meta.heartbeat", self.inner.heartbeat(me))
            .await
    }
    async fn list_members(&self) -> Result<Vec<Member>> {
        self.faults
            .run("meta.read", self.inner.list_members())
            .await
    }
    async fn fence_gateway(&self, target: &StreamId, observed: u64) -> Result<()> {
        self.faults
            .run("meta.fence", self.inner.fence_gateway(target, observed))
            .await
    }
    async fn claim_partition(
        &self,
        me: &StreamId,
        previous: Option<&StreamId>,
        checkpoint: &PartitionCheckpoint,
    ) -> Result<()> {
        self.faults
            .run(
                "meta.claim",
                self.inner.claim_partition(me, previous, checkpoint),
            )
            .await
    }
    async fn release_partitions(
        &self,
        me: &StreamId,
        checkpoints: &[PartitionCheckpoint],
    ) -> Result<()> {
        self.faults
            .run(
                "meta.checkpoint",
                self.inner.release_partitions(me, checkpoints),
            )
            .await
    }
    async fn create_topic(&self, topic: &TopicMeta) -> Result<()> {
        self.faults
            .run("meta.topic", self.inner.create_topic(topic))
            .await
    }
    async fn update_topic(&self, topic: &TopicMeta) -> Result<()> {
        self.faults
            .run("meta.topic", self.inner.update_topic(topic))
            .await
    }
    async fn delete_topic(&self, name: &str, id: TopicId, deleted_ms: i64) -> Result<()> {
        self.faults
            .run("meta.topic", self.inner.delete_topic(name, id, deleted_ms))
            .await
    }
    async fn deleted_topics(&self) -> Result<Vec<DeletedTopic>> {
        self.faults
            .run("meta.read", self.inner.deleted_topics())
            .await
    }
    async fn forget_topic(&self, topic: &DeletedTopic) -> Result<()> {
        self.faults
            .run("meta.forget_topic", self.inner.forget_topic(topic))
            .await
    }
    async fn get_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        self.faults
            .run("meta.read", self.inner.get_topic(name))
            .await
    }
    async fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        self.faults.run("meta.read", self.inner.list_topics()).await
    }
    async fn commit_flush(&self, record: &FlushRecord) -> Result<()> {
        self.faults
            .run("meta.commit", self.inner.commit_flush(record))
            .await
    }
    async fn read_flushes(&self, stream: &StreamId, after_seq: u64) -> Result<Vec<FlushRecord>> {
        self.faults
            .run("meta.read", self.inner.read_flushes(stream, after_seq))
            .await
    }
    async fn trim_flushes(&self, stream: &StreamId, through_seq: u64) -> Result<()> {
        self.faults
            .run(
                "meta.checkpoint",
                self.inner.trim_flushes(stream, through_seq),
            )
            .await
    }
    async fn flush_streams(&self) -> Result<Vec<StreamId>> {
        self.faults
            .run("meta.read", self.inner.flush_streams())
            .await
    }
    async fn write_checkpoints(
        &self,
        fence: &StreamId,
        checkpoints: &[PartitionCheckpoint],
    ) -> Result<()> {
        self.faults
            .run(
                "meta.checkpoint",
                self.inner.write_checkpoints(fence, checkpoints),
            )
            .await
    }
    async fn load_partition_from(
        &self,
        partition: PartitionId,
        from_offset: i64,
    ) -> Result<Option<PartitionSnapshot>> {
        self.faults
            .run(
                "meta.read",
                self.inner.load_partition_from(partition, from_offset),
            )
            .await
    }
    async fn index_version(&self, partition: PartitionId) -> Result<u64> {
        self.faults
            .run("meta.read", self.inner.index_version(partition))
            .await
    }
    async fn swap_index(
        &self,
        partition: PartitionId,
        version: u64,
        merged: &[IndexEntry],
    ) -> Result<()> {
        self.faults
            .run(
                "meta.swap_index",
                self.inner.swap_index(partition, version, merged),
            )
            .await
    }
    async fn delete_index(&self, partition: PartitionId, entries: &[IndexEntry]) -> Result<()> {
        self.faults
            .run(
                "meta.delete_index",
                self.inner.delete_index(partition, entries),
            )
            .await
    }
    async fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &std::collections::BTreeMap<i32, CommittedOffset>,
    ) -> Result<()> {
        self.faults
            .run(
                "meta.offsets",
                self.inner.commit_offsets(group, topic, offsets),
            )
            .await
    }
    async fn fetch_offsets(&self, group: &str) -> Result<GroupOffsets> {
        self.faults
            .run("meta.read", self.inner.fetch_offsets(group))
            .await
    }
    async fn delete_offsets(&self, group: &str, topic: &str, partitions: &[i32]) -> Result<()> {
        self.faults
            .run(
                "meta.offsets",
                self.inner.delete_offsets(group, topic, partitions),
            )
            .await
    }
    async fn store_group(&self, group: &str, state: &StoredGroup) -> Result<()> {
        self.faults
            .run("meta.groups", self.inner.store_group(group, state))
            .await
    }
    async fn load_group(&self, group: &str) -> Result<Option<StoredGroup>> {
        self.faults
            .run("meta.read", self.inner.load_group(group))
            .await
    }
    async fn list_groups(&self) -> Result<Vec<(String, StoredGroup)>> {
        self.faults.run("meta.read", self.inner.list_groups()).await
    }
    async fn delete_group(&self, group: &str) -> Result<()> {
        self.faults
            .run("meta.groups", self.inner.delete_group(group))
            .await
    }
    async fn allocate_producer_ids(&self, count: u64) -> Result<i64> {
        self.faults
            .run("meta.register", self.inner.allocate_producer_ids(count))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_profiles_have_the_median_and_tail_they_are_given() {
        let f = Faults::parse("object.put=latency(30ms,200ms)").unwrap();
        let Some(fault @ Fault::Latency { .. }) = f.take("object.put") else {
            panic!("latency rule not armed");
        };
        let mut samples: Vec<Duration> = (0..20_000).map(|_| fault.sample_delay()).collect();
        samples.sort();
        let at = |q: f64| samples[(q * (samples.len() - 1) as f64) as usize].as_secs_f64();
        assert!((0.027..0.033).contains(&at(0.5)), "p50 {}", at(0.5));
        assert!((0.16..0.25).contains(&at(0.99)), "p99 {}", at(0.99));
        // The draw itself: median at the middle of the distribution, the tail capped.
        let median = log_normal(
            Duration::from_millis(30),
            Duration::from_millis(200),
            0.5,
            0.25,
        );
        assert!((median.as_secs_f64() - 0.030).abs() < 1e-9, "{median:?}");
        let worst = log_normal(
            Duration::from_millis(30),
            Duration::from_millis(200),
            1.0 - 1e-300,
            0.0,
        );
        assert_eq!(worst, Duration::from_secs(4));
        assert!(Faults::parse("object.put=latency(30ms)").is_err());
        assert!(Faults::parse("object.put=latency(200ms,30ms)").is_err());
        assert!(Faults::parse("object.put=latency(0ms,30ms)").is_err());
    }

    #[test]
    fn parses_specs() {
        let f = Faults::parse("object.put=delay(50ms);meta.commit=unavailable*3").unwrap();
        assert_eq!(f.take("meta.commit"), Some(Fault::Unavailable));
        assert_eq!(f.take("meta.commit"), Some(Fault::Unavailable));
        assert_eq!(f.take("meta.commit"), Some(Fault::Unavailable));
        assert_eq!(f.take("meta.commit"), None);
        assert_eq!(
            f.take("object.put"),
            Some(Fault::Delay(Duration::from_millis(50)))
        );
        assert_eq!(f.hits("meta.commit"), 3);
        assert!(Faults::parse("object.put").is_err());
        assert!(Faults::parse("http.s3.put=throttle*2@1x").is_err());
        assert!(Faults::parse("http=unreachable~soon").is_err());
    }

    #[test]
    fn skips_then_fires_then_disarms() {
        let f = Faults::parse("http.s3.put=throttle*2@3").unwrap();
        let d: Vec<_> = (0..7).map(|_| f.decide("http.s3.put")).collect();
        use Decision::*;
        assert_eq!(
            d,
            vec![
                Pass,
                Pass,
                Pass,
                Fire(Fault::Throttle),
                Fire(Fault::Throttle),
                Unarmed,
                Unarmed
            ]
        );
        assert_eq!(f.hits("http.s3.put"), 2);
    }

    #[test]
    fn windows_fire_for_a_duration_from_the_first_hit() {
        let f = Faults::parse("http=unreachable~200ms@1").unwrap();
        assert_eq!(f.decide("http"), Decision::Pass);
        std::thread::sleep(Duration::from_millis(300)); // the window starts at the first firing
        assert_eq!(f.decide("http"), Decision::Fire(Fault::Unreachable));
        assert_eq!(f.decide("http"), Decision::Fire(Fault::Unreachable));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(f.decide("http"), Decision::Pass);
        assert_eq!(f.decide("http"), Decision::Unarmed);
    }

    #[test]
    fn the_most_specific_armed_point_decides() {
        let f = Faults::parse("http.s3=denied;http.s3.put=throttle*1").unwrap();
        let pts = ["http.s3.put", "http.s3", "http"];
        assert_eq!(f.decide_first(&pts), (0, Decision::Fire(Fault::Throttle)));
        assert_eq!(f.decide_first(&pts), (1, Decision::Fire(Fault::Denied)));
        assert_eq!(
            f.decide_first(&["http.ddb.GetItem", "http.ddb", "http"]).1,
            Decision::Unarmed
        );
        assert!(Faults::parse("object.put=explode").is_err());
    }
}
