//! The gateway's shared state, split by role; API handlers use each role
//! through its own narrow interface:
//!
//! | role | module | what it answers and does |
//! |---|---|---|
//! | `cluster` | `cluster` | this gateway's identity, the live gateways, who leads a partition or coordinates a group, whether this incarnation was fenced |
//! | `topics` | `topics` | topics and their partitions' slots; create, delete, grow, configs |
//! | `leases` | `leases` | the partitions led here: the write path, checkpoints, trims, claims, hand-overs |
//! | `reader` | `read` | committed batches from the read cache or object storage; zone-local copies |
//! | `producer_ids` | `producer_ids` | ids for idempotent producers |
//! | `groups` | `groups` | the consumer groups coordinated here and their committed offsets |
//!
//! Which partitions this gateway leads is decided by the ownership loop
//! (`ownership`), from the membership it reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use floe_core::backend::Stores;
use floe_core::clock::SharedClock;
use floe_core::retry::RetryPolicy;
use floe_core::settings::Settings;
use floe_core::types::{GatewayInfo, StreamId};
use floe_flusher::{Flusher, FlusherConfig, PartitionLog, ReadCache};

use crate::cluster::Cluster;
use crate::error::{Code, KafkaError};
use crate::groups::{Coordinator, GroupSettings};
use crate::leases::{Fenced, Leases};
use crate::metrics::Metrics;
use crate::ownership::Controller;
use crate::producer_ids::ProducerIds;
use crate::read::Reader;
use crate::topics::{TopicEntry, Topics};

#[derive(Debug)]
pub struct Broker {
    pub settings: Settings,
    pub clock: SharedClock,
    /// For heartbeats, the ownership loop and compaction passes; handlers go
    /// through the roles.
    stores: Stores,
    pub cluster: Arc<Cluster>,
    pub topics: Arc<Topics>,
    pub leases: Leases,
    pub reader: Reader,
    pub producer_ids: ProducerIds,
    pub groups: Coordinator,
    stopping: tokio::sync::watch::Sender<bool>,
    /// Bytes of requests being read or handled (`max_inflight_request_bytes`).
    pub request_budget: Arc<tokio::sync::Semaphore>,
    /// Request accounting: the metrics endpoint and the shutdown summary.
    pub metrics: Arc<Metrics>,
}

impl Broker {
    /// Registers a new incarnation and starts the write path; clients are
    /// told to connect to `advertised`. Partitions are claimed by
    /// `start_ownership`.
    pub async fn open(
        settings: Settings,
        stores: Stores,
        clock: SharedClock,
        advertised: String,
    ) -> floe_core::Result<Arc<Broker>> {
        let meta = stores.meta.clone();
        // Checked before registering: a new epoch supersedes the last one.
        Cluster::parse_advertised(&advertised)?;
        let info = GatewayInfo {
            advertised: advertised.clone(),
            zone: settings.zone.clone(),
            heartbeat_ms: clock.now_ms(),
            node_id: settings.node_id,
            broker_ids: settings.broker_ids,
        };
        let epoch = meta.register_gateway(&settings.gateway_id, &info).await?;
        let me = StreamId {
            gateway: settings.gateway_id.clone(),
            epoch,
        };
        let cluster = Arc::new(Cluster::new(
            me.clone(),
            info.clone(),
            settings.cluster_id.clone(),
        )?);
        let cache = Arc::new(ReadCache::new(settings.read_cache_bytes));
        let flusher = Flusher::start(
            FlusherConfig {
                segment_bytes: settings.segment_bytes(),
                flush_interval: settings.flush_interval(),
                max_buffer_bytes: settings.max_buffer_bytes,
                upload_concurrency: settings.upload_concurrency,
                retry_budget: settings.retry_budget,
                max_commit_age: settings.object_delete_delay / 2,
            },
            me.clone(),
            stores.objects.clone(),
            meta.clone(),
            clock.clone(),
            cache.clone(),
        );
        let metrics = Arc::new(Metrics::new(
            flusher.stats().clone(),
            stores.aws_stats.clone(),
        ));
        let leases = Leases::new(
            meta.clone(),
            me,
            flusher,
            RetryPolicy::new(settings.retry_budget),
        );
        let topics = Arc::new(Topics::new(meta.clone(), clock.clone(), settings.clone()));
        let groups = Coordinator::new(
            cluster.clone(),
            topics.clone(),
            meta.clone(),
            clock.clone(),
            GroupSettings {
                initial_rebalance_delay: settings.group_initial_rebalance_delay,
                consumer_session_timeout: settings.consumer_group_session_timeout,
            },
        );
        Ok(Arc::new(Broker {
            reader: Reader::new(
                stores.objects.clone(),
                meta.clone(),
                cache,
                settings.follower_refresh,
            ),
            producer_ids: ProducerIds::new(meta.clone()),
            request_budget: Arc::new(tokio::sync::Semaphore::new(
                settings.max_inflight_request_bytes.min(u32::MAX as u64) as usize,
            )),
            stopping: tokio::sync::watch::Sender::new(false),
            stores,
            cluster,
            topics,
            leases,
            groups,
            metrics,
            clock,
            settings,
        }))
    }

    /// Runs the first ownership round (claims this gateway's share), so the
    /// gateway serves at once, and starts the group timers; returns the
    /// controller for the loop. Alone, a gateway also trims the records of
    /// dead incarnations it has folded in.
    pub async fn start_ownership(self: &Arc<Self>) -> floe_core::Result<Controller> {
        let mut controller =
            Controller::new(self.stores.meta.clone(), self.settings.session_timeout);
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
                broker.groups.tick();
            }
        });
        let view = self.cluster.view();
        if view.len() == 1 {
            // Read the topics again: a topic created by a peer since the
            // round would otherwise look led by nobody.
            let trimmed = match self.topics.refresh().await {
                Ok(()) => self.leases.trim_dead_streams(&self.topics.all_logs()).await,
                Err(e) => Err(e),
            };
            if let Err(e) = trimmed {
                tracing::warn!(error = %e, "could not trim the records of dead incarnations");
            }
        }
        tracing::info!(
            gateway = %self.cluster.me(),
            live = view.len(),
            topics = self.topics.all().len(),
            owned = self.topics.all_logs().iter().filter(|l| self.leases.leads(l)).count(),
            "gateway registered"
        );
        Ok(controller)
    }

    /// Proves this incarnation alive: raises its heartbeat counter.
    pub(crate) async fn heartbeat(&self) -> floe_core::Result<u64> {
        self.stores.meta.heartbeat(self.cluster.me()).await
    }

    /// Stops this incarnation for good: another gateway fenced it.
    pub fn fence(&self, why: &str) {
        tracing::error!(
            reason = why,
            "this gateway was fenced; it stops serving (restart it to rejoin)"
        );
        self.leases.fence(why, &self.topics.all_logs());
        self.cluster.set_fenced(why);
    }

    /// Creates a topic (CreateTopics and auto-creation) and claims this
    /// gateway's share of its partitions at once (the other gateways claim
    /// theirs at their next round).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<TopicEntry>, KafkaError> {
        let entry = self
            .topics
            .create(name, partitions, configs, validate_only)
            .await?;
        if !validate_only {
            self.claim_share(entry.logs.clone()).await;
        }
        Ok(entry)
    }

    /// Grows a topic to `count` partitions and claims this gateway's share of
    /// the new ones.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let fresh = self.topics.grow(name, count, validate_only).await?;
        self.claim_share(fresh).await;
        Ok(())
    }

    async fn claim_share(&self, logs: Vec<Arc<floe_flusher::PartitionLog>>) {
        let mine: Vec<_> = logs
            .into_iter()
            .filter(|l| self.cluster.should_lead(&l.id))
            .collect();
        if mine.is_empty() {
            return;
        }
        if let Err(Fenced(why)) = self.leases.claim_new(&self.cluster.view(), mine).await {
            self.fence(&why);
        }
    }

    /// The topic and the partition `topic`-`partition` if this gateway leads
    /// it: UNKNOWN_TOPIC_OR_PARTITION or NOT_LEADER_OR_FOLLOWER otherwise.
    pub fn led(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<TopicEntry>, Arc<floe_flusher::PartitionLog>), KafkaError> {
        let entry = self.topics.get(topic).ok_or_else(|| {
            KafkaError::new(
                Code::UnknownTopicOrPartition,
                format!("unknown topic {topic}"),
            )
        })?;
        let log = entry.log(partition).cloned().ok_or_else(|| {
            KafkaError::new(
                Code::UnknownTopicOrPartition,
                format!("{topic} has no partition {partition}"),
            )
        })?;
        if !self.leases.leads(&log) {
            return Err(KafkaError::new(
                Code::NotLeaderOrFollower,
                format!("{topic}-{partition} is led by another gateway"),
            ));
        }
        Ok((entry, log))
    }

    /// One checkpoint pass over every partition led here. With a
    /// `checkpoint-delay`, a partition due for one first adopts what passes
    /// compacted meanwhile (one small read), so that the checkpoint does not
    /// store entries a pass already stored merged.
    pub async fn checkpoint(&self) -> floe_core::Result<usize> {
        let delay = self.settings.checkpoint_delay();
        let logs = self.topics.all_logs();
        if !delay.is_zero() {
            for log in &logs {
                if log.lease() == floe_flusher::Lease::Owned && log.is_due(delay) {
                    self.adopt_compaction(log).await;
                }
            }
        }
        self.leases.checkpoint(&logs, delay).await
    }

    /// Applies every topic's retention to the partitions led here (the next
    /// checkpoint stores the log starts that moved).
    pub fn apply_retention(&self) {
        let now = self.clock.now_ms();
        for topic in self.topics.all() {
            for log in &topic.logs {
                if let Some(start) = log.apply_retention(&topic.policy, now) {
                    tracing::debug!(partition = %log.id, log_start = start, "retention moved the log start");
                }
            }
        }
    }

    /// Until `stop` fires: a compaction pass every `compact_interval` (if
    /// on), and the partitions led here adopting what was compacted (by a
    /// pass here or elsewhere) after each pass and every
    /// `retention_check_interval`. Apart from the checkpoint loop, so that a
    /// round over many partitions never delays a checkpoint.
    pub async fn compaction_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let config = floe_compactor::Config::from_settings(&self.settings);
        let every = |d: std::time::Duration| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        };
        let mut passes = self.settings.compact_interval().map(every);
        let mut adoptions = every(self.settings.retention_check_interval);
        let pass_stores = match passes {
            Some(_) => self.pass_stores().await,
            None => self.stores.clone(),
        };
        loop {
            tokio::select! {
                _ = async { passes.as_mut()?.tick().await; Some(()) }, if passes.is_some() => {
                    match floe_compactor::run_pass(&pass_stores, &config, &*self.clock).await {
                        Ok(report) => self.metrics.compaction_pass(&report),
                        Err(e) => tracing::warn!(error = %e, "compaction pass failed; will retry"),
                    }
                    self.adopt_compactions().await;
                }
                _ = adoptions.tick() => self.adopt_compactions().await,
                _ = stop.changed() => return,
            }
        }
    }

    /// The stores this gateway's compaction passes run on. On the AWS backend
    /// a second set, counting requests apart: a pass's report and cost are
    /// its own, and the gateway's request metrics stay the serving path's.
    /// On the embedded backend (nothing billed; one database) the same.
    async fn pass_stores(&self) -> floe_core::backend::Stores {
        if self.stores.aws_stats.is_none() {
            return self.stores.clone();
        }
        match self.stores.reopen(&self.settings).await {
            Ok(stores) => stores,
            Err(e) => {
                tracing::warn!(error = %e, "compaction passes share the gateway's stores (their request counts then include the gateway's)");
                self.stores.clone()
            }
        }
    }

    /// For every partition led here whose stored index was compacted since
    /// it last looked (its index version moved), replaces the in-memory
    /// entries the compaction merged with the merged ones: the owner's index
    /// and what it reads shrink with the stored index, whoever compacted it
    /// (a pass here or `floe compact`). One small read per
    /// led partition, a load only for those that changed.
    pub async fn adopt_compactions(&self) {
        for topic in self.topics.all() {
            for log in &topic.logs {
                if log.lease() == floe_flusher::Lease::Owned {
                    self.adopt_compaction(log).await;
                }
            }
        }
    }

    /// `adopt_compactions` for one led partition (also when a read found an
    /// object missing): a load only if its index version moved.
    pub async fn adopt_compaction(&self, log: &PartitionLog) {
        let version = match self.stores.meta.index_version(log.id).await {
            Ok(v) if v != log.compacted_version() => v,
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(partition = %log.id, error = %e, "index version not read");
                return;
            }
        };
        let stored = match self.stores.meta.load_partition(log.id).await {
            Ok(Some(snap)) => floe_core::index::stored_prefix(&snap),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        match stored {
            Ok((prefix, complete)) => {
                if log.adopt_compacted(version, &prefix, complete) {
                    tracing::debug!(partition = %log.id, version, "adopted a compacted index");
                }
            }
            Err(e) => {
                tracing::warn!(partition = %log.id, error = %e, "compacted index not adopted")
            }
        }
    }

    /// Periodic checkpoints until `stop` fires.
    pub async fn checkpoint_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let retention_every = self.settings.retention_check_interval;
        let mut retention_checked = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if retention_checked.elapsed() >= retention_every {
                        retention_checked = tokio::time::Instant::now();
                        self.apply_retention();
                    }
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
        self.leases.drain(deadline).await;
        if self.cluster.fenced_reason().is_some() {
            return;
        }
        // What passes stored merged, the release need not store again.
        if !self.settings.checkpoint_delay().is_zero() {
            self.adopt_compactions().await;
        }
        if !self
            .leases
            .release_all(&self.topics.all_logs(), deadline)
            .await
        {
            tracing::warn!("final release failed; peers take over after the session timeout");
            return;
        }
        let me = self.cluster.me();
        match self.stores.meta.list_members().await {
            Ok(members) => {
                if let Some(m) = members.iter().find(|m| m.stream == *me)
                    && let Err(e) = self.stores.meta.fence_gateway(me, m.heartbeat).await
                {
                    tracing::info!(error = %e, "could not leave the membership; peers will time it out");
                }
            }
            Err(e) => tracing::info!(error = %e, "could not leave the membership"),
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
}
