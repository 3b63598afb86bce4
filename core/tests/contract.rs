//! The storage contract: one suite for `ObjectStore`, one for `MetaStore`, each
//! written once as generic async functions and stamped out per backend (plain and
//! wrapped in the fault-injecting store with nothing armed), so a failure names
//! the backend: `object_store::<case>::<backend>`, `meta_store::<case>::<backend>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use floe_core::fault::{Faults, FaultyMetaStore, FaultyObjectStore};
use floe_core::meta::{MemoryMetaStore, MetaStore, SqliteMetaStore};
use floe_core::object_store::{LocalDirStore, MemoryObjectStore, ObjectStore};
use floe_core::types::{
    FlushPartition, FlushRecord, GatewayInfo, IndexEntry, PartitionCheckpoint, PartitionId,
    ProducerBatch, ProducerState, StreamId, TopicId, TopicMeta,
};
use floe_core::{ErrorKind, Result};
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// Backends. Each returns the store plus whatever must outlive it (a tempdir).

type Guard = Option<TempDir>;

fn tempdir() -> TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn obj_memory() -> (Arc<dyn ObjectStore>, Guard) {
    (Arc::new(MemoryObjectStore::new()), None)
}

fn obj_local_dir() -> (Arc<dyn ObjectStore>, Guard) {
    let dir = tempdir();
    let store = LocalDirStore::open(dir.path().join("objects")).expect("open local dir store");
    (Arc::new(store), Some(dir))
}

fn obj_faulty(inner: (Arc<dyn ObjectStore>, Guard)) -> (Arc<dyn ObjectStore>, Guard) {
    (
        Arc::new(FaultyObjectStore::new(inner.0, Faults::new())),
        inner.1,
    )
}

fn obj_faulty_memory() -> (Arc<dyn ObjectStore>, Guard) {
    obj_faulty(obj_memory())
}

fn obj_faulty_local_dir() -> (Arc<dyn ObjectStore>, Guard) {
    obj_faulty(obj_local_dir())
}

fn meta_memory() -> (Arc<dyn MetaStore>, Guard) {
    (Arc::new(MemoryMetaStore::new()), None)
}

fn meta_sqlite_file() -> (Arc<dyn MetaStore>, Guard) {
    let dir = tempdir();
    let store = SqliteMetaStore::open(&dir.path().join("meta.db")).expect("open sqlite");
    (Arc::new(store), Some(dir))
}

fn meta_sqlite_in_memory() -> (Arc<dyn MetaStore>, Guard) {
    (
        Arc::new(SqliteMetaStore::in_memory().expect("sqlite in memory")),
        None,
    )
}

fn meta_faulty(inner: (Arc<dyn MetaStore>, Guard)) -> (Arc<dyn MetaStore>, Guard) {
    (
        Arc::new(FaultyMetaStore::new(inner.0, Faults::new())),
        inner.1,
    )
}

fn meta_faulty_memory() -> (Arc<dyn MetaStore>, Guard) {
    meta_faulty(meta_memory())
}

fn meta_faulty_sqlite_file() -> (Arc<dyn MetaStore>, Guard) {
    meta_faulty(meta_sqlite_file())
}

fn meta_faulty_sqlite_in_memory() -> (Arc<dyn MetaStore>, Guard) {
    meta_faulty(meta_sqlite_in_memory())
}

/// One `#[tokio::test]` per (case, backend): `object_store::<case>::<backend>`.
macro_rules! object_store_contract {
    ($($case:ident),* $(,)?) => {
        mod object_store {
            $(
                mod $case {
                    object_store_contract!(@backends $case:
                        memory => obj_memory,
                        local_dir => obj_local_dir,
                        faulty_memory => obj_faulty_memory,
                        faulty_local_dir => obj_faulty_local_dir,
                    );
                }
            )*
        }
    };
    (@backends $case:ident: $($backend:ident => $make:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $backend() {
                let (store, _guard) = crate::$make();
                crate::$case(store).await;
            }
        )*
    };
}

/// One `#[tokio::test]` per (case, backend): `meta_store::<case>::<backend>`.
macro_rules! meta_store_contract {
    ($($case:ident),* $(,)?) => {
        mod meta_store {
            $(
                mod $case {
                    meta_store_contract!(@backends $case:
                        memory => meta_memory,
                        sqlite_file => meta_sqlite_file,
                        sqlite_in_memory => meta_sqlite_in_memory,
                        faulty_memory => meta_faulty_memory,
                        faulty_sqlite_file => meta_faulty_sqlite_file,
                        faulty_sqlite_in_memory => meta_faulty_sqlite_in_memory,
                    );
                }
            )*
        }
    };
    (@backends $case:ident: $($backend:ident => $make:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $backend() {
                let (store, _guard) = crate::$make();
                crate::$case(store).await;
            }
        )*
    };
}

object_store_contract!(
    put_if_absent_never_overwrites,
    get_returns_exact_bytes,
    delete_is_idempotent,
    list_by_prefix_is_sorted,
    invalid_keys_are_rejected,
    concurrent_conditional_puts_have_one_winner,
);

meta_store_contract!(
    register_gateway_epochs_increase,
    commit_flush_is_fenced_and_idempotent,
    concurrent_commits_have_one_winner,
    read_flushes_is_ordered_and_filtered,
    trim_flushes_and_flush_streams,
    checkpoints_are_fenced_and_idempotent,
    topic_writes_are_conditional,
    concurrent_topic_updates_have_one_winner,
    delete_topic_checks_the_id,
    producer_ids_are_disjoint,
);

// ---------------------------------------------------------------------------
// Helpers.

#[track_caller]
fn err_kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.kind(),
    }
}

fn body(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

fn info() -> GatewayInfo {
    GatewayInfo {
        advertised: "127.0.0.1:9092".into(),
        zone: None,
        heartbeat_ms: 0,
    }
}

fn stream(gateway: &str, epoch: u64) -> StreamId {
    StreamId {
        gateway: gateway.into(),
        epoch,
    }
}

fn pid(topic: u128, partition: i32) -> PartitionId {
    PartitionId::new(TopicId::from_u128(topic), partition)
}

/// A flush record; `tag` varies its content so two records differ.
fn record(stream: &StreamId, seq: u64, tag: u64) -> FlushRecord {
    FlushRecord {
        stream: stream.clone(),
        seq,
        object_key: format!(
            "segments/00/{}-{}-{seq}-{tag}.seg",
            stream.gateway, stream.epoch
        ),
        object_len: 1000 + tag,
        created_ms: 1_700_000_000_000,
        partitions: vec![
            FlushPartition {
                partition: pid(1, 0),
                base_offset: (seq as i64) * 10,
                last_offset: (seq as i64) * 10 + 9,
                max_timestamp: 5,
                position: 0,
                length: 500,
                producers: vec![ProducerBatch {
                    producer_id: 7,
                    epoch: 0,
                    first_seq: 0,
                    last_seq: 9,
                    base_offset: (seq as i64) * 10,
                    last_offset: (seq as i64) * 10 + 9,
                    max_timestamp: 5,
                }],
            },
            FlushPartition {
                partition: pid(2, 3),
                base_offset: 0,
                last_offset: tag as i64,
                max_timestamp: 6,
                position: 500,
                length: 400 + tag as u32,
                producers: Vec::new(),
            },
        ],
    }
}

fn entry(base: i64, last: i64, key: &str) -> IndexEntry {
    IndexEntry {
        base_offset: base,
        last_offset: last,
        max_timestamp: base * 100,
        object_key: key.into(),
        position: base as u64 * 10,
        length: 64,
    }
}

fn topic(name: &str, id: u128, version: u64) -> TopicMeta {
    TopicMeta {
        name: name.into(),
        id: TopicId::from_u128(id),
        partitions: 3,
        configs: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
        created_ms: 1_700_000_000_000,
        version,
    }
}

// ---------------------------------------------------------------------------
// ObjectStore contract.

async fn put_if_absent_never_overwrites(store: Arc<dyn ObjectStore>) {
    let key = "segments/ab/first.seg";
    let original = body(300, 1);
    store
        .put_if_absent(key, original.clone())
        .await
        .expect("first put");
    let second = store.put_if_absent(key, body(10, 2)).await;
    assert_eq!(err_kind(second), ErrorKind::AlreadyExists);
    assert_eq!(store.get(key).await.expect("get"), original);
    let listed = store.list("segments/").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, 300);
}

async fn get_returns_exact_bytes(store: Arc<dyn ObjectStore>) {
    let key = "data/obj";
    let b = body(1024, 7);
    store.put_if_absent(key, b.clone()).await.expect("put");
    assert_eq!(store.get(key).await.expect("get"), b);
    assert_eq!(store.get_range(key, 0..1024).await.expect("full"), b);
    assert_eq!(
        store.get_range(key, 10..20).await.expect("middle"),
        b.slice(10..20)
    );
    assert_eq!(
        store.get_range(key, 1023..1024).await.expect("last byte"),
        b.slice(1023..1024)
    );
    // Start after end, too (spelled out: clippy rejects a literal reversed range).
    let reversed = std::ops::Range { start: 20, end: 10 };
    for bad in [1000..1025, 2000..2010, reversed] {
        let r = store.get_range(key, bad.clone()).await;
        assert_eq!(err_kind(r), ErrorKind::InvalidInput, "range {bad:?}");
    }
    assert_eq!(
        err_kind(store.get("data/missing").await),
        ErrorKind::NotFound
    );
    assert_eq!(
        err_kind(store.get_range("data/missing", 0..1).await),
        ErrorKind::NotFound
    );
    // An empty object is an object.
    store
        .put_if_absent("data/empty", Bytes::new())
        .await
        .expect("put empty");
    assert_eq!(
        store.get("data/empty").await.expect("get empty"),
        Bytes::new()
    );
}

async fn delete_is_idempotent(store: Arc<dyn ObjectStore>) {
    let key = "segments/01/gone";
    store.put_if_absent(key, body(50, 3)).await.expect("put");
    store.delete(key).await.expect("delete");
    assert_eq!(err_kind(store.get(key).await), ErrorKind::NotFound);
    store.delete(key).await.expect("delete again");
    store
        .delete("segments/01/never")
        .await
        .expect("delete missing");
    assert!(store.list("segments/").await.expect("list").is_empty());
    // The key is free again.
    store
        .put_if_absent(key, body(5, 4))
        .await
        .expect("recreate");
    assert_eq!(store.get(key).await.expect("get"), body(5, 4));
}

async fn list_by_prefix_is_sorted(store: Arc<dyn ObjectStore>) {
    let keys = [
        ("segments/0a/x", 3),
        ("segments/01/b", 2),
        ("other/k", 1),
        ("segments/01/a", 5),
        ("segmentsX", 4),
        ("seg", 6),
    ];
    for (k, len) in keys {
        store.put_if_absent(k, body(len, 0)).await.expect("put");
    }
    let names = |v: Vec<floe_core::object_store::ObjectInfo>| {
        v.into_iter().map(|o| (o.key, o.size)).collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list("segments/").await.expect("list")),
        vec![
            ("segments/01/a".to_string(), 5),
            ("segments/01/b".to_string(), 2),
            ("segments/0a/x".to_string(), 3),
        ]
    );
    assert_eq!(
        names(store.list("segments/01/").await.expect("list")),
        vec![
            ("segments/01/a".to_string(), 5),
            ("segments/01/b".to_string(), 2)
        ]
    );
    let all: Vec<String> = store
        .list("")
        .await
        .expect("list all")
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut sorted: Vec<String> = keys.iter().map(|(k, _)| k.to_string()).collect();
    sorted.sort();
    assert_eq!(all, sorted);
    let seg: Vec<String> = store
        .list("segments")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        seg,
        vec![
            "segments/01/a",
            "segments/01/b",
            "segments/0a/x",
            "segmentsX"
        ]
    );
    assert!(store.list("nothing/").await.expect("list").is_empty());
}

async fn invalid_keys_are_rejected(store: Arc<dyn ObjectStore>) {
    for key in ["../x", "/abs", "", "a/../b", "a//b", "./a", "a/", "a/.."] {
        let r = store.put_if_absent(key, body(8, 1)).await;
        assert_eq!(err_kind(r), ErrorKind::InvalidInput, "put {key:?}");
        assert!(store.get(key).await.is_err(), "get {key:?} must fail");
    }
    assert!(store.list("").await.expect("list").is_empty());
}

async fn concurrent_conditional_puts_have_one_winner(store: Arc<dyn ObjectStore>) {
    for round in 0..4u8 {
        let key = format!("segments/race/{round}");
        let start = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16u8)
            .map(|i| {
                let store = store.clone();
                let key = key.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    let b = body(4096 + i as usize, i);
                    start.wait().await;
                    (b.clone(), store.put_if_absent(&key, b).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (b, r) = t.await.expect("task");
            match r {
                Ok(()) => winners.push(b),
                Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one put may win");
        assert_eq!(store.get(&key).await.expect("get"), winners[0]);
    }
}

// ---------------------------------------------------------------------------
// MetaStore contract.

async fn register_gateway_epochs_increase(meta: Arc<dyn MetaStore>) {
    let mut last = 0;
    for _ in 0..5 {
        let e = meta
            .register_gateway("gw-a", &info())
            .await
            .expect("register");
        assert!(e > last, "epoch {e} after {last}");
        last = e;
    }
    let b = meta
        .register_gateway("gw-b", &info())
        .await
        .expect("register b");
    assert!(b > 0);
    let a = meta
        .register_gateway("gw-a", &info())
        .await
        .expect("register a");
    assert!(a > last);
}

async fn commit_flush_is_fenced_and_idempotent(meta: Arc<dyn MetaStore>) {
    // Never registered: fenced.
    let r = meta.commit_flush(&record(&stream("ghost", 1), 1, 0)).await;
    assert_eq!(err_kind(r), ErrorKind::Fenced);

    let e1 = meta
        .register_gateway("gw", &info())
        .await
        .expect("register");
    let s1 = stream("gw", e1);
    let r1 = record(&s1, 1, 0);
    meta.commit_flush(&r1).await.expect("commit");
    meta.commit_flush(&r1).await.expect("identical re-commit");
    let other = record(&s1, 1, 1);
    assert_eq!(
        err_kind(meta.commit_flush(&other).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        meta.read_flushes(&s1, 0).await.expect("read"),
        vec![r1.clone()]
    );
    // A future epoch that was never issued is not current either.
    let r = meta
        .commit_flush(&record(&stream("gw", e1 + 1), 1, 0))
        .await;
    assert_eq!(err_kind(r), ErrorKind::Fenced);

    // The "transaction cancellation" case: a new incarnation fences the old one,
    // both for new records and for re-commits of already-landed ones.
    let e2 = meta
        .register_gateway("gw", &info())
        .await
        .expect("re-register");
    assert!(e2 > e1);
    assert_eq!(
        err_kind(meta.commit_flush(&record(&s1, 2, 0)).await),
        ErrorKind::Fenced
    );
    assert_eq!(err_kind(meta.commit_flush(&r1).await), ErrorKind::Fenced);
    assert_eq!(meta.read_flushes(&s1, 0).await.expect("read"), vec![r1]);
    let s2 = stream("gw", e2);
    meta.commit_flush(&record(&s2, 1, 0))
        .await
        .expect("new epoch commits");
}

async fn concurrent_commits_have_one_winner(meta: Arc<dyn MetaStore>) {
    let e = meta
        .register_gateway("gw", &info())
        .await
        .expect("register");
    let s = stream("gw", e);
    for seq in 1..=3u64 {
        let start = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16u64)
            .map(|tag| {
                let meta = meta.clone();
                let start = start.clone();
                let rec = record(&s, seq, tag);
                tokio::spawn(async move {
                    start.wait().await;
                    let r = meta.commit_flush(&rec).await;
                    (rec, r)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (rec, r) = t.await.expect("task");
            match r {
                Ok(()) => winners.push(rec),
                Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "seq {seq}: exactly one commit may win");
        let stored = meta.read_flushes(&s, seq - 1).await.expect("read");
        assert_eq!(stored.first(), Some(&winners[0]));
    }
    assert_eq!(meta.read_flushes(&s, 0).await.expect("read").len(), 3);
}

async fn read_flushes_is_ordered_and_filtered(meta: Arc<dyn MetaStore>) {
    let a1 = stream(
        "gw-a",
        meta.register_gateway("gw-a", &info()).await.expect("reg"),
    );
    let b1 = stream(
        "gw-b",
        meta.register_gateway("gw-b", &info()).await.expect("reg"),
    );
    for seq in [3, 1, 5, 2, 4] {
        meta.commit_flush(&record(&a1, seq, 0))
            .await
            .expect("commit a");
    }
    meta.commit_flush(&record(&b1, 1, 9))
        .await
        .expect("commit b");
    let a2 = stream(
        "gw-a",
        meta.register_gateway("gw-a", &info()).await.expect("reg"),
    );
    meta.commit_flush(&record(&a2, 1, 8))
        .await
        .expect("commit a2");

    let seqs = |v: Vec<FlushRecord>| v.iter().map(|r| r.seq).collect::<Vec<_>>();
    let all = meta.read_flushes(&a1, 0).await.expect("read");
    assert!(all.iter().all(|r| r.stream == a1));
    assert_eq!(all[0], record(&a1, 1, 0));
    assert_eq!(seqs(all), vec![1, 2, 3, 4, 5]);
    assert_eq!(
        seqs(meta.read_flushes(&a1, 2).await.expect("read")),
        vec![3, 4, 5]
    );
    assert!(meta.read_flushes(&a1, 5).await.expect("read").is_empty());
    assert!(
        meta.read_flushes(&a1, u64::MAX)
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(
        meta.read_flushes(&b1, 0).await.expect("read"),
        vec![record(&b1, 1, 9)]
    );
    assert_eq!(
        meta.read_flushes(&a2, 0).await.expect("read"),
        vec![record(&a2, 1, 8)]
    );
    assert!(
        meta.read_flushes(&stream("nobody", 1), 0)
            .await
            .expect("read")
            .is_empty()
    );
}

async fn trim_flushes_and_flush_streams(meta: Arc<dyn MetaStore>) {
    assert!(meta.flush_streams().await.expect("streams").is_empty());
    let a1 = stream(
        "gw-a",
        meta.register_gateway("gw-a", &info()).await.expect("reg"),
    );
    for seq in 1..=4 {
        meta.commit_flush(&record(&a1, seq, 0))
            .await
            .expect("commit");
    }
    let a2 = stream(
        "gw-a",
        meta.register_gateway("gw-a", &info()).await.expect("reg"),
    );
    meta.commit_flush(&record(&a2, 1, 0)).await.expect("commit");
    let b1 = stream(
        "gw-b",
        meta.register_gateway("gw-b", &info()).await.expect("reg"),
    );
    meta.commit_flush(&record(&b1, 1, 0)).await.expect("commit");

    let mut streams = meta.flush_streams().await.expect("streams");
    streams.sort();
    assert_eq!(streams, vec![a1.clone(), a2.clone(), b1.clone()]);

    // Trimming needs no current epoch: a new owner trims an old stream.
    meta.trim_flushes(&a1, 2).await.expect("trim");
    let left: Vec<u64> = meta
        .read_flushes(&a1, 0)
        .await
        .expect("read")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(left, vec![3, 4]);
    meta.trim_flushes(&a1, 2).await.expect("trim is idempotent");
    meta.trim_flushes(&a1, u64::MAX).await.expect("trim all");
    assert!(meta.read_flushes(&a1, 0).await.expect("read").is_empty());
    let mut streams = meta.flush_streams().await.expect("streams");
    streams.sort();
    assert_eq!(streams, vec![a2.clone(), b1.clone()]);
    // Other streams are untouched.
    assert_eq!(meta.read_flushes(&a2, 0).await.expect("read").len(), 1);
    meta.trim_flushes(&a2, 1).await.expect("trim");
    meta.trim_flushes(&b1, 1).await.expect("trim");
    assert!(meta.flush_streams().await.expect("streams").is_empty());
}

fn checkpoint(
    p: PartitionId,
    owner: &StreamId,
    seq: u64,
    entries: Vec<IndexEntry>,
) -> PartitionCheckpoint {
    let next = entries.iter().map(|e| e.last_offset + 1).max().unwrap_or(0);
    PartitionCheckpoint {
        partition: p,
        owner: owner.clone(),
        checkpoint_seq: seq,
        next_offset: next,
        log_start_offset: 0,
        producers: BTreeMap::from([(
            7,
            ProducerState {
                epoch: 2,
                batches: vec![ProducerBatch {
                    producer_id: 7,
                    epoch: 2,
                    first_seq: 0,
                    last_seq: 4,
                    base_offset: 0,
                    last_offset: 4,
                    max_timestamp: 11,
                }],
                last_timestamp: 11,
            },
        )]),
        new_entries: entries,
    }
}

async fn checkpoints_are_fenced_and_idempotent(meta: Arc<dyn MetaStore>) {
    let p0 = pid(5, 0);
    let p1 = pid(5, 1);
    assert_eq!(meta.load_partition(p0).await.expect("load"), None);
    let unregistered = stream("gw", 1);
    let r = meta
        .write_checkpoints(&unregistered, &[checkpoint(p0, &unregistered, 0, vec![])])
        .await;
    assert_eq!(err_kind(r), ErrorKind::Fenced);
    assert_eq!(meta.load_partition(p0).await.expect("load"), None);

    let s1 = stream(
        "gw",
        meta.register_gateway("gw", &info()).await.expect("reg"),
    );
    // Entries given out of order come back ordered by base offset.
    let cp0 = checkpoint(
        p0,
        &s1,
        3,
        vec![entry(10, 19, "k2"), entry(0, 9, "k1"), entry(20, 24, "k3")],
    );
    let cp1 = checkpoint(p1, &s1, 3, vec![entry(0, 0, "k1")]);
    meta.write_checkpoints(&s1, &[cp0.clone(), cp1.clone()])
        .await
        .expect("checkpoint");
    let snap = meta.load_partition(p0).await.expect("load").expect("some");
    assert_eq!(snap.owner, s1);
    assert_eq!(snap.checkpoint_seq, 3);
    assert_eq!(snap.next_offset, 25);
    assert_eq!(snap.log_start_offset, 0);
    assert_eq!(snap.producers, cp0.producers);
    assert_eq!(
        snap.entries,
        vec![entry(0, 9, "k1"), entry(10, 19, "k2"), entry(20, 24, "k3")]
    );
    let snap1 = meta.load_partition(p1).await.expect("load").expect("some");
    assert_eq!(snap1.entries, vec![entry(0, 0, "k1")]);

    // Re-writing entries already stored is idempotent; new ones are appended.
    let mut again = checkpoint(p0, &s1, 4, vec![entry(20, 24, "k3"), entry(25, 29, "k4")]);
    again.log_start_offset = 10;
    meta.write_checkpoints(&s1, &[again.clone()])
        .await
        .expect("checkpoint again");
    meta.write_checkpoints(&s1, &[again])
        .await
        .expect("identical checkpoint again");
    let snap = meta.load_partition(p0).await.expect("load").expect("some");
    assert_eq!(snap.checkpoint_seq, 4);
    assert_eq!(snap.next_offset, 30);
    assert_eq!(snap.log_start_offset, 10);
    assert_eq!(
        snap.entries,
        vec![
            entry(0, 9, "k1"),
            entry(10, 19, "k2"),
            entry(20, 24, "k3"),
            entry(25, 29, "k4")
        ]
    );

    // A new incarnation fences the old one; a fenced write changes nothing, in
    // any of the partitions it names.
    let s2 = stream(
        "gw",
        meta.register_gateway("gw", &info()).await.expect("reg"),
    );
    let stale = [
        checkpoint(p0, &s1, 9, vec![entry(30, 39, "stale")]),
        checkpoint(pid(5, 2), &s1, 9, vec![entry(0, 1, "stale")]),
    ];
    assert_eq!(
        err_kind(meta.write_checkpoints(&s1, &stale).await),
        ErrorKind::Fenced
    );
    let after = meta.load_partition(p0).await.expect("load").expect("some");
    assert_eq!(after, snap);
    assert_eq!(meta.load_partition(pid(5, 2)).await.expect("load"), None);

    // The new owner claims the partition.
    meta.write_checkpoints(&s2, &[checkpoint(p0, &s2, 0, vec![entry(30, 34, "k5")])])
        .await
        .expect("claim");
    let claimed = meta.load_partition(p0).await.expect("load").expect("some");
    assert_eq!(claimed.owner, s2);
    assert_eq!(claimed.checkpoint_seq, 0);
    assert_eq!(claimed.entries.len(), 5);
    assert_eq!(claimed.entries[4], entry(30, 34, "k5"));
}

async fn topic_writes_are_conditional(meta: Arc<dyn MetaStore>) {
    let t1 = topic("orders", 1, 1);
    meta.create_topic(&t1).await.expect("create");
    assert_eq!(
        err_kind(meta.create_topic(&topic("orders", 2, 1)).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        meta.get_topic("orders").await.expect("get"),
        Some(t1.clone())
    );
    assert_eq!(meta.get_topic("missing").await.expect("get"), None);

    // Version must be exactly stored + 1, and the id must match.
    let r = meta.update_topic(&topic("orders", 1, 3)).await;
    assert_eq!(err_kind(r), ErrorKind::Precondition);
    let r = meta.update_topic(&topic("orders", 1, 1)).await;
    assert_eq!(err_kind(r), ErrorKind::Precondition);
    let r = meta.update_topic(&topic("orders", 9, 2)).await;
    assert_eq!(err_kind(r), ErrorKind::Precondition);
    let r = meta.update_topic(&topic("missing", 1, 2)).await;
    assert_eq!(err_kind(r), ErrorKind::NotFound);
    assert_eq!(meta.get_topic("orders").await.expect("get"), Some(t1));

    let mut t2 = topic("orders", 1, 2);
    t2.partitions = 6;
    t2.configs.insert("cleanup.policy".into(), "delete".into());
    meta.update_topic(&t2).await.expect("update");
    assert_eq!(
        meta.get_topic("orders").await.expect("get"),
        Some(t2.clone())
    );
    // The same update again is now stale.
    assert_eq!(
        err_kind(meta.update_topic(&t2).await),
        ErrorKind::Precondition
    );

    meta.create_topic(&topic("audit", 3, 1))
        .await
        .expect("create");
    let mut names: Vec<String> = meta
        .list_topics()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .collect();
    names.sort();
    assert_eq!(names, vec!["audit", "orders"]);
}

async fn concurrent_topic_updates_have_one_winner(meta: Arc<dyn MetaStore>) {
    meta.create_topic(&topic("t", 1, 1)).await.expect("create");
    let start = Arc::new(tokio::sync::Barrier::new(12));
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let meta = meta.clone();
            let start = start.clone();
            let mut t = topic("t", 1, 2);
            t.partitions = 10 + i;
            tokio::spawn(async move {
                start.wait().await;
                let r = meta.update_topic(&t).await;
                (t, r)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (t, r) = task.await.expect("task");
        match r {
            Ok(()) => winners.push(t),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Precondition, "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update of version 1 may win");
    assert_eq!(
        meta.get_topic("t").await.expect("get"),
        Some(winners[0].clone())
    );
}

async fn delete_topic_checks_the_id(meta: Arc<dyn MetaStore>) {
    let t = topic("t", 1, 1);
    meta.create_topic(&t).await.expect("create");
    assert_eq!(
        err_kind(meta.delete_topic("t", TopicId::from_u128(2)).await),
        ErrorKind::NotFound
    );
    assert_eq!(meta.get_topic("t").await.expect("get"), Some(t.clone()));
    assert_eq!(
        err_kind(meta.delete_topic("other", t.id).await),
        ErrorKind::NotFound
    );
    meta.delete_topic("t", t.id).await.expect("delete");
    assert_eq!(meta.get_topic("t").await.expect("get"), None);
    assert_eq!(
        err_kind(meta.delete_topic("t", t.id).await),
        ErrorKind::NotFound
    );
    // The name can be reused, under a new id.
    let again = topic("t", 2, 1);
    meta.create_topic(&again).await.expect("recreate");
    assert_eq!(meta.get_topic("t").await.expect("get"), Some(again));
    assert!(meta.list_topics().await.expect("list").len() == 1);
}

async fn producer_ids_are_disjoint(meta: Arc<dyn MetaStore>) {
    let mut ranges = Vec::new();
    for count in [1u64, 10, 5] {
        let first = meta.allocate_producer_ids(count).await.expect("allocate");
        assert!(first >= 0);
        ranges.push((first, count as i64));
    }
    let tasks: Vec<_> = (0..16u64)
        .map(|i| {
            let meta = meta.clone();
            tokio::spawn(async move {
                let count = 50 + i;
                (meta.allocate_producer_ids(count).await, count as i64)
            })
        })
        .collect();
    for t in tasks {
        let (r, count) = t.await.expect("task");
        ranges.push((r.expect("allocate"), count));
    }
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(
            w[0].0 + w[0].1 <= w[1].0,
            "ranges overlap: {:?} and {:?}",
            w[0],
            w[1]
        );
    }
}

// ---------------------------------------------------------------------------
// Durability of the embedded backends across a reopen.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backends_survive_reopen() {
    let dir = tempdir();
    let db = dir.path().join("meta").join("floe.db");
    let objects = dir.path().join("objects");
    let t = topic("orders", 1, 1);
    let key = "segments/aa/gw-1-1.seg";
    let b = body(2000, 9);
    let (s1, rec, cp, first_ids) = {
        let meta = SqliteMetaStore::open(&db).expect("open sqlite");
        let store = LocalDirStore::open(&objects).expect("open dir");
        store.put_if_absent(key, b.clone()).await.expect("put");
        let s1 = stream(
            "gw",
            meta.register_gateway("gw", &info()).await.expect("reg"),
        );
        meta.create_topic(&t).await.expect("create");
        let rec = record(&s1, 1, 0);
        meta.commit_flush(&rec).await.expect("commit");
        let cp = checkpoint(pid(1, 0), &s1, 1, vec![entry(0, 9, key)]);
        meta.write_checkpoints(&s1, std::slice::from_ref(&cp))
            .await
            .expect("checkpoint");
        let ids = meta.allocate_producer_ids(100).await.expect("ids");
        (s1, rec, cp, ids)
    };

    let meta = SqliteMetaStore::open(&db).expect("reopen sqlite");
    let store = LocalDirStore::open(&objects).expect("reopen dir");
    assert_eq!(store.get(key).await.expect("get"), b);
    assert_eq!(
        err_kind(store.put_if_absent(key, body(1, 1)).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(store.list("segments/").await.expect("list").len(), 1);
    assert_eq!(meta.get_topic("orders").await.expect("get"), Some(t));
    assert_eq!(
        meta.read_flushes(&s1, 0).await.expect("read"),
        vec![rec.clone()]
    );
    assert_eq!(
        meta.flush_streams().await.expect("streams"),
        vec![s1.clone()]
    );
    let snap = meta
        .load_partition(pid(1, 0))
        .await
        .expect("load")
        .expect("some");
    assert_eq!(snap.owner, s1);
    assert_eq!(snap.checkpoint_seq, 1);
    assert_eq!(snap.producers, cp.producers);
    assert_eq!(snap.entries, cp.new_entries);
    // The epoch and the id counter continue, never repeat.
    let e2 = meta.register_gateway("gw", &info()).await.expect("reg");
    assert!(e2 > s1.epoch);
    assert_eq!(
        err_kind(meta.commit_flush(&record(&s1, 2, 0)).await),
        ErrorKind::Fenced
    );
    let next_ids = meta.allocate_producer_ids(1).await.expect("ids");
    assert!(next_ids >= first_ids + 100);
}

// ---------------------------------------------------------------------------
// Fault injection.

#[tokio::test]
async fn fault_unavailable_fails_then_heals() {
    let faults = Faults::parse("object.put=unavailable*2").expect("spec");
    let store = FaultyObjectStore::new(Arc::new(MemoryObjectStore::new()), faults.clone());
    let key = "segments/00/x";
    for _ in 0..2 {
        let r = store.put_if_absent(key, body(10, 1)).await;
        assert_eq!(err_kind(r), ErrorKind::Unavailable);
    }
    // Unavailable fails before the operation: nothing was written.
    assert_eq!(err_kind(store.get(key).await), ErrorKind::NotFound);
    store
        .put_if_absent(key, body(10, 1))
        .await
        .expect("third put");
    assert_eq!(store.get(key).await.expect("get"), body(10, 1));
    assert_eq!(faults.hits("object.put"), 2);
    // Other fail points are unaffected.
    assert_eq!(faults.hits("object.get"), 0);
}

#[tokio::test]
async fn fault_ambiguous_commit_lands_but_reports_unknown() {
    let faults = Faults::parse("meta.commit=ambiguous*1").expect("spec");
    let meta: Arc<dyn MetaStore> = Arc::new(FaultyMetaStore::new(
        Arc::new(MemoryMetaStore::new()),
        faults.clone(),
    ));
    let s = stream(
        "gw",
        meta.register_gateway("gw", &info()).await.expect("reg"),
    );
    let rec = record(&s, 1, 0);
    let r = meta.commit_flush(&rec).await;
    assert_eq!(err_kind(r), ErrorKind::Ambiguous);
    assert!(ErrorKind::Ambiguous.is_retriable());
    assert_eq!(
        meta.read_flushes(&s, 0).await.expect("read"),
        vec![rec.clone()]
    );
    // Resolving by retrying is safe: the commit is idempotent.
    meta.commit_flush(&rec).await.expect("retry");
    assert_eq!(meta.read_flushes(&s, 0).await.expect("read").len(), 1);
    assert_eq!(faults.hits("meta.commit"), 1);
}

#[tokio::test]
async fn fault_spec_parses_and_rejects() {
    assert!(Faults::parse("object.put=delay(5ms)*1;meta.commit=denied").is_ok());
    for bad in [
        "object.put",
        "object.put=explode",
        "object.put=unavailable*x",
    ] {
        let e = Faults::parse(bad).expect_err(bad);
        assert_eq!(e.kind(), ErrorKind::Config);
    }
}
