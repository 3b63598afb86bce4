//! The ownership protocol in one process, on the memory backend, with tokio's
//! clock paused so session timeouts pass deterministically: gateways split the
//! partitions, a silent gateway is fenced and its acknowledged appends move
//! with its partitions, its later commits fail, and a cooperative hand-over
//! moves partitions both ways without losing an offset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use floe_core::backend::Stores;
use floe_core::clock::{SharedClock, SystemClock};
use floe_core::meta::{MemoryMetaStore, SharedMetaStore};
use floe_core::object_store::{MemoryObjectStore, SharedObjectStore};
use floe_core::settings::Settings;
use floe_flusher::{AppendError, BatchIn, Lease, PartitionLog};
use floe_gateway::broker::Broker;
use floe_gateway::ownership::Controller;

struct Gateway {
    broker: Arc<Broker>,
    controller: Controller,
}

async fn gateway(
    meta: &SharedMetaStore,
    objects: &SharedObjectStore,
    id: &str,
    node: i32,
) -> Gateway {
    let settings = Settings {
        gateway_id: id.to_string(),
        node_id: node,
        broker_ids: 1,
        ..Settings::default()
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let broker = Broker::open(
        settings,
        Stores::new(objects.clone(), meta.clone()),
        clock,
        format!("127.0.0.1:{}", 9000 + node),
    )
    .await
    .expect("open");
    let controller = broker.start_ownership().await.expect("first round");
    Gateway { broker, controller }
}

impl Gateway {
    /// A heartbeat and an ownership round, as the gateway's loop runs them.
    async fn round(&mut self) {
        floe_gateway::ownership::beat(&self.broker)
            .await
            .expect("heartbeat");
        self.controller.round(&self.broker).await.expect("round");
    }
    fn log(&self, p: i32) -> Arc<PartitionLog> {
        self.broker.topics.get("t").expect("topic").logs[p as usize].clone()
    }
    fn owned(&self) -> Vec<i32> {
        (0..PARTITIONS)
            .filter(|&p| self.log(p).lease() == Lease::Owned)
            .collect()
    }
    async fn append(&self, p: i32, tag: u8) -> Result<i64, AppendError> {
        self.broker
            .leases
            .enqueue(self.log(p), vec![batch(tag)])
            .await?
            .wait()
            .await
            .map(|a| a.base_offset)
    }
}

const PARTITIONS: i32 = 8;

fn batch(tag: u8) -> BatchIn {
    let mut b = vec![tag; 64];
    b[..8].copy_from_slice(&[0xff; 8]);
    BatchIn {
        bytes: Bytes::from(b),
        records: 1,
        max_timestamp: 1_000,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    }
}

/// Each partition is owned by exactly one of `gws`.
fn assert_exclusive(gws: &[&Gateway]) {
    for p in 0..PARTITIONS {
        let owners: Vec<_> = gws
            .iter()
            .filter(|g| g.log(p).lease() == Lease::Owned)
            .map(|g| g.broker.cluster.me().to_string())
            .collect();
        assert_eq!(owners.len(), 1, "partition {p} owned by {owners:?}");
    }
}

async fn stores() -> (SharedMetaStore, SharedObjectStore) {
    (
        Arc::new(MemoryMetaStore::new()),
        Arc::new(MemoryObjectStore::new()),
    )
}

#[tokio::test(start_paused = true)]
async fn a_silent_gateway_is_fenced_and_its_partitions_move_with_every_ack() {
    let (meta, objects) = stores().await;
    let mut a = gateway(&meta, &objects, "gw-a", 1).await;
    a.broker
        .create_topic("t", PARTITIONS, BTreeMap::new(), false)
        .await
        .expect("create");
    assert_eq!(a.owned().len(), PARTITIONS as usize, "alone, a owns all");
    let mut b = gateway(&meta, &objects, "gw-b", 2).await;
    for _ in 0..3 {
        a.round().await;
        b.round().await;
    }
    assert_exclusive(&[&a, &b]);
    let (on_a, on_b) = (a.owned(), b.owned());
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "split: a {on_a:?} b {on_b:?}"
    );
    for p in 0..PARTITIONS {
        let leader = a.broker.cluster.leader_of(&a.log(p).id).expect("leader");
        assert_eq!(
            leader.stream,
            b.broker
                .cluster
                .leader_of(&b.log(p).id)
                .expect("leader")
                .stream
        );
        let owner = if on_a.contains(&p) { &a } else { &b };
        assert_eq!(
            leader.stream,
            *owner.broker.cluster.me(),
            "metadata names the owner of {p}"
        );
    }

    // a acknowledges appends on its partitions, then falls silent.
    let pa = on_a[0];
    for i in 0..3 {
        assert_eq!(a.append(pa, i).await.expect("append on a"), i as i64);
    }
    // Appends on b's partitions are refused by a's sealing.
    let pb = on_b[0];
    assert!(matches!(
        a.append(pb, 9).await,
        Err(AppendError::NotOwner(_))
    ));

    // b watches a's counter stand still for the session timeout, then fences it.
    for _ in 0..8 {
        tokio::time::advance(Duration::from_secs(1)).await;
        b.round().await;
    }
    let members = meta.list_members().await.expect("members");
    assert!(
        members
            .iter()
            .any(|m| m.stream == *a.broker.cluster.me() && m.fenced)
    );
    assert_eq!(
        b.owned().len(),
        PARTITIONS as usize,
        "b took every partition"
    );
    // b replayed a's flush records: the three acks are there, and b continues.
    assert_eq!(b.log(pa).high_watermark(), 3);
    assert_eq!(b.append(pa, 7).await.expect("append on b"), 3);

    // a wakes up: its commits fail, and its next round says it is fenced.
    let zombie = a.append(pa, 8).await;
    assert!(
        zombie.is_err(),
        "a fenced gateway cannot commit: {zombie:?}"
    );
    assert!(floe_gateway::ownership::beat(&a.broker).await.is_err());
    assert_eq!(b.log(pa).high_watermark(), 4, "nothing of a's landed");
}

#[tokio::test(start_paused = true)]
async fn cooperative_hand_over_moves_partitions_both_ways_without_a_gap() {
    let (meta, objects) = stores().await;
    let mut a = gateway(&meta, &objects, "gw-a", 1).await;
    a.broker
        .create_topic("t", PARTITIONS, BTreeMap::new(), false)
        .await
        .expect("create");
    for p in 0..PARTITIONS {
        a.append(p, p as u8).await.expect("append");
    }
    // Scale out: b joins, a hands b's share over, b claims it.
    let mut b = gateway(&meta, &objects, "gw-b", 2).await;
    for _ in 0..3 {
        a.round().await;
        b.round().await;
    }
    assert_exclusive(&[&a, &b]);
    let moved = b.owned();
    assert!(!moved.is_empty());
    for &p in &moved {
        assert_eq!(
            b.log(p).high_watermark(),
            1,
            "partition {p} kept its record"
        );
        assert_eq!(b.append(p, 50).await.expect("append on b"), 1);
        assert!(matches!(
            a.append(p, 51).await,
            Err(AppendError::NotOwner(_))
        ));
    }
    // Scale in: b stops cleanly (releases and leaves); a takes everything back
    // at its next round, without waiting for a session timeout.
    b.broker.close(Duration::from_secs(5)).await;
    a.round().await;
    assert_eq!(a.owned().len(), PARTITIONS as usize);
    for &p in &moved {
        assert_eq!(
            a.log(p).high_watermark(),
            2,
            "b's append came back with {p}"
        );
        assert_eq!(a.append(p, 52).await.expect("append on a"), 2);
    }
}

/// A write path that stops on its own (a commit whose outcome could not be
/// read back within the retry budget) stops the whole gateway: the ownership
/// loop fences it, so it exits and its partitions can move, instead of
/// heartbeating on while refusing every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_outcome_cannot_be_learned_stops_the_gateway() {
    use floe_core::fault::{Fault, Faults, FaultyMetaStore};
    let faults = Faults::new();
    let (meta, objects) = stores().await;
    let meta: SharedMetaStore = Arc::new(FaultyMetaStore::new(meta, faults.clone()));
    let settings = Settings {
        gateway_id: "solo".into(),
        retry_budget: Duration::from_millis(200),
        heartbeat_interval: Duration::from_millis(50),
        session_timeout: Duration::from_millis(500),
        ..Settings::default()
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let broker = Broker::open(
        settings,
        Stores::new(objects, meta),
        clock,
        "127.0.0.1:9000".into(),
    )
    .await
    .expect("open");
    let controller = broker.start_ownership().await.expect("first round");
    broker
        .create_topic("t", 1, BTreeMap::new(), false)
        .await
        .expect("topic");
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let ownership = tokio::spawn(floe_gateway::ownership::run(
        broker.clone(),
        controller,
        stop_rx,
    ));
    let log = broker.topics.get("t").expect("topic").logs[0].clone();
    faults.set("meta.commit", Fault::Unavailable, None);
    faults.set("meta.read", Fault::Unavailable, None);
    let r = broker
        .leases
        .enqueue(log, vec![batch(1)])
        .await
        .expect("enqueued")
        .wait()
        .await;
    assert!(matches!(r, Err(AppendError::NotOwner(_))), "{r:?}");
    tokio::time::timeout(Duration::from_secs(10), ownership)
        .await
        .expect("the ownership loop stops")
        .expect("task");
    let why = broker
        .cluster
        .fenced_reason()
        .expect("the gateway is fenced");
    assert!(why.contains("unknown"), "{why}");
}
