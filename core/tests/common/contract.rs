//! The storage contract as generic async functions, one per case, shared by
//! `tests/contract.rs` (memory and embedded backends) and `tests/contract_aws.rs`
//! (S3 and DynamoDB on emulators). Each function takes a fresh, empty store.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use floe_core::meta::MetaStore;
use floe_core::object_store::ObjectStore;
use floe_core::types::{
    FlushPartition, FlushRecord, GatewayInfo, IndexEntry, PartitionCheckpoint, PartitionId,
    ProducerBatch, ProducerState, StreamId, TopicId, TopicMeta,
};
use floe_core::{ErrorKind, Result};

/// Every ObjectStore case, written once: `for_each_object_store_case!(m)`
/// expands to `m!(case, ...)`, so each backend's test file stamps out the
/// same list.
macro_rules! for_each_object_store_case {
    ($m:ident) => {
        $m!(
            put_if_absent_never_overwrites,
            get_returns_exact_bytes,
            delete_is_idempotent,
            list_by_prefix_is_sorted,
            invalid_keys_are_rejected,
            concurrent_conditional_puts_have_one_winner,
        );
    };
}

/// Every MetaStore case, written once (see `for_each_object_store_case`).
macro_rules! for_each_meta_store_case {
    ($m:ident) => {
        $m!(
            register_gateway_epochs_increase,
            commit_flush_is_fenced_and_idempotent,
            concurrent_commits_have_one_winner,
            read_flushes_is_ordered_and_filtered,
            trim_flushes_and_flush_streams,
            checkpoints_are_fenced_and_idempotent,
            load_partition_from_reads_only_newer_entries,
            index_swaps_are_conditional_and_covering,
            committed_offsets_merge_and_come_back_exactly,
            group_state_is_stored_conditionally,
            membership_heartbeat_and_fencing,
            claims_move_ownership_safely,
            topic_writes_are_conditional,
            concurrent_topic_updates_have_one_winner,
            delete_topic_checks_the_id,
            deleted_topics_are_forgotten_whole,
            producer_ids_are_disjoint,
        );
    };
}

// ---------------------------------------------------------------------------
// Helpers.

#[track_caller]
pub fn err_kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.kind(),
    }
}

pub fn body(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

pub fn info() -> GatewayInfo {
    GatewayInfo {
        advertised: "127.0.0.1:9092".into(),
        zone: Some("zone-a".into()),
        heartbeat_ms: 0,
        node_id: 3,
        broker_ids: 4,
    }
}

pub fn stream(gateway: &str, epoch: u64) -> StreamId {
    StreamId {
        gateway: gateway.into(),
        epoch,
    }
}

pub fn pid(topic: u128, partition: i32) -> PartitionId {
    PartitionId::new(TopicId::from_u128(topic), partition)
}

/// A flush record; `tag` varies its content so two records differ.
pub fn record(stream: &StreamId, seq: u64, tag: u64) -> FlushRecord {
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

pub fn entry(base: i64, last: i64, key: &str) -> IndexEntry {
    IndexEntry {
        base_offset: base,
        last_offset: last,
        max_timestamp: base * 100,
        object_key: key.into(),
        position: base as u64 * 10,
        length: 64,
    }
}

pub fn topic(name: &str, id: u128, version: u64) -> TopicMeta {
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

pub async fn put_if_absent_never_overwrites(store: Arc<dyn ObjectStore>) {
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

pub async fn get_returns_exact_bytes(store: Arc<dyn ObjectStore>) {
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

pub async fn delete_is_idempotent(store: Arc<dyn ObjectStore>) {
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

pub async fn list_by_prefix_is_sorted(store: Arc<dyn ObjectStore>) {
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

pub async fn invalid_keys_are_rejected(store: Arc<dyn ObjectStore>) {
    for key in ["../x", "/abs", "", "a/../b", "a//b", "./a", "a/", "a/.."] {
        let r = store.put_if_absent(key, body(8, 1)).await;
        assert_eq!(err_kind(r), ErrorKind::InvalidInput, "put {key:?}");
        assert!(store.get(key).await.is_err(), "get {key:?} must fail");
    }
    assert!(store.list("").await.expect("list").is_empty());
}

pub async fn concurrent_conditional_puts_have_one_winner(store: Arc<dyn ObjectStore>) {
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

pub async fn register_gateway_epochs_increase(meta: Arc<dyn MetaStore>) {
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

pub async fn commit_flush_is_fenced_and_idempotent(meta: Arc<dyn MetaStore>) {
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
    // Real DynamoDB may answer `Ok` here within its 10-minute idempotency
    // window (the same token; see `DynamoMetaStore::commit_flush`): a true
    // outcome, the record landed. Every store this suite runs on (memory,
    // SQLite, moto, which ignores the token) answers `Fenced`.
    assert_eq!(err_kind(meta.commit_flush(&r1).await), ErrorKind::Fenced);
    assert_eq!(meta.read_flushes(&s1, 0).await.expect("read"), vec![r1]);
    let s2 = stream("gw", e2);
    meta.commit_flush(&record(&s2, 1, 0))
        .await
        .expect("new epoch commits");
}

pub async fn concurrent_commits_have_one_winner(meta: Arc<dyn MetaStore>) {
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

pub async fn read_flushes_is_ordered_and_filtered(meta: Arc<dyn MetaStore>) {
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

pub async fn trim_flushes_and_flush_streams(meta: Arc<dyn MetaStore>) {
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

pub fn checkpoint(
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

pub async fn checkpoints_are_fenced_and_idempotent(meta: Arc<dyn MetaStore>) {
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

    // The new incarnation cannot simply write over s1's partition: it claims it.
    let claim = checkpoint(p0, &s2, 0, vec![entry(30, 34, "k5")]);
    assert_eq!(
        err_kind(
            meta.write_checkpoints(&s2, std::slice::from_ref(&claim))
                .await
        ),
        ErrorKind::Fenced
    );
    meta.claim_partition(&s2, Some(&s1), &claim)
        .await
        .expect("claim");
    let claimed = meta.load_partition(p0).await.expect("load").expect("some");
    assert_eq!(claimed.owner, s2);
    assert_eq!(claimed.checkpoint_seq, 0);
    assert_eq!(claimed.entries.len(), 5);
    assert_eq!(claimed.entries[4], entry(30, 34, "k5"));
}

pub async fn load_partition_from_reads_only_newer_entries(meta: Arc<dyn MetaStore>) {
    let s = stream(
        "gw",
        meta.register_gateway("gw", &info()).await.expect("reg"),
    );
    let p = pid(13, 0);
    assert_eq!(meta.load_partition_from(p, 5).await.expect("load"), None);
    let entries = vec![entry(0, 9, "k1"), entry(10, 19, "k2"), entry(20, 24, "k3")];
    meta.write_checkpoints(&s, &[checkpoint(p, &s, 2, entries.clone())])
        .await
        .expect("checkpoint");
    let full = meta.load_partition(p).await.expect("load").expect("some");
    assert_eq!(full.entries, entries);
    for (from, want) in [(0, 0), (10, 1), (11, 2), (20, 2), (25, 3), (1_000, 3)] {
        let part = meta
            .load_partition_from(p, from)
            .await
            .expect("load")
            .expect("some");
        assert_eq!(part.entries, entries[want..].to_vec(), "from {from}");
        assert_eq!(
            (
                part.owner,
                part.checkpoint_seq,
                part.next_offset,
                part.released
            ),
            (
                full.owner.clone(),
                full.checkpoint_seq,
                full.next_offset,
                full.released
            )
        );
        assert_eq!(part.producers, full.producers);
    }
}

/// Compaction's index operations: a swap stores merged entries that
/// supersede what they cover, only on the version it loaded; the owner's
/// checkpoints never undo it (even storing a covered entry again), and
/// deleting dead entries leaves the live index as it was.
pub async fn index_swaps_are_conditional_and_covering(meta: Arc<dyn MetaStore>) {
    use floe_core::index::{dead_entries, live_entries};
    let s = stream(
        "gw",
        meta.register_gateway("gw", &info()).await.expect("reg"),
    );
    let p = pid(14, 1);
    let merged = |base: i64, last: i64| IndexEntry {
        object_key: floe_core::keys::compacted_key(p, base, last, uuid::Uuid::from_u128(7)),
        position: 0,
        length: 640,
        ..entry(base, last, "")
    };
    assert_eq!(meta.index_version(p).await.expect("version"), 0);
    assert_eq!(
        err_kind(meta.swap_index(p, 0, &[merged(0, 19)]).await),
        ErrorKind::NotFound,
        "never claimed"
    );
    let small: Vec<IndexEntry> = (0..4)
        .map(|i| entry(i * 10, i * 10 + 9, &format!("k{i}")))
        .collect();
    meta.write_checkpoints(&s, &[checkpoint(p, &s, 4, small.clone())])
        .await
        .expect("checkpoint");
    let live =
        |snap: floe_core::types::PartitionSnapshot| live_entries(snap.entries).expect("live");

    meta.swap_index(p, 0, &[merged(0, 19)]).await.expect("swap");
    assert_eq!(meta.index_version(p).await.expect("version"), 1);
    let snap = meta.load_partition(p).await.expect("load").expect("some");
    assert_eq!(snap.next_offset, 40, "the owner's state is untouched");
    assert_eq!(
        live(snap),
        vec![merged(0, 19), small[2].clone(), small[3].clone()]
    );
    // A second compaction planned on version 0 loses.
    assert_eq!(
        err_kind(meta.swap_index(p, 0, &[merged(0, 29)]).await),
        ErrorKind::Precondition
    );
    // The owner retries an old write, storing covered entries again, then
    // checkpoints on; the swap stands.
    let mut again = checkpoint(p, &s, 5, small.clone());
    again.new_entries.push(entry(40, 49, "k4"));
    again.next_offset = 50;
    meta.write_checkpoints(&s, &[again])
        .await
        .expect("checkpoint");
    let snap = meta.load_partition(p).await.expect("load").expect("some");
    let stored = snap.entries.clone();
    assert_eq!(
        live(snap),
        vec![
            merged(0, 19),
            small[2].clone(),
            small[3].clone(),
            entry(40, 49, "k4")
        ]
    );
    // Re-compacting from the same base replaces the merged entry there.
    meta.swap_index(p, 1, &[merged(0, 29), merged(30, 49)])
        .await
        .expect("swap 2");
    let snap = meta.load_partition(p).await.expect("load").expect("some");
    let stored_now = snap.entries.clone();
    assert_eq!(live(snap), vec![merged(0, 29), merged(30, 49)]);
    // Dead entries (covered, or below a log start of 30) go; the live ones stay.
    let dead = dead_entries(&stored_now, 30);
    assert!(!dead.is_empty(), "{stored:?}");
    meta.delete_index(p, &dead).await.expect("delete");
    meta.delete_index(p, &dead).await.expect("delete again");
    let snap = meta.load_partition(p).await.expect("load").expect("some");
    assert_eq!(snap.entries, vec![merged(30, 49)]);
    // Deleting an entry that is not stored as given leaves what is.
    meta.delete_index(p, &[merged(30, 39)])
        .await
        .expect("delete other");
    let snap = meta.load_partition(p).await.expect("load").expect("some");
    assert_eq!(snap.entries, vec![merged(30, 49)]);
    assert_eq!(meta.index_version(p).await.expect("version"), 2);

    // A pass folds the owner's flush records past its stored state (the
    // records are the index until a checkpoint stores it): the merged
    // entries come back from every load, past the state's end too.
    meta.swap_index(p, 2, &[merged(50, 69)])
        .await
        .expect("swap past the end");
    let snap = meta.load_partition(p).await.expect("load").expect("some");
    assert_eq!(snap.next_offset, 50, "the owner's state is untouched");
    assert_eq!(live(snap), vec![merged(30, 49), merged(50, 69)]);
    let from = meta
        .load_partition_from(p, 50)
        .await
        .expect("load from")
        .expect("some");
    assert_eq!(from.entries, vec![merged(50, 69)]);
}

pub async fn committed_offsets_merge_and_come_back_exactly(meta: Arc<dyn MetaStore>) {
    use floe_core::types::CommittedOffset;
    let off = |offset: i64, epoch: i32, md: Option<&str>| CommittedOffset {
        offset,
        leader_epoch: epoch,
        metadata: md.map(str::to_string),
        commit_ms: 1_700_000_000_000 + offset,
        topic_id: (offset % 2 == 0).then(|| TopicId::from_u128(offset as u128)),
    };
    assert!(meta.fetch_offsets("g1").await.expect("fetch").is_empty());
    let first = BTreeMap::from([(0, off(10, 3, Some("m0"))), (1, off(20, -1, None))]);
    meta.commit_offsets("g1", "orders", &first)
        .await
        .expect("commit");
    // A later commit of some partitions keeps the others; metadata "" stays "".
    let second = BTreeMap::from([(1, off(25, 4, Some(""))), (7, off(70, 4, Some("ü")))]);
    meta.commit_offsets("g1", "orders", &second)
        .await
        .expect("commit");
    meta.commit_offsets("g1", "audit.log", &BTreeMap::from([(0, off(5, 0, None))]))
        .await
        .expect("commit");
    meta.commit_offsets("g2", "orders", &BTreeMap::from([(0, off(99, 1, None))]))
        .await
        .expect("commit");
    let g1 = meta.fetch_offsets("g1").await.expect("fetch");
    assert_eq!(
        g1,
        BTreeMap::from([
            (
                "audit.log".to_string(),
                BTreeMap::from([(0, off(5, 0, None))])
            ),
            (
                "orders".to_string(),
                BTreeMap::from([
                    (0, off(10, 3, Some("m0"))),
                    (1, off(25, 4, Some(""))),
                    (7, off(70, 4, Some("ü")))
                ])
            ),
        ])
    );
    // Many partitions in one commit.
    let wide: BTreeMap<i32, CommittedOffset> =
        (0..450).map(|p| (p, off(p as i64, 1, None))).collect();
    meta.commit_offsets("g3", "wide", &wide)
        .await
        .expect("wide commit");
    assert_eq!(meta.fetch_offsets("g3").await.expect("fetch")["wide"], wide);

    meta.delete_offsets("g1", "orders", &[1, 7, 8])
        .await
        .expect("delete");
    let g1 = meta.fetch_offsets("g1").await.expect("fetch");
    assert_eq!(g1["orders"], BTreeMap::from([(0, off(10, 3, Some("m0")))]));
    meta.delete_offsets("g1", "orders", &[0])
        .await
        .expect("delete");
    let g1 = meta.fetch_offsets("g1").await.expect("fetch");
    assert!(
        !g1.contains_key("orders"),
        "a topic with no offsets left is gone"
    );
    assert_eq!(g1.len(), 1);
    assert_eq!(
        meta.fetch_offsets("g2").await.expect("fetch")["orders"][&0].offset,
        99
    );
}

pub async fn membership_heartbeat_and_fencing(meta: Arc<dyn MetaStore>) {
    assert!(meta.list_members().await.expect("list").is_empty());
    let a1 = stream(
        "gw-a",
        meta.register_gateway("gw-a", &info()).await.expect("reg"),
    );
    let b1 = stream(
        "gw-b",
        meta.register_gateway("gw-b", &info()).await.expect("reg"),
    );
    let members = meta.list_members().await.expect("list");
    assert_eq!(members.len(), 2);
    assert_eq!(members[0].stream, a1);
    assert_eq!(members[0].info, info());
    assert_eq!(members[0].heartbeat, 0);
    assert!(!members[0].fenced);
    assert_eq!(members[1].stream, b1);

    // Heartbeats count up; observers see the counter.
    assert_eq!(meta.heartbeat(&a1).await.expect("hb"), 1);
    assert_eq!(meta.heartbeat(&a1).await.expect("hb"), 2);
    let seen = meta.list_members().await.expect("list")[0].heartbeat;
    assert_eq!(seen, 2);

    // A fence based on a stale observation fails: a1 heartbeated since.
    assert_eq!(
        err_kind(meta.fence_gateway(&a1, 1).await),
        ErrorKind::Precondition
    );
    meta.commit_flush(&record(&a1, 1, 0))
        .await
        .expect("a1 still commits");

    // With the current observation the fence lands, and a1 can no longer
    // commit, checkpoint, heartbeat, claim or release.
    meta.fence_gateway(&a1, seen).await.expect("fence");
    meta.fence_gateway(&a1, seen)
        .await
        .expect("fencing twice is fine");
    let a = &meta.list_members().await.expect("list")[0];
    assert!(a.fenced);
    assert_eq!(err_kind(meta.heartbeat(&a1).await), ErrorKind::Fenced);
    assert_eq!(
        err_kind(meta.commit_flush(&record(&a1, 2, 0)).await),
        ErrorKind::Fenced
    );
    let p = pid(9, 0);
    assert_eq!(
        err_kind(
            meta.write_checkpoints(&a1, &[checkpoint(p, &a1, 1, vec![])])
                .await
        ),
        ErrorKind::Fenced
    );
    assert_eq!(
        err_kind(
            meta.claim_partition(&a1, None, &checkpoint(p, &a1, 0, vec![]))
                .await
        ),
        ErrorKind::Fenced
    );
    // Records committed before the fence stay readable for the next owner.
    assert_eq!(meta.read_flushes(&a1, 0).await.expect("read").len(), 1);
    // b is untouched.
    assert_eq!(meta.heartbeat(&b1).await.expect("hb"), 1);

    // A restart registers a fresh, unfenced epoch; fencing the old one again
    // is a no-op that does not touch the new one.
    let a2 = stream(
        "gw-a",
        meta.register_gateway("gw-a", &info()).await.expect("reg"),
    );
    assert!(a2.epoch > a1.epoch);
    meta.fence_gateway(&a1, seen).await.expect("stale target");
    let a = &meta.list_members().await.expect("list")[0];
    assert_eq!(a.stream, a2);
    assert!(!a.fenced);
    assert_eq!(a.heartbeat, 0);
    assert_eq!(meta.heartbeat(&a2).await.expect("hb"), 1);
    assert_eq!(err_kind(meta.heartbeat(&a1).await), ErrorKind::Fenced);
    // Never registered.
    assert_eq!(
        err_kind(meta.heartbeat(&stream("ghost", 1)).await),
        ErrorKind::Fenced
    );
}

pub async fn claims_move_ownership_safely(meta: Arc<dyn MetaStore>) {
    let a = stream(
        "gw-a",
        meta.register_gateway("gw-a", &info()).await.expect("reg"),
    );
    let b = stream(
        "gw-b",
        meta.register_gateway("gw-b", &info()).await.expect("reg"),
    );
    let c = stream(
        "gw-c",
        meta.register_gateway("gw-c", &info()).await.expect("reg"),
    );
    let p = pid(11, 0);
    let q = pid(11, 1);

    // A never-claimed partition is claimed with no previous owner, once.
    meta.claim_partition(&a, None, &checkpoint(p, &a, 0, vec![entry(0, 9, "a1")]))
        .await
        .expect("claim fresh");
    assert_eq!(
        err_kind(
            meta.claim_partition(&b, None, &checkpoint(p, &b, 0, vec![]))
                .await
        ),
        ErrorKind::Precondition
    );
    // Claiming from a live owner that has not released fails, and changes nothing.
    assert_eq!(
        err_kind(
            meta.claim_partition(&b, Some(&a), &checkpoint(p, &b, 0, vec![]))
                .await
        ),
        ErrorKind::Precondition
    );
    let snap = meta.load_partition(p).await.expect("load").expect("some");
    assert_eq!(snap.owner, a);
    assert!(!snap.released);
    // Another gateway cannot write or release a's partition.
    assert_eq!(
        err_kind(
            meta.write_checkpoints(&b, &[checkpoint(p, &b, 0, vec![])])
                .await
        ),
        ErrorKind::Fenced
    );
    assert_eq!(
        err_kind(
            meta.release_partitions(&b, &[checkpoint(p, &b, 0, vec![])])
                .await
        ),
        ErrorKind::Fenced
    );
    assert_eq!(
        err_kind(
            meta.release_partitions(&b, &[checkpoint(q, &b, 0, vec![])])
                .await
        ),
        ErrorKind::Fenced,
        "releasing a partition never claimed"
    );

    // Cooperative move: a releases with a final checkpoint; then exactly one
    // of two claimers wins, and the loser's claim names the new owner.
    meta.write_checkpoints(&a, &[checkpoint(p, &a, 4, vec![entry(10, 19, "a2")])])
        .await
        .expect("checkpoint");
    meta.release_partitions(&a, &[checkpoint(p, &a, 5, vec![entry(20, 24, "a3")])])
        .await
        .expect("release");
    let snap = meta.load_partition(p).await.expect("load").expect("some");
    assert_eq!(snap.owner, a);
    assert!(snap.released);
    assert_eq!(snap.checkpoint_seq, 5);
    assert_eq!(snap.next_offset, 25);
    assert_eq!(snap.entries.len(), 3);
    let (cb, cc) = (
        checkpoint(p, &b, 0, vec![entry(0, 24, "x")]),
        checkpoint(p, &c, 0, vec![entry(0, 24, "x")]),
    );
    let (rb, rc) = tokio::join!(
        meta.claim_partition(&b, Some(&a), &cb),
        meta.claim_partition(&c, Some(&a), &cc),
    );
    let (winner, loser) = match (rb, rc) {
        (Ok(()), Err(e)) => {
            assert_eq!(e.kind(), ErrorKind::Precondition, "{e}");
            (b.clone(), c.clone())
        }
        (Err(e), Ok(())) => {
            assert_eq!(e.kind(), ErrorKind::Precondition, "{e}");
            (c.clone(), b.clone())
        }
        other => panic!("exactly one claim must win: {other:?}"),
    };
    let snap = meta.load_partition(p).await.expect("load").expect("some");
    assert_eq!(snap.owner, winner);
    assert!(!snap.released);
    assert_eq!(snap.checkpoint_seq, 0);
    assert_eq!(snap.entries.len(), 3, "existing entries are kept");
    // Once claimed, the old owner's writes fail.
    assert_eq!(
        err_kind(
            meta.write_checkpoints(&a, &[checkpoint(p, &a, 6, vec![])])
                .await
        ),
        ErrorKind::Fenced
    );
    assert_eq!(
        err_kind(
            meta.write_checkpoints(&loser, &[checkpoint(p, &loser, 0, vec![])])
                .await
        ),
        ErrorKind::Fenced
    );
    meta.write_checkpoints(
        &winner,
        &[checkpoint(p, &winner, 2, vec![entry(25, 29, "w")])],
    )
    .await
    .expect("the winner checkpoints");

    // Failover: the winner stops heartbeating; the loser fences it on the
    // counter it observed, then takes the partition over without a release.
    let seen = meta
        .list_members()
        .await
        .expect("list")
        .into_iter()
        .find(|m| m.stream == winner)
        .expect("member")
        .heartbeat;
    assert_eq!(
        err_kind(
            meta.claim_partition(&loser, Some(&winner), &checkpoint(p, &loser, 0, vec![]))
                .await
        ),
        ErrorKind::Precondition,
        "the owner is live and did not release"
    );
    meta.fence_gateway(&winner, seen).await.expect("fence");
    meta.claim_partition(&loser, Some(&winner), &checkpoint(p, &loser, 0, vec![]))
        .await
        .expect("claim from a fenced owner");
    assert_eq!(
        meta.load_partition(p)
            .await
            .expect("load")
            .expect("some")
            .owner,
        loser
    );

    // Restart: a gateway's new epoch claims from its own old epoch directly.
    meta.claim_partition(&a, None, &checkpoint(q, &a, 0, vec![]))
        .await
        .expect("claim q");
    let a2 = stream(
        "gw-a",
        meta.register_gateway("gw-a", &info()).await.expect("reg"),
    );
    assert_eq!(
        err_kind(
            meta.claim_partition(&a2, Some(&b), &checkpoint(q, &a2, 0, vec![]))
                .await
        ),
        ErrorKind::Precondition,
        "wrong previous owner"
    );
    meta.claim_partition(&a2, Some(&a), &checkpoint(q, &a2, 0, vec![]))
        .await
        .expect("claim from a superseded epoch");
    assert_eq!(
        meta.load_partition(q)
            .await
            .expect("load")
            .expect("some")
            .owner,
        a2
    );
}

pub async fn topic_writes_are_conditional(meta: Arc<dyn MetaStore>) {
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

pub async fn concurrent_topic_updates_have_one_winner(meta: Arc<dyn MetaStore>) {
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

pub async fn delete_topic_checks_the_id(meta: Arc<dyn MetaStore>) {
    let t = topic("t", 1, 1);
    meta.create_topic(&t).await.expect("create");
    assert_eq!(
        err_kind(meta.delete_topic("t", TopicId::from_u128(2), 1_000).await),
        ErrorKind::NotFound
    );
    assert_eq!(meta.get_topic("t").await.expect("get"), Some(t.clone()));
    assert_eq!(
        err_kind(meta.delete_topic("other", t.id, 1_000).await),
        ErrorKind::NotFound
    );
    meta.delete_topic("t", t.id, 1_000).await.expect("delete");
    assert_eq!(meta.get_topic("t").await.expect("get"), None);
    assert_eq!(
        err_kind(meta.delete_topic("t", t.id, 2_000).await),
        ErrorKind::NotFound
    );
    // The name can be reused, under a new id.
    let again = topic("t", 2, 1);
    meta.create_topic(&again).await.expect("recreate");
    assert_eq!(meta.get_topic("t").await.expect("get"), Some(again));
    assert!(meta.list_topics().await.expect("list").len() == 1);
}

/// A deleted topic leaves a tombstone naming its partitions; forgetting it
/// removes every partition's checkpoint, index and index version, and nothing
/// of another topic, a re-created one of the same name included.
pub async fn deleted_topics_are_forgotten_whole(meta: Arc<dyn MetaStore>) {
    use floe_core::types::DeletedTopic;
    let s = stream(
        "gw",
        meta.register_gateway("gw", &info()).await.expect("reg"),
    );
    let t = topic("t", 21, 3);
    meta.create_topic(&t).await.expect("create");
    let keep = topic("keep", 22, 1);
    meta.create_topic(&keep).await.expect("create keep");
    // More index items than one DynamoDB batch (25) or query page holds.
    let entries: Vec<IndexEntry> = (0..40)
        .map(|i| entry(i * 10, i * 10 + 9, &format!("k{i}")))
        .collect();
    let mut cps: Vec<PartitionCheckpoint> = (0..3)
        .map(|p| checkpoint(pid(21, p), &s, 1, entries.clone()))
        .collect();
    cps.push(checkpoint(pid(22, 0), &s, 1, entries.clone()));
    meta.write_checkpoints(&s, &cps).await.expect("checkpoint");
    let merged = IndexEntry {
        object_key: floe_core::keys::compacted_key(pid(21, 1), 0, 99, uuid::Uuid::from_u128(3)),
        ..entry(0, 99, "")
    };
    meta.swap_index(pid(21, 1), 0, &[merged])
        .await
        .expect("swap");
    assert_eq!(meta.deleted_topics().await.expect("list"), vec![]);

    meta.delete_topic("t", t.id, 5_000).await.expect("delete");
    let tomb = DeletedTopic {
        name: "t".into(),
        id: t.id,
        partitions: 3,
        deleted_ms: 5_000,
    };
    assert_eq!(
        meta.deleted_topics().await.expect("list"),
        vec![tomb.clone()]
    );
    // Nothing is removed until it is forgotten.
    assert!(
        meta.load_partition(pid(21, 2))
            .await
            .expect("load")
            .is_some()
    );
    // The name is reused at once, under a new id.
    let again = topic("t", 23, 1);
    meta.create_topic(&again).await.expect("recreate");
    meta.write_checkpoints(&s, &[checkpoint(pid(23, 0), &s, 2, entries.clone())])
        .await
        .expect("checkpoint new");

    meta.forget_topic(&tomb).await.expect("forget");
    for p in 0..3 {
        assert_eq!(
            meta.load_partition(pid(21, p)).await.expect("load"),
            None,
            "partition {p}"
        );
        assert_eq!(meta.index_version(pid(21, p)).await.expect("version"), 0);
    }
    assert_eq!(meta.deleted_topics().await.expect("list"), vec![]);
    meta.forget_topic(&tomb).await.expect("forget again");
    for p in [pid(22, 0), pid(23, 0)] {
        let snap = meta.load_partition(p).await.expect("load").expect("kept");
        assert_eq!(snap.entries, entries, "{p}");
    }
    assert_eq!(meta.get_topic("t").await.expect("get"), Some(again));
}

pub async fn producer_ids_are_disjoint(meta: Arc<dyn MetaStore>) {
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

pub async fn group_state_is_stored_conditionally(meta: Arc<dyn MetaStore>) {
    use floe_core::types::{CommittedOffset, StoredGroup, StoredMember};
    let member = |id: &str, instance: Option<&str>, assignment: Vec<u8>| StoredMember {
        member_id: id.into(),
        instance_id: instance.map(str::to_string),
        client_id: format!("client-{id}"),
        client_host: "/10.0.0.7".into(),
        session_timeout_ms: 45_000,
        rebalance_timeout_ms: 300_000,
        protocols: vec![
            ("range".into(), vec![0, 1, 0, 0, 255, 0]),
            ("cooperative-sticky".into(), Vec::new()),
        ],
        assignment,
        ..Default::default()
    };
    let group = |generation: i32, members: Vec<StoredMember>| StoredGroup {
        protocol_type: "consumer".into(),
        protocol: Some("range".into()),
        generation,
        leader: members.first().map(|m| m.member_id.clone()),
        members,
        stored_ms: 1_700_000_000_000 + generation as i64,
        consumer_protocol: false,
    };
    let off = |offset: i64| CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: None,
        commit_ms: 1_700_000_000_000,
        topic_id: None,
    };

    assert_eq!(meta.load_group("g1").await.expect("load"), None);
    assert!(meta.list_groups().await.expect("list").is_empty());

    let v1 = group(
        1,
        vec![
            member("m-1", Some("static-1"), vec![0, 0, 0, 2, 0]),
            // A KIP-848 member's epoch, subscription and partitions.
            StoredMember {
                member_epoch: 7,
                subscribed_topics: vec!["orders".into(), "payments".into()],
                server_assignor: Some("uniform".into()),
                rack: Some("eu-west-1a".into()),
                owned: vec![(uuid::Uuid::from_u128(9), vec![0, 2, 5])],
                revoking: vec![(uuid::Uuid::from_u128(9), vec![7])],
                ..member("m-2", None, Vec::new())
            },
        ],
    );
    meta.store_group("g1", &v1).await.expect("store");
    assert_eq!(meta.load_group("g1").await.expect("load"), Some(v1.clone()));

    // A newer generation replaces; an empty group without a protocol too.
    let v3 = StoredGroup {
        protocol: None,
        leader: None,
        ..group(3, Vec::new())
    };
    meta.store_group("g1", &v3).await.expect("store newer");
    assert_eq!(meta.load_group("g1").await.expect("load"), Some(v3.clone()));

    // An older generation is refused and changes nothing.
    assert_eq!(
        err_kind(meta.store_group("g1", &v1).await),
        ErrorKind::Precondition
    );
    assert_eq!(meta.load_group("g1").await.expect("load"), Some(v3.clone()));

    // The same generation overwrites (e.g. the group emptied, or a static member
    // was replaced).
    let v3b = group(3, vec![member("m-9", Some("static-1"), vec![7; 300])]);
    meta.store_group("g1", &v3b)
        .await
        .expect("store same generation");
    assert_eq!(
        meta.load_group("g1").await.expect("load"),
        Some(v3b.clone())
    );

    // Offsets of g1 over more topics than one write batch holds, plus a group
    // with offsets only and one with state only.
    for t in 0..30 {
        meta.commit_offsets(
            "g1",
            &format!("topic-{t:02}"),
            &BTreeMap::from([(0, off(t))]),
        )
        .await
        .expect("commit");
    }
    meta.commit_offsets("offsets-only", "orders", &BTreeMap::from([(3, off(33))]))
        .await
        .expect("commit");
    let g0 = StoredGroup {
        protocol_type: String::new(),
        ..StoredGroup::default()
    };
    meta.store_group("g0", &g0).await.expect("store");
    assert_eq!(
        meta.list_groups().await.expect("list"),
        vec![("g0".to_string(), g0.clone()), ("g1".to_string(), v3b)]
    );

    meta.delete_group("g1").await.expect("delete");
    assert_eq!(meta.load_group("g1").await.expect("load"), None);
    assert!(meta.fetch_offsets("g1").await.expect("fetch").is_empty());
    assert_eq!(
        meta.list_groups().await.expect("list"),
        vec![("g0".to_string(), g0)]
    );
    assert_eq!(
        meta.fetch_offsets("offsets-only").await.expect("fetch")["orders"],
        BTreeMap::from([(3, off(33))])
    );
    // Deleting again, or a group never seen, is fine; a deleted group starts over.
    meta.delete_group("g1").await.expect("delete again");
    meta.delete_group("never-seen")
        .await
        .expect("delete unknown");
    meta.store_group("g1", &v1)
        .await
        .expect("store after delete");
    assert_eq!(meta.load_group("g1").await.expect("load"), Some(v1));
}
