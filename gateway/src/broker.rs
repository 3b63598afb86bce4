//! The gateway's shared state: topics and a slot for each of their partitions
//! (led here or not, see `ownership`), the membership view, the write path, the
//! read cache and the MetaStore.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use floe_core::clock::SharedClock;
use floe_core::meta::SharedMetaStore;
use floe_core::object_store::SharedObjectStore;
use floe_core::settings::Settings;
use floe_core::types::{GatewayInfo, Member, PartitionId, StreamId, TopicId, TopicMeta};
use floe_flusher::{Flusher, FlusherConfig, Lease, PartitionLog, ReadCache};

use crate::configs;
use crate::error::{Code, KafkaError};
use crate::metrics::Metrics;

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
    /// Live gateways (this one included) as of the last ownership round.
    view: RwLock<Vec<Member>>,
    /// Set when this incarnation was fenced: it stops serving.
    fenced: tokio::sync::watch::Sender<Option<String>>,
    pub advertised_host: String,
    pub advertised_port: i32,
    topics: RwLock<Topics>,
    admin: tokio::sync::Mutex<()>,
    /// Held by a checkpoint pass and by a release, so a checkpoint read before a
    /// release never lands after it (it would un-release the partition).
    pub(crate) checkpointing: tokio::sync::Mutex<()>,
    /// Read-only copies of partitions led in other zones (`replica`).
    pub(crate) replicas: crate::replica::Replicas,
    /// The consumer groups this gateway coordinates.
    pub groups: crate::groups::Coordinator,
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
            zone: settings.zone.clone(),
            heartbeat_ms: clock.now_ms(),
            node_id: settings.node_id,
        };
        let epoch = meta.register_gateway(&settings.gateway_id, &info).await?;
        let stream = StreamId {
            gateway: settings.gateway_id.clone(),
            epoch,
        };
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
        let broker = Arc::new(Broker {
            meta,
            objects,
            clock,
            flusher,
            cache,
            stream,
            trimmed_through: std::sync::atomic::AtomicU64::new(0),
            view: RwLock::new(Vec::new()),
            fenced: tokio::sync::watch::Sender::new(None),
            advertised_host: host,
            advertised_port: port,
            topics: RwLock::new(Topics::default()),
            admin: tokio::sync::Mutex::new(()),
            checkpointing: tokio::sync::Mutex::new(()),
            replicas: Default::default(),
            groups: Default::default(),
            producer_ids: Mutex::new((0, 0)),
            stopping: tokio::sync::watch::Sender::new(false),
            request_budget: Arc::new(tokio::sync::Semaphore::new(
                settings.max_inflight_request_bytes.min(u32::MAX as u64) as usize,
            )),
            metrics,
            settings,
        });
        Ok(broker)
    }

    /// Runs the first ownership round (claims this gateway's share), so the
    /// gateway serves at once; returns the controller for the loop. Alone, a
    /// gateway also trims the records of dead incarnations it has folded in.
    pub async fn start_ownership(
        self: &Arc<Self>,
    ) -> floe_core::Result<crate::ownership::Controller> {
        let mut controller = crate::ownership::Controller::default();
        crate::ownership::beat(self)
            .await
            .map_err(|f| floe_core::Error::Fenced(f.0))?;
        controller
            .round(self)
            .await
            .map_err(|f| floe_core::Error::Fenced(f.0))?;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::groups::TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(broker) = weak.upgrade() else { break };
                broker.groups.tick(&broker);
            }
        });
        let view = self.view();
        if view.len() == 1
            && let Err(e) = self.trim_dead_streams().await
        {
            tracing::warn!(error = %e, "could not trim the records of dead incarnations");
        }
        tracing::info!(
            gateway = %self.stream,
            live = view.len(),
            topics = self.read().by_name.len(),
            owned = self.all_logs().iter().filter(|l| l.lease() == Lease::Owned).count(),
            "gateway registered"
        );
        Ok(controller)
    }

    /// Alone and leading every partition, this gateway has folded the flush
    /// records of every dead incarnation into its claims: trims them. Dead
    /// means superseded by a newer epoch of its gateway or fenced, as read
    /// after listing the streams (a gateway starting meanwhile is not dead).
    async fn trim_dead_streams(&self) -> floe_core::Result<usize> {
        self.refresh_topics().await?;
        let all_owned = self
            .all_logs()
            .iter()
            .all(|l| l.lease() == Lease::Owned || l.is_deleted());
        if !all_owned {
            return Ok(0);
        }
        let streams = self.meta.flush_streams().await?;
        let members = self.meta.list_members().await?;
        let dead = |s: &StreamId| {
            members.iter().any(|m| {
                m.stream.gateway == s.gateway
                    && (m.stream.epoch > s.epoch || (m.stream == *s && m.fenced))
            })
        };
        let mut trimmed = 0;
        for s in streams.iter().filter(|s| dead(s)) {
            self.meta.trim_flushes(s, u64::MAX).await?;
            trimmed += 1;
        }
        if trimmed > 0 {
            tracing::info!(
                streams = trimmed,
                "trimmed the records of dead incarnations"
            );
        }
        Ok(trimmed)
    }

    pub fn view(&self) -> Vec<Member> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_view(&self, live: Vec<Member>) {
        let mut v = self.view.write().unwrap_or_else(|p| p.into_inner());
        let before: Vec<_> = v.iter().map(|m| m.stream.to_string()).collect();
        let after: Vec<_> = live.iter().map(|m| m.stream.to_string()).collect();
        if before != after {
            tracing::info!(live = ?after, "membership changed");
        }
        *v = live;
    }

    /// The live gateway that should lead `partition` (this one if alone).
    pub fn leader_of(&self, partition: &PartitionId) -> Option<Member> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        crate::ownership::owner_of(&view, &crate::ownership::partition_key(partition)).cloned()
    }

    /// The live gateway coordinating consumer group `group` (the same choice
    /// on every gateway with the same view).
    pub fn coordinator_of(&self, group: &str) -> Option<Member> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        let mut key = b"group\0".to_vec();
        key.extend_from_slice(group.as_bytes());
        crate::ownership::owner_of(&view, &key).cloned()
    }

    /// Partitions to hand over and to claim under the current view.
    pub(crate) fn moves(&self) -> (Vec<Arc<PartitionLog>>, Vec<Arc<PartitionLog>>) {
        let (mut release, mut acquire) = (Vec::new(), Vec::new());
        for log in self.all_logs() {
            if log.is_deleted() {
                continue;
            }
            let mine = self
                .leader_of(&log.id)
                .is_some_and(|m| m.stream == self.stream);
            match (log.lease(), mine) {
                (Lease::Owned, false) => release.push(log),
                (Lease::NotOwned, true) => acquire.push(log),
                _ => {}
            }
        }
        (release, acquire)
    }

    /// Stops this incarnation for good: another gateway fenced it.
    pub fn fence(&self, why: &str) {
        tracing::error!(
            reason = why,
            "this gateway was fenced; it stops serving (restart it to rejoin)"
        );
        self.flusher.set_fenced();
        for l in self.all_logs() {
            l.set_lease(Lease::NotOwned);
        }
        self.fenced.send_replace(Some(why.to_string()));
    }

    /// Resolves once this incarnation is fenced.
    pub async fn fenced(&self) -> String {
        let mut rx = self.fenced.subscribe();
        let why = rx.wait_for(|v| v.is_some()).await.map(|v| v.clone());
        match why {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    pub(crate) fn fenced_watch(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.fenced.subscribe()
    }

    pub fn fenced_reason(&self) -> Option<String> {
        self.fenced.borrow().clone()
    }

    /// Brings topics in line with the MetaStore (topics other gateways created,
    /// grew or deleted): new partitions get unowned slots.
    pub(crate) async fn refresh_topics(&self) -> floe_core::Result<()> {
        // Read under the admin lock: a list read before a local create and
        // applied after it would forget the topic just created.
        let _g = self.admin.lock().await;
        let stored = self.meta.list_topics().await?;
        self.sync_topics(&stored);
        Ok(())
    }

    /// `refresh_topics` with the admin lock held and the stored topics read.
    fn sync_topics(&self, stored: &[TopicMeta]) {
        let known = self.all_topics();
        for t in stored {
            match self.topic(&t.name) {
                Some(e) if e.meta.id == t.id && e.meta.version >= t.version => {}
                Some(e) if e.meta.id == t.id => {
                    let mut logs = e.logs.clone();
                    let have = logs.len() as i32;
                    logs.extend(
                        (have..t.partitions)
                            .map(|p| PartitionLog::unowned(PartitionId::new(t.id, p))),
                    );
                    self.install(Arc::new(TopicEntry {
                        meta: t.clone(),
                        logs,
                    }));
                }
                other => {
                    if let Some(old) = other {
                        self.forget(&old);
                    }
                    let logs = (0..t.partitions)
                        .map(|p| PartitionLog::unowned(PartitionId::new(t.id, p)))
                        .collect();
                    self.install(Arc::new(TopicEntry {
                        meta: t.clone(),
                        logs,
                    }));
                }
            }
        }
        for e in known {
            if !stored.iter().any(|t| t.id == e.meta.id) {
                self.forget(&e);
            }
        }
    }

    fn forget(&self, entry: &Arc<TopicEntry>) {
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

    /// Whether this gateway leads the partition of `log` now.
    pub fn owns(&self, log: &PartitionLog) -> bool {
        log.lease() == Lease::Owned
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

    /// Claims this gateway's share of fresh partitions right away (the other
    /// gateways claim theirs at their next round): never-claimed partitions
    /// in bulk checkpoints, one write per `CHECKPOINT_CHUNK`; a chunk that
    /// fails (another gateway claimed one first) goes partition by partition.
    async fn claim_share(&self, logs: &[Arc<PartitionLog>]) {
        let mine: Vec<_> = logs
            .iter()
            .filter(|l| {
                self.leader_of(&l.id)
                    .is_some_and(|m| m.stream == self.stream)
            })
            .cloned()
            .collect();
        for chunk in mine.chunks(floe_flusher::CHECKPOINT_CHUNK) {
            let through = self.flusher.committed_through();
            let cps: Vec<_> = chunk
                .iter()
                .map(|l| l.full_checkpoint(&self.stream, through))
                .collect();
            match self.meta.write_checkpoints(&self.stream, &cps).await {
                Ok(()) => {
                    for l in chunk {
                        l.mark_all_checkpointed();
                        l.set_lease(Lease::Owned);
                    }
                }
                Err(e) => {
                    tracing::info!(error = %e, "bulk claim of new partitions failed; claiming one by one");
                    if let Err(f) = crate::ownership::acquire_logs(self, chunk.to_vec()).await {
                        self.fence(&f.0);
                        return;
                    }
                }
            }
        }
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
            .map(|p| PartitionLog::unowned(PartitionId::new(meta.id, p)))
            .collect();
        let entry = Arc::new(TopicEntry { meta, logs });
        if validate_only {
            return Ok(entry);
        }
        if let Err(e) = self.meta.create_topic(&entry.meta).await {
            if e.kind() != floe_core::ErrorKind::AlreadyExists {
                return Err(e.into());
            }
            // Another gateway created it since our last refresh: learn it now.
            match self.meta.list_topics().await {
                Ok(stored) => self.sync_topics(&stored),
                Err(e) => tracing::info!(error = %e, "cannot refresh topics"),
            }
            return Err(KafkaError::new(
                Code::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        self.install(entry.clone());
        self.claim_share(&entry.logs).await;
        tracing::info!(topic = name, partitions, "topic created");
        Ok(entry)
    }

    pub async fn delete_topic(&self, entry: &Arc<TopicEntry>) -> Result<(), KafkaError> {
        let _g = self.admin.lock().await;
        self.meta
            .delete_topic(&entry.meta.name, entry.meta.id)
            .await?;
        self.forget(entry);
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
            .map(|p| PartitionLog::unowned(PartitionId::new(meta.id, p)))
            .collect();
        self.meta.update_topic(&meta).await?;
        let mut logs = entry.logs.clone();
        logs.extend(fresh.iter().cloned());
        self.install(Arc::new(TopicEntry { meta, logs }));
        self.claim_share(&fresh).await;
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
        let _g = self.checkpointing.lock().await;
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

    /// Drains the write path, hands every partition back (released
    /// checkpoints) and leaves the membership, so peers take over at once
    /// instead of waiting for the session timeout.
    pub async fn close(&self, deadline: Duration) {
        self.flusher.close(deadline).await;
        if self.fenced_reason().is_some() {
            return;
        }
        let owned: Vec<_> = self
            .all_logs()
            .into_iter()
            .filter(|l| !l.is_deleted() && l.lease() != Lease::NotOwned)
            .collect();
        for l in &owned {
            l.set_lease(Lease::NotOwned);
        }
        let released =
            tokio::time::timeout(deadline, crate::ownership::release(self, &owned)).await;
        if !matches!(released, Ok(Ok(()))) {
            tracing::warn!("final release failed; peers take over after the session timeout");
            return;
        }
        if let Err(e) = self.trim_own().await {
            tracing::warn!(error = %e, "final trim failed");
        }
        match self.meta.list_members().await {
            Ok(members) => {
                if let Some(m) = members.iter().find(|m| m.stream == self.stream)
                    && let Err(e) = self.meta.fence_gateway(&self.stream, m.heartbeat).await
                {
                    tracing::info!(error = %e, "could not leave the membership; peers will time it out");
                }
            }
            Err(e) => tracing::info!(error = %e, "could not leave the membership"),
        }
    }

    /// Trims this incarnation's flush records folded into checkpoints.
    async fn trim_own(&self) -> floe_core::Result<()> {
        let through = self.flusher.committed_through();
        if through
            > self
                .trimmed_through
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            self.meta.trim_flushes(&self.stream, through).await?;
        }
        Ok(())
    }
}
