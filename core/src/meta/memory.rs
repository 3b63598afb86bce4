use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{MetaStore, check_topic_update, fenced};
use crate::error::{Error, Result};
use crate::types::{
    FlushRecord, GatewayInfo, IndexEntry, PartitionCheckpoint, PartitionId, PartitionSnapshot,
    StreamId, TopicId, TopicMeta,
};

#[derive(Debug, Default)]
struct State {
    epochs: HashMap<String, u64>,
    topics: BTreeMap<String, TopicMeta>,
    flushes: BTreeMap<(StreamId, u64), FlushRecord>,
    partitions: HashMap<PartitionId, (PartitionCheckpoint, BTreeMap<i64, IndexEntry>)>,
    next_producer_id: i64,
}

/// In-process MetaStore for unit tests.
#[derive(Debug, Default)]
pub struct MemoryMetaStore {
    state: Mutex<State>,
}

impl MemoryMetaStore {
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn check_fence(s: &State, stream: &StreamId) -> Result<()> {
    match s.epochs.get(&stream.gateway) {
        Some(&e) if e == stream.epoch => Ok(()),
        other => Err(fenced(stream, other.copied())),
    }
}

#[async_trait]
impl MetaStore for MemoryMetaStore {
    async fn register_gateway(&self, gateway: &str, _info: &GatewayInfo) -> Result<u64> {
        let mut s = self.lock();
        let e = s.epochs.entry(gateway.to_string()).or_insert(0);
        *e += 1;
        Ok(*e)
    }

    async fn create_topic(&self, topic: &TopicMeta) -> Result<()> {
        let mut s = self.lock();
        if s.topics.contains_key(&topic.name) {
            return Err(Error::AlreadyExists(format!("topic {}", topic.name)));
        }
        s.topics.insert(topic.name.clone(), topic.clone());
        Ok(())
    }

    async fn update_topic(&self, topic: &TopicMeta) -> Result<()> {
        let mut s = self.lock();
        check_topic_update(s.topics.get(&topic.name), topic)?;
        s.topics.insert(topic.name.clone(), topic.clone());
        Ok(())
    }

    async fn delete_topic(&self, name: &str, id: TopicId) -> Result<()> {
        let mut s = self.lock();
        match s.topics.get(name) {
            Some(t) if t.id == id => {
                s.topics.remove(name);
                Ok(())
            }
            _ => Err(Error::NotFound(format!("topic {name} ({id})"))),
        }
    }

    async fn get_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        Ok(self.lock().topics.get(name).cloned())
    }

    async fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        Ok(self.lock().topics.values().cloned().collect())
    }

    async fn commit_flush(&self, record: &FlushRecord) -> Result<()> {
        let mut s = self.lock();
        check_fence(&s, &record.stream)?;
        let key = (record.stream.clone(), record.seq);
        match s.flushes.get(&key) {
            Some(existing) if existing == record => Ok(()),
            Some(_) => Err(Error::AlreadyExists(format!(
                "flush {} #{}",
                record.stream, record.seq
            ))),
            None => {
                s.flushes.insert(key, record.clone());
                Ok(())
            }
        }
    }

    async fn read_flushes(&self, stream: &StreamId, after_seq: u64) -> Result<Vec<FlushRecord>> {
        let s = self.lock();
        Ok(s.flushes
            .range((stream.clone(), after_seq.saturating_add(1))..=(stream.clone(), u64::MAX))
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn trim_flushes(&self, stream: &StreamId, through_seq: u64) -> Result<()> {
        let mut s = self.lock();
        s.flushes
            .retain(|(st, seq), _| !(st == stream && *seq <= through_seq));
        Ok(())
    }

    async fn flush_streams(&self) -> Result<Vec<StreamId>> {
        let s = self.lock();
        let mut out: Vec<StreamId> = s.flushes.keys().map(|(st, _)| st.clone()).collect();
        out.dedup();
        Ok(out)
    }

    async fn write_checkpoints(
        &self,
        fence: &StreamId,
        checkpoints: &[PartitionCheckpoint],
    ) -> Result<()> {
        let mut s = self.lock();
        check_fence(&s, fence)?;
        for cp in checkpoints {
            let entry = s
                .partitions
                .entry(cp.partition)
                .or_insert_with(|| (cp.clone(), BTreeMap::new()));
            for e in &cp.new_entries {
                entry.1.entry(e.base_offset).or_insert_with(|| e.clone());
            }
            entry.0 = PartitionCheckpoint {
                owner: fence.clone(),
                new_entries: Vec::new(),
                ..cp.clone()
            };
        }
        Ok(())
    }

    async fn load_partition(&self, partition: PartitionId) -> Result<Option<PartitionSnapshot>> {
        let s = self.lock();
        Ok(s.partitions
            .get(&partition)
            .map(|(cp, idx)| PartitionSnapshot {
                owner: cp.owner.clone(),
                checkpoint_seq: cp.checkpoint_seq,
                next_offset: cp.next_offset,
                log_start_offset: cp.log_start_offset,
                producers: cp.producers.clone(),
                entries: idx.values().cloned().collect(),
            }))
    }

    async fn allocate_producer_ids(&self, count: u64) -> Result<i64> {
        let mut s = self.lock();
        let first = s.next_producer_id;
        s.next_producer_id += count as i64;
        Ok(first)
    }
}
