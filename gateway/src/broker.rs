//! The gateway's shared state: topics and the partitions it owns, the write path,
//! the read cache and the MetaStore. In this release one gateway owns every
//! partition (`Ownership::All`); the ownership role is explicit so multi-gateway
//! ownership can replace it without touching the API handlers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use floe_core::clock::SharedClock;
use floe_core::meta::SharedMetaStore;
use floe_core::object_store::SharedObjectStore;
use floe_core::settings::Settings;
use floe_core::types::{GatewayInfo, PartitionId, StreamId, TopicId, TopicMeta};
use floe_flusher::{Flusher, FlusherConfig, PartitionLog, ReadCache};

use crate::configs;
use crate::error::{Code, KafkaError};
use crate::metrics::Metrics;

/// Which partitions this gateway serves as leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Single-gateway deployment: this gateway owns every partition.
    All,
}

#[derive(Debug)]
pub struct TopicEntry {
    pub meta: TopicMeta,
    pub logs: Vec<Arc<PartitionLog>>,
}

impl TopicEntry {
    pub fn log(&self, partition: i32) -> Option<&Arc<PartitionLog>> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.logs.get(p))
    }
    pub fn config(&self, name: &str, settings: &Settings) -> String {
        configs::effective(name, &self.meta.configs, settings).unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct Topics {
    by_name: HashMap<String, Arc<TopicEntry>>,
    by_id: HashMap<TopicId, Arc<TopicEntry>>,
}

#[derive(Debug)]
pub struct Broker {
    pub settings: Settings,
    pub meta: SharedMetaStore,
    pub objects: SharedObjectStore,
    pub clock: SharedClock,
    pub flusher: Flusher,
    pub cache: Arc<ReadCache>,
    pub stream: StreamId,
    /// The highest flush seq of `stream` trimmed after a checkpoint.
    trimmed_through: std::sync::atomic::AtomicU64,
    pub ownership: Ownership,
    pub advertised_host: String,
    pub advertised_port: i32,
    topics: RwLock<Topics>,
    admin: tokio::sync::Mutex<()>,
    producer_ids: Mutex<(i64, i64)>,
    stopping: tokio::sync::watch::Sender<bool>,
    /// Bytes of requests being read or handled (`max_inflight_request_bytes`).
    pub request_budget: Arc<tokio::sync::Semaphore>,
    /// Request accounting: the metrics endpoint and the shutdown summary.
    pub metrics: Arc<Metrics>,
}

/// Topic names Kafka accepts.
pub fn validate_topic_name(name: &str) -> Result<(), KafkaError> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KafkaError::new(
            Code::InvalidTopicException,
            format!("topic name {name:?} is illegal: use up to 249 of [a-zA-Z0-9._-]"),
        ))
    }
}

pub const MAX_PARTITIONS: i32 = 10_000;

impl Broker {
    /// Registers a new incarnation, recovers every partition and starts the
    /// write path. `aws` are the stores' request counters on the AWS backend.
    pub async fn open(
        settings: Settings,
        meta: SharedMetaStore,
        objects: SharedObjectStore,
        clock: SharedClock,
        advertised: String,
        aws: Option<Arc<floe_core::aws::AwsStats>>,
    ) -> floe_core::Result<Arc<Broker>> {
        let (host, port) = advertised
            .rsplit_once(':')
            .and_then(|(h, p)| {
                Some((
                    h.trim_matches(['[', ']']).to_string(),
                    p.parse::<i32>().ok()?,
                ))
            })
            .ok_or_else(|| {
                floe_core::Error::Config(format!(
                    "advertised listener {advertised:?} is not host:port"
                ))
            })?;
        let info = GatewayInfo {
            advertised: advertised.clone(),
            zone: None,
            heartbeat_ms: clock.now_ms(),
        };
        let epoch = meta.register_gateway(&settings.gateway_id, &info).await?;
        let stream = StreamId {
            gateway: settings.gateway_id.clone(),
            epoch,
        };
        let topic_list = meta.list_topics().await?;
        let partitions: Vec<PartitionId> = topic_list
            .iter()
            .flat_map(|t| (0..t.partitions).map(move |p| PartitionId::new(t.id, p)))
            .collect();
        let mut logs = floe_flusher::recover_partition_logs(&meta, &stream, &partitions).await?;
        let mut topics = Topics::default();
        for t in topic_list {
            let entry = Arc::new(TopicEntry {
                logs: (0..t.partitions)
                    .map(|p| {
                        logs.remove(&PartitionId::new(t.id, p))
                            .unwrap_or_else(|| PartitionLog::empty(PartitionId::new(t.id, p)))
                    })
                    .collect(),
                meta: t,
            });
            topics.by_id.insert(entry.meta.id, entry.clone());
            topics.by_name.insert(entry.meta.name.clone(), entry);
        }
        let cache = Arc::new(ReadCache::new(settings.read_cache_bytes));
        let flusher = Flusher::start(
            FlusherConfig {
                segment_bytes: settings.segment_bytes,
                flush_interval: settings.flush_interval,
                max_buffer_bytes: settings.max_buffer_bytes,
                upload_concurrency: settings.upload_concurrency,
            },
            stream.clone(),
            objects.clone(),
            meta.clone(),
            clock.clone(),
            cache.clone(),
        );
        let metrics = Arc::new(Metrics::new(flusher.stats().clone(), aws));
        tracing::info!(gateway = %stream, topics = topics.by_name.len(), "gateway registered");
        Ok(Arc::new(Broker {
            meta,
            objects,
            clock,
            flusher,
            cache,
            stream,
            trimmed_through: std::sync::atomic::AtomicU64::new(0),
            ownership: Ownership::All,
            advertised_host: host,
            advertised_port: port,
            topics: RwLock::new(topics),
            admin: tokio::sync::Mutex::new(()),
            producer_ids: Mutex::new((0, 0)),
            stopping: tokio::sync::watch::Sender::new(false),
            request_budget: Arc::new(tokio::sync::Semaphore::new(
                settings.max_inflight_request_bytes.min(u32::MAX as u64) as usize,
            )),
            metrics,
            settings,
        }))
    }

    /// Tells parked requests (long-poll fetches) that the gateway is draining.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once shutdown has begun.
    pub async fn stopping(&self) {
        let mut rx = self.stopping.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    pub fn node_id(&self) -> i32 {
        self.settings.node_id
    }

    /// Whether this gateway leads `partition` (always, with `Ownership::All`).
    pub fn owns(&self, _partition: &PartitionId) -> bool {
        match self.ownership {
            Ownership::All => true,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Topics> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Topics> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicEntry>> {
        self.read().by_name.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: &TopicId) -> Option<Arc<TopicEntry>> {
        self.read().by_id.get(id).cloned()
    }

    pub fn all_topics(&self) -> Vec<Arc<TopicEntry>> {
        let mut v: Vec<_> = self.read().by_name.values().cloned().collect();
        v.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        v
    }

    pub fn all_logs(&self) -> Vec<Arc<PartitionLog>> {
        self.read()
            .by_name
            .values()
            .flat_map(|t| t.logs.iter().cloned())
            .collect()
    }

    fn install(&self, entry: Arc<TopicEntry>) {
        let mut t = self.write();
        if let Some(old) = t.by_name.insert(entry.meta.name.clone(), entry.clone())
            && old.meta.id != entry.meta.id
        {
            t.by_id.remove(&old.meta.id);
        }
        t.by_id.insert(entry.meta.id, entry);
    }

    /// Claims fresh partitions in the MetaStore so recovery knows their owner.
    async fn claim(&self, logs: &[Arc<PartitionLog>]) -> Result<(), KafkaError> {
        for chunk in logs.chunks(floe_flusher::CHECKPOINT_CHUNK) {
            let cps: Vec<_> = chunk
                .iter()
                .map(|l| l.full_checkpoint(&self.stream, 0))
                .collect();
            self.meta.write_checkpoints(&self.stream, &cps).await?;
            for l in chunk {
                l.mark_all_checkpointed();
            }
        }
        Ok(())
    }

    /// Creates a topic (CreateTopics and auto-creation).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<TopicEntry>, KafkaError> {
        validate_topic_name(name)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(KafkaError::new(
                Code::InvalidPartitions,
                format!(
                    "number of partitions must be between 1 and {MAX_PARTITIONS}, got {partitions}"
                ),
            ));
        }
        configs::validate_all(&configs).map_err(|m| KafkaError::new(Code::InvalidConfig, m))?;
        let _g = self.admin.lock().await;
        if self.topic(name).is_some() {
            return Err(KafkaError::new(
                Code::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        let meta = TopicMeta {
            name: name.to_string(),
            id: TopicId::new_v4(),
            partitions,
            configs,
            created_ms: self.clock.now_ms(),
            version: 1,
        };
        let logs: Vec<_> = (0..partitions)
            .map(|p| PartitionLog::empty(PartitionId::new(meta.id, p)))
            .collect();
        let entry = Arc::new(TopicEntry { meta, logs });
        if validate_only {
            return Ok(entry);
        }
        self.meta
            .create_topic(&entry.meta)
            .await
            .map_err(|e| match e.kind() {
                floe_core::ErrorKind::AlreadyExists => KafkaError::new(
                    Code::TopicAlreadyExists,
                    format!("Topic '{name}' already exists."),
                ),
                _ => e.into(),
            })?;
        self.claim(&entry.logs).await?;
        self.install(entry.clone());
        tracing::info!(topic = name, partitions, "topic created");
        Ok(entry)
    }

    pub async fn delete_topic(&self, entry: &Arc<TopicEntry>) -> Result<(), KafkaError> {
        let _g = self.admin.lock().await;
        self.meta
            .delete_topic(&entry.meta.name, entry.meta.id)
            .await?;
        {
            let mut t = self.write();
            if t.by_name
                .get(&entry.meta.name)
                .is_some_and(|e| e.meta.id == entry.meta.id)
            {
                t.by_name.remove(&entry.meta.name);
            }
            t.by_id.remove(&entry.meta.id);
        }
        for log in &entry.logs {
            log.mark_deleted();
        }
        tracing::info!(topic = %entry.meta.name, "topic deleted");
        Ok(())
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let _g = self.admin.lock().await;
        let entry = self.topic(name).ok_or_else(|| {
            KafkaError::new(
                Code::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            )
        })?;
        let current = entry.meta.partitions;
        if count <= current {
            return Err(KafkaError::new(
                Code::InvalidPartitions,
                format!(
                    "Topic currently has {current} partitions, which is higher than or equal to the requested {count}."
                ),
            ));
        }
        if count > MAX_PARTITIONS {
            return Err(KafkaError::new(
                Code::InvalidPartitions,
                format!("at most {MAX_PARTITIONS} partitions"),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let mut meta = entry.meta.clone();
        meta.partitions = count;
        meta.version += 1;
        let fresh: Vec<_> = (current..count)
            .map(|p| PartitionLog::empty(PartitionId::new(meta.id, p)))
            .collect();
        // Claim first: a crash after the claim but before the topic update leaves
        // unused partition rows, never a partition without an owner record.
        self.claim(&fresh).await?;
        self.meta.update_topic(&meta).await?;
        let mut logs = entry.logs.clone();
        logs.extend(fresh);
        self.install(Arc::new(TopicEntry { meta, logs }));
        Ok(())
    }

    /// Replaces a topic's config overrides.
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        configs::validate_all(&configs).map_err(|m| KafkaError::new(Code::InvalidConfig, m))?;
        let _g = self.admin.lock().await;
        let entry = self.topic(name).ok_or_else(|| {
            KafkaError::new(
                Code::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            )
        })?;
        if validate_only {
            return Ok(());
        }
        let mut meta = entry.meta.clone();
        meta.configs = configs;
        meta.version += 1;
        self.meta.update_topic(&meta).await?;
        self.install(Arc::new(TopicEntry {
            meta,
            logs: entry.logs.clone(),
        }));
        Ok(())
    }

    /// A fresh producer id; ids are reserved from the MetaStore in blocks.
    pub async fn next_producer_id(&self) -> Result<i64, KafkaError> {
        const BLOCK: u64 = 1000;
        loop {
            {
                let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
                if ids.0 < ids.1 {
                    ids.0 += 1;
                    return Ok(ids.0 - 1);
                }
            }
            let first = self.meta.allocate_producer_ids(BLOCK).await?;
            let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
            if ids.0 >= ids.1 {
                *ids = (first, first + BLOCK as i64);
            }
        }
    }

    /// One checkpoint pass over every owned partition.
    pub async fn checkpoint(&self) -> floe_core::Result<usize> {
        let logs = self.all_logs();
        let r = floe_flusher::checkpoint_once(
            &self.meta,
            &self.stream,
            &logs,
            self.flusher.committed_through(),
            &self.trimmed_through,
        )
        .await;
        if let Err(e) = &r
            && e.kind() == floe_core::ErrorKind::Fenced
        {
            tracing::error!(error = %e, "fenced during checkpoint; refusing further writes");
            self.flusher.set_fenced();
        }
        r
    }

    /// Periodic checkpoints until `stop` fires.
    pub async fn checkpoint_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.checkpoint().await {
                        tracing::warn!(error = %e, "checkpoint failed; will retry");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Drains the write path and writes a last checkpoint.
    pub async fn close(&self, deadline: Duration) {
        self.flusher.close(deadline).await;
        if let Err(e) = self.checkpoint().await {
            tracing::warn!(error = %e, "final checkpoint failed; the next start replays flush records");
        }
    }
}
