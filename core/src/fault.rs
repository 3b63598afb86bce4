//! Fault injection: wrappers around any `ObjectStore` / `MetaStore` with named
//! fail points, used by unit tests, crash tests and the `FLOE_FAILPOINTS`
//! environment variable of the gateway binary.
//!
//! Fail points: `object.put`, `object.get`, `object.delete`, `object.list`,
//! `meta.commit`, `meta.checkpoint`, `meta.read`, `meta.topic`, `meta.register`.
//!
//! A spec string configures several at once: `point=action[*times];...` where
//! action is `unavailable`, `ambiguous` (the operation runs, then reports an
//! unknown outcome, like a timeout after the request was sent), `fenced`,
//! `denied`, `delay(250ms)` or `crash` (abort the process: a kill -9 at that exact
//! point). Example: `object.put=delay(50ms);meta.commit=unavailable*3`.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::meta::MetaStore;
use crate::object_store::{ObjectInfo, ObjectStore};
use crate::types::{
    FlushRecord, GatewayInfo, PartitionCheckpoint, PartitionId, PartitionSnapshot, StreamId,
    TopicId, TopicMeta,
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
    /// Abort the process at this point.
    Crash,
}

#[derive(Debug, Clone)]
struct Rule {
    fault: Fault,
    remaining: Option<u32>,
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
        self.lock_rules().insert(
            point.to_string(),
            Rule {
                fault,
                remaining: times,
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

    /// Parses a spec like `object.put=delay(50ms);meta.commit=unavailable*3`.
    pub fn parse(spec: &str) -> Result<Arc<Self>> {
        let faults = Faults::new();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || {
                Error::Config(format!(
                    "fail point spec {part:?}: expected point=action[*times]"
                ))
            };
            let (point, action) = part.split_once('=').ok_or_else(bad)?;
            let (action, times) = match action.rsplit_once('*') {
                Some((a, n)) => (a, Some(n.parse::<u32>().map_err(|_| bad())?)),
                None => (action, None),
            };
            let fault = match action {
                "unavailable" => Fault::Unavailable,
                "ambiguous" => Fault::Ambiguous,
                "fenced" => Fault::Fenced,
                "denied" => Fault::Denied,
                "crash" => Fault::Crash,
                a if a.starts_with("delay(") && a.ends_with(')') => {
                    Fault::Delay(crate::settings::parse_duration(point, &a[6..a.len() - 1])?)
                }
                _ => return Err(bad()),
            };
            faults.set(point.trim(), fault, times);
        }
        Ok(faults)
    }

    fn lock_rules(&self) -> std::sync::MutexGuard<'_, HashMap<String, Rule>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, point: &str) -> Option<Fault> {
        let mut rules = self.lock_rules();
        let rule = rules.get_mut(point)?;
        let fault = rule.fault.clone();
        match &mut rule.remaining {
            Some(0) => {
                rules.remove(point);
                return None;
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
        Some(fault)
    }

    /// Runs `op` through fail point `point`.
    pub async fn run<T, F>(&self, point: &str, op: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        match self.take(point) {
            None => op.await,
            Some(Fault::Unavailable) => Err(Error::Unavailable(format!("injected at {point}"))),
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
            Some(Fault::Ambiguous) => {
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
    async fn delete_topic(&self, name: &str, id: TopicId) -> Result<()> {
        self.faults
            .run("meta.topic", self.inner.delete_topic(name, id))
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
    async fn load_partition(&self, partition: PartitionId) -> Result<Option<PartitionSnapshot>> {
        self.faults
            .run("meta.read", self.inner.load_partition(partition))
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
        assert!(Faults::parse("object.put=explode").is_err());
    }
}
