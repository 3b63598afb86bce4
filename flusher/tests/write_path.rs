//! The write path end to end: buffer → seal → upload → commit → ack, over the
//! memory and embedded backends wrapped in fault-injecting stores.
//!
//! Batches are opaque to the flusher beyond their first 8 bytes (the base offset
//! it writes), so tests use 64-byte buffers: byte 8 holds the record count, byte 9
//! a tag, which lets a test walk a region and check every assigned offset.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use floe_core::clock::SystemClock;
use floe_core::fault::{Fault, Faults, FaultyMetaStore, FaultyObjectStore};
use floe_core::meta::{MemoryMetaStore, SharedMetaStore, SqliteMetaStore};
use floe_core::object_store::{
    LocalDirStore, MemoryObjectStore, ObjectInfo, ObjectStore, SharedObjectStore,
};
use floe_core::segment::{read_footer, verify_region};
use floe_core::types::{FlushRecord, GatewayInfo, PartitionId, StreamId, TopicId};
use floe_flusher::{
    AppendError, AppendOk, BatchIn, Flusher, FlusherConfig, PartitionLog, ReadCache,
    checkpoint_once, recover_partition_logs,
};
use tempfile::TempDir;
use tokio::time::Instant;

const BATCH_LEN: usize = 64;
const GATEWAY: &str = "gw-1";

// ---------------------------------------------------------------------------
// Rig.

fn config(flush_interval_ms: u64, max_buffer_bytes: u64) -> FlusherConfig {
    FlusherConfig {
        segment_bytes: 1 << 20,
        flush_interval: Duration::from_millis(flush_interval_ms),
        max_buffer_bytes,
        upload_concurrency: 4,
        retry_budget: Duration::from_secs(30),
        max_commit_age: Duration::from_secs(1800),
    }
}

fn info() -> GatewayInfo {
    GatewayInfo::at("127.0.0.1:9092")
}

fn pid(p: i32) -> PartitionId {
    PartitionId::new(TopicId::from_u128(0xf10e), p)
}

struct Rig {
    faults: Arc<Faults>,
    objects: SharedObjectStore,
    meta: SharedMetaStore,
    stream: StreamId,
    flusher: Flusher,
}

impl Rig {
    /// Registers the gateway and starts a flusher for its new epoch.
    async fn start(
        objects: SharedObjectStore,
        meta: SharedMetaStore,
        faults: Arc<Faults>,
        config: FlusherConfig,
    ) -> Rig {
        let objects: SharedObjectStore = Arc::new(FaultyObjectStore::new(objects, faults.clone()));
        let meta: SharedMetaStore = Arc::new(FaultyMetaStore::new(meta, faults.clone()));
        let epoch = meta
            .register_gateway(GATEWAY, &info())
            .await
            .expect("register");
        let stream = StreamId {
            gateway: GATEWAY.into(),
            epoch,
        };
        let flusher = start_flusher(&config, &stream, &objects, &meta);
        Rig {
            faults,
            objects,
            meta,
            stream,
            flusher,
        }
    }

    async fn memory(config: FlusherConfig) -> Rig {
        Rig::start(
            Arc::new(MemoryObjectStore::new()),
            Arc::new(MemoryMetaStore::new()),
            Faults::new(),
            config,
        )
        .await
    }

    async fn flushes(&self) -> Vec<FlushRecord> {
        self.meta
            .read_flushes(&self.stream, 0)
            .await
            .expect("read flushes")
    }

    async fn segments(&self) -> Vec<ObjectInfo> {
        self.objects.list("segments/").await.expect("list")
    }
}

fn start_flusher(
    config: &FlusherConfig,
    stream: &StreamId,
    objects: &SharedObjectStore,
    meta: &SharedMetaStore,
) -> Flusher {
    Flusher::start(
        config.clone(),
        stream.clone(),
        objects.clone(),
        meta.clone(),
        Arc::new(SystemClock),
        Arc::new(ReadCache::new(1 << 20)),
    )
}

fn bytes(records: i32, tag: u8, len: usize) -> Bytes {
    let mut b = vec![tag; len];
    b[..8].copy_from_slice(&[0xff; 8]);
    b[8] = records as u8;
    b[9] = tag;
    b.into()
}

/// A batch of a plain (non-idempotent) producer.
fn plain(records: i32, tag: u8) -> BatchIn {
    BatchIn {
        bytes: bytes(records, tag, BATCH_LEN),
        records,
        max_timestamp: 1_000 + tag as i64,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    }
}

/// A batch of idempotent producer `producer_id`.
fn idem(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchIn {
    BatchIn {
        bytes: bytes(records, base_sequence as u8, BATCH_LEN),
        records,
        max_timestamp: 2_000 + base_sequence as i64,
        producer_id,
        producer_epoch: epoch,
        base_sequence,
    }
}

fn spawn_append(
    flusher: &Flusher,
    log: &Arc<PartitionLog>,
    batch: BatchIn,
) -> tokio::task::JoinHandle<Result<AppendOk, AppendError>> {
    let flusher = flusher.clone();
    let log = log.clone();
    tokio::spawn(async move { flusher.append(log, vec![batch]).await })
}

#[track_caller]
fn ok(r: Result<AppendOk, AppendError>) -> AppendOk {
    r.expect("append")
}

/// Checks a segment object against its flush record: the footer lists exactly
/// the record's partitions, every region passes its checksum, and every batch in
/// a region carries the offset the flusher assigned.
async fn check_object(objects: &SharedObjectStore, record: &FlushRecord) {
    let obj = objects.get(&record.object_key).await.expect("get segment");
    assert_eq!(obj.len() as u64, record.object_len);
    let regions = read_footer(&obj).expect("footer");
    assert_eq!(regions.len(), record.partitions.len());
    for (r, fp) in regions.iter().zip(&record.partitions) {
        assert_eq!(r.partition, fp.partition);
        assert_eq!(
            (r.base_offset, r.last_offset, r.max_timestamp),
            (fp.base_offset, fp.last_offset, fp.max_timestamp)
        );
        assert_eq!((r.position, r.length), (fp.position, fp.length));
        verify_region(&obj, r).expect("region checksum");
        let region = &obj[r.position as usize..(r.position + r.length as u64) as usize];
        assert_eq!(region.len() % BATCH_LEN, 0);
        let mut next = r.base_offset;
        for batch in region.chunks(BATCH_LEN) {
            let base = i64::from_be_bytes(batch[..8].try_into().expect("8 bytes"));
            assert_eq!(base, next, "batch offset in {}", record.object_key);
            next += batch[8] as i64;
        }
        assert_eq!(next, r.last_offset + 1);
    }
}

// ---------------------------------------------------------------------------
// (a) Concurrent appends: contiguous offsets, one object per flush.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_contiguous_offsets_and_one_object_per_flush() {
    let rig = Rig::memory(config(40, 1 << 20)).await;
    let logs: Vec<_> = (0..4).map(|p| PartitionLog::empty(pid(p))).collect();

    // One append per partition at once: one flush, one object, four regions.
    let start = Arc::new(tokio::sync::Barrier::new(4));
    let first: Vec<_> = logs
        .iter()
        .map(|log| {
            let (f, log, start) = (rig.flusher.clone(), log.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                f.append(log, vec![plain(2, 1)]).await
            })
        })
        .collect();
    for t in first {
        let a = ok(t.await.expect("task"));
        assert_eq!(a.base_offset, 0);
        assert!(!a.duplicate);
    }
    assert_eq!(rig.segments().await.len(), 1);
    let flushes = rig.flushes().await;
    assert_eq!(flushes.len(), 1);
    let mut parts: Vec<_> = flushes[0].partitions.iter().map(|p| p.partition).collect();
    parts.sort();
    assert_eq!(parts, (0..4).map(pid).collect::<Vec<_>>());
    check_object(&rig.objects, &flushes[0]).await;
    assert_eq!(rig.flusher.committed_through(), 1);
    for log in &logs {
        assert_eq!(log.high_watermark(), 2);
    }

    // Many tasks, many appends each, partitions shared between tasks.
    let tasks: Vec<_> = (0..8usize)
        .map(|t| {
            let f = rig.flusher.clone();
            let log = logs[t % 4].clone();
            tokio::spawn(async move {
                let mut acks = Vec::new();
                let mut last_committed = 0;
                for j in 0..8usize {
                    let records = 1 + ((t + j) % 3) as i32;
                    let a = f
                        .append(log.clone(), vec![plain(records, (t * 8 + j) as u8)])
                        .await
                        .expect("append");
                    // Acknowledged means committed and visible.
                    assert!(log.high_watermark() >= a.base_offset + records as i64);
                    let c = f.committed_through();
                    assert!(c >= last_committed && c > 1);
                    last_committed = c;
                    acks.push((log.id, a.base_offset, records as i64));
                }
                acks
            })
        })
        .collect();
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.expect("task"));
    }
    for (p, log) in logs.iter().enumerate() {
        let mut mine: Vec<_> = acks
            .iter()
            .filter(|a| a.0 == pid(p as i32))
            .map(|a| (a.1, a.2))
            .collect();
        mine.sort();
        let mut next = 2;
        for (base, records) in &mine {
            assert_eq!(*base, next, "partition {p}: gap or duplicate offset");
            next += records;
        }
        assert_eq!(log.high_watermark(), next);
        // The in-memory index covers the whole log, in order, without gaps.
        let plan = log.read_plan(0, u64::MAX);
        assert_eq!(plan.high_watermark, next);
        let mut at = 0;
        for e in &plan.entries {
            assert_eq!(e.base_offset, at);
            at = e.last_offset + 1;
        }
        assert_eq!(at, next);
    }

    let flushes = rig.flushes().await;
    let seqs: Vec<u64> = flushes.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, (1..=flushes.len() as u64).collect::<Vec<_>>());
    assert_eq!(rig.flusher.committed_through(), flushes.len() as u64);
    assert_eq!(
        rig.segments().await.len(),
        flushes.len(),
        "one object per flush"
    );
    assert_eq!(
        rig.flusher.stats().flushes.load(Ordering::Relaxed),
        flushes.len() as u64
    );
    // Fewer flushes than appends: appends from different partitions share objects.
    assert!(flushes.len() <= 33, "{} flushes", flushes.len());
    for f in &flushes {
        check_object(&rig.objects, f).await;
    }
}

// ---------------------------------------------------------------------------
// (b) Commits follow seal order even when an earlier upload is slower.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_follow_seal_order_when_an_earlier_upload_is_slow() {
    let rig = Rig::memory(config(10, 1 << 20)).await;
    let log = PartitionLog::empty(pid(0));
    rig.faults.set(
        "object.put",
        Fault::Delay(Duration::from_millis(300)),
        Some(1),
    );
    let t0 = Instant::now();
    let a = spawn_append(&rig.flusher, &log, plain(1, 1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Sealed into flush 2 after flush 1 (whose upload is stuck in the delay).
    let b = {
        let (f, log, meta, stream) = (
            rig.flusher.clone(),
            log.clone(),
            rig.meta.clone(),
            rig.stream.clone(),
        );
        tokio::spawn(async move {
            let r = f.append(log, vec![plain(2, 2)]).await;
            // When B is acknowledged, A's flush is already committed.
            let seqs: Vec<u64> = meta
                .read_flushes(&stream, 0)
                .await
                .expect("read")
                .iter()
                .map(|r| r.seq)
                .collect();
            (r, seqs, t0.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    // B's object is uploaded, A's is not, and nothing is committed yet.
    assert_eq!(rig.segments().await.len(), 1);
    assert_eq!(rig.flusher.committed_through(), 0);
    assert!(!b.is_finished(), "B must wait for A's commit");
    assert_eq!(log.high_watermark(), 0);

    let a = ok(a.await.expect("task"));
    let (b, seqs_at_b, b_elapsed) = b.await.expect("task");
    let b = ok(b);
    assert_eq!(a.base_offset, 0);
    assert_eq!(b.base_offset, 1);
    assert!(seqs_at_b.contains(&1), "flush 1 committed before B acked");
    assert!(
        b_elapsed >= Duration::from_millis(250),
        "B acked at {b_elapsed:?}"
    );
    let flushes = rig.flushes().await;
    assert_eq!(flushes.len(), 2);
    assert_eq!(
        (flushes[0].seq, flushes[0].partitions[0].base_offset),
        (1, 0)
    );
    assert_eq!(
        (flushes[1].seq, flushes[1].partitions[0].base_offset),
        (2, 1)
    );
    assert_eq!(rig.flusher.committed_through(), 2);
    assert_eq!(log.high_watermark(), 3);
}

// ---------------------------------------------------------------------------
// (c) A failed commit rolls offsets back and fails every later sealed flush.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commit_rolls_back_and_fails_later_flushes() {
    let rig = Rig::memory(config(10, 1 << 20)).await;
    let p0 = PartitionLog::empty(pid(0));
    let p1 = PartitionLog::empty(pid(1));
    let x = rig.flusher.append(p0.clone(), vec![plain(2, 1)]).await;
    assert_eq!(ok(x).base_offset, 0);

    // Flush 2 (A) uploads slowly and then fails to commit; flush 3 (B, C) is
    // sealed meanwhile and must fail too.
    rig.faults.set(
        "object.put",
        Fault::Delay(Duration::from_millis(200)),
        Some(1),
    );
    rig.faults.set("meta.commit", Fault::Denied, Some(1));
    let a = spawn_append(&rig.flusher, &p0, idem(5, 0, 0, 3));
    tokio::time::sleep(Duration::from_millis(60)).await;
    let b = spawn_append(&rig.flusher, &p0, plain(1, 2));
    let c = spawn_append(&rig.flusher, &p1, plain(1, 3));
    for (name, t) in [("a", a), ("b", b), ("c", c)] {
        match t.await.expect("task") {
            Err(AppendError::Storage(_)) => {}
            other => panic!("{name}: expected a storage error, got {other:?}"),
        }
    }
    assert_eq!(rig.faults.hits("meta.commit"), 1);
    assert_eq!(p0.high_watermark(), 2);
    assert_eq!(p1.high_watermark(), 0);
    assert!(rig.flusher.stats().failed_flushes.load(Ordering::Relaxed) >= 1);
    assert!(!rig.flusher.is_fenced());

    // No hole: the next appends get the offsets the failed ones had, and the
    // producer state of the failed flush is forgotten (seq 0 is new again).
    let d = ok(rig.flusher.append(p0.clone(), vec![idem(5, 0, 0, 3)]).await);
    assert_eq!(d.base_offset, 2);
    assert!(!d.duplicate);
    let e = ok(rig.flusher.append(p1.clone(), vec![plain(1, 4)]).await);
    assert_eq!(e.base_offset, 0);
    assert_eq!(p0.high_watermark(), 5);
    assert_eq!(p1.high_watermark(), 1);

    // Only the successful flushes have records, and their offsets are contiguous.
    let flushes = rig.flushes().await;
    let mut next = std::collections::HashMap::new();
    for f in &flushes {
        for fp in &f.partitions {
            let n = next.entry(fp.partition).or_insert(0i64);
            assert_eq!(fp.base_offset, *n);
            *n = fp.last_offset + 1;
        }
        check_object(&rig.objects, f).await;
    }
    assert_eq!(next.get(&pid(0)), Some(&5));
    assert_eq!(next.get(&pid(1)), Some(&1));
    assert!(flushes.iter().all(|f| f.seq != 2 && f.seq != 3));
}

// ---------------------------------------------------------------------------
// (d) Retriable commit errors are retried.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_commit_errors_are_retried() {
    let rig = Rig::memory(config(5, 1 << 20)).await;
    let log = PartitionLog::empty(pid(0));
    rig.faults.set("meta.commit", Fault::Unavailable, Some(3));
    let a = ok(rig.flusher.append(log.clone(), vec![plain(4, 1)]).await);
    assert_eq!(a.base_offset, 0);
    assert_eq!(rig.faults.hits("meta.commit"), 3);
    assert_eq!(
        rig.flusher.stats().commit_requests.load(Ordering::Relaxed),
        4
    );
    assert_eq!(rig.flushes().await.len(), 1);
    assert_eq!(log.high_watermark(), 4);
    let b = ok(rig.flusher.append(log.clone(), vec![plain(1, 2)]).await);
    assert_eq!(b.base_offset, 4);
}

/// A memory rig whose storage retries last `budget_ms`, and an empty
/// partition.
async fn rig_with_budget(budget_ms: u64) -> (Rig, Arc<PartitionLog>) {
    let mut cfg = config(5, 1 << 20);
    cfg.retry_budget = Duration::from_millis(budget_ms);
    (Rig::memory(cfg).await, PartitionLog::empty(pid(0)))
}

/// Appends one batch under an unbounded fault; the budget must end it with a
/// retriable storage error (a hang fails the test).
async fn append_past_the_budget(rig: &Rig, log: &Arc<PartitionLog>) {
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        rig.flusher.append(log.clone(), vec![plain(3, 1)]),
    )
    .await
    .expect("the retry budget bounds the retries");
    assert!(matches!(r, Err(AppendError::Storage(_))), "{r:?}");
}

/// Past the retry budget a flush fails with a retriable error instead of
/// holding its producers forever; nothing landed, so its offsets are reused
/// once the store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_bounds_commit_retries() {
    let (rig, log) = rig_with_budget(300).await;
    rig.faults.set("meta.commit", Fault::Unavailable, None);
    append_past_the_budget(&rig, &log).await;
    let attempts = rig.faults.hits("meta.commit");
    assert!(attempts > 1, "retried: {attempts} attempts");
    assert!(rig.flushes().await.is_empty());
    assert_eq!(log.high_watermark(), 0);
    rig.faults.clear_all();
    let a = ok(rig.flusher.append(log.clone(), vec![plain(2, 2)]).await);
    assert_eq!(a.base_offset, 0, "the failed flush's offsets are reused");
    assert_eq!(log.high_watermark(), 2);
}

/// Every attempt lands but reports an unknown outcome until the budget runs
/// out: the read-back finds the record, so the append is acknowledged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_retried_out_but_landed_is_acked() {
    let (rig, log) = rig_with_budget(200).await;
    rig.faults.set("meta.commit", Fault::Ambiguous, None);
    let a = ok(rig.flusher.append(log.clone(), vec![plain(3, 1)]).await);
    assert_eq!(a.base_offset, 0);
    assert!(rig.faults.hits("meta.commit") > 1);
    rig.faults.clear_all();
    assert_eq!(rig.flushes().await.len(), 1);
    let b = ok(rig.flusher.append(log.clone(), vec![plain(1, 2)]).await);
    assert_eq!(b.base_offset, 3);
}

/// An upload that keeps failing fails its flush after the budget; nothing
/// refers to the object, and the write path serves again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_bounds_upload_retries() {
    let (rig, log) = rig_with_budget(300).await;
    rig.faults.set("object.put", Fault::Unavailable, None);
    append_past_the_budget(&rig, &log).await;
    assert!(rig.faults.hits("object.put") > 1);
    assert!(rig.flushes().await.is_empty());
    rig.faults.clear_all();
    let a = ok(rig.flusher.append(log.clone(), vec![plain(1, 2)]).await);
    assert_eq!(a.base_offset, 0);
}

// ---------------------------------------------------------------------------
// (e) An ambiguous commit that landed is resolved, not duplicated.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_commit_that_landed_is_acked_once() {
    let rig = Rig::memory(config(5, 1 << 20)).await;
    let log = PartitionLog::empty(pid(0));
    rig.faults.set("meta.commit", Fault::Ambiguous, Some(1));
    let a = ok(rig.flusher.append(log.clone(), vec![plain(3, 1)]).await);
    assert_eq!(a.base_offset, 0);
    assert!(!a.duplicate);
    assert_eq!(rig.faults.hits("meta.commit"), 1);
    let flushes = rig.flushes().await;
    assert_eq!(flushes.len(), 1, "no duplicate flush record");
    assert_eq!(flushes[0].partitions[0].base_offset, 0);
    assert_eq!(rig.segments().await.len(), 1);
    assert_eq!(log.high_watermark(), 3);
    assert_eq!(log.read_plan(0, u64::MAX).entries.len(), 1);
    let b = ok(rig.flusher.append(log.clone(), vec![plain(1, 2)]).await);
    assert_eq!(b.base_offset, 3);
    assert_eq!(rig.flushes().await.len(), 2);
}

/// An unknown outcome followed by a definite failure is still unknown: the
/// flusher must read back before rolling offsets back, or a landed record and the
/// next flush would both claim the same offsets.
// current_thread: the fail point is re-armed between the two attempts (10 ms of
// retry backoff apart) without racing another worker.
#[tokio::test]
async fn ambiguous_then_failed_commit_is_resolved_by_reading_back() {
    let rig = Rig::memory(config(5, 1 << 20)).await;
    let log = PartitionLog::empty(pid(0));
    rig.faults.set("meta.commit", Fault::Ambiguous, Some(1));
    let a = spawn_append(&rig.flusher, &log, plain(2, 1));
    while rig.faults.hits("meta.commit") == 0 {
        tokio::task::yield_now().await;
    }
    rig.faults.set("meta.commit", Fault::Denied, Some(1));
    let a = a.await.expect("task");
    assert_eq!(
        rig.faults.hits("meta.commit"),
        2,
        "the retry must meet the second fault"
    );
    // The first attempt landed, so the append is durable: acknowledge it.
    assert_eq!(ok(a).base_offset, 0);
    let b = ok(rig.flusher.append(log.clone(), vec![plain(1, 2)]).await);
    assert_eq!(b.base_offset, 2);
    let flushes = rig.flushes().await;
    let ranges: Vec<_> = flushes
        .iter()
        .map(|f| (f.partitions[0].base_offset, f.partitions[0].last_offset))
        .collect();
    assert_eq!(ranges, vec![(0, 1), (2, 2)], "committed offsets overlap");
    assert_eq!(log.high_watermark(), 3);
}

// ---------------------------------------------------------------------------
// (f) A new epoch fences the old flusher.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_epoch_fences_the_flusher() {
    let rig = Rig::memory(config(5, 1 << 20)).await;
    let log = PartitionLog::empty(pid(0));
    ok(rig.flusher.append(log.clone(), vec![plain(2, 1)]).await);
    let newer = rig
        .meta
        .register_gateway(GATEWAY, &info())
        .await
        .expect("register");
    assert!(newer > rig.stream.epoch);
    match rig.flusher.append(log.clone(), vec![plain(1, 2)]).await {
        Err(AppendError::NotOwner(_)) => {}
        other => panic!("expected NotOwner, got {other:?}"),
    }
    assert!(rig.flusher.is_fenced());
    // Later appends fail at once, before buffering.
    match rig.flusher.append(log.clone(), vec![plain(1, 3)]).await {
        Err(AppendError::NotOwner(_)) => {}
        other => panic!("expected NotOwner, got {other:?}"),
    }
    assert_eq!(log.high_watermark(), 2);
    assert_eq!(rig.flushes().await.len(), 1);
}

// ---------------------------------------------------------------------------
// (g) Idempotent producers.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_dedups_and_checks_sequences() {
    let rig = Rig::memory(config(5, 1 << 20)).await;
    let log = PartitionLog::empty(pid(0));
    let f = &rig.flusher;
    let append = |b: BatchIn| f.append(log.clone(), vec![b]);

    let first = ok(append(idem(10, 0, 0, 3)).await);
    assert_eq!((first.base_offset, first.duplicate), (0, false));
    let retry = ok(append(idem(10, 0, 0, 3)).await);
    assert_eq!((retry.base_offset, retry.duplicate), (0, true));
    assert_eq!(log.high_watermark(), 3, "a duplicate consumes no offsets");

    let second = ok(append(idem(10, 0, 3, 2)).await);
    assert_eq!((second.base_offset, second.duplicate), (3, false));
    // Still inside the five-batch window.
    let old_retry = ok(append(idem(10, 0, 0, 3)).await);
    assert_eq!((old_retry.base_offset, old_retry.duplicate), (0, true));
    let p = ok(append(plain(1, 9)).await);
    assert_eq!(p.base_offset, 5);
    // Produced volume counts each append once, duplicates not again.
    let stats = f.stats();
    assert_eq!(stats.appended_records.load(Ordering::Relaxed), 3 + 2 + 1);
    let sizes = [idem(10, 0, 0, 3), idem(10, 0, 3, 2), plain(1, 9)].map(|b| b.bytes.len() as u64);
    assert_eq!(
        stats.appended_bytes.load(Ordering::Relaxed),
        sizes.iter().sum::<u64>()
    );

    assert_eq!(
        append(idem(10, 0, 7, 1)).await,
        Err(AppendError::OutOfOrderSequence { expected: 5 })
    );
    // A new producer epoch starts at sequence 0 and fences the old epoch.
    assert_eq!(
        append(idem(10, 1, 3, 1)).await,
        Err(AppendError::OutOfOrderSequence { expected: 0 })
    );
    let bumped = ok(append(idem(10, 1, 0, 1)).await);
    assert_eq!(bumped.base_offset, 6);
    assert_eq!(
        append(idem(10, 0, 5, 1)).await,
        Err(AppendError::InvalidProducerEpoch { current: 1 })
    );
    assert_eq!(log.high_watermark(), 7);

    // A retry racing the original inside one open segment is still caught.
    let a = spawn_append(f, &log, idem(11, 0, 0, 2));
    let b = spawn_append(f, &log, idem(11, 0, 0, 2));
    let (a, b) = (ok(a.await.expect("task")), ok(b.await.expect("task")));
    assert_eq!(a.base_offset, b.base_offset);
    assert_eq!(a.duplicate as u8 + b.duplicate as u8, 1);
    assert_eq!(log.high_watermark(), 9);

    // Flush records carry the producer deltas recovery needs.
    let producers: Vec<_> = rig
        .flushes()
        .await
        .iter()
        .flat_map(|f| f.partitions.iter().flat_map(|p| p.producers.clone()))
        .map(|b| (b.producer_id, b.epoch, b.first_seq, b.base_offset))
        .collect();
    assert_eq!(
        producers,
        vec![(10, 0, 0, 0), (10, 0, 3, 3), (10, 1, 0, 6), (11, 0, 0, 7)]
    );
}

// ---------------------------------------------------------------------------
// (h) Backpressure: buffered bytes stay within max_buffer_bytes.

/// Counts the data bytes (region lengths) of segment uploads in progress.
#[derive(Debug)]
struct UploadGauge {
    inner: SharedObjectStore,
    in_flight: AtomicU64,
    peak: AtomicU64,
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = floe_core::Result<T>> + Send + 'a>>;

// `ObjectStore` is an `#[async_trait]`; this is its expansion, written out so the
// test needs no extra dependency.
impl ObjectStore for UploadGauge {
    fn put_if_absent<'l0, 'l1, 'at>(&'l0 self, key: &'l1 str, body: Bytes) -> BoxFut<'at, ()>
    where
        'l0: 'at,
        'l1: 'at,
        Self: 'at,
    {
        Box::pin(async move {
            let data: u64 = read_footer(&body)
                .map(|rs| rs.iter().map(|r| r.length as u64).sum())
                .unwrap_or(body.len() as u64);
            let now = self.in_flight.fetch_add(data, Ordering::SeqCst) + data;
            self.peak.fetch_max(now, Ordering::SeqCst);
            let r = self.inner.put_if_absent(key, body).await;
            self.in_flight.fetch_sub(data, Ordering::SeqCst);
            r
        })
    }
    fn get<'l0, 'l1, 'at>(&'l0 self, key: &'l1 str) -> BoxFut<'at, Bytes>
    where
        'l0: 'at,
        'l1: 'at,
        Self: 'at,
    {
        self.inner.get(key)
    }
    fn get_range<'l0, 'l1, 'at>(
        &'l0 self,
        key: &'l1 str,
        range: std::ops::Range<u64>,
    ) -> BoxFut<'at, Bytes>
    where
        'l0: 'at,
        'l1: 'at,
        Self: 'at,
    {
        self.inner.get_range(key, range)
    }
    fn delete<'l0, 'l1, 'at>(&'l0 self, key: &'l1 str) -> BoxFut<'at, ()>
    where
        'l0: 'at,
        'l1: 'at,
        Self: 'at,
    {
        self.inner.delete(key)
    }
    fn list<'l0, 'l1, 'at>(&'l0 self, prefix: &'l1 str) -> BoxFut<'at, Vec<ObjectInfo>>
    where
        'l0: 'at,
        'l1: 'at,
        Self: 'at,
    {
        self.inner.list(prefix)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_bounds_buffered_bytes() {
    const BOUND: u64 = 4096;
    const BATCH: usize = 256;
    let faults = Faults::new();
    faults.set("object.put", Fault::Delay(Duration::from_millis(300)), None);
    let gauge = Arc::new(UploadGauge {
        inner: Arc::new(FaultyObjectStore::new(
            Arc::new(MemoryObjectStore::new()),
            faults.clone(),
        )),
        in_flight: AtomicU64::new(0),
        peak: AtomicU64::new(0),
    });
    let meta: SharedMetaStore = Arc::new(MemoryMetaStore::new());
    let epoch = meta
        .register_gateway(GATEWAY, &info())
        .await
        .expect("register");
    let stream = StreamId {
        gateway: GATEWAY.into(),
        epoch,
    };
    let objects: SharedObjectStore = gauge.clone();
    let flusher = start_flusher(&config(5, BOUND), &stream, &objects, &meta);
    let logs: Vec<_> = (0..3).map(|p| PartitionLog::empty(pid(p))).collect();

    // 40 appends of 256 bytes: 2.5 times the bound, all at once.
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..40usize)
        .map(|i| {
            let (f, log) = (flusher.clone(), logs[i % 3].clone());
            let mut b = plain(1, i as u8);
            b.bytes = bytes(1, i as u8, BATCH);
            tokio::spawn(async move { (log.id, f.append(log, vec![b]).await) })
        })
        .collect();
    let mut bases: std::collections::HashMap<PartitionId, Vec<i64>> = Default::default();
    for t in tasks {
        let (p, r) = t.await.expect("task");
        bases.entry(p).or_default().push(ok(r).base_offset);
    }
    for (p, mut v) in bases {
        v.sort();
        let n = v.len() as i64;
        assert_eq!(
            v,
            (0..n).collect::<Vec<_>>(),
            "{p}: lost or repeated offsets"
        );
    }
    let peak = gauge.peak.load(Ordering::SeqCst);
    assert!(
        peak > 0 && peak <= BOUND,
        "peak in-flight data {peak} > {BOUND}"
    );
    // The bound forced at least three rounds of 300 ms uploads.
    assert!(
        t0.elapsed() >= Duration::from_millis(850),
        "{:?}",
        t0.elapsed()
    );
    let stats = flusher.stats();
    assert_eq!(stats.appended_batches.load(Ordering::Relaxed), 40);
    assert_eq!(
        stats.flushed_bytes.load(Ordering::Relaxed),
        objects
            .list("segments/")
            .await
            .expect("list")
            .iter()
            .map(|o| o.size)
            .sum::<u64>()
    );

    // A single batch larger than the whole buffer still goes through, alone.
    faults.clear_all();
    let mut big = plain(1, 0xbb);
    big.bytes = bytes(1, 0xbb, 2 * BOUND as usize);
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        flusher.append(logs[0].clone(), vec![big]),
    )
    .await
    .expect("an oversized batch must not deadlock");
    assert!(r.is_ok(), "{r:?}");
}

// ---------------------------------------------------------------------------
// (i) Crash recovery on the embedded backends.

struct Embedded {
    dir: TempDir,
}

impl Embedded {
    fn new() -> Embedded {
        Embedded {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    /// Opens the stores afresh, as a restarted process would.
    fn open(&self) -> (SharedObjectStore, SharedMetaStore) {
        let objects = LocalDirStore::open(self.dir.path().join("objects")).expect("objects");
        let meta = SqliteMetaStore::open(&self.dir.path().join("meta.db")).expect("meta");
        (Arc::new(objects), Arc::new(meta))
    }
}

#[derive(Debug, PartialEq)]
struct LogState {
    high_watermark: i64,
    log_start_offset: i64,
    entries: Vec<floe_core::types::IndexEntry>,
}

fn state(log: &PartitionLog) -> LogState {
    let plan = log.read_plan(0, u64::MAX);
    LogState {
        high_watermark: plan.high_watermark,
        log_start_offset: plan.log_start_offset,
        entries: plan.entries,
    }
}

fn states(logs: &std::collections::HashMap<PartitionId, Arc<PartitionLog>>) -> Vec<LogState> {
    (0..3).map(|p| state(&logs[&pid(p)])).collect()
}

/// Every index entry points at readable bytes that carry its base offset.
async fn check_readable(objects: &SharedObjectStore, logs: &[LogState]) {
    for s in logs {
        for e in &s.entries {
            let region = objects
                .get_range(&e.object_key, e.position..e.position + e.length as u64)
                .await
                .expect("read region");
            let base = i64::from_be_bytes(region[..8].try_into().expect("8 bytes"));
            assert_eq!(base, e.base_offset);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_recovery_restores_logs_and_producer_state() {
    let disk = Embedded::new();
    let partitions: Vec<_> = (0..3).map(pid).collect();
    let cfg = config(5, 1 << 20);

    // Incarnation 1: claim, append, crash (no close, no checkpoint).
    let (before, dup_base) = {
        let (objects, meta) = disk.open();
        let rig = Rig::start(objects, meta, Faults::new(), cfg.clone()).await;
        let logs = recover_partition_logs(&rig.meta, &rig.stream, &partitions)
            .await
            .expect("recover empty");
        let mut dup_base = 0;
        for round in 0..4 {
            for p in 0..3 {
                let a = rig
                    .flusher
                    .append(logs[&pid(p)].clone(), vec![plain(1 + p, round as u8)])
                    .await
                    .expect("append");
                assert!(!a.duplicate);
            }
            let a = rig
                .flusher
                .append(logs[&pid(0)].clone(), vec![idem(42, 0, round * 2, 2)])
                .await
                .expect("idempotent append");
            dup_base = a.base_offset;
        }
        let before = states(&logs);
        assert_eq!(before[0].high_watermark, 4 * (1 + 2));
        assert!(!rig.meta.flush_streams().await.expect("streams").is_empty());
        (before, dup_base)
        // Everything is dropped here: the flusher, its logs and both stores.
    };

    // Incarnation 2: a new epoch replays incarnation 1's flush records.
    let after_ckpt = {
        let (objects, meta) = disk.open();
        let rig = Rig::start(objects, meta, Faults::new(), cfg.clone()).await;
        assert_eq!(rig.stream.epoch, 2);
        let logs = recover_partition_logs(&rig.meta, &rig.stream, &partitions)
            .await
            .expect("recover");
        assert_eq!(states(&logs), before);
        check_readable(&rig.objects, &before).await;
        // The old stream is folded into the claim checkpoints and trimmed.
        assert!(rig.meta.flush_streams().await.expect("streams").is_empty());

        // Producer state survived: the retry of the last batch is a duplicate.
        let retry = rig
            .flusher
            .append(logs[&pid(0)].clone(), vec![idem(42, 0, 6, 2)])
            .await
            .expect("retry");
        assert_eq!((retry.base_offset, retry.duplicate), (dup_base, true));
        assert_eq!(logs[&pid(0)].high_watermark(), before[0].high_watermark);
        assert_eq!(
            rig.flusher
                .append(logs[&pid(0)].clone(), vec![idem(42, 0, 9, 1)])
                .await,
            Err(AppendError::OutOfOrderSequence { expected: 8 })
        );
        let next = rig
            .flusher
            .append(logs[&pid(0)].clone(), vec![idem(42, 0, 8, 1)])
            .await
            .expect("next in sequence");
        assert_eq!(next.base_offset, before[0].high_watermark);

        // Checkpoint: the stream's records are folded in and trimmed.
        let all: Vec<_> = logs.values().cloned().collect();
        let written = checkpoint_once(
            &rig.meta,
            &rig.stream,
            &all,
            rig.flusher.committed_through(),
            Duration::ZERO,
            &std::sync::atomic::AtomicU64::new(0),
        )
        .await
        .expect("checkpoint");
        assert_eq!(written, 1, "only partition 0 changed");
        assert!(rig.meta.flush_streams().await.expect("streams").is_empty());
        let after_ckpt = states(&logs);

        // One more flush after the checkpoint, then crash again.
        let late = rig
            .flusher
            .append(logs[&pid(1)].clone(), vec![plain(3, 0xee)])
            .await
            .expect("late append");
        assert_eq!(late.base_offset, before[1].high_watermark);
        assert_eq!(
            rig.meta.flush_streams().await.expect("streams"),
            vec![rig.stream.clone()]
        );
        let mut s = after_ckpt;
        s[1] = state(&logs[&pid(1)]);
        s
    };

    // Incarnation 3: checkpoint plus the flush after it.
    let (objects, meta) = disk.open();
    let rig = Rig::start(objects, meta, Faults::new(), cfg).await;
    let logs = recover_partition_logs(&rig.meta, &rig.stream, &partitions)
        .await
        .expect("recover again");
    assert_eq!(states(&logs), after_ckpt);
    check_readable(&rig.objects, &after_ckpt).await;
    assert!(rig.meta.flush_streams().await.expect("streams").is_empty());
    let retry = rig
        .flusher
        .append(logs[&pid(0)].clone(), vec![idem(42, 0, 8, 1)])
        .await
        .expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, before[0].high_watermark);
    let fresh = rig
        .flusher
        .append(logs[&pid(1)].clone(), vec![plain(1, 0xef)])
        .await
        .expect("append");
    assert_eq!(fresh.base_offset, after_ckpt[1].high_watermark);
}

// ---------------------------------------------------------------------------
// (j) close() drains: appends in flight are committed and acknowledged.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_and_acks_appends_in_flight() {
    // A long interval: without close, nothing would seal for 10 s.
    let rig = Rig::memory(config(10_000, 1 << 20)).await;
    let log = PartitionLog::empty(pid(0));
    rig.faults.set(
        "object.put",
        Fault::Delay(Duration::from_millis(100)),
        Some(1),
    );
    let tasks: Vec<_> = (0..5u8)
        .map(|i| spawn_append(&rig.flusher, &log, plain(1, i)))
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let t0 = Instant::now();
    rig.flusher.close(Duration::from_secs(5)).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let mut bases = Vec::new();
    for t in tasks {
        bases.push(ok(t.await.expect("task")).base_offset);
    }
    bases.sort();
    assert_eq!(bases, vec![0, 1, 2, 3, 4]);
    assert_eq!(log.high_watermark(), 5);
    assert_eq!(rig.flushes().await.len(), 1);
    assert_eq!(rig.flusher.committed_through(), 1);
    assert_eq!(
        rig.flusher.append(log.clone(), vec![plain(1, 9)]).await,
        Err(AppendError::ShuttingDown)
    );
}

/// A partition handed over (no longer led here) whose release has not landed
/// has changes only this stream's flush records hold: a checkpoint pass must
/// not trim them, or its next owner could not replay them. Once the release
/// stores them, the trim goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_an_unreleased_hand_over_are_not_trimmed() {
    let rig = Rig::memory(config(5, 1 << 20)).await;
    let logs = [PartitionLog::empty(pid(0)), PartitionLog::empty(pid(1))];
    for l in &logs {
        ok(rig.flusher.append(l.clone(), vec![plain(2, 1)]).await);
    }
    let trimmed = std::sync::atomic::AtomicU64::new(0);
    // Partition 1 is being handed over: drained, not led, not yet released.
    logs[1].set_lease(floe_flusher::Lease::NotOwned);
    let written = checkpoint_once(
        &rig.meta,
        &rig.stream,
        &logs,
        rig.flusher.committed_through(),
        Duration::ZERO,
        &trimmed,
    )
    .await
    .expect("checkpoint");
    assert_eq!(written, 1, "partition 0 is checkpointed");
    assert_eq!(rig.flushes().await.len(), 2, "nothing trimmed");
    // Its release lands (a full checkpoint): the records may go.
    logs[1].mark_all_checkpointed();
    checkpoint_once(
        &rig.meta,
        &rig.stream,
        &logs,
        rig.flusher.committed_through(),
        Duration::ZERO,
        &trimmed,
    )
    .await
    .expect("checkpoint");
    assert!(rig.flushes().await.is_empty(), "trimmed once released");
}

/// With a checkpoint delay the flush records are the index: a checkpoint
/// stores and trims nothing until a partition's changes are that old, yet a
/// reader loads the whole log (stored checkpoint plus records); a moved log
/// start is stored at the next checkpoint, without the entries younger than
/// the delay, which keep the records; once due, everything is stored and
/// trimmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_delay_leaves_the_index_in_the_flush_records() {
    let rig = Rig::memory(config(5, 1 << 20)).await;
    let logs = [PartitionLog::empty(pid(0)), PartitionLog::empty(pid(1))];
    for l in &logs {
        let claim = l.full_checkpoint(&rig.stream, 0);
        rig.meta
            .write_checkpoints(&rig.stream, &[claim])
            .await
            .expect("claim");
        l.mark_all_checkpointed();
    }
    // Flushes 1..=6, alternating partitions 0 and 1, two records each.
    for i in 0..3 {
        for l in &logs {
            ok(rig.flusher.append(l.clone(), vec![plain(2, i)]).await);
        }
    }
    assert_eq!(rig.flushes().await.len(), 6);
    let trimmed = std::sync::atomic::AtomicU64::new(0);
    let hour = Duration::from_secs(3600);
    let through = rig.flusher.committed_through();
    let written = checkpoint_once(&rig.meta, &rig.stream, &logs, through, hour, &trimmed)
        .await
        .expect("checkpoint");
    assert_eq!(written, 0, "nothing is due");
    assert_eq!(rig.flushes().await.len(), 6, "nothing trimmed");
    for l in &logs {
        let stored = rig
            .meta
            .load_partition(l.id)
            .await
            .expect("load")
            .expect("claimed");
        assert!(
            stored.entries.is_empty() && stored.next_offset == 0,
            "nothing stored"
        );
        let snap = floe_core::index::load(&*rig.meta, l.id, 0)
            .await
            .expect("load")
            .expect("claimed");
        assert_eq!(
            (snap.next_offset, snap.entries.len()),
            (6, 3),
            "the records are the index"
        );
    }

    // A moved log start is stored at once; the entries, younger than the
    // delay, stay in the records (a pass would store them merged).
    logs[0].advance_log_start(2);
    let written = checkpoint_once(&rig.meta, &rig.stream, &logs, through, hour, &trimmed)
        .await
        .expect("checkpoint");
    assert_eq!(written, 1);
    let stored = rig
        .meta
        .load_partition(pid(0))
        .await
        .expect("load")
        .expect("claimed");
    assert_eq!((stored.log_start_offset, stored.next_offset), (2, 6));
    assert!(stored.entries.is_empty(), "young entries are not stored");
    assert_eq!(rig.flushes().await.len(), 6, "so no record is trimmed");
    let snap = floe_core::index::load(&*rig.meta, pid(0), 0)
        .await
        .expect("load")
        .expect("claimed");
    assert_eq!((snap.log_start_offset, snap.entries.len()), (2, 2));

    // Due: both partitions' entries are stored, partition 1's state too,
    // and every record trimmed.
    let written = checkpoint_once(
        &rig.meta,
        &rig.stream,
        &logs,
        through,
        Duration::ZERO,
        &trimmed,
    )
    .await
    .expect("checkpoint");
    assert_eq!(written, 2);
    assert!(rig.flushes().await.is_empty());
    let snap = floe_core::index::load(&*rig.meta, pid(1), 0)
        .await
        .expect("load")
        .expect("claimed");
    assert_eq!((snap.next_offset, snap.entries.len()), (6, 3));
}
