//! The storage contract (`tests/common/contract.rs`) against the AWS backends on
//! emulators: `S3Store` on moto (`FLOE_TEST_MOTO_ENDPOINT`) and on LocalStack
//! (`FLOE_TEST_LOCALSTACK_ENDPOINT`), `DynamoMetaStore` on moto. Each test creates
//! its own bucket or table under a unique name and deletes it at the end.
//!
//! The tests are ignored by default; `scripts/test-all.sh` starts the emulators
//! and runs them with `--run-ignored all`. Run that way without the endpoint
//! variables, they fail: a green run always means the backends were exercised.

#[macro_use]
#[path = "common/contract.rs"]
mod contract;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::Client as DdbClient;
use aws_sdk_s3::Client as S3Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use contract::*;
use floe_core::aws::AwsStats;
use floe_core::meta::{DynamoMetaStore, MetaStore};
use floe_core::object_store::{ObjectStore, S3Store};
use floe_core::types::{FlushPartition, FlushRecord};

const MOTO: &str = "FLOE_TEST_MOTO_ENDPOINT";
/// Flush records' TTL in the tests (the setting's default).
const TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
const LOCALSTACK: &str = "FLOE_TEST_LOCALSTACK_ENDPOINT";

#[track_caller]
fn endpoint(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: this test needs the AWS emulators; \
             run scripts/test-all.sh, or start localstack/emulators.sh and export {var}"
        ),
    }
}

/// A name unique across tests and runs (S3 bucket rules: lowercase, digits, '-').
fn unique(kind: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "floe-{kind}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

fn creds() -> Credentials {
    Credentials::new("test", "test", None, None, "floe-tests")
}

fn s3_client(endpoint: &str) -> S3Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds())
        .force_path_style(true)
        .build();
    S3Client::from_conf(conf)
}

fn ddb_client(endpoint: &str) -> DdbClient {
    let conf = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds())
        .build();
    DdbClient::from_conf(conf)
}

/// A fresh bucket; `cleanup` empties and deletes it.
struct Bucket {
    client: S3Client,
    name: String,
    store: Arc<S3Store>,
}

impl Bucket {
    async fn new(endpoint_var: &str, prefix: Option<&str>) -> Bucket {
        let client = s3_client(&endpoint(endpoint_var));
        let name = unique("b");
        floe_core::provision::create_bucket(&client, &name)
            .await
            .expect("create bucket");
        // Creating it twice is fine (floe init is re-runnable).
        floe_core::provision::create_bucket(&client, &name)
            .await
            .expect("create bucket again");
        let store = Arc::new(S3Store::new(
            client.clone(),
            name.clone(),
            prefix,
            Arc::new(AwsStats::default()),
        ));
        Bucket {
            client,
            name,
            store,
        }
    }

    async fn cleanup(self) {
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.name)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list for cleanup");
            for o in page.contents() {
                if let Some(k) = o.key() {
                    self.client
                        .delete_object()
                        .bucket(&self.name)
                        .key(k)
                        .send()
                        .await
                        .expect("delete object");
                }
            }
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        self.client
            .delete_bucket()
            .bucket(&self.name)
            .send()
            .await
            .expect("delete bucket");
    }
}

/// A fresh table; `cleanup` deletes it.
struct Table {
    client: DdbClient,
    name: String,
    stats: Arc<AwsStats>,
    store: Arc<DynamoMetaStore>,
}

impl Table {
    async fn new() -> Table {
        let client = ddb_client(&endpoint(MOTO));
        let name = unique("t");
        floe_core::provision::create_table(&client, &name)
            .await
            .expect("create table");
        floe_core::provision::create_table(&client, &name)
            .await
            .expect("create table again");
        let stats = Arc::new(AwsStats::default());
        let store = Arc::new(DynamoMetaStore::new(
            client.clone(),
            name.clone(),
            stats.clone(),
            TTL,
        ));
        Table {
            client,
            name,
            stats,
            store,
        }
    }

    async fn cleanup(self) {
        self.client
            .delete_table()
            .table_name(&self.name)
            .send()
            .await
            .expect("delete table");
    }
}

macro_rules! aws_object_store_contract {
    ($($case:ident),* $(,)?) => {
        mod object_store {
            $(
                mod $case {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    #[ignore = "needs emulators: scripts/test-all.sh starts them"]
                    async fn s3_moto() {
                        let b = crate::Bucket::new(crate::MOTO, None).await;
                        crate::$case(b.store.clone()).await;
                        b.cleanup().await;
                    }

                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    #[ignore = "needs emulators: scripts/test-all.sh starts them"]
                    async fn s3_moto_prefixed() {
                        let b = crate::Bucket::new(crate::MOTO, Some("floe/data")).await;
                        crate::$case(b.store.clone()).await;
                        b.cleanup().await;
                    }

                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    #[ignore = "needs emulators: scripts/test-all.sh starts them"]
                    async fn s3_localstack() {
                        let b = crate::Bucket::new(crate::LOCALSTACK, None).await;
                        crate::$case(b.store.clone()).await;
                        b.cleanup().await;
                    }
                }
            )*
        }
    };
}

macro_rules! aws_meta_store_contract {
    ($($case:ident),* $(,)?) => {
        mod meta_store {
            $(
                mod $case {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    #[ignore = "needs emulators: scripts/test-all.sh starts them"]
                    async fn dynamodb_moto() {
                        let t = crate::Table::new().await;
                        crate::$case(t.store.clone()).await;
                        t.cleanup().await;
                    }
                }
            )*
        }
    };
}

for_each_object_store_case!(aws_object_store_contract);

for_each_meta_store_case!(aws_meta_store_contract);

// ---------------------------------------------------------------------------
// Backend-specific checks.

/// Listing pages past 1,000 keys, and the key prefix stays invisible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs emulators: scripts/test-all.sh starts them"]
async fn s3_list_pages_and_counts_requests() {
    let b = Bucket::new(MOTO, Some("pfx")).await;
    let store: Arc<dyn ObjectStore> = b.store.clone();
    let n = 1005;
    let mut tasks = tokio::task::JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    for i in 0..n {
        let store = store.clone();
        let sem = sem.clone();
        tasks.spawn(async move {
            let _p = sem.acquire().await.expect("semaphore");
            store
                .put_if_absent(&format!("k/{i:05}"), body(1, 0))
                .await
                .expect("put");
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
    let listed = store.list("k/").await.expect("list");
    assert_eq!(listed.len(), n);
    assert_eq!(listed[0].key, "k/00000");
    assert_eq!(listed[n - 1].key, format!("k/{:05}", n - 1));
    let s = b.store.stats().snapshot();
    assert_eq!(s.s3_put, n as u64);
    assert_eq!(s.s3_list, 2, "1005 keys take two ListObjectsV2 pages");
    // The raw bucket holds the keys under the prefix.
    let raw = b
        .client
        .list_objects_v2()
        .bucket(&b.name)
        .prefix("pfx/k/00000")
        .send()
        .await
        .expect("raw list");
    assert_eq!(raw.key_count(), Some(1));
    b.cleanup().await;
}

/// A flush record touching `n` partitions.
fn wide_record(stream: &floe_core::types::StreamId, seq: u64, n: i32) -> FlushRecord {
    FlushRecord {
        stream: stream.clone(),
        seq,
        object_key: format!("segments/3f/{}-{}-{seq}.seg", stream.gateway, stream.epoch),
        object_len: 8 << 20,
        created_ms: 1_700_000_000_000,
        partitions: (0..n)
            .map(|p| FlushPartition {
                partition: pid(0xabcdef, p),
                base_offset: 1_000_000 + p as i64 * 1000,
                last_offset: 1_000_000 + p as i64 * 1000 + 99,
                max_timestamp: 1_700_000_000_123,
                position: p as u64 * 80_000,
                length: 80_000,
                producers: Vec::new(),
            })
            .collect(),
    }
}

/// One commit is one DynamoDB request whatever the number of partitions; prints
/// the write units the emulator reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs emulators: scripts/test-all.sh starts them"]
async fn dynamodb_commit_is_one_request() {
    let t = Table::new().await;
    let meta: Arc<dyn MetaStore> = t.store.clone();
    let epoch = meta.register_gateway("gw", &info()).await.expect("reg");
    let s = stream("gw", epoch);
    for (seq, n) in [(1u64, 1i32), (2, 100)] {
        let rec = wide_record(&s, seq, n);
        // FlushRecord's own JSON, for comparison with the stored compact form.
        let size = serde_json::to_vec(&rec).expect("json").len();
        let before = t.stats.snapshot();
        meta.commit_flush(&rec).await.expect("commit");
        let after = t.stats.snapshot();
        let requests = after.ddb_requests - before.ddb_requests;
        let wru = after.ddb_write_units - before.ddb_write_units;
        let rru = after.ddb_read_units - before.ddb_read_units;
        let billed = floe_core::meta::dynamodb::commit_flush_write_units(&rec).expect("units");
        println!(
            "commit_flush with {n} partition(s): record JSON {size} bytes, {requests} request(s), \
             accounted {wru} WRU / {rru} RRU, DynamoDB would bill {billed} WRU"
        );
        assert_eq!(requests, 1, "{n} partitions");
        // The request accounting counts the transaction's units itself when
        // the emulator reports none.
        assert_eq!(wru, billed as f64, "accounted write units, {n} partitions");
        match n {
            1 => assert_eq!(billed, 4, "2 items under 1 KiB, transactional"),
            _ => assert!(billed <= 6, "{billed} WRU for {n} partitions"),
        }
        // Idempotent re-commit (a retry) is also one request when it lands.
        assert_eq!(
            meta.read_flushes(&s, seq - 1).await.expect("read").first(),
            Some(&rec)
        );
    }
    t.cleanup().await;
}

// ---------------------------------------------------------------------------
// Error classification (no emulator needed).

fn closed_port_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable() {
    let ep = closed_port_endpoint();
    let conf = s3_client(&ep)
        .config()
        .to_builder()
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    let store = S3Store::new(
        S3Client::from_conf(conf),
        "b",
        None,
        Arc::new(AwsStats::default()),
    );
    let e = store.get("k").await.expect_err("nothing listens");
    assert_eq!(e.kind(), floe_core::ErrorKind::Unavailable, "{e}");
    let conf = ddb_client(&ep)
        .config()
        .to_builder()
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    let meta = DynamoMetaStore::new(
        DdbClient::from_conf(conf),
        "t",
        Arc::new(AwsStats::default()),
        TTL,
    );
    let e = meta.get_topic("x").await.expect_err("nothing listens");
    assert_eq!(e.kind(), floe_core::ErrorKind::Unavailable, "{e}");
}

#[tokio::test]
async fn missing_credentials_are_denied() {
    let conf = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(closed_port_endpoint())
        .build();
    let meta = DynamoMetaStore::new(
        DdbClient::from_conf(conf),
        "t",
        Arc::new(AwsStats::default()),
        TTL,
    );
    let e = meta.get_topic("x").await.expect_err("no credentials");
    assert_eq!(e.kind(), floe_core::ErrorKind::Denied, "{e}");
    println!("{e}");
}

/// More partitions than one transaction holds (99 + the fence) and more index
/// entries than one BatchWriteItem (25): chunked, all visible, fenced per chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs emulators: scripts/test-all.sh starts them"]
async fn dynamodb_checkpoints_and_trims_in_chunks() {
    use floe_core::types::{IndexEntry, PartitionCheckpoint};
    let t = Table::new().await;
    let meta: Arc<dyn MetaStore> = t.store.clone();
    let s = stream(
        "gw",
        meta.register_gateway("gw", &info()).await.expect("reg"),
    );
    let cps: Vec<PartitionCheckpoint> = (0..150)
        .map(|p| {
            let entries: Vec<IndexEntry> = (0..2)
                .map(|i| entry(i * 10, i * 10 + 9, &format!("obj-{p}-{i}")))
                .collect();
            let mut cp = PartitionCheckpoint {
                partition: pid(77, p),
                owner: s.clone(),
                checkpoint_seq: 5,
                next_offset: 20,
                log_start_offset: 0,
                producers: Default::default(),
                new_entries: entries,
            };
            cp.log_start_offset = p as i64 % 3;
            cp
        })
        .collect();
    let before = t.stats.snapshot();
    meta.write_checkpoints(&s, &cps).await.expect("checkpoint");
    let requests = t.stats.snapshot().ddb_requests - before.ddb_requests;
    // 300 index items in 12 BatchWriteItem calls, 150 states in 2 transactions.
    assert_eq!(requests, 14);
    for cp in &cps {
        let snap = meta
            .load_partition(cp.partition)
            .await
            .expect("load")
            .expect("some");
        assert_eq!(snap.next_offset, 20);
        assert_eq!(snap.log_start_offset, cp.log_start_offset);
        assert_eq!(snap.entries, cp.new_entries);
    }

    for seq in 1..=60 {
        meta.commit_flush(&wide_record(&s, seq, 2))
            .await
            .expect("commit");
    }
    meta.trim_flushes(&s, 55).await.expect("trim");
    let left: Vec<u64> = meta
        .read_flushes(&s, 0)
        .await
        .expect("read")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(left, vec![56, 57, 58, 59, 60]);
    assert_eq!(
        meta.flush_streams().await.expect("streams"),
        vec![s.clone()]
    );
    t.cleanup().await;
}

/// Flush items expire by TTL instead of being deleted: each carries
/// `expires_at` (commit time + the configured TTL), a trim costs one write
/// whatever the number of records it covers, and trimmed items stay in the
/// table (until DynamoDB's TTL removes them) but are invisible to readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs emulators: scripts/test-all.sh starts them"]
async fn dynamodb_flush_records_expire_by_ttl_once_trimmed() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let t = Table::new().await;
    let ttl = std::time::Duration::from_secs(3 * 24 * 3600);
    let store = DynamoMetaStore::new(t.client.clone(), t.name.clone(), t.stats.clone(), ttl);
    let s = stream(
        "gw",
        store.register_gateway("gw", &info()).await.expect("reg"),
    );
    for seq in 1..=30 {
        store
            .commit_flush(&wide_record(&s, seq, 3))
            .await
            .expect("commit");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let flush_pk = format!("flush#gw#{:020}", s.epoch);
    let item = t
        .client
        .get_item()
        .table_name(&t.name)
        .key("pk", AttributeValue::S(flush_pk.clone()))
        .key("sk", AttributeValue::S(format!("{:020}", 7)))
        .send()
        .await
        .expect("get")
        .item
        .expect("the flush item");
    let expires: u64 = item
        .get("expires_at")
        .and_then(|v| v.as_n().ok())
        .expect("expires_at")
        .parse()
        .expect("number");
    assert!(
        expires >= now + ttl.as_secs() - 60 && expires <= now + ttl.as_secs() + 60,
        "expires_at {expires} is commit time + TTL (now {now})"
    );

    let before = t.stats.snapshot().ddb_requests;
    store.trim_flushes(&s, 25).await.expect("trim");
    assert_eq!(
        t.stats.snapshot().ddb_requests - before,
        1,
        "a trim is one request whatever it covers"
    );
    store
        .trim_flushes(&s, 10)
        .await
        .expect("a lower mark is a no-op");
    let left: Vec<u64> = store
        .read_flushes(&s, 0)
        .await
        .expect("read")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(left, vec![26, 27, 28, 29, 30], "the mark did not go down");
    let stored = t
        .client
        .query()
        .table_name(&t.name)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(flush_pk))
        .send()
        .await
        .expect("query")
        .count;
    assert_eq!(stored, 30, "trimmed items stay until the TTL removes them");

    // A second incarnation that never committed is not a stream to recover;
    // fully trimming the first leaves nothing.
    store.register_gateway("gw", &info()).await.expect("reg");
    assert_eq!(
        store.flush_streams().await.expect("streams"),
        vec![s.clone()]
    );
    store.trim_flushes(&s, u64::MAX).await.expect("trim all");
    assert!(store.flush_streams().await.expect("streams").is_empty());
    assert!(store.read_flushes(&s, 0).await.expect("read").is_empty());
    t.cleanup().await;
}
