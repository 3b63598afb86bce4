//! Buffer → seal → upload → commit → ack.
//!
//! Three roles, each a task: the *sealer* owns the open segment and assigns
//! offsets; *uploads* run concurrently (bounded); the *committer* commits flush
//! records strictly in seal order, applies them to the partitions' committed state
//! and acknowledges. Memory is bounded by a semaphore over buffered bytes: an
//! append waits for room before it enters the buffer (backpressure).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use floe_core::clock::SharedClock;
use floe_core::keys::object_key;
use floe_core::meta::SharedMetaStore;
use floe_core::meta::rules::{CommitOutcome, commit_outcome};
use floe_core::object_store::{SharedObjectStore, put_exactly};
use floe_core::producer::{SeqCheck, apply_batch, check_sequence};
use floe_core::retry::RetryPolicy;
use floe_core::segment::SegmentBuilder;
use floe_core::types::{
    FlushPartition, FlushRecord, PartitionId, ProducerBatch, ProducerState, StreamId,
};
use floe_core::{Error, ErrorKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cache::ReadCache;
use crate::log::{Lease, PartitionLog};

#[derive(Debug, Clone)]
pub struct FlusherConfig {
    pub segment_bytes: u64,
    pub flush_interval: Duration,
    pub max_buffer_bytes: u64,
    pub upload_concurrency: usize,
    /// How long an upload or a commit is retried before its flush fails.
    pub retry_budget: Duration,
    /// A flush sealed longer ago than this is failed instead of committed:
    /// its object may have been found unreferenced for longer than the
    /// object-delete delay by then (half of `object-delete-delay`).
    pub max_commit_age: Duration,
}

/// One Kafka RecordBatch v2, validated by the gateway, with the header fields the
/// write path needs.
#[derive(Debug, Clone)]
pub struct BatchIn {
    pub bytes: Bytes,
    /// Records in the batch (lastOffsetDelta + 1).
    pub records: i32,
    pub max_timestamp: i64,
    /// -1 for non-idempotent producers.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchIn {
    fn last_sequence(&self) -> i32 {
        let last = self.base_sequence as i64 + self.records as i64 - 1;
        (last % (i32::MAX as i64 + 1)) as i32
    }
}

/// An enqueued append; `wait` resolves once it is durable (or failed).
#[derive(Debug)]
pub struct AppendTicket(oneshot::Receiver<Result<AppendOk, AppendError>>);

impl AppendTicket {
    pub async fn wait(self) -> Result<AppendOk, AppendError> {
        self.0.await.map_err(|_| AppendError::ShuttingDown)?
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOk {
    pub base_offset: i64,
    pub log_start_offset: i64,
    /// The batch had been appended before (idempotent retry).
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("out of order sequence number (expected {expected})")]
    OutOfOrderSequence { expected: i32 },
    #[error("producer epoch is older than the current epoch {current}")]
    InvalidProducerEpoch { current: i16 },
    #[error("storage unavailable: {0}")]
    Storage(String),
    #[error("this gateway no longer owns the partition: {0}")]
    NotOwner(String),
    #[error("the partition was deleted")]
    Deleted,
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

/// Counters for operators and the cost report.
#[derive(Debug, Default)]
pub struct FlusherStats {
    pub flushes: AtomicU64,
    pub flushed_bytes: AtomicU64,
    pub put_requests: AtomicU64,
    pub commit_requests: AtomicU64,
    pub failed_flushes: AtomicU64,
    pub appended_batches: AtomicU64,
    /// Record batch bytes of appends made durable (idempotent duplicates not
    /// counted): the produced bytes, whether the producer waited (acks=1/all)
    /// or not (acks=0).
    pub appended_bytes: AtomicU64,
    /// Records of those appends.
    pub appended_records: AtomicU64,
}

struct Pending {
    log: Arc<PartitionLog>,
    batches: Vec<BatchIn>,
    reply: oneshot::Sender<Result<AppendOk, AppendError>>,
    _permit: OwnedSemaphorePermit,
    bytes: usize,
}

enum Msg {
    Append(Pending),
    Flush(oneshot::Sender<()>),
}

struct Sealed {
    seq: u64,
    sealed_at: tokio::time::Instant,
    record: Option<FlushRecord>,
    body: Bytes,
    upload: Option<JoinHandle<floe_core::Result<()>>>,
    logs: Vec<Arc<PartitionLog>>,
    replies: Vec<(Pending, Result<AppendOk, AppendError>)>,
}

#[derive(Default)]
struct SealState {
    next_seq: u64,
    last_sealed: u64,
    touched: HashMap<PartitionId, Weak<PartitionLog>>,
}

struct Inner {
    config: FlusherConfig,
    stream: StreamId,
    objects: SharedObjectStore,
    meta: SharedMetaStore,
    clock: SharedClock,
    cache: Arc<ReadCache>,
    buffer: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
    seal: Mutex<SealState>,
    doomed_through: AtomicU64,
    committed_through: AtomicU64,
    fenced: AtomicBool,
    /// Why this incarnation stopped writing, once it did.
    fenced_reason: Mutex<Option<String>>,
    abandon: AtomicBool,
    retry: RetryPolicy,
    stats: Arc<FlusherStats>,
}

impl Inner {
    fn set_fenced(&self, why: &str) {
        let mut r = self.fenced_reason.lock().unwrap_or_else(|p| p.into_inner());
        r.get_or_insert_with(|| why.to_string());
        self.fenced.store(true, Ordering::SeqCst);
    }

    fn fenced_reason(&self) -> Option<String> {
        self.fenced_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Shutdown passed its deadline: stop retrying storage.
    fn abandoned(&self) -> bool {
        self.abandon.load(Ordering::SeqCst)
    }
}

/// Handle to the write path; cheap to clone.
#[derive(Clone)]
pub struct Flusher {
    inner: Arc<Inner>,
    tx: mpsc::UnboundedSender<Msg>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher")
            .field("stream", &self.inner.stream)
            .finish()
    }
}

impl Flusher {
    /// Starts the write path for incarnation `stream`; its first flush gets
    /// seq 1 (every incarnation starts a new stream).
    pub fn start(
        config: FlusherConfig,
        stream: StreamId,
        objects: SharedObjectStore,
        meta: SharedMetaStore,
        clock: SharedClock,
        cache: Arc<ReadCache>,
    ) -> Flusher {
        let buffer = Arc::new(Semaphore::new(
            config.max_buffer_bytes.min(u32::MAX as u64) as usize
        ));
        let uploads = Arc::new(Semaphore::new(config.upload_concurrency));
        let retry = RetryPolicy::new(config.retry_budget);
        let inner = Arc::new(Inner {
            config,
            stream,
            objects,
            meta,
            clock,
            cache,
            buffer,
            uploads,
            seal: Mutex::new(SealState {
                next_seq: 1,
                ..Default::default()
            }),
            doomed_through: AtomicU64::new(0),
            committed_through: AtomicU64::new(0),
            fenced: AtomicBool::new(false),
            fenced_reason: Mutex::new(None),
            abandon: AtomicBool::new(false),
            retry,
            stats: Arc::default(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let (commit_tx, commit_rx) = mpsc::unbounded_channel();
        let sealer = tokio::spawn(seal_loop(inner.clone(), rx, commit_tx));
        let committer = tokio::spawn(commit_loop(inner.clone(), commit_rx));
        Flusher {
            inner,
            tx,
            tasks: Arc::new(Mutex::new(vec![sealer, committer])),
        }
    }

    pub fn stream(&self) -> &StreamId {
        &self.inner.stream
    }

    /// The write path's counters; shared so a metrics exporter can hold them.
    pub fn stats(&self) -> &Arc<FlusherStats> {
        &self.inner.stats
    }

    /// Highest flush seq resolved: committed, or failed and rolled back (a failed
    /// flush has no record, so checkpoints and trims may pass it).
    pub fn committed_through(&self) -> u64 {
        self.inner.committed_through.load(Ordering::SeqCst)
    }

    pub fn is_fenced(&self) -> bool {
        self.inner.fenced.load(Ordering::SeqCst)
    }

    /// Why this incarnation stopped writing, if it did.
    pub fn fenced_reason(&self) -> Option<String> {
        self.inner.fenced_reason()
    }

    /// Marks this incarnation fenced (e.g. a checkpoint found a newer epoch).
    pub fn set_fenced(&self, why: &str) {
        self.inner.set_fenced(why);
    }

    /// Appends `batches` to `log` as one unit; resolves once durable.
    pub async fn append(
        &self,
        log: Arc<PartitionLog>,
        batches: Vec<BatchIn>,
    ) -> Result<AppendOk, AppendError> {
        self.enqueue(log, batches).await?.wait().await
    }

    /// Puts `batches` into the buffer (waiting for room: backpressure) and
    /// returns a ticket that resolves once they are durable. Appends to one
    /// partition are sequenced in the order `enqueue` completes, so a caller that
    /// must preserve order (one Kafka connection's produce requests) enqueues in
    /// that order and only then waits.
    pub async fn enqueue(
        &self,
        log: Arc<PartitionLog>,
        batches: Vec<BatchIn>,
    ) -> Result<AppendTicket, AppendError> {
        if self.is_fenced() {
            return Err(AppendError::NotOwner(format!(
                "{} is fenced",
                self.inner.stream
            )));
        }
        let bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
        let permits = bytes.clamp(
            1,
            self.inner.config.max_buffer_bytes.min(u32::MAX as u64) as usize,
        ) as u32;
        let permit = self
            .inner
            .buffer
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| AppendError::ShuttingDown)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Append(Pending {
                log,
                batches,
                reply,
                _permit: permit,
                bytes,
            }))
            .map_err(|_| AppendError::ShuttingDown)?;
        Ok(AppendTicket(rx))
    }

    /// Seals whatever is buffered now and waits until it is sealed (not committed).
    pub async fn flush_now(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Seals what is buffered and waits until every flush sealed so far is
    /// committed or failed; `false` if `deadline` passed first.
    pub async fn sync(&self, deadline: Duration) -> bool {
        self.flush_now().await;
        let target = self
            .inner
            .seal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_sealed;
        let until = Instant::now() + deadline;
        while self.committed_through() < target
            && self.inner.doomed_through.load(Ordering::SeqCst) < target
        {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }

    /// Drains: seals what is buffered, waits until every sealed flush is
    /// committed (or failed), then stops the tasks. Past `deadline` it stops
    /// retrying storage and fails what is left; nothing acknowledged is affected.
    pub async fn close(&self, deadline: Duration) {
        if !self.sync(deadline).await {
            self.inner.abandon.store(true, Ordering::SeqCst);
            tracing::error!(
                committed = self.committed_through(),
                "shutdown deadline passed with flushes uncommitted"
            );
        }
        self.inner.buffer.close();
        for t in std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner())) {
            t.abort();
        }
    }
}

struct Open {
    groups: Vec<(Arc<PartitionLog>, Vec<Pending>)>,
    index: HashMap<PartitionId, usize>,
    bytes: usize,
    first_at: Option<Instant>,
}

impl Open {
    fn new() -> Self {
        Open {
            groups: Vec::new(),
            index: HashMap::new(),
            bytes: 0,
            first_at: None,
        }
    }
    fn push(&mut self, p: Pending) {
        self.bytes += p.bytes;
        self.first_at.get_or_insert_with(Instant::now);
        let id = p.log.id;
        let i = *self.index.entry(id).or_insert_with(|| {
            self.groups.push((p.log.clone(), Vec::new()));
            self.groups.len() - 1
        });
        self.groups[i].1.push(p);
    }
    fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

async fn seal_loop(
    inner: Arc<Inner>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    commit_tx: mpsc::UnboundedSender<Sealed>,
) {
    let mut open = Open::new();
    loop {
        let deadline = open.first_at.map(|t| t + inner.config.flush_interval);
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Append(p)) => {
                    open.push(p);
                    if open.bytes as u64 >= inner.config.segment_bytes {
                        let o = std::mem::replace(&mut open, Open::new());
                        let _ = commit_tx.send(seal(&inner, o));
                    }
                }
                Some(Msg::Flush(done)) => {
                    if !open.is_empty() {
                        let o = std::mem::replace(&mut open, Open::new());
                        let _ = commit_tx.send(seal(&inner, o));
                    }
                    let _ = done.send(());
                }
                None => {
                    if !open.is_empty() {
                        let _ = commit_tx.send(seal(&inner, open));
                    }
                    return;
                }
            },
            _ = sleep_until_opt(deadline) => {
                let o = std::mem::replace(&mut open, Open::new());
                let _ = commit_tx.send(seal(&inner, o));
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Checks a unit of batches against producer state without changing it.
/// Ok(Some(base)) means the whole unit is a duplicate appended at `base`.
fn check_unit(
    working: &std::collections::BTreeMap<i64, ProducerState>,
    batches: &[BatchIn],
) -> Result<Option<i64>, AppendError> {
    let mut scratch: HashMap<i64, ProducerState> = HashMap::new();
    let mut duplicate = None;
    let mut fresh = false;
    for b in batches.iter().filter(|b| b.producer_id >= 0) {
        let state = scratch
            .get(&b.producer_id)
            .or_else(|| working.get(&b.producer_id));
        match check_sequence(state, b.producer_epoch, b.base_sequence, b.last_sequence()) {
            SeqCheck::Append => {
                fresh = true;
                let mut s = state.cloned().unwrap_or_default();
                apply_batch(
                    &mut s,
                    &ProducerBatch {
                        producer_id: b.producer_id,
                        epoch: b.producer_epoch,
                        first_seq: b.base_sequence,
                        last_seq: b.last_sequence(),
                        base_offset: 0,
                        last_offset: 0,
                        max_timestamp: b.max_timestamp,
                    },
                );
                scratch.insert(b.producer_id, s);
            }
            SeqCheck::Duplicate { base_offset, .. } => {
                duplicate.get_or_insert(base_offset);
            }
            SeqCheck::OutOfOrder { expected } => {
                return Err(AppendError::OutOfOrderSequence { expected });
            }
            SeqCheck::StaleEpoch { current } => {
                return Err(AppendError::InvalidProducerEpoch { current });
            }
        }
    }
    match duplicate {
        Some(_) if fresh => Err(AppendError::OutOfOrderSequence { expected: -1 }),
        d => Ok(d),
    }
}

fn seal(inner: &Arc<Inner>, open: Open) -> Sealed {
    let mut seal_state = inner.seal.lock().unwrap_or_else(|p| p.into_inner());
    let seq = seal_state.next_seq;
    seal_state.next_seq += 1;
    seal_state.last_sealed = seq;
    let key = object_key(&inner.stream, seq);
    let mut builder = SegmentBuilder::with_capacity(open.bytes + 64 * (open.groups.len() + 1));
    let mut partitions = Vec::new();
    let mut logs = Vec::new();
    let mut replies = Vec::new();
    for (log, pendings) in open.groups {
        seal_state.touched.insert(log.id, Arc::downgrade(&log));
        let mut st = log.lock();
        if st.deleted {
            drop(st);
            replies.extend(pendings.into_iter().map(|p| (p, Err(AppendError::Deleted))));
            continue;
        }
        if st.lease == Lease::NotOwned {
            drop(st);
            let why = format!("partition {} moved to another gateway", log.id);
            replies.extend(
                pendings
                    .into_iter()
                    .map(|p| (p, Err(AppendError::NotOwner(why.clone())))),
            );
            continue;
        }
        let region_start = builder.position();
        let first_offset = st.next_offset;
        let mut max_ts = i64::MIN;
        let mut producers = Vec::new();
        let mut batch_count = 0u32;
        for p in pendings {
            match check_unit(&st.working_producers, &p.batches) {
                Err(e) => {
                    replies.push((p, Err(e)));
                    continue;
                }
                Ok(Some(base)) => {
                    let ok = AppendOk {
                        base_offset: base,
                        log_start_offset: st.log_start_offset,
                        duplicate: true,
                    };
                    replies.push((p, Ok(ok)));
                    continue;
                }
                Ok(None) => {}
            }
            let base = st.next_offset;
            for b in &p.batches {
                let offset = st.next_offset;
                builder.push_batch(&b.bytes, offset);
                batch_count += 1;
                st.next_offset += b.records as i64;
                max_ts = max_ts.max(b.max_timestamp);
                if b.producer_id >= 0 {
                    let pb = ProducerBatch {
                        producer_id: b.producer_id,
                        epoch: b.producer_epoch,
                        first_seq: b.base_sequence,
                        last_seq: b.last_sequence(),
                        base_offset: offset,
                        last_offset: st.next_offset - 1,
                        max_timestamp: b.max_timestamp,
                    };
                    apply_batch(st.working_producers.entry(b.producer_id).or_default(), &pb);
                    producers.push(pb);
                }
            }
            let ok = AppendOk {
                base_offset: base,
                log_start_offset: st.log_start_offset,
                duplicate: false,
            };
            replies.push((p, Ok(ok)));
        }
        if st.next_offset > first_offset {
            let info = builder.finish_region(
                log.id,
                region_start,
                first_offset,
                st.next_offset - 1,
                max_ts,
                batch_count,
            );
            partitions.push(FlushPartition {
                partition: log.id,
                base_offset: info.base_offset,
                last_offset: info.last_offset,
                max_timestamp: info.max_timestamp,
                position: info.position,
                length: info.length,
                producers,
            });
            drop(st);
            logs.push(log);
        }
    }
    drop(seal_state);
    if partitions.is_empty() {
        return Sealed {
            seq,
            sealed_at: tokio::time::Instant::now(),
            record: None,
            body: Bytes::new(),
            upload: None,
            logs,
            replies,
        };
    }
    let body = builder.finish();
    let record = FlushRecord {
        stream: inner.stream.clone(),
        seq,
        object_key: key.clone(),
        object_len: body.len() as u64,
        created_ms: inner.clock.now_ms(),
        partitions,
    };
    let upload = {
        let inner = inner.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let _permit = inner.uploads.clone().acquire_owned().await;
            // Past the budget the flush fails: nothing refers to the object yet.
            inner
                .retry
                .run(
                    "upload",
                    || inner.abandoned(),
                    || {
                        inner.stats.put_requests.fetch_add(1, Ordering::Relaxed);
                        let inner = inner.clone();
                        let key = key.clone();
                        let body = body.clone();
                        async move { put_exactly(&*inner.objects, &key, body).await }
                    },
                )
                .await
        })
    };
    Sealed {
        seq,
        sealed_at: tokio::time::Instant::now(),
        record: Some(record),
        body,
        upload: Some(upload),
        logs,
        replies,
    }
}

async fn commit_loop(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Sealed>) {
    while let Some(mut s) = rx.recv().await {
        if s.seq <= inner.doomed_through.load(Ordering::SeqCst) {
            if let Some(u) = &s.upload {
                u.abort();
            }
            fail(
                &inner,
                s,
                AppendError::Storage("an earlier flush failed to commit".into()),
            );
            continue;
        }
        let result = commit_one(&inner, &mut s).await;
        match result {
            Ok(()) => apply_committed(&inner, s),
            Err(e) => {
                tracing::error!(seq = s.seq, error = %e, "flush failed; rolling back later flushes");
                inner.stats.failed_flushes.fetch_add(1, Ordering::Relaxed);
                let err = if e.kind() == ErrorKind::Fenced {
                    inner.set_fenced(&e.to_string());
                    AppendError::NotOwner(e.to_string())
                } else {
                    AppendError::Storage(e.to_string())
                };
                rollback(&inner);
                fail(&inner, s, err);
            }
        }
    }
}

async fn commit_one(inner: &Arc<Inner>, s: &mut Sealed) -> floe_core::Result<()> {
    if let Some(upload) = s.upload.take() {
        upload
            .await
            .map_err(|e| Error::Internal(format!("upload task failed: {e}")))??;
    }
    if let Some(record) = &s.record {
        // Once an attempt's outcome is unknown, a later attempt's definite failure
        // says nothing about it: the record may have landed. Rolling back then
        // would let the next flush commit the same offsets again.
        let uncertain = AtomicBool::new(false);
        let result = inner
            .retry
            .run(
                "commit",
                || inner.abandoned(),
                || {
                    inner.stats.commit_requests.fetch_add(1, Ordering::Relaxed);
                    let uncertain = &uncertain;
                    let age = s.sealed_at.elapsed();
                    async move {
                        // Referencing an object this old could race its deletion
                        // (see floe-compactor's gc): fail the flush instead.
                        if age > inner.config.max_commit_age {
                            return Err(Error::Internal(format!(
                                "flush sealed {age:?} ago, past the {:?} an object may wait for its commit",
                                inner.config.max_commit_age
                            )));
                        }
                        let r = inner.meta.commit_flush(record).await;
                        if matches!(&r, Err(e) if e.kind() == ErrorKind::Ambiguous) {
                            uncertain.store(true, Ordering::SeqCst);
                        }
                        r
                    }
                },
            )
            .await;
        match result {
            // An outcome may be unknown, or the retry budget ran out (an attempt
            // that failed with a 5xx may still have been applied): the stored
            // record decides before any offset is reused.
            Err(e) if uncertain.load(Ordering::SeqCst) || e.is_retriable() => {
                match commit_landed(inner, record).await {
                    Ok(true) => {}
                    Ok(false) => return Err(e),
                    // The outcome cannot be learned: rolling back could reuse offsets
                    // that are committed. Stop this incarnation from writing; a restart
                    // replays whatever landed.
                    Err(read_err) => {
                        return Err(Error::Fenced(format!(
                            "outcome of flush {} #{} is unknown ({e}) and reading it back failed ({read_err}); \
                         refusing writes until restart",
                            record.stream, record.seq
                        )));
                    }
                }
            }
            r => r?,
        }
    }
    Ok(())
}

/// Reads back whether `record` was committed (resolves an unknown outcome),
/// within the retry budget.
async fn commit_landed(inner: &Arc<Inner>, record: &FlushRecord) -> floe_core::Result<bool> {
    let found = inner
        .retry
        .run(
            "commit read-back",
            || inner.abandoned(),
            || {
                inner
                    .meta
                    .read_flushes(&record.stream, record.seq.saturating_sub(1))
            },
        )
        .await?;
    let stored = found.first().filter(|r| r.seq == record.seq);
    match commit_outcome(record, stored) {
        CommitOutcome::Landed => Ok(true),
        CommitOutcome::Absent => Ok(false),
        CommitOutcome::Conflict => Err(Error::Internal(format!(
            "flush {} #{} holds another record than the one this gateway committed",
            record.stream, record.seq
        ))),
    }
}

fn apply_committed(inner: &Arc<Inner>, s: Sealed) {
    if let Some(record) = &s.record {
        for (fp, log) in record.partitions.iter().zip(&s.logs) {
            debug_assert_eq!(fp.partition, log.id);
            {
                let mut st = log.lock();
                for pb in &fp.producers {
                    apply_batch(st.producers.entry(pb.producer_id).or_default(), pb);
                }
                PartitionLog::note_flush(&mut st, s.seq, fp.index_entry(&record.object_key));
            }
            inner.cache.insert(
                &record.object_key,
                fp.position,
                s.body
                    .slice(fp.position as usize..(fp.position + fp.length as u64) as usize),
            );
            log.wake();
        }
        inner.stats.flushes.fetch_add(1, Ordering::Relaxed);
        inner
            .stats
            .flushed_bytes
            .fetch_add(record.object_len, Ordering::Relaxed);
    }
    inner.committed_through.store(s.seq, Ordering::SeqCst);
    for (p, r) in s.replies {
        if let Ok(ok) = &r {
            let st = &inner.stats;
            st.appended_batches
                .fetch_add(p.batches.len() as u64, Ordering::Relaxed);
            // A duplicate (idempotent retry) was counted when it was first appended.
            if !ok.duplicate {
                let records: u64 = p.batches.iter().map(|b| b.records.max(0) as u64).sum();
                st.appended_bytes
                    .fetch_add(p.bytes as u64, Ordering::Relaxed);
                st.appended_records.fetch_add(records, Ordering::Relaxed);
            }
        }
        let _ = p.reply.send(r);
    }
}

fn rollback(inner: &Arc<Inner>) {
    let mut seal_state = inner.seal.lock().unwrap_or_else(|p| p.into_inner());
    inner
        .doomed_through
        .store(seal_state.last_sealed, Ordering::SeqCst);
    seal_state.touched.retain(|_, w| w.strong_count() > 0);
    for log in seal_state.touched.values().filter_map(Weak::upgrade) {
        let mut st = log.lock();
        st.next_offset = st.high_watermark;
        st.working_producers = st.producers.clone();
    }
}

fn fail(inner: &Arc<Inner>, s: Sealed, err: AppendError) {
    let _ = inner;
    for (p, r) in s.replies {
        // Errors found at seal time (sequence, deletion) stand; the rest fail.
        let r = match r {
            Ok(_) => Err(err.clone()),
            e => e,
        };
        let _ = p.reply.send(r);
    }
}
