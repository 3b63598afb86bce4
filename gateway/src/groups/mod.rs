//! The consumer-group coordinator: the groups this gateway coordinates
//! (`Cluster::coordinator_of`) and their committed offsets. A group speaks
//! one of two protocols, each a state machine of its own: Kafka's classic
//! rebalance protocol (`classic`: JoinGroup, SyncGroup, Heartbeat, LeaveGroup)
//! or KIP-848's (`consumer`: ConsumerGroupHeartbeat, server-side assignment).
//! A group switches protocol only while it has no members. This module loads
//! and stores groups, runs their timers and routes requests to them.
//!
//! Durability: a group's membership is stored in the MetaStore
//! (`store_group`) when a classic generation completes (before any member
//! learns its assignment), when a group empties, when a static member is
//! replaced, when a group first commits offsets, and when a KIP-848 group
//! changes what a new coordinator needs (epochs, members, partitions,
//! subscriptions). A gateway that becomes the group's coordinator (its
//! previous coordinator died or a gateway joined) loads the stored group and
//! serves it at the same generation: members keep heartbeating and committing
//! without a rebalance. A rebalance in flight when the coordinator moves is
//! restarted by the members' next JoinGroup. Stored writes are conditional on
//! the generation, so a coordinator that lost the group cannot roll it back.
//! Background stores run one at a time per group, in order; a store that
//! failed on a retriable error is retried at the next tick.
//!
//! Timers (session expiry, rebalance deadlines, groups moving away) are driven
//! by `tick`, which the gateway runs every `TICK`.

pub mod classic;
pub mod consumer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use floe_core::clock::SharedClock;
use floe_core::meta::SharedMetaStore;
use floe_core::types::{CommittedOffset, GroupOffsets, StoredGroup};

use classic::{ClassicGroup, SyncStep};
pub use classic::{Join, Joined, State, Synced};
use consumer::{Beat, BeatAnswer, ConsumerGroup};

use crate::cluster::Cluster;
use crate::error::Code;
use crate::topics::Topics;

/// How often timers are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
pub const MIN_SESSION_TIMEOUT_MS: i32 = 6_000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;

/// The coordinator's settings.
#[derive(Debug, Clone, Copy)]
pub struct GroupSettings {
    /// Kafka's `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// KIP-848: `group.consumer.session.timeout.ms`.
    pub consumer_session_timeout: Duration,
}

/// A summary of one group for ListGroups and DescribeGroups.
#[derive(Debug, Clone, Default)]
pub struct Described {
    pub state: &'static str,
    pub protocol_type: String,
    /// The chosen protocol while the group is stable.
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

#[derive(Debug, Clone, Default)]
pub struct DescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// The protocol a group speaks.
#[derive(Debug)]
enum Protocol {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
}

/// One group on its coordinator.
#[derive(Debug)]
struct Group {
    protocol: Protocol,
    /// Whether the MetaStore holds a record of this group.
    stored: bool,
    /// Changed since it was last stored.
    dirty: bool,
    /// A store of this group is in flight (`tick` stores one at a time, in order).
    storing: Arc<AtomicBool>,
    /// The last background store failed retriably: store again.
    failed: Arc<AtomicBool>,
}

impl Group {
    fn empty() -> Self {
        Group::of(Protocol::Classic(ClassicGroup::empty_after(0)), false)
    }

    fn of(protocol: Protocol, stored: bool) -> Self {
        Group {
            protocol,
            stored,
            dirty: false,
            storing: Default::default(),
            failed: Default::default(),
        }
    }

    fn from_stored(s: StoredGroup, now: Instant, consumer_session: Duration) -> Self {
        let protocol = if s.consumer_protocol {
            Protocol::Consumer(ConsumerGroup::from_stored(&s, now, consumer_session))
        } else {
            Protocol::Classic(ClassicGroup::from_stored(s, now))
        };
        Group::of(protocol, true)
    }

    fn has_members(&self) -> bool {
        match &self.protocol {
            Protocol::Classic(c) => !c.is_empty(),
            Protocol::Consumer(c) => !c.members.is_empty(),
        }
    }

    fn to_stored(&self, now_ms: i64) -> StoredGroup {
        match &self.protocol {
            Protocol::Classic(c) => c.to_stored(now_ms),
            Protocol::Consumer(c) => c.to_stored(now_ms),
        }
    }

    /// The classic group, switching an empty KIP-848 group over; `None` while
    /// KIP-848 members hold the group.
    fn classic(&mut self) -> Option<&mut ClassicGroup> {
        if let Protocol::Consumer(c) = &self.protocol {
            if !c.members.is_empty() {
                return None;
            }
            self.protocol = Protocol::Classic(ClassicGroup::empty_after(c.epoch));
        }
        match &mut self.protocol {
            Protocol::Classic(c) => Some(c),
            Protocol::Consumer(_) => None,
        }
    }

    /// The KIP-848 group, switching an empty classic group over; `None` while
    /// classic members hold the group.
    fn consumer(&mut self) -> Option<&mut ConsumerGroup> {
        if let Protocol::Classic(c) = &self.protocol {
            if !c.is_empty() {
                return None;
            }
            self.protocol = Protocol::Consumer(ConsumerGroup {
                epoch: c.generation(),
                ..ConsumerGroup::default()
            });
        }
        match &mut self.protocol {
            Protocol::Consumer(c) => Some(c),
            Protocol::Classic(_) => None,
        }
    }

    /// Takes what the classic state machine marked for storing.
    fn note_changes(&mut self) {
        if let Protocol::Classic(c) = &mut self.protocol
            && std::mem::take(&mut c.changed)
        {
            self.dirty = true;
        }
    }
}

/// Every group this gateway coordinates, by id.
#[derive(Debug)]
pub struct Coordinator {
    cluster: Arc<Cluster>,
    topics: Arc<Topics>,
    meta: SharedMetaStore,
    clock: SharedClock,
    settings: GroupSettings,
    groups: Mutex<HashMap<String, Group>>,
}

impl Coordinator {
    pub fn new(
        cluster: Arc<Cluster>,
        topics: Arc<Topics>,
        meta: SharedMetaStore,
        clock: SharedClock,
        settings: GroupSettings,
    ) -> Self {
        Coordinator {
            cluster,
            topics,
            meta,
            clock,
            settings,
            groups: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why this gateway will not serve `group` now, if it will not.
    pub fn refuse(&self, group: &str) -> Option<Code> {
        if group.is_empty() {
            return Some(Code::InvalidGroupId);
        }
        match self.cluster.coordinator_of(group) {
            Some(m) if m.stream == *self.cluster.me() => None,
            Some(_) => Some(Code::NotCoordinator),
            None => Some(Code::CoordinatorNotAvailable),
        }
    }

    /// Makes sure `group` is in memory if the MetaStore holds it; returns
    /// whether it exists. A failed read is COORDINATOR_LOAD_IN_PROGRESS (the
    /// client retries here).
    pub async fn load(&self, group: &str) -> Result<bool, Code> {
        if let Some(c) = self.refuse(group) {
            return Err(c);
        }
        if self.lock().contains_key(group) {
            return Ok(true);
        }
        let stored = self.meta.load_group(group).await.map_err(|e| {
            tracing::warn!(group, error = %e, "could not load the group");
            Code::CoordinatorLoadInProgress
        })?;
        let Some(stored) = stored else {
            return Ok(self.lock().contains_key(group));
        };
        let now = Instant::now();
        let session = self.settings.consumer_session_timeout;
        self.lock()
            .entry(group.to_string())
            .or_insert_with(|| Group::from_stored(stored, now, session));
        tracing::info!(group, "group loaded");
        Ok(true)
    }

    /// Stores a changed group's record in the background: one store per group
    /// in flight at a time, so records land in order, and `delete` can wait
    /// for the one in flight before deleting.
    fn store_dirty(&self, id: &str, g: &mut Group) {
        if g.failed.swap(false, Ordering::AcqRel) {
            g.dirty = true;
        }
        if !g.dirty || g.storing.swap(true, Ordering::AcqRel) {
            return;
        }
        g.dirty = false;
        g.stored = true;
        let record = g.to_stored(self.clock.now_ms());
        let meta = self.meta.clone();
        let (storing, failed) = (g.storing.clone(), g.failed.clone());
        let group = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = meta.store_group(&group, &record).await {
                tracing::warn!(%group, error = %e, "could not store the group");
                // A newer generation stored elsewhere (Precondition) means
                // the group moved: storing again would not help.
                failed.store(e.is_retriable(), Ordering::Release);
            }
            storing.store(false, Ordering::Release);
        });
    }

    pub async fn join(&self, group: &str, j: Join) -> Joined {
        if let Err(c) = self.load(group).await {
            return Joined::error(c, &j.member_id);
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&j.session_timeout_ms) {
            return Joined::error(Code::InvalidSessionTimeout, &j.member_id);
        }
        if j.protocol_type.is_empty() || j.protocols.is_empty() {
            return Joined::error(Code::InconsistentGroupProtocol, &j.member_id);
        }
        let rx = {
            let now = Instant::now();
            let mut groups = self.lock();
            let g = groups.entry(group.to_string()).or_insert_with(Group::empty);
            let Some(c) = g.classic() else {
                return Joined::error(Code::InconsistentGroupProtocol, &j.member_id);
            };
            let joined = c.join(group, j, now, self.settings.initial_rebalance_delay);
            g.note_changes();
            match joined {
                Ok(rx) => rx,
                Err(answer) => return answer,
            }
        };
        rx.await
            .unwrap_or_else(|_| Joined::error(Code::NotCoordinator, ""))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Synced {
        match self.load(group).await {
            Ok(true) => {}
            Ok(false) => return Synced::error(Code::UnknownMemberId),
            Err(c) => return Synced::error(c),
        }
        let step = {
            let mut groups = self.lock();
            match groups.get_mut(group).map(|g| &mut g.protocol) {
                Some(Protocol::Classic(c)) => c.sync(
                    generation,
                    member_id,
                    instance_id,
                    protocol_type,
                    protocol,
                    assignments,
                    Instant::now(),
                    self.clock.now_ms(),
                ),
                _ => return Synced::error(Code::UnknownMemberId),
            }
        };
        let rx = match step {
            SyncStep::Answer(a) => return a,
            SyncStep::Wait(rx, None) => rx,
            SyncStep::Wait(rx, Some(record)) => {
                let stored = self.meta.store_group(group, &record).await;
                let outcome = stored.as_ref().map(|_| ()).map_err(|e| {
                    tracing::warn!(group, error = %e, "could not store the group's generation");
                    if e.kind() == floe_core::ErrorKind::Precondition {
                        Code::NotCoordinator
                    } else {
                        Code::CoordinatorNotAvailable
                    }
                });
                let mut groups = self.lock();
                if let Some(g) = groups.get_mut(group)
                    && let Protocol::Classic(c) = &mut g.protocol
                    && c.stored(record.generation, outcome, Instant::now())
                {
                    g.stored = true;
                    let (_, chosen) = c.protocol();
                    tracing::info!(
                        group,
                        generation = c.generation(),
                        members = record.members.len(),
                        protocol = chosen,
                        "group stable"
                    );
                }
                rx
            }
        };
        rx.await
            .unwrap_or_else(|_| Synced::error(Code::NotCoordinator))
    }

    pub async fn heartbeat(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Option<Code> {
        match self.load(group).await {
            Ok(true) => {}
            Ok(false) => return Some(Code::UnknownMemberId),
            Err(c) => return Some(c),
        }
        let mut groups = self.lock();
        match &mut groups.get_mut(group)?.protocol {
            Protocol::Classic(c) => c.heartbeat(generation, member_id, instance_id, Instant::now()),
            Protocol::Consumer(_) => Some(Code::UnknownMemberId),
        }
    }

    /// LeaveGroup for each (member id, instance id); the per-member errors.
    pub async fn leave(
        &self,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<Code>>, Code> {
        if !self.load(group).await? {
            return Err(Code::UnknownMemberId);
        }
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else {
            return Err(Code::UnknownMemberId);
        };
        let Protocol::Classic(c) = &mut g.protocol else {
            // KIP-848 members leave with a heartbeat: none of these is a
            // classic member.
            return Ok(vec![Some(Code::UnknownMemberId); members.len()]);
        };
        let out = c.leave(
            group,
            members,
            Instant::now(),
            self.settings.initial_rebalance_delay,
        );
        g.note_changes();
        Ok(out)
    }

    /// Checks an OffsetCommit against the group (Kafka's rules): commits
    /// without a generation only for a group with no members; member commits
    /// must name a current member and the current generation (KIP-848: the
    /// member's epoch). A group's first commit records it, so ListGroups
    /// lists it.
    pub async fn check_commit(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), Code> {
        let exists = self.load(group).await?;
        let generationless = generation < 0 && member_id.is_empty();
        let record = {
            let now = Instant::now();
            let mut groups = self.lock();
            let g = match groups.get_mut(group) {
                Some(g) => g,
                None if generationless && !exists => {
                    groups.entry(group.to_string()).or_insert_with(Group::empty)
                }
                None => return Err(Code::IllegalGeneration),
            };
            let members = g.has_members();
            match &mut g.protocol {
                Protocol::Classic(c) if c.state() == State::Dead => {
                    return Err(Code::CoordinatorNotAvailable);
                }
                // KIP-848: the member's current epoch (v9 names it).
                Protocol::Consumer(c) if members => {
                    if generationless {
                        return Err(Code::UnknownMemberId);
                    }
                    c.check_epoch(member_id, generation)?;
                    None
                }
                _ if generation < 0 && !members => (!g.stored).then(|| {
                    g.stored = true;
                    g.to_stored(self.clock.now_ms())
                }),
                Protocol::Classic(c) => {
                    c.check_member_commit(generation, member_id, instance_id, now)?;
                    None
                }
                Protocol::Consumer(_) => return Err(Code::UnknownMemberId),
            }
        };
        if let Some(record) = record
            && let Err(e) = self.meta.store_group(group, &record).await
        {
            tracing::warn!(group, error = %e, "could not record the group");
            if let Some(g) = self.lock().get_mut(group) {
                g.stored = false;
            }
            return Err(Code::CoordinatorNotAvailable);
        }
        Ok(())
    }

    /// OffsetFetch v9 names the member and its epoch: a KIP-848 group's are
    /// checked (a negative epoch asks for no check). A classic group's are
    /// not, as in Kafka: clients such as franz-go send their classic member id
    /// and generation, and the offsets are the group's whoever asks.
    pub async fn check_fetch(
        &self,
        group: &str,
        member_id: Option<&str>,
        epoch: i32,
    ) -> Result<(), Code> {
        if epoch < 0 {
            return Ok(());
        }
        self.load(group).await?;
        let groups = self.lock();
        match groups.get(group).map(|g| &g.protocol) {
            Some(Protocol::Consumer(c)) => c.check_epoch(member_id.unwrap_or(""), epoch),
            Some(Protocol::Classic(_)) | None => Ok(()),
        }
    }

    /// ConsumerGroupHeartbeat (KIP-848).
    pub async fn consumer_heartbeat(&self, group: &str, b: Beat) -> BeatAnswer {
        if let Err(c) = self.load(group).await {
            return BeatAnswer::error(c, "this gateway does not coordinate the group now");
        }
        if b.regex.as_deref().is_some_and(|r| !r.is_empty()) {
            return BeatAnswer::error(
                Code::InvalidRequest,
                "Floe does not support regular-expression subscriptions with the consumer group protocol; subscribe to topic names",
            );
        }
        if let Some(a) = &b.assignor
            && !consumer::ASSIGNORS.contains(&a.as_str())
        {
            return BeatAnswer::error(
                Code::UnsupportedAssignor,
                format!("assignor {a:?} is not one of {:?}", consumer::ASSIGNORS),
            );
        }
        if b.epoch == 0 && b.rebalance_timeout_ms <= 0 {
            return BeatAnswer::error(Code::InvalidRequest, "rebalance timeout must be positive");
        }
        let session = self.settings.consumer_session_timeout;
        let topics = |name: &str| {
            self.topics
                .get(name)
                .map(|t| (t.meta.id, t.meta.partitions))
        };
        let now = Instant::now();
        let mut groups = self.lock();
        let g = match groups.get_mut(group) {
            Some(g) => g,
            None if b.epoch == 0 => groups.entry(group.to_string()).or_insert_with(Group::empty),
            None => return BeatAnswer::error(Code::UnknownMemberId, "the group does not exist"),
        };
        let Some(c) = g.consumer() else {
            return BeatAnswer::error(
                Code::InconsistentGroupProtocol,
                "the group has members of the classic protocol",
            );
        };
        let before = c.to_stored(0);
        let answer = c.heartbeat(b, topics, now, session);
        if c.epoch != before.generation {
            tracing::info!(
                group,
                epoch = c.epoch,
                members = c.members.len(),
                "consumer group epoch"
            );
        }
        // Stored only when what a new coordinator needs changed: most
        // heartbeats change nothing and cost no write.
        if c.to_stored(0) != before {
            g.dirty = true;
        }
        answer
    }

    /// DescribeGroups for one group: `None` if it does not exist.
    pub async fn describe(&self, group: &str) -> Result<Option<Described>, Code> {
        if !self.load(group).await? {
            return Ok(None);
        }
        let groups = self.lock();
        Ok(groups.get(group).map(|g| match &g.protocol {
            Protocol::Classic(c) => c.describe(),
            Protocol::Consumer(c) => self.describe_consumer(c),
        }))
    }

    /// Every group this gateway coordinates: (id, protocol type, state).
    pub async fn list(&self) -> Result<Vec<(String, String, &'static str)>, Code> {
        let stored = self.meta.list_groups().await.map_err(|e| {
            tracing::warn!(error = %e, "could not list groups");
            Code::CoordinatorNotAvailable
        })?;
        let mine = |id: &str| self.refuse(id).is_none();
        let groups = self.lock();
        let mut out: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
        for (id, s) in stored {
            if mine(&id) && !groups.contains_key(&id) {
                let state =
                    if s.members.is_empty() || (s.protocol.is_none() && !s.consumer_protocol) {
                        State::Empty
                    } else {
                        State::Stable
                    };
                out.insert(id, (s.protocol_type, state.name()));
            }
        }
        for (id, g) in groups.iter().filter(|(id, _)| mine(id)) {
            match &g.protocol {
                Protocol::Consumer(c) => {
                    out.insert(id.clone(), ("consumer".to_string(), c.state()));
                }
                Protocol::Classic(c) if c.state() != State::Dead && (g.stored || !c.is_empty()) => {
                    out.insert(
                        id.clone(),
                        (c.protocol_type().to_string(), c.state().name()),
                    );
                }
                Protocol::Classic(_) => {}
            }
        }
        Ok(out.into_iter().map(|(id, (t, s))| (id, t, s)).collect())
    }

    /// DeleteGroups for one group: only an empty group can be deleted; its
    /// committed offsets go with it.
    pub async fn delete(&self, group: &str) -> Option<Code> {
        let exists = match self.load(group).await {
            Ok(e) => e,
            Err(c) => return Some(c),
        };
        // Taken out of memory first, so no new store of it starts; then a
        // store already in flight is waited for, so it cannot re-create the
        // record after the delete.
        let storing = {
            let mut groups = self.lock();
            match groups.get(group) {
                Some(g) if g.has_members() => return Some(Code::NonEmptyGroup),
                Some(_) => groups.remove(group).map(|g| g.storing),
                None => None,
            }
        };
        if let Some(storing) = storing {
            let deadline = Instant::now() + Duration::from_secs(10);
            while storing.load(Ordering::Acquire) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let has_offsets = match self.meta.fetch_offsets(group).await {
            Ok(o) => !o.is_empty(),
            Err(e) => {
                tracing::warn!(group, error = %e, "could not read the group's offsets");
                return Some(Code::CoordinatorNotAvailable);
            }
        };
        if !exists && !has_offsets {
            return Some(Code::GroupIdNotFound);
        }
        if let Err(e) = self.meta.delete_group(group).await {
            tracing::warn!(group, error = %e, "could not delete the group");
            return Some(Code::CoordinatorNotAvailable);
        }
        tracing::info!(group, "group deleted");
        None
    }

    /// Stores `group`'s committed offsets for partitions of `topic` (one
    /// write per group and topic).
    pub async fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &BTreeMap<i32, CommittedOffset>,
    ) -> floe_core::Result<()> {
        self.meta.commit_offsets(group, topic, offsets).await
    }

    /// Every committed offset of `group`.
    pub async fn fetch_offsets(&self, group: &str) -> floe_core::Result<GroupOffsets> {
        self.meta.fetch_offsets(group).await
    }

    /// Forgets `group`'s committed offsets for `partitions` of `topic`.
    pub async fn delete_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> floe_core::Result<()> {
        self.meta.delete_offsets(group, topic, partitions).await
    }

    /// Runs the timers: expired sessions and pending member ids, rebalance
    /// deadlines, and groups whose coordinator is now another gateway (they
    /// are dropped; their waiting requests get NOT_COORDINATOR).
    pub fn tick(&self) {
        let now = Instant::now();
        let delay = self.settings.initial_rebalance_delay;
        let mut groups = self.lock();
        groups.retain(|id, g| {
            if self.refuse(id).is_none() {
                return true;
            }
            if let Protocol::Classic(c) = &mut g.protocol {
                c.abandon();
            }
            tracing::info!(group = %id, "group moved to another coordinator");
            false
        });
        for (id, g) in groups.iter_mut() {
            match &mut g.protocol {
                Protocol::Consumer(c) => {
                    for m in c.expire(now) {
                        tracing::info!(group = %id, member = %m, "consumer group member expired");
                        g.dirty = true;
                    }
                }
                Protocol::Classic(c) => {
                    c.tick(id, now, delay);
                    g.note_changes();
                }
            }
            self.store_dirty(id, g);
        }
    }

    /// DescribeGroups for a KIP-848 group: members with their partitions
    /// encoded as a classic consumer assignment, so older tools can read them.
    fn describe_consumer(&self, c: &ConsumerGroup) -> Described {
        use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
        use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let encode = |a: &consumer::Assignment| -> Bytes {
            let mut cpa = ConsumerProtocolAssignment::default();
            for (id, ps) in a {
                let Some(t) = self.topics.by_id(id) else {
                    continue;
                };
                let mut tp = TopicPartition::default();
                tp.topic = TopicName(StrBytes::from_string(t.meta.name.clone()));
                tp.partitions = ps.iter().copied().collect();
                cpa.assigned_partitions.push(tp);
            }
            let mut buf = bytes::BytesMut::new();
            buf.extend_from_slice(&0i16.to_be_bytes());
            match cpa.encode(&mut buf, 0) {
                Ok(()) => buf.freeze(),
                Err(_) => Bytes::new(),
            }
        };
        Described {
            state: c.state(),
            protocol_type: "consumer".into(),
            protocol: String::new(),
            members: c
                .members
                .iter()
                .map(|(id, m)| DescribedMember {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: Bytes::new(),
                    assignment: encode(&m.assigned),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_core::clock::SystemClock;
    use floe_core::fault::{Fault, Faults, FaultyMetaStore};
    use floe_core::meta::MemoryMetaStore;
    use floe_core::settings::Settings;
    use floe_core::types::{GatewayInfo, Member, StreamId};

    fn coordinator(meta: SharedMetaStore) -> Coordinator {
        let me = StreamId {
            gateway: "gw".into(),
            epoch: 1,
        };
        let info = GatewayInfo::at("127.0.0.1:9092");
        let cluster =
            Arc::new(Cluster::new(me.clone(), info.clone(), "c".into()).expect("cluster"));
        cluster.set_view(vec![Member {
            stream: me,
            info,
            heartbeat: 0,
            fenced: false,
        }]);
        let clock: SharedClock = Arc::new(SystemClock);
        let topics = Arc::new(Topics::new(
            meta.clone(),
            clock.clone(),
            Settings::default(),
        ));
        Coordinator::new(
            cluster,
            topics,
            meta,
            clock,
            GroupSettings {
                initial_rebalance_delay: Duration::ZERO,
                consumer_session_timeout: Duration::from_secs(45),
            },
        )
    }

    fn beat(member: &str, epoch: i32) -> Beat {
        Beat {
            member_id: member.into(),
            epoch,
            rebalance_timeout_ms: 30_000,
            subscribed: Some(vec!["t".into()]),
            ..Beat::default()
        }
    }

    /// Background stores until `group` is stored at `generation` or more.
    async fn stored(c: &Coordinator, meta: &SharedMetaStore, group: &str) -> Option<StoredGroup> {
        for _ in 0..200 {
            c.tick();
            tokio::time::sleep(Duration::from_millis(5)).await;
            if let Some(s) = meta.load_group(group).await.expect("load") {
                return Some(s);
            }
        }
        None
    }

    /// A background store that fails on a retriable error is not lost: the
    /// next tick stores the group again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_background_store_is_retried() {
        let faults = Faults::new();
        let meta: SharedMetaStore = Arc::new(FaultyMetaStore::new(
            Arc::new(MemoryMetaStore::new()),
            faults.clone(),
        ));
        let c = coordinator(meta.clone());
        faults.set("meta.groups", Fault::Unavailable, Some(1));
        let a = c.consumer_heartbeat("g", beat("m1", 0)).await;
        assert_eq!(a.error, None);
        let s = stored(&c, &meta, "g")
            .await
            .expect("stored after the failure");
        assert_eq!(faults.hits("meta.groups"), 1, "the first store failed");
        assert!(s.consumer_protocol);
        assert_eq!(s.members.len(), 1);
    }

    /// An empty group switches protocol, and its stored generation keeps
    /// rising across the switch, so the conditional store accepts it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_group_switches_protocol_with_a_rising_generation() {
        let meta: SharedMetaStore = Arc::new(MemoryMetaStore::new());
        let c = coordinator(meta.clone());
        let a = c.consumer_heartbeat("g", beat("m1", 0)).await;
        assert_eq!(a.error, None);
        let first = stored(&c, &meta, "g").await.expect("stored").generation;
        // The KIP-848 member leaves (epoch -1): the group is empty.
        let left = c.consumer_heartbeat("g", beat(&a.member_id, -1)).await;
        assert_eq!(left.error, None);
        // A classic member may now join; its generation follows the epoch.
        let joined = c
            .join(
                "g",
                Join {
                    protocol_type: "consumer".into(),
                    protocols: vec![("range".into(), Bytes::new())],
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 10_000,
                    ..Join::default()
                },
            )
            .await;
        assert_eq!(joined.error, None);
        assert!(joined.generation > first, "{} > {first}", joined.generation);
        // While classic members hold it, a KIP-848 member is refused.
        let refused = c.consumer_heartbeat("g", beat("m2", 0)).await;
        assert_eq!(refused.error, Some(Code::InconsistentGroupProtocol));
    }

    /// LeaveGroup names classic members: in a KIP-848 group each is unknown
    /// (per member, as Kafka answers v3+), and the group is untouched.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leave_group_on_a_kip848_group_answers_per_member() {
        let meta: SharedMetaStore = Arc::new(MemoryMetaStore::new());
        let c = coordinator(meta);
        let a = c.consumer_heartbeat("g", beat("m1", 0)).await;
        let out = c
            .leave("g", &[(a.member_id.clone(), None), ("x".into(), None)])
            .await;
        assert_eq!(
            out,
            Ok(vec![
                Some(Code::UnknownMemberId),
                Some(Code::UnknownMemberId)
            ])
        );
        let again = c.consumer_heartbeat("g", beat(&a.member_id, a.epoch)).await;
        assert_eq!(again.error, None, "the member is still in the group");
    }
}
