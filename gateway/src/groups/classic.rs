//! Kafka's classic rebalance protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) for one group, as a state machine: no I/O, no locks, time
//! passed in. The coordinator (`super`) loads and stores the group and runs
//! the timers.
//!
//! A group moves through Kafka's states: `Empty` → `PreparingRebalance` (members
//! (re)join; the join completes when every known member has rejoined or the
//! rebalance timeout passes) → `CompletingRebalance` (the leader, chosen among
//! the members, computes the assignment client-side and sends it in its
//! SyncGroup) → `Stable`. Any membership change sends the group back to
//! `PreparingRebalance`; every completed join raises the generation, and
//! requests naming another generation get ILLEGAL_GENERATION. Static members
//! (`group.instance.id`) keep their place across restarts.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use floe_core::types::{StoredGroup, StoredMember};

use super::{Described, DescribedMember};
use crate::error::Code;

/// Kafka's classic group states.
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
    pub fn error(code: Code, member_id: &str) -> Self {
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
    pub fn error(code: Code) -> Self {
        Synced {
            error: Some(code),
            ..Default::default()
        }
    }
}

/// One member of a group, as the rebalance protocol sees it.
#[derive(Debug)]
pub(super) struct Member {
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

/// One classic group's state on its coordinator.
#[derive(Debug)]
pub struct ClassicGroup {
    pub(super) state: State,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) generation: i32,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// Static members: `group.instance.id` → current member id.
    statics: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until when they may join.
    pending: HashMap<String, Instant>,
    /// When the join phase ends even if members are missing.
    rebalance_deadline: Option<Instant>,
    /// Set while an empty group's first join waits `group.initial.rebalance.delay`
    /// for more members: the latest the join may be held.
    initial_limit: Option<Instant>,
    /// Something a new coordinator needs changed (the group emptied, a
    /// static member was replaced): the coordinator stores the group.
    pub(super) changed: bool,
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// What a SyncGroup leads to.
#[derive(Debug)]
pub enum SyncStep {
    /// The answer, now.
    Answer(Synced),
    /// Wait for the answer; if a record is given (the leader's SyncGroup),
    /// store it first and report the outcome with `ClassicGroup::stored`.
    Wait(oneshot::Receiver<Synced>, Option<StoredGroup>),
}

impl ClassicGroup {
    /// An empty group whose next generation follows `generation` (a group
    /// that switched protocols keeps its stored generations increasing).
    pub fn empty_after(generation: i32) -> Self {
        ClassicGroup {
            state: State::Empty,
            protocol_type: None,
            protocol: None,
            generation,
            leader: None,
            members: BTreeMap::new(),
            statics: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_limit: None,
            changed: false,
        }
    }

    /// The group as the MetaStore holds it; every member gets a fresh session.
    pub fn from_stored(s: StoredGroup, now: Instant) -> Self {
        let mut g = ClassicGroup::empty_after(s.generation);
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
    pub fn to_stored(&self, now_ms: i64) -> StoredGroup {
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

    /// A JoinGroup: `Ok` with the receiver of the answer once the join
    /// completes, or `Err` with the answer at once.
    // The Err variant is the immediate answer, built once per request.
    #[allow(clippy::result_large_err)]
    pub fn join(
        &mut self,
        group: &str,
        j: Join,
        now: Instant,
        delay: Duration,
    ) -> Result<oneshot::Receiver<Joined>, Joined> {
        let g = self;
        if g.state == State::Dead {
            return Err(Joined::error(Code::CoordinatorNotAvailable, &j.member_id));
        }
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
                    return g.replace_static(group, &old_id, j, tx, rx, now, delay);
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
            g.after_join(now, delay);
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
            g.after_join(now, delay);
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
                g.after_join(now, delay);
                Ok(rx)
            }
        }
    }

    /// A member (re)joined: start or extend the rebalance, complete it if
    /// everyone is in.
    fn after_join(&mut self, now: Instant, delay: Duration) {
        let g = self;
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
        &mut self,
        group: &str,
        old_id: &str,
        j: Join,
        tx: oneshot::Sender<Joined>,
        rx: oneshot::Receiver<Joined>,
        now: Instant,
        delay: Duration,
    ) -> Result<oneshot::Receiver<Joined>, Joined> {
        let g = self;
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
            g.changed = true;
            let leader = g.leader.as_deref() == Some(id.as_str());
            return Err(g.current(&id, leader));
        }
        if let Some(m) = g.members.get_mut(&id) {
            m.join = Some(tx);
        }
        g.after_join(now, delay);
        Ok(rx)
    }

    /// A SyncGroup. The leader's carries the assignment: the group is stored
    /// before any member learns its part (`SyncStep::Wait` with the record).
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
        now_ms: i64,
    ) -> SyncStep {
        let g = self;
        if let Err(c) = g.check_member(member_id, instance_id) {
            return SyncStep::Answer(Synced::error(c));
        }
        if generation != g.generation {
            return SyncStep::Answer(Synced::error(Code::IllegalGeneration));
        }
        if protocol_type.is_some_and(|t| Some(t) != g.protocol_type.as_deref())
            || protocol.is_some_and(|p| Some(p) != g.protocol.as_deref())
        {
            return SyncStep::Answer(Synced::error(Code::InconsistentGroupProtocol));
        }
        let leader = g.leader.as_deref() == Some(member_id);
        match g.state {
            State::Empty | State::Dead => {
                return SyncStep::Answer(Synced::error(Code::UnknownMemberId));
            }
            State::PreparingRebalance => {
                return SyncStep::Answer(Synced::error(Code::RebalanceInProgress));
            }
            State::Stable => {
                let Some(m) = g.members.get_mut(member_id) else {
                    return SyncStep::Answer(Synced::error(Code::UnknownMemberId));
                };
                m.touch(now);
                return SyncStep::Answer(Synced {
                    error: None,
                    protocol_type: g.protocol_type.clone(),
                    protocol: g.protocol.clone(),
                    assignment: m.assignment.clone(),
                });
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
            g.to_stored(now_ms)
        });
        SyncStep::Wait(rx, record)
    }

    /// The leader's record of `generation` was stored (`Ok`) or not (the
    /// code every waiting member gets): the group becomes stable and every
    /// member gets its assignment, or it rebalances again. Returns whether
    /// the group became stable.
    pub fn stored(&mut self, generation: i32, outcome: Result<(), Code>, now: Instant) -> bool {
        let g = self;
        if g.state != State::CompletingRebalance || g.generation != generation {
            return false;
        }
        match outcome {
            Ok(()) => {
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
                true
            }
            Err(code) => {
                for m in g.members.values_mut() {
                    m.assignment = Bytes::new();
                    if let Some(tx) = m.sync.take() {
                        let _ = tx.send(Synced::error(code));
                    }
                }
                g.prepare_rebalance(now, Duration::ZERO);
                false
            }
        }
    }

    /// A Heartbeat: `None` if the member may carry on.
    pub fn heartbeat(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Option<Code> {
        let g = self;
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
    pub fn leave(
        &mut self,
        group: &str,
        members: &[(String, Option<String>)],
        now: Instant,
        delay: Duration,
    ) -> Vec<Option<Code>> {
        let g = self;
        let mut out = Vec::with_capacity(members.len());
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
                    g.changed |= g.remove_member(&id, now, delay);
                    out.push(None);
                }
                Err(c) => out.push(Some(c)),
            }
        }
        out
    }

    /// An OffsetCommit by a member (Kafka's rules): a current member, the
    /// current generation, and not while the leader is assigning.
    pub fn check_member_commit(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), Code> {
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(Code::IllegalGeneration);
        }
        if self.state == State::CompletingRebalance {
            return Err(Code::RebalanceInProgress);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.touch(now);
        }
        Ok(())
    }

    /// The timers: expired sessions and pending member ids, and the
    /// rebalance deadline.
    pub fn tick(&mut self, group: &str, now: Instant, delay: Duration) {
        let g = self;
        g.pending.retain(|_, until| *until > now);
        let expired: Vec<String> = g
            .members
            .iter()
            .filter(|(_, m)| m.expires <= now && !m.kept_alive())
            .map(|(id, _)| id.clone())
            .collect();
        for m in expired {
            tracing::info!(group, member = %m, "member session expired");
            g.changed |= g.remove_member(&m, now, delay);
        }
        if g.state == State::PreparingRebalance {
            if g.rebalance_deadline.is_some_and(|d| d <= now) {
                g.initial_limit = None;
                g.changed |= g.complete_join(now);
            } else {
                g.maybe_complete_join(now);
            }
        }
    }

    /// The group moved to another coordinator: every waiting request gets
    /// NOT_COORDINATOR.
    pub fn abandon(&mut self) {
        for m in self.members.values_mut() {
            if let Some(tx) = m.join.take() {
                let _ = tx.send(Joined::error(Code::NotCoordinator, ""));
            }
            if let Some(tx) = m.sync.take() {
                let _ = tx.send(Synced::error(Code::NotCoordinator));
            }
        }
    }

    /// DescribeGroups: the chosen protocol, metadata and assignments only
    /// while stable.
    pub fn describe(&self) -> Described {
        let stable = self.state == State::Stable;
        let protocol = self.protocol.clone().unwrap_or_default();
        Described {
            state: self.state.name(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: self
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
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Protocol type and chosen protocol, for logs.
    pub fn protocol(&self) -> (&str, &str) {
        (
            self.protocol_type.as_deref().unwrap_or(""),
            self.protocol.as_deref().unwrap_or(""),
        )
    }

    pub fn protocol_type(&self) -> &str {
        self.protocol_type.as_deref().unwrap_or("")
    }
}
