//! The partitions this gateway leads, and their durable state: the write path
//! (the flusher), checkpoints and trims of flush records, claims of
//! partitions to lead and hand-overs of partitions to give up. Which
//! partitions to claim or hand over is decided by `ownership`; this module
//! does it safely:
//!
//! - A hand-over refuses new produce, drains accepted appends, stops sealing
//!   the partition, drains again, then stores a released checkpoint. A
//!   checkpoint pass and a release exclude each other, so a checkpoint read
//!   before a release never lands after it (it would un-release the partition).
//! - A claim loads the stored checkpoint plus the previous owner's flush
//!   records (read after its release or fence is committed) and is conditional
//!   on that previous owner (`MetaStore::claim_partition`).
//! - A release whose outcome is unknown after the retry budget is read back;
//!   one that cannot be read back is retried at the next round, the partition
//!   staying unled meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floe_core::ErrorKind;
use floe_core::meta::SharedMetaStore;
use floe_core::meta::rules::is_dead;
use floe_core::retry::RetryPolicy;
use floe_core::types::{Member, StreamId};
use floe_flusher::{
    Adoption, AppendError, AppendTicket, BatchIn, CHECKPOINT_CHUNK, Flusher, Lease, PartitionLog,
};

/// How long a hand-over waits for in-flight flushes before trying again later.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// This incarnation was fenced: it must stop serving.
#[derive(Debug)]
pub struct Fenced(pub String);

/// `Err(Fenced)` for a fenced error; the error back otherwise.
fn fenced_or(e: floe_core::Error) -> Result<floe_core::Error, Fenced> {
    if e.kind() == ErrorKind::Fenced {
        Err(Fenced(e.to_string()))
    } else {
        Ok(e)
    }
}

#[derive(Debug)]
pub struct Leases {
    meta: SharedMetaStore,
    me: StreamId,
    flusher: Flusher,
    retry: RetryPolicy,
    /// Held by a checkpoint pass and by a release (see the module docs).
    checkpointing: tokio::sync::Mutex<()>,
    /// The highest flush seq of this incarnation trimmed after a checkpoint.
    trimmed_through: AtomicU64,
    /// Drained partitions whose release could not be confirmed: retried at
    /// the next round. Not derivable from a partition's state: one with no
    /// change since its last checkpoint still needs its release stored, or
    /// peers keep waiting for this (live) owner.
    unreleased: Mutex<Vec<Arc<PartitionLog>>>,
}

impl Leases {
    pub fn new(meta: SharedMetaStore, me: StreamId, flusher: Flusher, retry: RetryPolicy) -> Self {
        Leases {
            meta,
            me,
            flusher,
            retry,
            checkpointing: tokio::sync::Mutex::new(()),
            trimmed_through: AtomicU64::new(0),
            unreleased: Mutex::new(Vec::new()),
        }
    }

    /// Whether this gateway leads the partition of `log` now.
    pub fn leads(&self, log: &PartitionLog) -> bool {
        log.lease() == Lease::Owned
    }

    /// Puts `batches` into the write path (see `Flusher::enqueue`).
    pub async fn enqueue(
        &self,
        log: Arc<PartitionLog>,
        batches: Vec<BatchIn>,
    ) -> Result<AppendTicket, AppendError> {
        self.flusher.enqueue(log, batches).await
    }

    /// The write path's counters.
    pub fn stats(&self) -> &Arc<floe_flusher::FlusherStats> {
        self.flusher.stats()
    }

    /// Stops every write: this incarnation was fenced.
    pub fn fence(&self, why: &str, logs: &[Arc<PartitionLog>]) {
        self.flusher.set_fenced(why);
        for l in logs {
            l.set_lease(Lease::NotOwned);
        }
    }

    /// One checkpoint pass over every owned partition of `logs`: those whose
    /// changes are `delay` old (or whose log start moved) are stored.
    pub async fn checkpoint(
        &self,
        logs: &[Arc<PartitionLog>],
        delay: Duration,
    ) -> floe_core::Result<usize> {
        let _g = self.checkpointing.lock().await;
        let r = floe_flusher::checkpoint_once(
            &self.meta,
            &self.me,
            logs,
            self.flusher.committed_through(),
            delay,
            &self.trimmed_through,
        )
        .await;
        if let Err(e) = &r
            && e.kind() == ErrorKind::Fenced
        {
            tracing::error!(error = %e, "fenced during checkpoint; refusing further writes");
            self.flusher.set_fenced(&e.to_string());
        }
        r
    }

    /// Claims never-claimed partitions this gateway should lead (fresh
    /// topics and partitions) in bulk checkpoints, one write per
    /// `CHECKPOINT_CHUNK`; a chunk that fails (another gateway claimed one
    /// first) goes partition by partition.
    pub async fn claim_new(
        &self,
        live: &[Member],
        logs: Vec<Arc<PartitionLog>>,
    ) -> Result<(), Fenced> {
        for chunk in logs.chunks(CHECKPOINT_CHUNK) {
            let through = self.flusher.committed_through();
            let cps: Vec<_> = chunk
                .iter()
                .map(|l| l.full_checkpoint(&self.me, through))
                .collect();
            match self.meta.write_checkpoints(&self.me, &cps).await {
                Ok(()) => {
                    for l in chunk {
                        l.mark_all_checkpointed();
                        l.set_lease(Lease::Owned);
                    }
                }
                Err(e) => {
                    let e = fenced_or(e)?;
                    tracing::info!(error = %e, "bulk claim of new partitions failed; claiming one by one");
                    self.acquire(live, chunk.to_vec()).await?;
                }
            }
        }
        Ok(())
    }

    /// Claims partitions this gateway should lead. One whose previous owner
    /// is still `live` and has not released it is left for a later round.
    pub async fn acquire(
        &self,
        live: &[Member],
        logs: Vec<Arc<PartitionLog>>,
    ) -> Result<(), Fenced> {
        let mut adoptions = Vec::new();
        for log in logs {
            let stored = match self.meta.load_partition(log.id).await {
                Ok(s) => s,
                Err(e) => {
                    let e = fenced_or(e)?;
                    tracing::warn!(partition = %log.id, error = %e, "cannot load partition; will retry");
                    continue;
                }
            };
            if let Some(s) = &stored {
                if s.owner == self.me {
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
        let through = self.flusher.committed_through();
        for (p, r) in floe_flusher::adopt_partitions(&self.meta, &self.me, through, adoptions).await
        {
            if let Err(e) = r {
                let e = fenced_or(e)?;
                tracing::info!(partition = %p, error = %e, "cannot claim partition yet");
            }
        }
        Ok(())
    }

    /// Hands partitions over: refuse new produce, drain what was accepted,
    /// stop sealing them, drain again, then store released checkpoints. A
    /// failed drain or release keeps the partitions here; the next round
    /// tries again.
    pub async fn hand_over(&self, logs: Vec<Arc<PartitionLog>>) -> Result<(), Fenced> {
        for l in &logs {
            l.set_lease(Lease::Draining);
        }
        if !self.flusher.sync(DRAIN_DEADLINE).await {
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
        while !self.flusher.sync(DRAIN_DEADLINE).await {
            if let Some(why) = self.flusher.fenced_reason() {
                return Err(Fenced(format!(
                    "fenced while handing partitions over: {why}"
                )));
            }
            tracing::warn!("hand-over: waiting for flushes to commit");
        }
        self.release(&logs).await.map(|_| ())
    }

    /// Retries the releases left unconfirmed by an earlier round.
    pub async fn retry_releases(&self) -> Result<(), Fenced> {
        let pending =
            std::mem::take(&mut *self.unreleased.lock().unwrap_or_else(|p| p.into_inner()));
        let pending: Vec<_> = pending.into_iter().filter(|l| !l.is_deleted()).collect();
        if pending.is_empty() {
            return Ok(());
        }
        tracing::info!(partitions = pending.len(), "retrying unconfirmed releases");
        self.release(&pending).await.map(|_| ())
    }

    /// Stores released checkpoints for `logs` (already `NotOwned` and
    /// drained), within the retry budget per chunk. `Ok(true)` once every
    /// release is confirmed; `Ok(false)` if some are not (see
    /// `settle_release`): this incarnation's flush records must then stay.
    pub async fn release(&self, logs: &[Arc<PartitionLog>]) -> Result<bool, Fenced> {
        let mut confirmed = true;
        let _g = self.checkpointing.lock().await;
        let through = self.flusher.committed_through();
        for chunk in logs.chunks(CHECKPOINT_CHUNK) {
            let cps: Vec<_> = chunk
                .iter()
                .map(|l| l.full_checkpoint(&self.me, through))
                .collect();
            let r = self
                .retry
                .run(
                    "release",
                    || false,
                    || self.meta.release_partitions(&self.me, &cps),
                )
                .await;
            match r {
                Ok(()) => {
                    for l in chunk {
                        l.mark_all_checkpointed();
                        tracing::info!(partition = %l.id, "partition released");
                    }
                }
                Err(e) => {
                    let e = fenced_or(e)?;
                    tracing::warn!(error = %e, "release failed; reading the partitions back");
                    confirmed &= self.settle_release(chunk).await;
                }
            }
        }
        Ok(confirmed)
    }

    /// After a release that failed or whose outcome is unknown: a partition
    /// still stored as ours and unreleased is led again (the next round hands
    /// it over again); one that cannot be read is retried next round. `true`
    /// if every partition's release turned out to have landed.
    async fn settle_release(&self, chunk: &[Arc<PartitionLog>]) -> bool {
        let mut landed = true;
        for l in chunk {
            match self.meta.load_partition_from(l.id, i64::MAX).await {
                Ok(Some(s)) if s.owner == self.me && !s.released => {
                    landed = false;
                    l.set_lease(Lease::Owned);
                }
                Ok(_) => {
                    l.mark_all_checkpointed();
                    tracing::info!(partition = %l.id, "partition released (read back)");
                }
                Err(e) => {
                    landed = false;
                    tracing::warn!(partition = %l.id, error = %e, "release unconfirmed; retrying next round");
                    self.unreleased
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(l.clone());
                }
            }
        }
        landed
    }

    /// Trims the flush records of dead incarnations: call only when this
    /// gateway, alone, leads every partition of `logs` (it folded their
    /// records into its claims). Dead is judged on the membership read after
    /// listing the streams (a gateway starting meanwhile is not dead).
    pub async fn trim_dead_streams(&self, logs: &[Arc<PartitionLog>]) -> floe_core::Result<usize> {
        if !logs
            .iter()
            .all(|l| l.lease() == Lease::Owned || l.is_deleted())
        {
            return Ok(0);
        }
        let streams = self.meta.flush_streams().await?;
        let members = self.meta.list_members().await?;
        let mut trimmed = 0;
        for s in streams.iter().filter(|s| is_dead(s, &members)) {
            self.meta.trim_flushes(s, u64::MAX).await?;
            trimmed += 1;
        }
        if trimmed > 0 {
            tracing::info!(
                streams = trimmed,
                "trimmed the records of dead incarnations"
            );
        }
        Ok(trimmed)
    }

    /// Drains the write path: seals what is buffered and waits, up to
    /// `deadline`, for every sealed flush to commit; then stops it.
    pub async fn drain(&self, deadline: Duration) {
        self.flusher.close(deadline).await;
    }

    /// Hands every partition of `logs` led here back (after `drain`) and trims
    /// this incarnation's records; `false` if the release did not complete by
    /// `deadline` (peers then take over after the session timeout).
    pub async fn release_all(&self, logs: &[Arc<PartitionLog>], deadline: Duration) -> bool {
        let owned: Vec<_> = logs
            .iter()
            .filter(|l| !l.is_deleted() && l.lease() != Lease::NotOwned)
            .cloned()
            .collect();
        for l in &owned {
            l.set_lease(Lease::NotOwned);
        }
        // Only a confirmed release lets this incarnation trim its records and
        // leave: the next owner replays them otherwise.
        let released = tokio::time::timeout(deadline, self.release(&owned)).await;
        if !matches!(released, Ok(Ok(true))) {
            return false;
        }
        if let Err(e) = self.trim_own(logs).await {
            tracing::warn!(error = %e, "final trim failed");
        }
        true
    }

    /// Trims this incarnation's flush records that every partition of `logs`
    /// has stored (`floe_flusher::trim_point`: a partition whose release
    /// did not land, or whose entries are unstored, keeps its records).
    async fn trim_own(&self, logs: &[Arc<PartitionLog>]) -> floe_core::Result<()> {
        let Some(through) = floe_flusher::trim_point(logs, self.flusher.committed_through()) else {
            return Ok(());
        };
        if through > self.trimmed_through.load(Ordering::SeqCst) {
            self.meta.trim_flushes(&self.me, through).await?;
        }
        Ok(())
    }

    /// Why the write path stopped this incarnation (a commit or checkpoint
    /// met a newer epoch, or a commit's outcome could not be learned), if it
    /// did: the gateway must then stop (`Broker::fence`).
    pub fn fenced_reason(&self) -> Option<String> {
        self.flusher.fenced_reason()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_core::clock::SystemClock;
    use floe_core::fault::{Fault, Faults, FaultyMetaStore};
    use floe_core::meta::MemoryMetaStore;
    use floe_core::object_store::MemoryObjectStore;
    use floe_core::types::{GatewayInfo, PartitionId, TopicId};
    use floe_flusher::{FlusherConfig, ReadCache};

    async fn leases(faults: &Arc<Faults>) -> (Leases, SharedMetaStore, Arc<PartitionLog>) {
        let meta: SharedMetaStore = Arc::new(FaultyMetaStore::new(
            Arc::new(MemoryMetaStore::new()),
            faults.clone(),
        ));
        let info = GatewayInfo::at("127.0.0.1:9092");
        let me = StreamId {
            gateway: "gw".into(),
            epoch: meta.register_gateway("gw", &info).await.expect("register"),
        };
        let budget = Duration::from_millis(100);
        let flusher = Flusher::start(
            FlusherConfig {
                segment_bytes: 1 << 20,
                flush_interval: Duration::from_millis(2),
                max_buffer_bytes: 1 << 20,
                upload_concurrency: 1,
                retry_budget: budget,
                max_commit_age: Duration::from_secs(1800),
            },
            me.clone(),
            Arc::new(MemoryObjectStore::new()),
            meta.clone(),
            Arc::new(SystemClock),
            Arc::new(ReadCache::new(1 << 20)),
        );
        let l = Leases::new(meta.clone(), me, flusher, RetryPolicy::new(budget));
        let log = PartitionLog::unowned(PartitionId::new(TopicId::from_u128(1), 0));
        l.claim_new(&[], vec![log.clone()]).await.expect("claim");
        assert!(l.leads(&log));
        (l, meta, log)
    }

    async fn released(meta: &SharedMetaStore, log: &PartitionLog) -> bool {
        meta.load_partition(log.id)
            .await
            .expect("load")
            .expect("claimed")
            .released
    }

    /// A release that fails past the retry budget and reads back as not
    /// landed leaves the partition led here; the next hand-over releases it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_release_that_did_not_land_keeps_the_partition_led() {
        let faults = Faults::new();
        let (l, meta, log) = leases(&faults).await;
        faults.set("meta.checkpoint", Fault::Unavailable, None);
        l.hand_over(vec![log.clone()]).await.expect("not fenced");
        assert!(faults.hits("meta.checkpoint") > 1, "retried");
        assert!(l.leads(&log), "still led here: the release did not land");
        assert!(!released(&meta, &log).await);
        faults.clear_all();
        l.hand_over(vec![log.clone()]).await.expect("not fenced");
        assert_eq!(log.lease(), Lease::NotOwned);
        assert!(released(&meta, &log).await);
    }

    /// A release whose outcome cannot even be read back keeps the partition
    /// unled (it may have landed) and is retried at the next round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unconfirmed_release_is_retried_next_round() {
        let faults = Faults::new();
        let (l, meta, log) = leases(&faults).await;
        faults.set("meta.checkpoint", Fault::Unavailable, None);
        faults.set("meta.read", Fault::Unavailable, Some(1));
        l.hand_over(vec![log.clone()]).await.expect("not fenced");
        assert_eq!(log.lease(), Lease::NotOwned, "not led: it may be released");
        faults.clear_all();
        assert!(!released(&meta, &log).await);
        l.retry_releases().await.expect("not fenced");
        assert!(released(&meta, &log).await);
        // Nothing is left to retry.
        faults.set("meta.checkpoint", Fault::Fenced, None);
        l.retry_releases().await.expect("nothing pending");
    }
}
