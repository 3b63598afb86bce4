//! Partition ownership among the gateways sharing a backend.
//!
//! Every gateway heartbeats (a counter in the MetaStore) and re-reads the
//! membership each `heartbeat_interval`. A peer is live while its counter keeps
//! moving; one whose counter has not moved for `session_timeout` on this
//! gateway's own monotonic clock is fenced (conditional on the counter value
//! observed), so no two clocks are ever compared. Each partition's owner is the
//! live gateway with the highest rendezvous score for it: gateways agree
//! without talking, and adding or removing one moves only its share.
//!
//! Views may differ for a while; correctness never depends on them agreeing.
//! A gateway takes a partition only through `MetaStore::claim_partition`,
//! which succeeds only once the previous owner released it (drained,
//! checkpointed, marked released) or is no longer live; the claimer then
//! replays the previous owner's flush records after its checkpoint. A fenced
//! gateway's commits fail, so nothing it acknowledged can be missed. The
//! rendezvous choice (`cluster`) is generic over keys: group coordinators use
//! it too. The claims and hand-overs themselves are `leases`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use floe_core::ErrorKind;
use floe_core::meta::SharedMetaStore;
use floe_core::types::{Member, StreamId};
use floe_flusher::{Lease, PartitionLog};
// Tokio's clock (the monotonic clock, pausable in tests).
use tokio::time::Instant;

use crate::broker::Broker;
pub use crate::leases::Fenced;

/// What this gateway has observed of one peer.
#[derive(Debug)]
struct Seen {
    stream: StreamId,
    heartbeat: u64,
    since: Instant,
}

/// The ownership loop's memory between rounds.
#[derive(Debug)]
pub struct Controller {
    meta: SharedMetaStore,
    session_timeout: Duration,
    seen: HashMap<String, Seen>,
    /// When the membership was last read successfully.
    last_read: Option<Instant>,
}

impl Controller {
    pub fn new(meta: SharedMetaStore, session_timeout: Duration) -> Self {
        Controller {
            meta,
            session_timeout,
            seen: HashMap::new(),
            last_read: None,
        }
    }

    /// One round: membership, topics, then releases and claims. Heartbeats run
    /// on their own (`beat`), so a slow hand-over never silences this gateway.
    pub async fn round(&mut self, broker: &Arc<Broker>) -> Result<(), Fenced> {
        let members = match self.meta.list_members().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the membership; will retry");
                return Ok(());
            }
        };
        let live = self.live(broker.cluster.me(), members).await;
        broker.cluster.set_view(live.clone());
        if let Err(e) = broker.topics.refresh().await {
            tracing::warn!(error = %e, "cannot refresh topics; will retry");
        }
        broker.leases.retry_releases().await?;
        let (release, acquire) = moves(broker);
        if !release.is_empty() {
            broker.leases.hand_over(release).await?;
        }
        if !acquire.is_empty() {
            broker.leases.acquire(&live, acquire).await?;
        }
        Ok(())
    }

    /// The live members (this gateway included), fencing peers found silent.
    async fn live(&mut self, me: &StreamId, members: Vec<Member>) -> Vec<Member> {
        let now = Instant::now();
        let timeout = self.session_timeout;
        // A peer counts as silent only over time this gateway was watching: after
        // an outage of the store or a stall of this process, every peer gets a
        // fresh session timeout instead of being fenced at once.
        if self
            .last_read
            .is_some_and(|t| now.duration_since(t) > timeout / 2)
        {
            for seen in self.seen.values_mut() {
                seen.since = now;
            }
        }
        self.last_read = Some(now);
        let mut live = Vec::new();
        let present: BTreeSet<String> = members.iter().map(|m| m.stream.gateway.clone()).collect();
        self.seen.retain(|g, _| present.contains(g));
        for m in members {
            if m.stream == *me {
                live.push(m);
                continue;
            }
            if m.fenced || m.stream.gateway == me.gateway {
                self.seen.remove(&m.stream.gateway);
                continue;
            }
            let seen = self
                .seen
                .entry(m.stream.gateway.clone())
                .or_insert_with(|| Seen {
                    stream: m.stream.clone(),
                    heartbeat: m.heartbeat,
                    since: now,
                });
            if seen.stream != m.stream || seen.heartbeat != m.heartbeat {
                *seen = Seen {
                    stream: m.stream.clone(),
                    heartbeat: m.heartbeat,
                    since: now,
                };
            }
            if now.duration_since(seen.since) < timeout {
                live.push(m);
                continue;
            }
            match self.meta.fence_gateway(&m.stream, m.heartbeat).await {
                Ok(()) => tracing::warn!(
                    gateway = %m.stream,
                    silent_for = ?now.duration_since(seen.since),
                    "fenced a gateway whose heartbeat stopped; taking over its partitions"
                ),
                Err(e) if e.kind() == ErrorKind::Precondition => {
                    seen.since = now; // it heartbeated after all
                    live.push(m);
                }
                Err(e) => {
                    tracing::warn!(gateway = %m.stream, error = %e, "fencing failed; will retry")
                }
            }
        }
        live.sort_by(|a, b| a.stream.gateway.cmp(&b.stream.gateway));
        live
    }
}

/// Partitions to hand over and to claim under the current view.
fn moves(broker: &Broker) -> (Vec<Arc<PartitionLog>>, Vec<Arc<PartitionLog>>) {
    let (mut release, mut acquire) = (Vec::new(), Vec::new());
    for log in broker.topics.all_logs() {
        if log.is_deleted() {
            continue;
        }
        match (log.lease(), broker.cluster.should_lead(&log.id)) {
            (Lease::Owned, false) => release.push(log),
            (Lease::NotOwned, true) => acquire.push(log),
            _ => {}
        }
    }
    (release, acquire)
}

/// Proves this incarnation alive; `Fenced` once another gateway fenced it.
pub async fn beat(broker: &Broker) -> Result<(), Fenced> {
    match broker.heartbeat().await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::Fenced => Err(Fenced(e.to_string())),
        Err(e) => {
            tracing::warn!(error = %e, "heartbeat failed; will retry");
            Ok(())
        }
    }
}

/// The ownership loop until `stop`: a heartbeat every `heartbeat_interval`,
/// and beside it a round every `heartbeat_interval` (a round may take longer:
/// a hand-over waits for in-flight flushes).
pub async fn run(
    broker: Arc<Broker>,
    mut controller: Controller,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let interval = broker.settings.heartbeat_interval;
    let beats = {
        let broker = broker.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(Fenced(why)) = beat(&broker).await {
                            broker.fence(&why);
                            return;
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        })
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // The write path stopped writing on its own (a commit met a
                // newer epoch, or its outcome could not be learned): the
                // gateway stops, so peers take its partitions over.
                if let Some(why) = broker.leases.fenced_reason() {
                    broker.fence(&why);
                    break;
                }
                if let Err(Fenced(why)) = controller.round(&broker).await {
                    broker.fence(&why);
                    break;
                }
            }
            _ = broker.cluster.fenced() => break,
            _ = stop.changed() => break,
        }
    }
    beats.abort();
    let _ = beats.await;
}
