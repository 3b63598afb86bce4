//! The KIP-848 consumer group protocol (ConsumerGroupHeartbeat): the
//! coordinator assigns partitions itself and every member reconciles toward its
//! target assignment one heartbeat at a time, with no group-wide barrier.
//!
//! - Membership or subscription changes (and changes to the subscribed topics'
//!   partition counts) raise the **group epoch**; the coordinator then computes a
//!   new **target assignment** with the server-side assignor (`uniform`, sticky
//!   and balanced, the default; or `range`).
//! - A member's **current assignment** moves toward its target: partitions it
//!   must give up are revoked first (its epoch stays until its heartbeat no
//!   longer lists them); then it takes the new **member epoch** and the target's
//!   partitions that no other member still holds; partitions still held
//!   elsewhere are added by later heartbeats, once released.
//! - A member that misses its session timeout, or does not revoke within its
//!   rebalance timeout, is removed; one that heartbeats with a stale epoch gets
//!   FENCED_MEMBER_EPOCH and rejoins with epoch 0.
//! - Static members (`group.instance.id`) that leave with epoch -2 keep their
//!   partitions until their session times out, for a restarted instance to take
//!   over under its new member id.
//!
//! The group is stored (see `super`) after every change, asynchronously: a
//! coordinator that takes the group over resumes it from its last stored
//! state, and members whose epochs it does not know are fenced and rejoin.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use floe_core::types::{StoredGroup, StoredMember};

use crate::error::Code;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignors Floe runs server-side; the first is the default.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// One member of a KIP-848 group.
#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub instance_id: Option<String>,
    pub rack: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout: Duration,
    pub subscribed: BTreeSet<String>,
    pub assignor: Option<String>,
    pub epoch: i32,
    pub previous_epoch: i32,
    /// What the member holds, as far as the coordinator knows.
    pub assigned: Assignment,
    /// What it was told to give up and has not confirmed yet.
    pub revoking: Assignment,
    /// Until when it must confirm the revocation.
    pub revoke_deadline: Option<Instant>,
    /// The assignment last sent to it.
    pub last_sent: Option<Assignment>,
    pub expires: Instant,
    /// A static member that left with epoch -2: kept for its instance to return.
    pub departed: bool,
}

/// The topics the group subscribes to, as the assignor saw them.
pub type TopicsSeen = BTreeMap<String, (Uuid, i32)>;

#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    pub epoch: i32,
    pub target_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    pub target: BTreeMap<String, Assignment>,
    pub topics_seen: TopicsSeen,
}

/// A ConsumerGroupHeartbeat, decoded.
#[derive(Debug, Clone, Default)]
pub struct Beat {
    pub member_id: String,
    pub epoch: i32,
    pub instance_id: Option<String>,
    pub rack: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed: Option<Vec<String>>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

/// What a ConsumerGroupHeartbeat answers.
#[derive(Debug, Clone, Default)]
pub struct BeatAnswer {
    pub error: Option<Code>,
    pub message: Option<String>,
    pub member_id: String,
    pub epoch: i32,
    pub assignment: Option<Assignment>,
}

impl BeatAnswer {
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        BeatAnswer {
            error: Some(code),
            message: Some(message.into()),
            ..Default::default()
        }
    }
}

fn union(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = a.clone();
    for (t, ps) in b {
        out.entry(*t).or_default().extend(ps);
    }
    out
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(t, ps)| {
            let left: BTreeSet<i32> = match b.get(t) {
                Some(o) => ps.difference(o).copied().collect(),
                None => ps.clone(),
            };
            (!left.is_empty()).then_some((*t, left))
        })
        .collect()
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(t, ps)| {
            let both: BTreeSet<i32> = ps.intersection(b.get(t)?).copied().collect();
            (!both.is_empty()).then_some((*t, both))
        })
        .collect()
}

fn is_empty(a: &Assignment) -> bool {
    a.values().all(|ps| ps.is_empty())
}

fn count(a: &Assignment) -> usize {
    a.values().map(|ps| ps.len()).sum()
}

fn to_pairs(a: &Assignment) -> Vec<(Uuid, Vec<i32>)> {
    a.iter()
        .map(|(t, ps)| (*t, ps.iter().copied().collect()))
        .collect()
}

fn from_pairs(v: &[(Uuid, Vec<i32>)]) -> Assignment {
    v.iter()
        .map(|(t, ps)| (*t, ps.iter().copied().collect()))
        .filter(|(_, ps): &(Uuid, BTreeSet<i32>)| !ps.is_empty())
        .collect()
}

/// The uniform assignor: every partition of a subscribed topic goes to one
/// member subscribed to it; members keep what they hold up to an even share,
/// the rest goes to the least-loaded eligible member.
fn uniform(
    members: &BTreeMap<String, ConsumerMember>,
    topics: &TopicsSeen,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = BTreeMap::new();
    let partitions: Vec<(&String, Uuid, i32)> = topics
        .iter()
        .filter(|(name, _)| members.values().any(|m| m.subscribed.contains(*name)))
        .flat_map(|(name, (id, n))| (0..*n).map(move |p| (name, *id, p)))
        .collect();
    // Members subscribed to at least one existing topic share the partitions.
    let mut load: BTreeMap<&String, usize> = members
        .iter()
        .filter(|(_, m)| topics.keys().any(|t| m.subscribed.contains(t)))
        .map(|(id, _)| (id, 0))
        .collect();
    if load.is_empty() {
        return out;
    }
    let base = partitions.len() / load.len();
    let mut extra = partitions.len() % load.len();
    let mut unassigned = Vec::new();
    // Sticky pass: each member keeps what it holds, up to an even share.
    for &(name, id, p) in &partitions {
        let owner = members.iter().find(|(_, m)| {
            m.subscribed.contains(name)
                && (m.assigned.get(&id).is_some_and(|ps| ps.contains(&p))
                    || m.revoking.get(&id).is_some_and(|ps| ps.contains(&p)))
        });
        let keeper = owner.and_then(|(o, _)| {
            let l = load.get_mut(o)?;
            if *l < base || (*l == base && extra > 0) {
                if *l == base {
                    extra -= 1;
                }
                *l += 1;
                Some(o)
            } else {
                None
            }
        });
        match keeper {
            Some(o) => {
                out.entry(o.clone())
                    .or_default()
                    .entry(id)
                    .or_default()
                    .insert(p);
            }
            None => unassigned.push((name, id, p)),
        }
    }
    // The rest: each to the least-loaded member subscribed to its topic.
    for (name, id, p) in unassigned {
        let to = load
            .iter_mut()
            .filter(|(m, _)| members[**m].subscribed.contains(name))
            .min_by_key(|(m, l)| (**l, **m));
        if let Some((m, l)) = to {
            *l += 1;
            out.entry((*m).clone())
                .or_default()
                .entry(id)
                .or_default()
                .insert(p);
        }
    }
    out
}

/// The range assignor: per topic, the subscribed members (by id) get
/// contiguous ranges, the first ones one partition more.
fn range(
    members: &BTreeMap<String, ConsumerMember>,
    topics: &TopicsSeen,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = BTreeMap::new();
    for (name, (id, n)) in topics {
        let subs: Vec<&String> = members
            .iter()
            .filter(|(_, m)| m.subscribed.contains(name))
            .map(|(k, _)| k)
            .collect();
        if subs.is_empty() {
            continue;
        }
        let per = *n as usize / subs.len();
        let extra = *n as usize % subs.len();
        let mut next = 0i32;
        for (i, m) in subs.iter().enumerate() {
            let take = per + usize::from(i < extra);
            let ps: BTreeSet<i32> = (next..next + take as i32).collect();
            next += take as i32;
            if !ps.is_empty() {
                out.entry((*m).clone()).or_default().insert(*id, ps);
            }
        }
    }
    out
}

impl ConsumerGroup {
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed.iter().cloned())
            .collect()
    }

    /// Kafka's consumer-group state names.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.target_epoch < self.epoch {
            "Assigning"
        } else if self.members.iter().any(|(id, m)| {
            m.epoch != self.target_epoch
                || Some(&m.assigned) != self.target.get(id).or(Some(&Assignment::new()))
                || !is_empty(&m.revoking)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Recomputes the target assignment if the group epoch moved.
    fn assign(&mut self) {
        if self.target_epoch == self.epoch {
            return;
        }
        let assignor = self
            .members
            .values()
            .filter_map(|m| m.assignor.as_deref())
            .next()
            .unwrap_or(ASSIGNORS[0]);
        self.target = if assignor == "range" {
            range(&self.members, &self.topics_seen)
        } else {
            uniform(&self.members, &self.topics_seen)
        };
        self.target_epoch = self.epoch;
    }

    /// Partitions held (or being given up) by members other than `me`.
    fn held_by_others(&self, me: &str) -> Assignment {
        self.members
            .iter()
            .filter(|(id, _)| id.as_str() != me)
            .fold(Assignment::new(), |acc, (_, m)| {
                union(&union(&acc, &m.assigned), &m.revoking)
            })
    }

    /// Moves `id`'s current assignment one step toward its target.
    fn reconcile(&mut self, id: &str, now: Instant) {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let others = self.held_by_others(id);
        let target_epoch = self.target_epoch;
        let Some(m) = self.members.get_mut(id) else {
            return;
        };
        if !is_empty(&m.revoking) {
            return;
        }
        let give_up = minus(&m.assigned, &target);
        if !is_empty(&give_up) {
            m.assigned = intersect(&m.assigned, &target);
            m.revoking = give_up;
            m.revoke_deadline = Some(now + m.rebalance_timeout);
            return;
        }
        if m.epoch != target_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = target_epoch;
        }
        m.assigned = minus(&target, &others);
    }

    /// Removes a member; its partitions become free for the others.
    pub fn remove(&mut self, id: &str) -> bool {
        if self.members.remove(id).is_some() {
            self.target.remove(id);
            self.epoch += 1;
            true
        } else {
            false
        }
    }

    /// Handles one heartbeat. `topics` names each subscribed topic's id and
    /// partition count now; `session` is the member session timeout.
    pub fn heartbeat(
        &mut self,
        b: Beat,
        topics: impl Fn(&str) -> Option<(Uuid, i32)>,
        now: Instant,
        session: Duration,
    ) -> BeatAnswer {
        let mut member_id = b.member_id.clone();
        match b.epoch {
            -1 | -2 => {
                let Some(m) = self.members.get_mut(&member_id) else {
                    return BeatAnswer::error(Code::UnknownMemberId, "not a member");
                };
                if b.epoch == -2 && m.instance_id.is_some() {
                    // A static member leaves for a restart: it keeps its
                    // partitions until its session times out.
                    m.departed = true;
                    m.expires = now + session;
                } else {
                    self.remove(&member_id);
                }
                return BeatAnswer {
                    member_id,
                    epoch: b.epoch,
                    ..Default::default()
                };
            }
            0 => {
                if member_id.is_empty() {
                    member_id = Uuid::new_v4().to_string();
                }
                let Some(subscribed) = &b.subscribed else {
                    return BeatAnswer::error(
                        Code::InvalidRequest,
                        "a joining member must name its subscribed topics",
                    );
                };
                let static_owner = b.instance_id.as_ref().and_then(|i| {
                    self.members
                        .iter()
                        .find(|(id, m)| m.instance_id.as_ref() == Some(i) && **id != member_id)
                        .map(|(id, m)| (id.clone(), m.departed))
                });
                let resumed = static_owner.is_some();
                match static_owner {
                    Some((_, false)) => {
                        return BeatAnswer::error(
                            Code::UnreleasedInstanceId,
                            "another member with this group.instance.id is still active",
                        );
                    }
                    Some((old, true)) => {
                        // The restarted instance takes over its partitions and epoch.
                        if let Some(mut m) = self.members.remove(&old) {
                            m.departed = false;
                            m.last_sent = None;
                            if let Some(t) = self.target.remove(&old) {
                                self.target.insert(member_id.clone(), t);
                            }
                            self.members.insert(member_id.clone(), m);
                        }
                    }
                    None => {}
                }
                let fresh = ConsumerMember {
                    instance_id: b.instance_id.clone(),
                    rack: b.rack.clone(),
                    client_id: b.client_id.clone(),
                    client_host: b.client_host.clone(),
                    rebalance_timeout: Duration::from_millis(b.rebalance_timeout_ms.max(0) as u64),
                    subscribed: subscribed.iter().cloned().collect(),
                    assignor: b.assignor.clone(),
                    epoch: 0,
                    previous_epoch: 0,
                    assigned: Assignment::new(),
                    revoking: Assignment::new(),
                    revoke_deadline: None,
                    last_sent: None,
                    expires: now + session,
                    departed: false,
                };
                match self.members.get_mut(&member_id) {
                    // A static member resuming (above) keeps its state.
                    Some(m) if resumed => {
                        m.client_id = fresh.client_id;
                        m.client_host = fresh.client_host;
                    }
                    // A member that lost its state rejoins from scratch.
                    Some(m) => {
                        *m = fresh;
                        self.epoch += 1;
                    }
                    None => {
                        self.members.insert(member_id.clone(), fresh);
                        self.epoch += 1;
                    }
                }
            }
            epoch => {
                let Some(m) = self.members.get(&member_id) else {
                    return BeatAnswer::error(Code::UnknownMemberId, "not a member of the group");
                };
                let lost_response = epoch == m.previous_epoch
                    && b.owned
                        .as_ref()
                        .is_some_and(|o| is_empty(&minus(o, &m.assigned)));
                if epoch != m.epoch && !lost_response {
                    return BeatAnswer::error(
                        Code::FencedMemberEpoch,
                        format!("member epoch {epoch} is not the current {}", m.epoch),
                    );
                }
            }
        }
        let Some(m) = self.members.get_mut(&member_id) else {
            return BeatAnswer::error(Code::UnknownMemberId, "not a member of the group");
        };
        m.expires = now + session;
        if b.rebalance_timeout_ms > 0 {
            m.rebalance_timeout = Duration::from_millis(b.rebalance_timeout_ms as u64);
        }
        if b.rack.is_some() {
            m.rack = b.rack.clone();
        }
        let mut changed = false;
        if let Some(s) = &b.subscribed {
            let s: BTreeSet<String> = s.iter().cloned().collect();
            if s != m.subscribed {
                m.subscribed = s;
                changed = true;
            }
        }
        if b.assignor.is_some() && b.assignor != m.assignor {
            m.assignor = b.assignor.clone();
            changed = true;
        }
        // The member confirms a revocation by no longer listing the partitions.
        if let Some(owned) = &b.owned
            && !is_empty(&m.revoking)
            && is_empty(&intersect(owned, &m.revoking))
        {
            m.revoking.clear();
            m.revoke_deadline = None;
        }
        if changed {
            self.epoch += 1;
        }
        self.refresh_topics(&topics);
        self.assign();
        self.reconcile(&member_id, now);
        let m = &mut self.members.get_mut(&member_id).expect("member present");
        let send = b.epoch == 0 || m.last_sent.as_ref() != Some(&m.assigned);
        let assignment = send.then(|| m.assigned.clone());
        if send {
            m.last_sent = Some(m.assigned.clone());
        }
        BeatAnswer {
            error: None,
            message: None,
            member_id,
            epoch: m.epoch,
            assignment,
        }
    }

    /// Raises the group epoch when a subscribed topic appeared, vanished or
    /// grew.
    pub fn refresh_topics(&mut self, topics: &impl Fn(&str) -> Option<(Uuid, i32)>) {
        let now: TopicsSeen = self
            .subscribed_topics()
            .into_iter()
            .filter_map(|t| topics(&t).map(|v| (t, v)))
            .collect();
        if now != self.topics_seen {
            self.topics_seen = now;
            self.epoch += 1;
        }
    }

    /// Timers: members past their session or rebalance timeout are removed.
    /// Returns whether anything changed.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.expires <= now || m.revoke_deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.remove(id);
        }
        gone
    }

    pub fn to_stored(&self, now_ms: i64) -> StoredGroup {
        StoredGroup {
            protocol_type: "consumer".into(),
            protocol: None,
            generation: self.epoch,
            leader: None,
            members: self
                .members
                .iter()
                .map(|(id, m)| StoredMember {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    member_epoch: m.epoch,
                    subscribed_topics: m.subscribed.iter().cloned().collect(),
                    server_assignor: m.assignor.clone(),
                    rack: m.rack.clone(),
                    owned: to_pairs(&m.assigned),
                    revoking: to_pairs(&m.revoking),
                    ..Default::default()
                })
                .collect(),
            stored_ms: now_ms,
            consumer_protocol: true,
        }
    }

    /// A stored group; every member gets a fresh session, and the target is
    /// recomputed from what members hold.
    pub fn from_stored(s: &StoredGroup, now: Instant, session: Duration) -> Self {
        let mut g = ConsumerGroup {
            epoch: s.generation,
            // Recomputed at the first heartbeat.
            target_epoch: s.generation - 1,
            ..Default::default()
        };
        for m in &s.members {
            let revoking = from_pairs(&m.revoking);
            let rebalance = Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64);
            g.members.insert(
                m.member_id.clone(),
                ConsumerMember {
                    instance_id: m.instance_id.clone(),
                    rack: m.rack.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: rebalance,
                    subscribed: m.subscribed_topics.iter().cloned().collect(),
                    assignor: m.server_assignor.clone(),
                    epoch: m.member_epoch,
                    previous_epoch: m.member_epoch,
                    assigned: from_pairs(&m.owned),
                    revoke_deadline: (!is_empty(&revoking)).then(|| now + rebalance),
                    revoking,
                    last_sent: None,
                    expires: now + session,
                    departed: false,
                },
            );
        }
        g
    }

    /// Checks a member's epoch in OffsetCommit / OffsetFetch.
    pub fn check_epoch(&self, member_id: &str, epoch: i32) -> Result<(), Code> {
        let Some(m) = self.members.get(member_id) else {
            return Err(Code::UnknownMemberId);
        };
        match epoch.cmp(&m.epoch) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(Code::StaleMemberEpoch),
            std::cmp::Ordering::Greater => Err(Code::FencedMemberEpoch),
        }
    }

    /// Partitions a member holds, for DescribeGroups.
    pub fn member_partitions(&self, id: &str) -> usize {
        self.members.get(id).map_or(0, |m| count(&m.assigned))
    }
}
