//! The topic registry: every topic and a slot for each of its partitions
//! (`PartitionLog`, led here or not), kept in line with the MetaStore, and the
//! admin operations that change topics (create, delete, grow, configs). Topic
//! writes are conditional on the stored version, and made under one admin
//! lock, so a refresh never undoes a local change.
//!
//! Claiming this gateway's share of new partitions is the leases' job
//! (`Broker::create_topic` does both).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use floe_core::clock::SharedClock;
use floe_core::meta::SharedMetaStore;
use floe_core::settings::Settings;
use floe_core::topic_config::{self, TopicPolicy};
use floe_core::types::{PartitionId, TopicId, TopicMeta};
use floe_flusher::PartitionLog;

use crate::error::{Code, KafkaError};

/// Kafka's limit on partitions per topic in one request.
pub const MAX_PARTITIONS: i32 = 10_000;

/// One topic: as stored, what its configs mean, and its partitions' slots.
#[derive(Debug)]
pub struct TopicEntry {
    pub meta: TopicMeta,
    pub policy: TopicPolicy,
    pub logs: Vec<Arc<PartitionLog>>,
}

impl TopicEntry {
    fn new(meta: TopicMeta, logs: Vec<Arc<PartitionLog>>, settings: &Settings) -> Self {
        TopicEntry {
            policy: TopicPolicy::of(&meta.configs, settings),
            meta,
            logs,
        }
    }

    pub fn log(&self, partition: i32) -> Option<&Arc<PartitionLog>> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.logs.get(p))
    }
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

#[derive(Debug, Default)]
struct Index {
    by_name: HashMap<String, Arc<TopicEntry>>,
    by_id: HashMap<TopicId, Arc<TopicEntry>>,
}

#[derive(Debug)]
pub struct Topics {
    meta: SharedMetaStore,
    clock: SharedClock,
    /// Defaults of topic configs.
    settings: Settings,
    index: RwLock<Index>,
    admin: tokio::sync::Mutex<()>,
}

fn unowned(id: TopicId, range: std::ops::Range<i32>) -> Vec<Arc<PartitionLog>> {
    range
        .map(|p| PartitionLog::unowned(PartitionId::new(id, p)))
        .collect()
}

fn unknown_topic(name: &str) -> KafkaError {
    KafkaError::new(
        Code::UnknownTopicOrPartition,
        format!("topic {name} does not exist"),
    )
}

impl Topics {
    pub fn new(meta: SharedMetaStore, clock: SharedClock, settings: Settings) -> Topics {
        Topics {
            meta,
            clock,
            settings,
            index: RwLock::default(),
            admin: tokio::sync::Mutex::new(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<TopicEntry>> {
        self.read().by_name.get(name).cloned()
    }

    pub fn by_id(&self, id: &TopicId) -> Option<Arc<TopicEntry>> {
        self.read().by_id.get(id).cloned()
    }

    /// Every topic, by name.
    /// The id of topic `name` as stored now (strongly consistent), whatever
    /// this gateway's copy says; `None` if there is no such topic.
    pub async fn stored_id(&self, name: &str) -> floe_core::Result<Option<TopicId>> {
        Ok(self.meta.get_topic(name).await?.map(|t| t.id))
    }

    pub fn all(&self) -> Vec<Arc<TopicEntry>> {
        let mut v: Vec<_> = self.read().by_name.values().cloned().collect();
        v.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        v
    }

    /// Every partition slot of every topic.
    pub fn all_logs(&self) -> Vec<Arc<PartitionLog>> {
        self.read()
            .by_name
            .values()
            .flat_map(|t| t.logs.iter().cloned())
            .collect()
    }

    /// Brings topics in line with the MetaStore (topics other gateways
    /// created, grew or deleted): new partitions get unowned slots.
    pub async fn refresh(&self) -> floe_core::Result<()> {
        // Read under the admin lock: a list read before a local create and
        // applied after it would forget the topic just created.
        let _g = self.admin.lock().await;
        let stored = self.meta.list_topics().await?;
        self.sync(&stored);
        Ok(())
    }

    /// `refresh` with the admin lock held and the stored topics read.
    fn sync(&self, stored: &[TopicMeta]) {
        let known = self.all();
        for t in stored {
            match self.get(&t.name) {
                Some(e) if e.meta.id == t.id && e.meta.version >= t.version => {}
                Some(e) if e.meta.id == t.id => {
                    let mut logs = e.logs.clone();
                    logs.extend(unowned(t.id, logs.len() as i32..t.partitions));
                    self.install(TopicEntry::new(t.clone(), logs, &self.settings));
                }
                other => {
                    if let Some(old) = other {
                        self.forget(&old);
                    }
                    let logs = unowned(t.id, 0..t.partitions);
                    self.install(TopicEntry::new(t.clone(), logs, &self.settings));
                }
            }
        }
        for e in known {
            if !stored.iter().any(|t| t.id == e.meta.id) {
                self.forget(&e);
            }
        }
    }

    fn install(&self, entry: TopicEntry) -> Arc<TopicEntry> {
        let entry = Arc::new(entry);
        let mut t = self.write();
        if let Some(old) = t.by_name.insert(entry.meta.name.clone(), entry.clone())
            && old.meta.id != entry.meta.id
        {
            t.by_id.remove(&old.meta.id);
        }
        t.by_id.insert(entry.meta.id, entry.clone());
        entry
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

    /// Creates a topic (CreateTopics and auto-creation); the caller claims
    /// this gateway's share of its partitions.
    pub async fn create(
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
        topic_config::validate_all(&configs)
            .map_err(|m| KafkaError::new(Code::InvalidConfig, m))?;
        let _g = self.admin.lock().await;
        if self.get(name).is_some() {
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
        let entry = TopicEntry::new(
            meta.clone(),
            unowned(meta.id, 0..partitions),
            &self.settings,
        );
        if validate_only {
            return Ok(Arc::new(entry));
        }
        if let Err(e) = self.meta.create_topic(&entry.meta).await {
            if e.kind() != floe_core::ErrorKind::AlreadyExists {
                return Err(e.into());
            }
            // Another gateway created it since our last refresh: learn it now.
            match self.meta.list_topics().await {
                Ok(stored) => self.sync(&stored),
                Err(e) => tracing::info!(error = %e, "cannot refresh topics"),
            }
            return Err(KafkaError::new(
                Code::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        tracing::info!(topic = name, partitions, "topic created");
        Ok(self.install(entry))
    }

    pub async fn delete(&self, entry: &Arc<TopicEntry>) -> Result<(), KafkaError> {
        let _g = self.admin.lock().await;
        self.meta
            .delete_topic(&entry.meta.name, entry.meta.id, self.clock.now_ms())
            .await?;
        self.forget(entry);
        tracing::info!(topic = %entry.meta.name, "topic deleted");
        Ok(())
    }

    /// Grows a topic to `count` partitions; returns the new partitions' slots
    /// (for the caller to claim its share).
    pub async fn grow(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<Vec<Arc<PartitionLog>>, KafkaError> {
        let _g = self.admin.lock().await;
        let entry = self.get(name).ok_or_else(|| unknown_topic(name))?;
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
            return Ok(Vec::new());
        }
        let mut meta = entry.meta.clone();
        meta.partitions = count;
        meta.version += 1;
        let fresh = unowned(meta.id, current..count);
        self.meta.update_topic(&meta).await?;
        let mut logs = entry.logs.clone();
        logs.extend(fresh.iter().cloned());
        self.install(TopicEntry::new(meta, logs, &self.settings));
        Ok(fresh)
    }

    /// Replaces a topic's config overrides.
    pub async fn set_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        topic_config::validate_all(&configs)
            .map_err(|m| KafkaError::new(Code::InvalidConfig, m))?;
        let _g = self.admin.lock().await;
        let entry = self.get(name).ok_or_else(|| unknown_topic(name))?;
        if validate_only {
            return Ok(());
        }
        let mut meta = entry.meta.clone();
        meta.configs = configs;
        meta.version += 1;
        self.meta.update_topic(&meta).await?;
        self.install(TopicEntry::new(meta, entry.logs.clone(), &self.settings));
        Ok(())
    }
}
