//! The consumer-group coordinator: Kafka's classic rebalance protocol
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) for the groups this gateway
//! coordinates (`Broker::coordinator_of`).
//!
//! A group moves through Kafka's states: `Empty` → `PreparingRebalance` (members
//! (re)join; the join completes when every known member has rejoined or the
//! rebalance timeout passes) → `CompletingRebalance` (the leader, chosen among
//! the members, computes the assignment client-side and sends it in its
//! SyncGroup) → `Stable`. Any membership change sends the group back to
//! `PreparingRebalance`; every completed join raises the generation, and
//! requests naming another generation get ILLEGAL_GENERATION.
//!
//! Durability: the group's membership is stored in the MetaStore
//! (`store_group`) when a generation completes (before any member learns its
//! assignment), when the group empties and when a static member is replaced.
//! A gateway that becomes the group's coordinator (its previous coordinator
//! died or a gateway joined) loads the stored group and serves it at the same
//! generation: members keep heartbeating and committing without a rebalance.
//! A rebalance in flight when the coordinator moves is restarted by the members'
//! next JoinGroup. Stored writes are conditional on the generation, so a
//! coordinator that lost the group cannot roll it back.
//!
//! Timers (session expiry, rebalance deadlines, groups moving away) are driven
//! by `tick`, which the gateway runs every `TICK`.
//!
//! The KIP-848 protocol (ConsumerGroupHeartbeat) is in `consumer`; a group is
//! of one kind or the other while it has members.

pub mod consumer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use floe_core::types::{StoredGroup, StoredMember};

use consumer::{Beat, BeatAnswer, ConsumerGroup};

use crate::broker::Broker;
use crate::error::Code;

/// How often timers are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
pub const MIN_SESSION_TIMEOUT_MS: i32 = 6_000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    /// The name Kafka uses in ListGroups and DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// A JoinGroup, decoded.
#[derive(Debug, Clone, Default)]
pub struct Join {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub client_id: String,
    pub client_host: String,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

/// What a JoinGroup answers.
#[derive(Debug, Clone, Default)]
pub struct Joined {
    pub error: Option<Code>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// The leader's view of the members (id, instance id, metadata for the
    /// chosen protocol); empty for followers.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// KIP-814: a static leader rejoining a stable group must not reassign.
    pub skip_assignment: bool,
}

impl Joined {
    fn error(code: Code, member_id: &str) -> Self {
        Joined {
            error: Some(code),
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

/// What a SyncGroup answers.
#[derive(Debug, Clone, Default)]
pub struct Synced {
    pub error: Option<Code>,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl Synced {
    fn error(code: Code) -> Self {
        Synced {
            error: Some(code),
            ..Default::default()
        }
    }
}

/// One member of a group, as the rebalance protocol sees it.
#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// Set while its JoinGroup waits for the join to complete.
    join: Option<oneshot::Sender<Joined>>,
    /// Set while its SyncGroup waits for the leader's assignment.
    sync: Option<oneshot::Sender<Synced>>,
    /// When the member's session expires unless it is heard from.
    expires: Instant,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
    fn touch(&mut self, now: Instant) {
        self.expires = now + self.session_timeout;
    }
    fn kept_alive(&self) -> bool {
        self.join.is_some() || self.sync.is_some()
    }
}

/// One group's state on its coordinator.
#[derive(Debug)]
struct Group {
    state: State,
    protocol_type: Option<String>,
    protocol: Option<String>,
    generation: i32,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Static members: `group.instance.id` → current member id.
    statics: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until when they may join.
    pending: HashMap<String, Instant>,
    /// When the join phase ends even if members are missing.
    rebalance_deadline: Option<Instant>,
    /// Set while an empty group's first join waits `group.initial.rebalance.delay`
    /// for more members: the latest the join may be held.
    initial_limit: Option<Instant>,
    /// Whether the MetaStore holds a record of this group.
    stored: bool,
    /// Set for a KIP-848 group (the classic fields above are then unused).
    consumer: Option<ConsumerGroup>,
    /// A KIP-848 group changed since it was last stored.
    dirty: bool,
    /// A store of this group is in flight (`tick` stores one at a time, in order).
    storing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Group {
    fn empty() -> Self {
        Group {
            state: State::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            statics: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_limit: None,
            stored: false,
            consumer: None,
            dirty: false,
            storing: Default::default(),
        }
    }

    /// Whether a KIP-848 group with members holds the group id.
    fn is_consumer_group(&self) -> bool {
        self.consumer
            .as_ref()
            .is_some_and(|c| !c.members.is_empty())
    }

    /// A group as the MetaStore holds it; every member gets a fresh session.
    fn from_stored(s: StoredGroup, now: Instant, consumer_session: Duration) -> Self {
        let mut g = Group::empty();
        g.stored = true;
        if s.consumer_protocol {
            g.consumer = Some(ConsumerGroup::from_stored(&s, now, consumer_session));
            return g;
        }
        g.generation = s.generation;
        g.protocol_type = (!s.protocol_type.is_empty()).then_some(s.protocol_type.clone());
        for m in s.members {
            let session = Duration::from_millis(m.session_timeout_ms.max(0) as u64);
            if let Some(i) = &m.instance_id {
                g.statics.insert(i.clone(), m.member_id.clone());
            }
            g.members.insert(
                m.member_id,
                Member {
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: session,
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                    protocol_type: s.protocol_type.clone(),
                    protocols: m
                        .protocols
                        .into_iter()
                        .map(|(n, b)| (n, Bytes::from(b)))
                        .collect(),
                    assignment: Bytes::from(m.assignment),
                    join: None,
                    sync: None,
                    expires: now + session,
                },
            );
        }
        if !g.members.is_empty() && s.protocol.is_some() {
            g.state = State::Stable;
            g.protocol = s.protocol;
            g.leader = s.leader.filter(|l| g.members.contains_key(l));
        }
        g
    }

    /// The record `store_group` writes.
    fn to_stored(&self, now_ms: i64) -> StoredGroup {
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: self.protocol.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| StoredMember {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout.as_millis() as i32,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    protocols: m
                        .protocols
                        .iter()
                        .map(|(n, b)| (n.clone(), b.to_vec()))
                        .collect(),
                    assignment: m.assignment.to_vec(),
                    ..Default::default()
                })
                .collect(),
            stored_ms: now_ms,
            consumer_protocol: false,
        }
    }

    /// Whether a member with these protocols may join: same protocol type, and
    /// at least one protocol every other member supports too.
    fn supports(&self, joiner: &str, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        let others: Vec<&Member> = self
            .members
            .iter()
            .filter(|(id, _)| id.as_str() != joiner)
            .map(|(_, m)| m)
            .collect();
        if others.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        others.iter().all(|m| m.protocol_type == protocol_type)
            && protocols.iter().any(|(name, _)| {
                others
                    .iter()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// The protocol for the next generation: among those every member
    /// supports, the one most members prefer (each votes for its first
    /// supported choice); ties go to the leader's (or first member's) order.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        let preference = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .unwrap_or(first);
        let mut best: Option<(&String, usize)> = None;
        for (n, _) in &preference.protocols {
            let v = votes.get(n).copied().unwrap_or(0);
            if candidates.contains(&n) && best.is_none_or(|(_, b)| v > b) {
                best = Some((n, v));
            }
        }
        best.map(|(n, _)| n.clone())
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join.is_some())
    }

    /// Sends the group (back) to PreparingRebalance.
    fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == State::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.sync.take() {
                    let _ = tx.send(Synced::error(Code::RebalanceInProgress));
                }
            }
        }
        let longest = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        if self.state == State::Empty && !initial_delay.is_zero() {
            self.initial_limit = Some(now + longest);
            self.rebalance_deadline = Some(now + initial_delay.min(longest));
        } else if self.state != State::PreparingRebalance {
            self.initial_limit = None;
            self.rebalance_deadline = Some(now + longest);
        }
        self.state = State::PreparingRebalance;
    }

    /// A member joined during an empty group's initial delay: wait for more,
    /// up to the longest rebalance timeout.
    fn extend_initial_delay(&mut self, now: Instant, initial_delay: Duration) {
        if let Some(limit) = self.initial_limit {
            self.rebalance_deadline = Some((now + initial_delay).min(limit));
        }
    }

    /// Completes the join if every member is in and no initial delay runs.
    fn maybe_complete_join(&mut self, now: Instant) -> bool {
        if self.state == State::PreparingRebalance
            && self.initial_limit.is_none()
            && self.all_joined()
        {
            self.complete_join(now);
            return true;
        }
        false
    }

    /// Ends the join phase: dynamic members that did not rejoin are dropped,
    /// the generation is raised, the protocol chosen and every waiting member
    /// answered (the leader with the members' metadata). Returns true when the
    /// group became empty (its record must be stored).
    fn complete_join(&mut self, now: Instant) -> bool {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join.is_none() && m.instance_id.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.drop_member(&id);
        }
        self.rebalance_deadline = None;
        self.initial_limit = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            return true;
        }
        self.protocol = self.select_protocol();
        self.protocol_type = self
            .members
            .values()
            .next()
            .map(|m| m.protocol_type.clone());
        let leader_rejoined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.join.is_some());
        if !leader_rejoined {
            self.leader = self
                .members
                .iter()
                .find(|(_, m)| m.join.is_some())
                .or_else(|| self.members.iter().next())
                .map(|(id, _)| id.clone());
        }
        self.state = State::CompletingRebalance;
        let protocol = self.protocol.clone().unwrap_or_default();
        let roster: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
            .collect();
        let leader = self.leader.clone().unwrap_or_default();
        for (id, m) in self.members.iter_mut() {
            m.touch(now);
            if let Some(tx) = m.join.take() {
                let _ = tx.send(Joined {
                    error: None,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        roster.clone()
                    } else {
                        Vec::new()
                    },
                    skip_assignment: false,
                });
            }
        }
        false
    }

    /// The answer to a member that joins a generation already formed.
    fn current(&self, member_id: &str, skip_assignment: bool) -> Joined {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        Joined {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            member_id: member_id.to_string(),
            members: if leader == member_id {
                self.members
                    .iter()
                    .map(|(id, m)| (id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                    .collect()
            } else {
                Vec::new()
            },
            leader,
            skip_assignment,
        }
    }

    /// Removes a member without starting a rebalance; its waiting requests get
    /// UNKNOWN_MEMBER_ID.
    fn drop_member(&mut self, id: &str) -> Option<Member> {
        let mut m = self.members.remove(id)?;
        if let Some(tx) = m.join.take() {
            let _ = tx.send(Joined::error(Code::UnknownMemberId, id));
        }
        if let Some(tx) = m.sync.take() {
            let _ = tx.send(Synced::error(Code::UnknownMemberId));
        }
        if let Some(i) = &m.instance_id
            && self.statics.get(i).is_some_and(|cur| cur == id)
        {
            self.statics.remove(i);
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        Some(m)
    }

    /// Removes a member (left, expired) and rebalances the rest. Returns true
    /// when the group became empty (its record must be stored).
    fn remove_member(&mut self, id: &str, now: Instant, initial_delay: Duration) -> bool {
        if self.drop_member(id).is_none() {
            return false;
        }
        match self.state {
            State::Stable | State::CompletingRebalance => {
                self.prepare_rebalance(now, initial_delay);
                self.maybe_complete_join(now) && self.members.is_empty()
            }
            State::PreparingRebalance => self.maybe_complete_join(now) && self.members.is_empty(),
            State::Empty | State::Dead => false,
        }
    }

    /// Checks that `member_id` (and its static instance id, if any) is a
    /// current member.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), Code> {
        if let Some(i) = instance_id {
            match self.statics.get(i) {
                Some(cur) if cur == member_id => return Ok(()),
                Some(_) => return Err(Code::FencedInstanceId),
                None => return Err(Code::UnknownMemberId),
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(Code::UnknownMemberId)
        }
    }
}

/// A summary of one group for ListGroups and DescribeGroups.
#[derive(Debug, Clone, Default)]
pub struct Described {
    pub state: &'static str,
    pub protocol_type: String,
    /// The chosen protocol while the group is stable.
    pub protocol: String,
    /// Member id, instance id, client id, host, metadata, assignment.
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

/// Every group this gateway coordinates, by id.
#[derive(Debug, Default)]
pub struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Coordinator {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why this gateway will not serve `group` now, if it will not.
    pub fn refuse(broker: &Broker, group: &str) -> Option<Code> {
        if group.is_empty() {
            return Some(Code::InvalidGroupId);
        }
        match broker.coordinator_of(group) {
            Some(m) if m.stream == broker.stream => None,
            Some(_) => Some(Code::NotCoordinator),
            None => Some(Code::CoordinatorNotAvailable),
        }
    }

    /// Makes sure `group` is in memory if the MetaStore holds it; returns
    /// whether it exists. A failed read is COORDINATOR_LOAD_IN_PROGRESS (the
    /// client retries here).
    pub async fn load(&self, broker: &Broker, group: &str) -> Result<bool, Code> {
        if let Some(c) = Self::refuse(broker, group) {
            return Err(c);
        }
        if self.lock().contains_key(group) {
            return Ok(true);
        }
        let stored = broker.meta.load_group(group).await.map_err(|e| {
            tracing::warn!(group, error = %e, "could not load the group");
            Code::CoordinatorLoadInProgress
        })?;
        let Some(stored) = stored else {
            return Ok(self.lock().contains_key(group));
        };
        let now = Instant::now();
        let session = broker.settings.consumer_group_session_timeout;
        self.lock()
            .entry(group.to_string())
            .or_insert_with(|| Group::from_stored(stored, now, session));
        tracing::info!(group, "group loaded");
        Ok(true)
    }

    fn initial_delay(broker: &Broker) -> Duration {
        broker.settings.group_initial_rebalance_delay
    }

    /// Stores a changed group's record in the background: one store per group
    /// in flight at a time, so records land in order, and `delete` can wait
    /// for the one in flight before deleting.
    fn store_dirty(broker: &Broker, id: &str, g: &mut Group) {
        if !g.dirty || g.storing.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        g.dirty = false;
        g.stored = true;
        let now_ms = broker.clock.now_ms();
        let record = match &g.consumer {
            Some(c) => c.to_stored(now_ms),
            None => g.to_stored(now_ms),
        };
        let meta = broker.meta.clone();
        let storing = g.storing.clone();
        let group = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = meta.store_group(&group, &record).await {
                tracing::warn!(%group, error = %e, "could not store the group");
            }
            storing.store(false, std::sync::atomic::Ordering::Release);
        });
    }

    pub async fn join(&self, broker: &Broker, group: &str, j: Join) -> Joined {
        if let Err(c) = self.load(broker, group).await {
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
            let delay = Self::initial_delay(broker);
            let mut groups = self.lock();
            let g = groups.entry(group.to_string()).or_insert_with(Group::empty);
            match self.join_locked(group, g, j, now, delay) {
                Ok(rx) => rx,
                Err(answer) => return answer,
            }
        };
        rx.await
            .unwrap_or_else(|_| Joined::error(Code::NotCoordinator, ""))
    }

    // The Err variant is the immediate answer, built once per request.
    #[allow(clippy::result_large_err)]
    fn join_locked(
        &self,
        group: &str,
        g: &mut Group,
        j: Join,
        now: Instant,
        delay: Duration,
    ) -> Result<oneshot::Receiver<Joined>, Joined> {
        if g.state == State::Dead {
            return Err(Joined::error(Code::CoordinatorNotAvailable, &j.member_id));
        }
        if g.is_consumer_group() {
            return Err(Joined::error(Code::InconsistentGroupProtocol, &j.member_id));
        }
        g.consumer = None;
        if !g.supports(&j.member_id, &j.protocol_type, &j.protocols) {
            return Err(Joined::error(Code::InconsistentGroupProtocol, &j.member_id));
        }
        let session = Duration::from_millis(j.session_timeout_ms as u64);
        let rebalance = Duration::from_millis(j.rebalance_timeout_ms.max(0) as u64);
        let (tx, rx) = oneshot::channel();
        let fresh = |tx| Member {
            instance_id: j.instance_id.clone(),
            client_id: j.client_id.clone(),
            client_host: j.client_host.clone(),
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocol_type: j.protocol_type.clone(),
            protocols: j.protocols.clone(),
            assignment: Bytes::new(),
            join: Some(tx),
            sync: None,
            expires: now + session,
        };
        if j.member_id.is_empty() {
            if let Some(instance) = &j.instance_id {
                if let Some(old_id) = g.statics.get(instance).cloned() {
                    return self.replace_static(group, g, &old_id, j, tx, rx, now, delay);
                }
                let id = new_member_id(instance);
                g.statics.insert(instance.clone(), id.clone());
                g.members.insert(id, fresh(tx));
            } else {
                let prefix = if j.client_id.is_empty() {
                    "consumer"
                } else {
                    &j.client_id
                };
                let id = new_member_id(prefix);
                if j.require_known_member_id {
                    g.pending.insert(id.clone(), now + session);
                    return Err(Joined::error(Code::MemberIdRequired, &id));
                }
                g.members.insert(id, fresh(tx));
            }
            self.after_join(g, now, delay);
            return Ok(rx);
        }
        // A known (or pending) member id.
        if let Some(instance) = &j.instance_id {
            match g.statics.get(instance) {
                Some(cur) if *cur == j.member_id => {}
                Some(_) => return Err(Joined::error(Code::FencedInstanceId, &j.member_id)),
                None => return Err(Joined::error(Code::UnknownMemberId, &j.member_id)),
            }
        }
        if g.pending.remove(&j.member_id).is_some() {
            g.members.insert(j.member_id.clone(), fresh(tx));
            self.after_join(g, now, delay);
            return Ok(rx);
        }
        let Some(m) = g.members.get_mut(&j.member_id) else {
            return Err(Joined::error(Code::UnknownMemberId, &j.member_id));
        };
        let unchanged = m.protocols == j.protocols && m.protocol_type == j.protocol_type;
        m.touch(now);
        match g.state {
            State::CompletingRebalance | State::Stable
                if unchanged
                    && (g.state == State::CompletingRebalance
                        || g.leader.as_deref() != Some(j.member_id.as_str())) =>
            {
                // Nothing changed: the member gets the generation as formed.
                Err(g.current(&j.member_id, false))
            }
            _ => {
                m.protocols = j.protocols;
                m.protocol_type = j.protocol_type;
                m.session_timeout = session;
                m.rebalance_timeout = rebalance;
                m.join = Some(tx);
                self.after_join(g, now, delay);
                Ok(rx)
            }
        }
    }

    /// A member (re)joined: start or extend the rebalance, complete it if
    /// everyone is in.
    fn after_join(&self, g: &mut Group, now: Instant, delay: Duration) {
        match g.state {
            State::PreparingRebalance => g.extend_initial_delay(now, delay),
            _ => g.prepare_rebalance(now, delay),
        }
        g.maybe_complete_join(now);
    }

    /// A static member rejoined without its member id (it restarted): it takes
    /// over its old member id's place under a new id. In a stable group whose
    /// protocol it does not change there is no rebalance: it gets its old
    /// assignment.
    #[allow(clippy::too_many_arguments, clippy::result_large_err)]
    fn replace_static(
        &self,
        group: &str,
        g: &mut Group,
        old_id: &str,
        j: Join,
        tx: oneshot::Sender<Joined>,
        rx: oneshot::Receiver<Joined>,
        now: Instant,
        delay: Duration,
    ) -> Result<oneshot::Receiver<Joined>, Joined> {
        let Some(instance) = j.instance_id.clone() else {
            return Err(Joined::error(Code::UnknownMemberId, ""));
        };
        let Some(mut m) = g.members.remove(old_id) else {
            return Err(Joined::error(Code::UnknownMemberId, ""));
        };
        if let Some(old) = m.join.take() {
            let _ = old.send(Joined::error(Code::FencedInstanceId, old_id));
        }
        if let Some(old) = m.sync.take() {
            let _ = old.send(Synced::error(Code::FencedInstanceId));
        }
        let id = new_member_id(&instance);
        let same_type = m.protocol_type == j.protocol_type;
        m.protocols = j.protocols;
        m.protocol_type = j.protocol_type;
        m.client_id = j.client_id;
        m.client_host = j.client_host;
        m.session_timeout = Duration::from_millis(j.session_timeout_ms as u64);
        m.rebalance_timeout = Duration::from_millis(j.rebalance_timeout_ms.max(0) as u64);
        m.touch(now);
        if g.leader.as_deref() == Some(old_id) {
            g.leader = Some(id.clone());
        }
        g.statics.insert(instance, id.clone());
        tracing::info!(group, old = old_id, new = %id, "static member rejoined");
        g.members.insert(id.clone(), m);
        // As Kafka: a stable group stays stable unless the new member's
        // protocols would change the group's protocol (its metadata may differ:
        // cooperative-sticky members encode what they owned).
        if g.state == State::Stable && same_type && g.select_protocol() == g.protocol {
            g.dirty = true;
            let leader = g.leader.as_deref() == Some(id.as_str());
            return Err(g.current(&id, leader));
        }
        if let Some(m) = g.members.get_mut(&id) {
            m.join = Some(tx);
        }
        self.after_join(g, now, delay);
        Ok(rx)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        broker: &Broker,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Synced {
        match self.load(broker, group).await {
            Ok(true) => {}
            Ok(false) => return Synced::error(Code::UnknownMemberId),
            Err(c) => return Synced::error(c),
        }
        let (rx, record) = {
            let now = Instant::now();
            let mut groups = self.lock();
            let Some(g) = groups.get_mut(group) else {
                return Synced::error(Code::UnknownMemberId);
            };
            if let Err(c) = g.check_member(member_id, instance_id) {
                return Synced::error(c);
            }
            if generation != g.generation {
                return Synced::error(Code::IllegalGeneration);
            }
            if protocol_type.is_some_and(|t| Some(t) != g.protocol_type.as_deref())
                || protocol.is_some_and(|p| Some(p) != g.protocol.as_deref())
            {
                return Synced::error(Code::InconsistentGroupProtocol);
            }
            let leader = g.leader.as_deref() == Some(member_id);
            match g.state {
                State::Empty | State::Dead => return Synced::error(Code::UnknownMemberId),
                State::PreparingRebalance => return Synced::error(Code::RebalanceInProgress),
                State::Stable => {
                    let m = &mut g.members.get_mut(member_id).expect("checked member");
                    m.touch(now);
                    return Synced {
                        error: None,
                        protocol_type: g.protocol_type.clone(),
                        protocol: g.protocol.clone(),
                        assignment: m.assignment.clone(),
                    };
                }
                State::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            if let Some(m) = g.members.get_mut(member_id) {
                m.touch(now);
                m.sync = Some(tx);
            }
            let record = leader.then(|| {
                let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                for (id, m) in g.members.iter_mut() {
                    m.assignment = by_member.remove(id).unwrap_or_default();
                }
                g.to_stored(broker.clock.now_ms())
            });
            (rx, record)
        };
        if let Some(record) = record {
            let stored = broker.meta.store_group(group, &record).await;
            let mut groups = self.lock();
            if let Some(g) = groups.get_mut(group)
                && g.state == State::CompletingRebalance
                && g.generation == record.generation
            {
                match stored {
                    Ok(()) => {
                        g.stored = true;
                        g.state = State::Stable;
                        for m in g.members.values_mut() {
                            if let Some(tx) = m.sync.take() {
                                let _ = tx.send(Synced {
                                    error: None,
                                    protocol_type: g.protocol_type.clone(),
                                    protocol: g.protocol.clone(),
                                    assignment: m.assignment.clone(),
                                });
                            }
                        }
                        tracing::info!(
                            group,
                            generation = g.generation,
                            members = g.members.len(),
                            protocol = g.protocol.as_deref().unwrap_or(""),
                            "group stable"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(group, error = %e, "could not store the group's generation");
                        let code = if e.kind() == floe_core::ErrorKind::Precondition {
                            Code::NotCoordinator
                        } else {
                            Code::CoordinatorNotAvailable
                        };
                        for m in g.members.values_mut() {
                            m.assignment = Bytes::new();
                            if let Some(tx) = m.sync.take() {
                                let _ = tx.send(Synced::error(code));
                            }
                        }
                        g.prepare_rebalance(Instant::now(), Duration::ZERO);
                    }
                }
            }
        }
        rx.await
            .unwrap_or_else(|_| Synced::error(Code::NotCoordinator))
    }

    pub async fn heartbeat(
        &self,
        broker: &Broker,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Option<Code> {
        match self.load(broker, group).await {
            Ok(true) => {}
            Ok(false) => return Some(Code::UnknownMemberId),
            Err(c) => return Some(c),
        }
        let now = Instant::now();
        let mut groups = self.lock();
        let g = groups.get_mut(group)?;
        if let Err(c) = g.check_member(member_id, instance_id) {
            return Some(c);
        }
        if generation != g.generation {
            return Some(Code::IllegalGeneration);
        }
        if let Some(m) = g.members.get_mut(member_id) {
            m.touch(now);
        }
        match g.state {
            State::Empty | State::Dead => Some(Code::UnknownMemberId),
            State::PreparingRebalance => Some(Code::RebalanceInProgress),
            State::CompletingRebalance | State::Stable => None,
        }
    }

    /// LeaveGroup for each (member id, instance id); the per-member errors.
    pub async fn leave(
        &self,
        broker: &Broker,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<Code>>, Code> {
        if !self.load(broker, group).await? {
            return Err(Code::UnknownMemberId);
        }
        let now = Instant::now();
        let delay = Self::initial_delay(broker);
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else {
            return Err(Code::UnknownMemberId);
        };
        let mut out = Vec::with_capacity(members.len());
        let mut emptied = false;
        for (member_id, instance_id) in members {
            let id = match instance_id {
                Some(i) => match g.statics.get(i) {
                    Some(cur) if member_id.is_empty() || cur == member_id => Ok(cur.clone()),
                    Some(_) => Err(Code::FencedInstanceId),
                    None => Err(Code::UnknownMemberId),
                },
                None if g.pending.remove(member_id).is_some() => {
                    out.push(None);
                    continue;
                }
                None if g.members.contains_key(member_id) => Ok(member_id.clone()),
                None => Err(Code::UnknownMemberId),
            };
            match id {
                Ok(id) => {
                    tracing::info!(group, member = %id, "member left");
                    emptied |= g.remove_member(&id, now, delay);
                    out.push(None);
                }
                Err(c) => out.push(Some(c)),
            }
        }
        if emptied {
            g.dirty = true;
        }
        Ok(out)
    }

    /// Checks an OffsetCommit against the group (Kafka's rules): commits
    /// without a generation only for a group with no members; member commits
    /// must name a current member and the current generation. Returns whether
    /// the group must first be recorded (its first commit).
    pub async fn check_commit(
        &self,
        broker: &Broker,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), Code> {
        let exists = self.load(broker, group).await?;
        let record = {
            let now = Instant::now();
            let mut groups = self.lock();
            let g = match groups.get_mut(group) {
                Some(g) => g,
                None if generation < 0 && member_id.is_empty() && !exists => {
                    groups.entry(group.to_string()).or_insert_with(Group::empty)
                }
                None => return Err(Code::IllegalGeneration),
            };
            if g.state == State::Dead {
                return Err(Code::CoordinatorNotAvailable);
            }
            if let Some(c) = g.consumer.as_ref().filter(|c| !c.members.is_empty()) {
                // KIP-848: the member's current epoch (v9 names it).
                if generation < 0 && member_id.is_empty() {
                    return Err(Code::UnknownMemberId);
                }
                c.check_epoch(member_id, generation)?;
                None
            } else if generation < 0 && g.members.is_empty() {
                (!g.stored).then(|| {
                    g.stored = true;
                    g.to_stored(broker.clock.now_ms())
                })
            } else {
                g.check_member(member_id, instance_id)?;
                if generation != g.generation {
                    return Err(Code::IllegalGeneration);
                }
                if g.state == State::CompletingRebalance {
                    return Err(Code::RebalanceInProgress);
                }
                if let Some(m) = g.members.get_mut(member_id) {
                    m.touch(now);
                }
                None
            }
        };
        if let Some(record) = record
            && let Err(e) = broker.meta.store_group(group, &record).await
        {
            tracing::warn!(group, error = %e, "could not record the group");
            if let Some(g) = self.lock().get_mut(group) {
                g.stored = false;
            }
            return Err(Code::CoordinatorNotAvailable);
        }
        Ok(())
    }

    /// OffsetFetch v9 names a KIP-848 member and its epoch: checks them (a
    /// negative epoch asks for no check).
    pub async fn check_fetch(
        &self,
        broker: &Broker,
        group: &str,
        member_id: Option<&str>,
        epoch: i32,
    ) -> Result<(), Code> {
        if epoch < 0 {
            return Ok(());
        }
        self.load(broker, group).await?;
        let groups = self.lock();
        match groups.get(group).and_then(|g| g.consumer.as_ref()) {
            Some(c) => c.check_epoch(member_id.unwrap_or(""), epoch),
            None => Err(Code::UnknownMemberId),
        }
    }

    /// ConsumerGroupHeartbeat (KIP-848).
    pub async fn consumer_heartbeat(&self, broker: &Broker, group: &str, b: Beat) -> BeatAnswer {
        if let Err(c) = self.load(broker, group).await {
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
        let session = broker.settings.consumer_group_session_timeout;
        let topics = |name: &str| broker.topic(name).map(|t| (t.meta.id, t.meta.partitions));
        let now = Instant::now();
        let mut groups = self.lock();
        let g = match groups.get_mut(group) {
            Some(g) => g,
            None if b.epoch == 0 => groups.entry(group.to_string()).or_insert_with(Group::empty),
            None => return BeatAnswer::error(Code::UnknownMemberId, "the group does not exist"),
        };
        if !g.members.is_empty() {
            return BeatAnswer::error(
                Code::InconsistentGroupProtocol,
                "the group has members of the classic protocol",
            );
        }
        let c = g.consumer.get_or_insert_with(ConsumerGroup::default);
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
    pub async fn describe(&self, broker: &Broker, group: &str) -> Result<Option<Described>, Code> {
        if !self.load(broker, group).await? {
            return Ok(None);
        }
        let groups = self.lock();
        let Some(g) = groups.get(group) else {
            return Ok(None);
        };
        if let Some(c) = &g.consumer {
            return Ok(Some(describe_consumer(broker, c)));
        }
        let stable = g.state == State::Stable;
        let protocol = g.protocol.clone().unwrap_or_default();
        Ok(Some(Described {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .iter()
                .map(|(id, m)| DescribedMember {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }))
    }

    /// Every group this gateway coordinates: (id, protocol type, state).
    pub async fn list(&self, broker: &Broker) -> Result<Vec<(String, String, &'static str)>, Code> {
        let stored = broker.meta.list_groups().await.map_err(|e| {
            tracing::warn!(error = %e, "could not list groups");
            Code::CoordinatorNotAvailable
        })?;
        let mine = |id: &str| Self::refuse(broker, id).is_none();
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
        for (id, g) in groups.iter() {
            if let Some(c) = &g.consumer {
                if mine(id) {
                    out.insert(id.clone(), ("consumer".to_string(), c.state()));
                }
            } else if mine(id) && g.state != State::Dead && (g.stored || !g.members.is_empty()) {
                out.insert(
                    id.clone(),
                    (g.protocol_type.clone().unwrap_or_default(), g.state.name()),
                );
            }
        }
        Ok(out.into_iter().map(|(id, (t, s))| (id, t, s)).collect())
    }

    /// DeleteGroups for one group: only an empty group can be deleted.
    pub async fn delete(&self, broker: &Broker, group: &str) -> Option<Code> {
        let exists = match self.load(broker, group).await {
            Ok(e) => e,
            Err(c) => return Some(c),
        };
        // Taken out of memory first, so no new store of it starts; then a
        // store already in flight is waited for, so it cannot re-create the
        // record after the delete.
        let storing = {
            let mut groups = self.lock();
            match groups.get(group) {
                Some(g) if !g.members.is_empty() || g.is_consumer_group() => {
                    return Some(Code::NonEmptyGroup);
                }
                Some(_) => groups.remove(group).map(|g| g.storing),
                None => None,
            }
        };
        if let Some(storing) = storing {
            let deadline = Instant::now() + Duration::from_secs(10);
            while storing.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let has_offsets = match broker.meta.fetch_offsets(group).await {
            Ok(o) => !o.is_empty(),
            Err(e) => {
                tracing::warn!(group, error = %e, "could not read the group's offsets");
                return Some(Code::CoordinatorNotAvailable);
            }
        };
        if !exists && !has_offsets {
            return Some(Code::GroupIdNotFound);
        }
        if let Err(e) = broker.meta.delete_group(group).await {
            tracing::warn!(group, error = %e, "could not delete the group");
            return Some(Code::CoordinatorNotAvailable);
        }
        tracing::info!(group, "group deleted");
        None
    }

    /// Runs the timers: expired sessions and pending member ids, rebalance
    /// deadlines, and groups whose coordinator is now another gateway (they
    /// are dropped; their waiting requests get NOT_COORDINATOR).
    pub fn tick(&self, broker: &Broker) {
        let now = Instant::now();
        let delay = Self::initial_delay(broker);
        let mut groups = self.lock();
        groups.retain(|id, g| {
            if Self::refuse(broker, id).is_some() {
                for m in g.members.values_mut() {
                    if let Some(tx) = m.join.take() {
                        let _ = tx.send(Joined::error(Code::NotCoordinator, ""));
                    }
                    if let Some(tx) = m.sync.take() {
                        let _ = tx.send(Synced::error(Code::NotCoordinator));
                    }
                }
                tracing::info!(group = %id, "group moved to another coordinator");
                return false;
            }
            true
        });
        for (id, g) in groups.iter_mut() {
            if let Some(c) = g.consumer.as_mut() {
                for m in c.expire(now) {
                    tracing::info!(group = %id, member = %m, "consumer group member expired");
                    g.dirty = true;
                }
                Self::store_dirty(broker, id, g);
                continue;
            }
            g.pending.retain(|_, until| *until > now);
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| m.expires <= now && !m.kept_alive())
                .map(|(id, _)| id.clone())
                .collect();
            let mut emptied = false;
            for m in expired {
                tracing::info!(group = %id, member = %m, "member session expired");
                emptied |= g.remove_member(&m, now, delay);
            }
            if g.state == State::PreparingRebalance {
                let due = g.rebalance_deadline.is_some_and(|d| d <= now);
                if due {
                    g.initial_limit = None;
                    emptied |= g.complete_join(now);
                } else {
                    g.maybe_complete_join(now);
                }
            }
            if emptied {
                g.dirty = true;
            }
            Self::store_dirty(broker, id, g);
        }
    }
}

/// DescribeGroups for a KIP-848 group: members with their partitions encoded
/// as a classic consumer assignment, so older tools can read them.
fn describe_consumer(broker: &Broker, c: &ConsumerGroup) -> Described {
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let encode = |a: &consumer::Assignment| -> Bytes {
        let mut cpa = ConsumerProtocolAssignment::default();
        for (id, ps) in a {
            let Some(t) = broker.topic_by_id(id) else {
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
