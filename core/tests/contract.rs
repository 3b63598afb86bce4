//! The storage contract: one suite for `ObjectStore`, one for `MetaStore`, each
//! written once as generic async functions and stamped out per backend (plain and
//! wrapped in the fault-injecting store with nothing armed), so a failure names
//! the backend: `object_store::<case>::<backend>`, `meta_store::<case>::<backend>`.

#[macro_use]
#[path = "common/contract.rs"]
mod contract;

use std::sync::Arc;

use contract::*;
use floe_core::ErrorKind;
use floe_core::fault::{Faults, FaultyMetaStore, FaultyObjectStore};
use floe_core::meta::{MemoryMetaStore, MetaStore, SqliteMetaStore};
use floe_core::object_store::{LocalDirStore, MemoryObjectStore, ObjectStore};
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

for_each_object_store_case!(object_store_contract);

for_each_meta_store_case!(meta_store_contract);

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
