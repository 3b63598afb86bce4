use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::MetaStore;
use super::rules::{
    CommitOutcome, EpochRecord, FenceDecision, StoredOwner, check_checkpoint, check_claim,
    check_epoch, check_group_store, check_index_version, check_release, check_topic_update,
    commit_conflict, commit_outcome, decide_fence, fence_refused,
};
use crate::error::{Error, Result};
use crate::types::{
    CommittedOffset, DeletedTopic, FlushRecord, GatewayInfo, GroupOffsets, IndexEntry, Member,
    PartitionCheckpoint, PartitionId, PartitionSnapshot, StoredGroup, StreamId, TopicId, TopicMeta,
};

#[derive(Debug, Default)]
struct State {
    members: BTreeMap<String, Member>,
    topics: BTreeMap<String, TopicMeta>,
    flushes: BTreeMap<(StreamId, u64), FlushRecord>,
    partitions: HashMap<PartitionId, Partition>,
    next_producer_id: i64,
    offsets: HashMap<String, GroupOffsets>,
    groups: BTreeMap<String, StoredGroup>,
    deleted: Vec<DeletedTopic>,
}

#[derive(Debug)]
struct Partition {
    checkpoint: PartitionCheckpoint,
    index: BTreeMap<i64, IndexEntry>,
    released: bool,
    index_version: u64,
}

impl State {
    fn owner(&self, p: PartitionId) -> Option<StoredOwner> {
        self.partitions.get(&p).map(|x| StoredOwner {
            owner: x.checkpoint.owner.clone(),
            released: x.released,
        })
    }

    fn store(&mut self, owner: &StreamId, cp: &PartitionCheckpoint, released: bool) {
        let entry = self
            .partitions
            .entry(cp.partition)
            .or_insert_with(|| Partition {
                checkpoint: cp.clone(),
                index: BTreeMap::new(),
                released,
                index_version: 0,
            });
        for e in &cp.new_entries {
            entry
                .index
                .entry(e.base_offset)
                .or_insert_with(|| e.clone());
        }
        entry.checkpoint = PartitionCheckpoint {
            owner: owner.clone(),
            new_entries: Vec::new(),
            ..cp.clone()
        };
        entry.released = released;
    }

    /// `gateway`'s registration.
    fn epoch(&self, gateway: &str) -> Option<EpochRecord> {
        self.members.get(gateway).map(|m| EpochRecord {
            epoch: m.stream.epoch,
            fenced: m.fenced,
        })
    }

    fn check_epoch(&self, stream: &StreamId) -> Result<()> {
        check_epoch(stream, self.epoch(&stream.gateway))
    }
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

#[async_trait]
impl MetaStore for MemoryMetaStore {
    async fn register_gateway(&self, gateway: &str, info: &GatewayInfo) -> Result<u64> {
        let mut s = self.lock();
        let epoch = s.members.get(gateway).map_or(0, |m| m.stream.epoch) + 1;
        s.members.insert(
            gateway.to_string(),
            Member {
                stream: StreamId {
                    gateway: gateway.to_string(),
                    epoch,
                },
                info: info.clone(),
                heartbeat: 0,
                fenced: false,
            },
        );
        Ok(epoch)
    }

    async fn heartbeat(&self, me: &StreamId) -> Result<u64> {
        let mut s = self.lock();
        s.check_epoch(me)?;
        let m = s.members.get_mut(&me.gateway).expect("checked above");
        m.heartbeat += 1;
        Ok(m.heartbeat)
    }

    async fn list_members(&self) -> Result<Vec<Member>> {
        Ok(self.lock().members.values().cloned().collect())
    }

    async fn fence_gateway(&self, target: &StreamId, observed: u64) -> Result<()> {
        let mut s = self.lock();
        let stored = s
            .epoch(&target.gateway)
            .zip(s.members.get(&target.gateway).map(|m| m.heartbeat));
        match decide_fence(target, observed, stored) {
            FenceDecision::AlreadyGone => Ok(()),
            FenceDecision::Alive(now) => Err(fence_refused(target, observed, now)),
            FenceDecision::Fence => {
                if let Some(m) = s.members.get_mut(&target.gateway) {
                    m.fenced = true;
                }
                Ok(())
            }
        }
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

    async fn delete_topic(&self, name: &str, id: TopicId, deleted_ms: i64) -> Result<()> {
        let mut s = self.lock();
        match s.topics.get(name) {
            Some(t) if t.id == id => {
                let partitions = t.partitions;
                s.topics.remove(name);
                s.deleted.push(DeletedTopic {
                    name: name.to_string(),
                    id,
                    partitions,
                    deleted_ms,
                });
                Ok(())
            }
            _ => Err(Error::NotFound(format!("topic {name} ({id})"))),
        }
    }

    async fn deleted_topics(&self) -> Result<Vec<DeletedTopic>> {
        Ok(self.lock().deleted.clone())
    }

    async fn forget_topic(&self, topic: &DeletedTopic) -> Result<()> {
        let mut s = self.lock();
        s.partitions.retain(|p, _| p.topic != topic.id);
        s.deleted.retain(|d| d.id != topic.id);
        Ok(())
    }

    async fn get_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        Ok(self.lock().topics.get(name).cloned())
    }

    async fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        Ok(self.lock().topics.values().cloned().collect())
    }

    async fn commit_flush(&self, record: &FlushRecord) -> Result<()> {
        let mut s = self.lock();
        s.check_epoch(&record.stream)?;
        let key = (record.stream.clone(), record.seq);
        match commit_outcome(record, s.flushes.get(&key)) {
            CommitOutcome::Landed => Ok(()),
            CommitOutcome::Conflict => Err(commit_conflict(record)),
            CommitOutcome::Absent => {
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
        s.check_epoch(fence)?;
        for cp in checkpoints {
            check_checkpoint(fence, cp.partition, s.owner(cp.partition).as_ref())?;
        }
        for cp in checkpoints {
            s.store(fence, cp, false);
        }
        Ok(())
    }

    async fn claim_partition(
        &self,
        me: &StreamId,
        previous: Option<&StreamId>,
        checkpoint: &PartitionCheckpoint,
    ) -> Result<()> {
        let mut s = self.lock();
        s.check_epoch(me)?;
        let stored = s.owner(checkpoint.partition);
        let owner_record = stored.as_ref().and_then(|o| s.epoch(&o.owner.gateway));
        check_claim(
            me,
            checkpoint.partition,
            previous,
            stored.as_ref(),
            owner_record,
        )?;
        s.store(me, checkpoint, false);
        Ok(())
    }

    async fn release_partitions(
        &self,
        me: &StreamId,
        checkpoints: &[PartitionCheckpoint],
    ) -> Result<()> {
        let mut s = self.lock();
        s.check_epoch(me)?;
        for cp in checkpoints {
            check_release(me, cp.partition, s.owner(cp.partition).as_ref())?;
        }
        for cp in checkpoints {
            s.store(me, cp, true);
        }
        Ok(())
    }

    async fn load_partition_from(
        &self,
        partition: PartitionId,
        from_offset: i64,
    ) -> Result<Option<PartitionSnapshot>> {
        let s = self.lock();
        Ok(s.partitions.get(&partition).map(|x| PartitionSnapshot {
            owner: x.checkpoint.owner.clone(),
            released: x.released,
            checkpoint_seq: x.checkpoint.checkpoint_seq,
            next_offset: x.checkpoint.next_offset,
            log_start_offset: x.checkpoint.log_start_offset,
            producers: x.checkpoint.producers.clone(),
            entries: x
                .index
                .range(from_offset..)
                .map(|(_, e)| e.clone())
                .collect(),
        }))
    }

    async fn index_version(&self, partition: PartitionId) -> Result<u64> {
        Ok(self
            .lock()
            .partitions
            .get(&partition)
            .map_or(0, |x| x.index_version))
    }

    async fn swap_index(
        &self,
        partition: PartitionId,
        version: u64,
        merged: &[IndexEntry],
    ) -> Result<()> {
        let mut s = self.lock();
        let x = s
            .partitions
            .get_mut(&partition)
            .ok_or_else(|| Error::NotFound(format!("partition {partition}")))?;
        check_index_version(partition, x.index_version, version)?;
        for e in merged {
            // What it covers goes with it; an owner storing one of those again
            // later is covered again.
            let covered: Vec<i64> = x
                .index
                .range(e.base_offset..=e.last_offset)
                .map(|(b, _)| *b)
                .collect();
            for b in covered {
                x.index.remove(&b);
            }
            x.index.insert(e.base_offset, e.clone());
        }
        x.index_version += 1;
        Ok(())
    }

    async fn delete_index(&self, partition: PartitionId, entries: &[IndexEntry]) -> Result<()> {
        let mut s = self.lock();
        if let Some(x) = s.partitions.get_mut(&partition) {
            for e in entries {
                if x.index.get(&e.base_offset) == Some(e) {
                    x.index.remove(&e.base_offset);
                }
            }
        }
        Ok(())
    }

    async fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &BTreeMap<i32, CommittedOffset>,
    ) -> Result<()> {
        let mut s = self.lock();
        let stored = s
            .offsets
            .entry(group.to_string())
            .or_default()
            .entry(topic.to_string())
            .or_default();
        stored.extend(offsets.iter().map(|(p, o)| (*p, o.clone())));
        Ok(())
    }

    async fn fetch_offsets(&self, group: &str) -> Result<GroupOffsets> {
        Ok(self.lock().offsets.get(group).cloned().unwrap_or_default())
    }

    async fn delete_offsets(&self, group: &str, topic: &str, partitions: &[i32]) -> Result<()> {
        let mut s = self.lock();
        if let Some(g) = s.offsets.get_mut(group) {
            if let Some(t) = g.get_mut(topic) {
                for p in partitions {
                    t.remove(p);
                }
                if t.is_empty() {
                    g.remove(topic);
                }
            }
            if g.is_empty() {
                s.offsets.remove(group);
            }
        }
        Ok(())
    }

    async fn store_group(&self, group: &str, state: &StoredGroup) -> Result<()> {
        let mut s = self.lock();
        check_group_store(
            group,
            s.groups.get(group).map(|g| g.generation),
            state.generation,
        )?;
        s.groups.insert(group.to_string(), state.clone());
        Ok(())
    }

    async fn load_group(&self, group: &str) -> Result<Option<StoredGroup>> {
        Ok(self.lock().groups.get(group).cloned())
    }

    async fn list_groups(&self) -> Result<Vec<(String, StoredGroup)>> {
        let s = self.lock();
        Ok(s.groups
            .iter()
            .map(|(g, st)| (g.clone(), st.clone()))
            .collect())
    }

    async fn delete_group(&self, group: &str) -> Result<()> {
        let mut s = self.lock();
        s.groups.remove(group);
        s.offsets.remove(group);
        Ok(())
    }

    async fn allocate_producer_ids(&self, count: u64) -> Result<i64> {
        let mut s = self.lock();
        let first = s.next_producer_id;
        s.next_producer_id += count as i64;
        Ok(first)
    }
}
