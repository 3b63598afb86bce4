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
//! rendezvous choice is generic over keys, ready for group and transaction
//! coordinators.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use floe_core::ErrorKind;
use floe_core::types::{Member, PartitionId, StreamId};
use floe_flusher::{Adoption, Lease, PartitionLog};
// Tokio's clock (the monotonic clock, pausable in tests).
use tokio::time::Instant;

use crate::broker::Broker;

/// How long a hand-over waits for in-flight flushes before trying again later.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// The rendezvous score of `gateway` for `key`: highest score owns the key.
pub fn score(gateway: &str, key: &[u8]) -> u64 {
    let mut h = twox_hash::XxHash64::with_seed(0x466c_6f65); // "Floe"
    h.write(gateway.as_bytes());
    h.write(&[0]);
    h.write(key);
    h.finish()
}

/// The member with the highest score for `key` (ties, which need a 64-bit
/// collision, go to the smaller gateway name).
pub fn owner_of<'a>(members: &'a [Member], key: &[u8]) -> Option<&'a Member> {
    members.iter().max_by(|a, b| {
        score(&a.stream.gateway, key)
            .cmp(&score(&b.stream.gateway, key))
            .then_with(|| b.stream.gateway.cmp(&a.stream.gateway))
    })
}

/// The rendezvous key of a partition.
pub fn partition_key(p: &PartitionId) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(p.topic.as_bytes());
    k[16..].copy_from_slice(&p.partition.to_be_bytes());
    k
}

/// What this gateway has observed of one peer.
#[derive(Debug)]
struct Seen {
    stream: StreamId,
    heartbeat: u64,
    since: Instant,
}

/// The ownership loop's memory between rounds.
#[derive(Debug, Default)]
pub struct Controller {
    seen: HashMap<String, Seen>,
    /// When the membership was last read successfully.
    last_read: Option<Instant>,
}

/// This incarnation was fenced: it must stop serving.
#[derive(Debug)]
pub struct Fenced(pub String);

impl Controller {
    /// One round: membership, topics, then releases and claims. Heartbeats run
    /// on their own (`beat`), so a slow hand-over never silences this gateway.
    pub async fn round(&mut self, broker: &Arc<Broker>) -> Result<(), Fenced> {
        let members = match broker.meta.list_members().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the membership; will retry");
                return Ok(());
            }
        };
        let live = self.live(broker, members).await;
        broker.set_view(live);
        if let Err(e) = broker.refresh_topics().await {
            tracing::warn!(error = %e, "cannot refresh topics; will retry");
        }
        let (release, acquire) = broker.moves();
        if !release.is_empty() {
            handover(broker, release).await?;
        }
        if !acquire.is_empty() {
            acquire_logs(broker, acquire).await?;
        }
        Ok(())
    }

    /// The live members (this gateway included), fencing peers found silent.
    async fn live(&mut self, broker: &Broker, members: Vec<Member>) -> Vec<Member> {
        let now = Instant::now();
        let timeout = broker.settings.session_timeout;
        let me = &broker.stream;
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
            match broker.meta.fence_gateway(&m.stream, m.heartbeat).await {
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

/// Hands partitions over: refuse new produce, drain what was accepted, stop
/// sealing them, drain again, then store released checkpoints. A failed drain
/// keeps the partitions here; the next round tries again.
async fn handover(broker: &Arc<Broker>, logs: Vec<Arc<PartitionLog>>) -> Result<(), Fenced> {
    for l in &logs {
        l.set_lease(Lease::Draining);
    }
    if !broker.flusher.sync(DRAIN_DEADLINE).await {
        tracing::warn!(
            partitions = logs.len(),
            "hand-over: flushes did not drain; keeping the partitions for now"
        );
        for l in &logs {
            l.set_lease(Lease::Owned);
        }
        return Ok(());
    }
    for l in &logs {
        l.set_lease(Lease::NotOwned);
    }
    // Appends sealed between the first drain and NotOwned commit here.
    while !broker.flusher.sync(DRAIN_DEADLINE).await {
        if broker.flusher.is_fenced() {
            return Err(Fenced("fenced while handing partitions over".into()));
        }
        tracing::warn!("hand-over: waiting for flushes to commit");
    }
    release(broker, &logs).await
}

/// Stores released checkpoints for `logs` (already `NotOwned` and drained).
pub async fn release(broker: &Broker, logs: &[Arc<PartitionLog>]) -> Result<(), Fenced> {
    let _g = broker.checkpointing.lock().await;
    let through = broker.flusher.committed_through();
    for chunk in logs.chunks(floe_flusher::CHECKPOINT_CHUNK) {
        let cps: Vec<_> = chunk
            .iter()
            .map(|l| l.full_checkpoint(&broker.stream, through))
            .collect();
        loop {
            match broker.meta.release_partitions(&broker.stream, &cps).await {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::Fenced => return Err(Fenced(e.to_string())),
                Err(e) => {
                    tracing::warn!(error = %e, "release failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        for l in chunk {
            l.mark_all_checkpointed();
            tracing::info!(partition = %l.id, "partition released");
        }
    }
    Ok(())
}

/// Claims partitions this gateway should lead. One whose previous owner is
/// still live and has not released it is left for a later round.
pub async fn acquire_logs(broker: &Broker, logs: Vec<Arc<PartitionLog>>) -> Result<(), Fenced> {
    let live = broker.view();
    let mut adoptions = Vec::new();
    for log in logs {
        let stored = match broker.meta.load_partition(log.id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(partition = %log.id, error = %e, "cannot load partition; will retry");
                continue;
            }
        };
        if let Some(s) = &stored {
            if s.owner == broker.stream {
                log.set_lease(Lease::Owned); // a hand-over that never completed
                continue;
            }
            if !s.released && live.iter().any(|m| m.stream == s.owner) {
                continue; // its owner will release it once it sees the new membership
            }
        }
        adoptions.push(Adoption { log, stored });
    }
    if adoptions.is_empty() {
        return Ok(());
    }
    let through = broker.flusher.committed_through();
    for (p, r) in
        floe_flusher::adopt_partitions(&broker.meta, &broker.stream, through, adoptions).await
    {
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Fenced => return Err(Fenced(e.to_string())),
            Err(e) => tracing::info!(partition = %p, error = %e, "cannot claim partition yet"),
        }
    }
    Ok(())
}

/// Proves this incarnation alive; `Fenced` once another gateway fenced it.
pub async fn beat(broker: &Broker) -> Result<(), Fenced> {
    match broker.meta.heartbeat(&broker.stream).await {
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
    let beats = {
        let broker = broker.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(broker.settings.heartbeat_interval);
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
    let mut tick = tokio::time::interval(broker.settings.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fenced = broker.fenced_watch();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(Fenced(why)) = controller.round(&broker).await {
                    broker.fence(&why);
                    break;
                }
            }
            _ = async { fenced.wait_for(|f| f.is_some()).await.is_ok() } => break,
            _ = stop.changed() => break,
        }
    }
    beats.abort();
    let _ = beats.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_core::types::GatewayInfo;

    fn member(g: &str) -> Member {
        Member {
            stream: StreamId {
                gateway: g.into(),
                epoch: 1,
            },
            info: GatewayInfo {
                advertised: String::new(),
                zone: None,
                heartbeat_ms: 0,
                node_id: 0,
            },
            heartbeat: 0,
            fenced: false,
        }
    }

    #[test]
    fn rendezvous_moves_only_the_leavers_share() {
        let three: Vec<_> = ["a", "b", "c"].map(member).into();
        let two: Vec<_> = ["a", "c"].map(member).into();
        let topic = uuid::Uuid::from_u128(7);
        let mut counts = HashMap::new();
        for p in 0..3000 {
            let k = partition_key(&PartitionId::new(topic, p));
            let before = &owner_of(&three, &k).expect("owner").stream.gateway;
            let after = &owner_of(&two, &k).expect("owner").stream.gateway;
            *counts.entry(before.clone()).or_insert(0) += 1;
            if before != "b" {
                assert_eq!(
                    before, after,
                    "partition {p} moved although its owner stayed"
                );
            }
        }
        for g in ["a", "b", "c"] {
            let n = counts[g];
            assert!((800..1200).contains(&n), "{g} owns {n} of 3000");
        }
        assert!(owner_of(&[], &[1]).is_none());
    }
}
