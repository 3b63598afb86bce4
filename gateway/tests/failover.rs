//! Fail-over drills: three `floe` processes on loopback share one backend and
//! split a topic's partitions by rendezvous hashing, while an idempotent
//! librdkafka producer writes paced records through them. One gateway is
//! killed (-9), frozen past its session timeout, or the group scales out and
//! back in. Every delivery must succeed (the producer retries through
//! NOT_LEADER_OR_FOLLOWER and refused connections), and a fresh consumer must
//! read every acknowledged record at its acknowledged offset, offsets
//! contiguous from 0, nothing twice.
//!
//! A consumer tails every partition throughout: it must keep progressing past
//! each event and receive exactly the acknowledged records.
//!
//! Each drill prints, per partition, the longest gap between consecutive
//! acknowledgements around the event (its unavailability window) next to the
//! longest gap before it; timings are reported, never asserted.
//!
//! With `FLOE_TEST_BACKEND=aws` the three gateways share a fresh bucket and
//! table on the moto server of `FLOE_TEST_MOTO_ENDPOINT` instead of an
//! embedded backend.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

const TOPIC: &str = "failover";
const PARTITIONS: i32 = 8;
const GATEWAYS: usize = 3;
/// Short enough that a silent gateway is replaced within the drill.
const HEARTBEAT_INTERVAL: &str = "200ms";
const SESSION_TIMEOUT: &str = "1500ms";

/// Up to three gateways (node ids 0, 1, 2) on one backend; every process is
/// killed when the cluster is dropped, also when a test panics.
struct Cluster {
    gateways: Vec<Option<common::Process>>,
    ports: Vec<u16>,
    backend: Vec<(&'static str, String)>,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Self {
        let backend = common::test_backend("floe-failover");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("data")).expect("data dir");
        Cluster {
            gateways: (0..GATEWAYS).map(|_| None).collect(),
            ports: (0..GATEWAYS).map(|_| common::free_port()).collect(),
            backend,
            dir,
        }
    }

    /// Starts gateway `n` (id `gw-n`, node id `n`) and waits for its port.
    fn start(&mut self, n: usize) {
        let id = format!("gw-{n}");
        let node = n.to_string();
        let mut args: Vec<(&str, &str)> = vec![
            ("gateway-id", id.as_str()),
            ("node-id", node.as_str()),
            ("heartbeat-interval", HEARTBEAT_INTERVAL),
            ("session-timeout", SESSION_TIMEOUT),
            ("checkpoint-interval", "1s"),
        ];
        args.extend(self.backend.iter().map(|(k, v)| (*k, v.as_str())));
        let gw = common::Process::start_logged(
            &self.dir.path().join("data"),
            self.ports[n],
            &args,
            &[],
            Some(&self.log_path(n)),
        );
        self.gateways[n] = Some(gw);
    }

    fn gateway(&mut self, n: usize) -> &mut common::Process {
        self.gateways[n].as_mut().expect("gateway started")
    }

    fn bootstrap(&self, nodes: &[usize]) -> String {
        nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", self.ports[*n]))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("gw-{n}.log"))
    }

    fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
    }

    /// The last lines of every gateway's log, for failure messages.
    fn logs(&self) -> String {
        (0..GATEWAYS)
            .map(|n| format!("--- gw-{n} log (tail) ---\n{}", tail(&self.log(n), 30)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Sends `signal` (STOP, CONT, ...) to gateway `n` with kill(1), as
    /// `Process::terminate` does.
    fn signal(&mut self, n: usize, signal: &str) {
        let pid = self
            .gateway(n)
            .child
            .as_ref()
            .expect("gateway running")
            .id();
        let ok = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Waits up to `within` for gateway `n` to exit by itself.
    fn wait_exit(&mut self, n: usize, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.gateway(n).child.as_mut().expect("gateway running");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        // Kill before the temporary directory goes.
        self.gateways.clear();
    }
}

/// Prints the lines of gateway `nodes`' logs that contain `needle`, each with
/// the seconds from `event` to its timestamp (RFC 3339, UTC, as the gateway
/// logs it).
fn print_timed_lines(cluster: &Cluster, nodes: &[usize], needle: &str, event: SystemTime) {
    let event = event
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        % 86_400.0;
    let second_of_day = |line: &str| -> Option<f64> {
        let time = line.split_whitespace().next()?.split_once('T')?.1;
        let time = time.trim_end_matches(|c: char| !c.is_ascii_digit());
        let mut parts = time.splitn(3, ':');
        let h: f64 = parts.next()?.parse().ok()?;
        let m: f64 = parts.next()?.parse().ok()?;
        let s: f64 = parts.next()?.parse().ok()?;
        Some(h * 3600.0 + m * 60.0 + s)
    };
    for n in nodes {
        for line in cluster.log(*n).lines().filter(|l| l.contains(needle)) {
            let after = second_of_day(line).map(|t| {
                let d = (t - event).rem_euclid(86_400.0);
                if d > 43_200.0 { d - 86_400.0 } else { d }
            });
            match after {
                Some(d) => eprintln!("  gw-{n} at +{d:.3}s: {line}"),
                None => eprintln!("  gw-{n}: {line}"),
            }
        }
    }
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One acknowledged record and when the acknowledgement arrived.
struct Ack {
    payload: String,
    partition: i32,
    offset: i64,
    at: Instant,
}

#[derive(Default)]
struct Sent {
    acked: Vec<Ack>,
    failed: Vec<String>,
}

/// A paced stream of records (payload = sequence number, round-robin over the
/// partitions, about 400 a second) until `finish`.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    sent: Arc<Mutex<Sent>>,
    started: Instant,
}

impl Load {
    fn start(producer: &FutureProducer) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent: Arc<Mutex<Sent>> = Default::default();
        let (producer, stopping, out) = (producer.clone(), stop.clone(), sent.clone());
        let task = tokio::spawn(async move {
            let mut waits = Vec::new();
            let mut seq = 0u64;
            while !stopping.load(Ordering::SeqCst) {
                for _ in 0..4 {
                    let v = seq.to_string();
                    let part = (seq % PARTITIONS as u64) as i32;
                    seq += 1;
                    let f = loop {
                        match producer.send_result(
                            FutureRecord::<(), _>::to(TOPIC).payload(&v).partition(part),
                        ) {
                            Ok(f) => break f,
                            // Local queue full: wait for the gateways.
                            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    };
                    let out = out.clone();
                    waits.push(tokio::spawn(async move {
                        let outcome = f.await;
                        let at = Instant::now();
                        let mut s = out.lock().expect("lock");
                        match outcome {
                            Ok(Ok(m)) => s.acked.push(Ack {
                                payload: v,
                                partition: m.partition,
                                offset: m.offset,
                                at,
                            }),
                            Ok(Err((e, _))) => s.failed.push(format!("record {v}: {e}")),
                            Err(_) => s.failed.push(format!("record {v}: cancelled")),
                        }
                    }));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for w in waits {
                let _ = w.await;
            }
        });
        Load {
            stop,
            task,
            sent,
            started: Instant::now(),
        }
    }

    fn acked(&self) -> usize {
        self.sent.lock().expect("lock").acked.len()
    }

    /// Stops sending and waits for the outcome of every record sent.
    async fn finish(self, cluster: &Cluster) -> Sent {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "some deliveries have no outcome 60 s after the load stopped\n{}",
                    cluster.logs()
                )
            })
            .expect("sender task");
        std::mem::take(&mut *self.sent.lock().expect("lock"))
    }
}

/// A consumer tailing every partition from the beginning while gateways come
/// and go: what it received and when.
struct Tail {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(i32, i64, String, Instant)>>,
    /// Highest offset received per partition, for `finish` to wait on.
    reached: Arc<Mutex<BTreeMap<i32, i64>>>,
}

impl Tail {
    fn start(bootstrap: &str) -> Tail {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::Message;
        let c: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "failover-tail")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("fetch.wait.max.ms", "100")
            .set("reconnect.backoff.ms", "20")
            .set("reconnect.backoff.max.ms", "200")
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(TOPIC, p, rdkafka::Offset::Beginning)
                .expect("tpl");
        }
        c.assign(&tpl).expect("assign");
        let stop = Arc::new(AtomicBool::new(false));
        let reached: Arc<Mutex<BTreeMap<i32, i64>>> = Default::default();
        let (stopping, seen) = (stop.clone(), reached.clone());
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                // Errors about a gateway that went away are transient.
                if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                    let v = String::from_utf8_lossy(m.payload().unwrap_or(&[])).to_string();
                    seen.lock().expect("lock").insert(m.partition(), m.offset());
                    got.push((m.partition(), m.offset(), v, Instant::now()));
                }
            }
            got
        });
        Tail {
            stop,
            thread,
            reached,
        }
    }

    /// Waits until the tail has received every acknowledged record (60 s at
    /// most), stops it, and checks it saw exactly the acknowledged records at
    /// their offsets; prints its longest stall per partition after `from`.
    fn finish(self, sent: &Sent, from: Instant, cluster: &Cluster) {
        let mut want: BTreeMap<i32, i64> = BTreeMap::new();
        for a in &sent.acked {
            let w = want.entry(a.partition).or_insert(-1);
            *w = (*w).max(a.offset);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let caught_up = {
                let r = self.reached.lock().expect("lock");
                want.iter().all(|(p, o)| r.get(p).is_some_and(|x| x >= o))
            };
            if caught_up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the tailing consumer stopped progressing: reached {:?}, acknowledged up to {want:?}\n{}",
                self.reached.lock().expect("lock"),
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop.store(true, Ordering::SeqCst);
        let got = self.thread.join().expect("tail thread");
        let mut log: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
        for (p, o, v, _) in &got {
            log.entry(*p).or_default().push((*o, v.clone()));
        }
        let acked: Vec<(String, i32, i64)> = sent
            .acked
            .iter()
            .map(|a| (a.payload.clone(), a.partition, a.offset))
            .collect();
        common::kafka::assert_log_matches_acks(&log, &acked);
        eprintln!(
            "tailing consumer: longest wait for the next record per partition after the event"
        );
        for p in 0..PARTITIONS {
            let at: Vec<Instant> = got.iter().filter(|r| r.0 == p).map(|r| r.3).collect();
            let stall = at
                .windows(2)
                .filter(|w| w[1] >= from)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or_default();
            eprintln!("  partition {p}: {stall:>8.3?} ({} records)", at.len());
        }
    }
}

/// Brokers and partition leaders as one Metadata response tells them.
struct View {
    brokers: BTreeMap<i32, String>,
    leaders: BTreeMap<i32, i32>,
}

impl View {
    fn leader_nodes(&self) -> std::collections::BTreeSet<i32> {
        self.leaders.values().copied().collect()
    }
}

fn metadata(producer: &FutureProducer) -> Option<View> {
    let md = tokio::task::block_in_place(|| {
        producer
            .client()
            .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
    })
    .ok()?;
    let brokers = md
        .brokers()
        .iter()
        .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
        .collect();
    let topic = md.topics().iter().find(|t| t.name() == TOPIC)?;
    let leaders = topic
        .partitions()
        .iter()
        .map(|p| (p.id(), p.leader()))
        .collect();
    Some(View { brokers, leaders })
}

/// Polls Metadata until `ok` holds (10 s at most); returns the last view.
async fn wait_for_view(producer: &FutureProducer, ok: impl Fn(&View) -> bool) -> Option<View> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    while Instant::now() < deadline {
        last = metadata(producer);
        if last.as_ref().is_some_and(&ok) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Waits until all three gateways are in Metadata and each partition has a
/// leader among them; returns that view.
async fn wait_for_three(producer: &FutureProducer, cluster: &Cluster) -> View {
    let view = wait_for_view(producer, |v| {
        v.brokers.len() == GATEWAYS
            && v.leaders.len() == PARTITIONS as usize
            && v.leaders.values().all(|l| v.brokers.contains_key(l))
    })
    .await;
    let Some(view) = view else {
        panic!("no Metadata for {TOPIC}\n{}", cluster.logs());
    };
    assert_eq!(
        view.brokers.len(),
        GATEWAYS,
        "Metadata lists every gateway: {:?}\n{}",
        view.brokers,
        cluster.logs()
    );
    view
}

/// The node leading the most partitions.
fn busiest(view: &View) -> usize {
    let mut count = BTreeMap::new();
    for l in view.leaders.values() {
        *count.entry(*l).or_insert(0) += 1;
    }
    let (node, _) = count
        .into_iter()
        .max_by_key(|(n, c)| (*c, -n))
        .expect("some leader");
    usize::try_from(node).expect("node id")
}

/// Prints, per partition, the longest gap between consecutive
/// acknowledgements whose later one arrived in `[from, to)`, next to the
/// longest gap before `from` (the baseline).
fn report_gaps(
    what: &str,
    acked: &[Ack],
    started: Instant,
    from: Instant,
    to: Instant,
    leaders: &BTreeMap<i32, i32>,
) {
    eprintln!("{what}: longest gap between acknowledgements per partition");
    for p in 0..PARTITIONS {
        let mut at: Vec<Instant> = acked
            .iter()
            .filter(|a| a.partition == p)
            .map(|a| a.at)
            .collect();
        at.sort();
        let longest = |lo: Instant, hi: Instant| {
            at.windows(2)
                .filter(|w| w[1] >= lo && w[1] < hi)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or_default()
        };
        let leader = leaders.get(&p).map_or("?".to_string(), |l| l.to_string());
        eprintln!(
            "  partition {p} (leader before: node {leader}): {:>8.3?} around the event, {:>8.3?} before",
            longest(from, to),
            longest(started, from),
        );
    }
}

/// No failed delivery, then the log read back through `bootstrap` holds
/// exactly the acknowledged records.
fn assert_everything_acknowledged_is_there(cluster: &Cluster, sent: &Sent, bootstrap: &str) {
    assert!(
        sent.failed.is_empty(),
        "{} deliveries failed, e.g. {:?}\n{}",
        sent.failed.len(),
        &sent.failed[..sent.failed.len().min(5)],
        cluster.logs()
    );
    let acked: Vec<(String, i32, i64)> = sent
        .acked
        .iter()
        .map(|a| (a.payload.clone(), a.partition, a.offset))
        .collect();
    let log = common::kafka::consume_all(bootstrap, TOPIC, PARTITIONS);
    common::kafka::assert_log_matches_acks(&log, &acked);
    let records: usize = log.values().map(Vec::len).sum();
    assert_eq!(
        records,
        acked.len(),
        "the log holds exactly the acknowledged records"
    );
}

/// Lets the load run for `d`, then checks acknowledgements still arrive
/// (progress, not speed: a slow emulator gets 30 s more).
async fn produce_for(load: &Load, d: Duration, cluster: &Cluster) {
    let before = load.acked();
    tokio::time::sleep(d).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while load.acked() <= before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        load.acked() > before,
        "no acknowledgement in {:?} ({before} so far)\n{}",
        d + Duration::from_secs(30),
        cluster.logs()
    );
}

async fn three_gateways_with_load() -> (Cluster, FutureProducer, Load, Tail, View) {
    let mut cluster = Cluster::new();
    for n in 0..GATEWAYS {
        cluster.start(n);
    }
    let all = cluster.bootstrap(&[0, 1, 2]);
    common::kafka::create_topic(&all, TOPIC, PARTITIONS).await;
    let producer = common::kafka::durable_producer(&all);
    let view = wait_for_three(&producer, &cluster).await;
    let load = Load::start(&producer);
    let tail = Tail::start(&all);
    produce_for(&load, Duration::from_secs(3), &cluster).await;
    (cluster, producer, load, tail, view)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_minus_9_moves_partitions_without_loss() {
    let (mut cluster, producer, load, tail, before) = three_gateways_with_load().await;
    let victim = busiest(&before);
    let rest: Vec<usize> = (0..GATEWAYS).filter(|n| *n != victim).collect();
    eprintln!("kill -9 gw-{victim}; leaders before: {:?}", before.leaders);
    let killed_at = Instant::now();
    let killed_wall = SystemTime::now();
    cluster.gateway(victim).kill9();
    produce_for(&load, Duration::from_secs(6), &cluster).await;
    let started = load.started;
    let sent = load.finish(&cluster).await;
    let ended = Instant::now();
    if let Some(after) = metadata(&producer) {
        eprintln!("leaders after: {:?}", after.leaders);
    }
    drop(producer);
    report_gaps(
        &format!("kill -9 gw-{victim}"),
        &sent.acked,
        started,
        killed_at,
        ended,
        &before.leaders,
    );
    eprintln!("fencing, timed from the kill:");
    print_timed_lines(&cluster, &rest, "fenced", killed_wall);
    eprintln!("{} records acknowledged", sent.acked.len());
    tokio::task::block_in_place(|| tail.finish(&sent, killed_at, &cluster));
    assert_everything_acknowledged_is_there(&cluster, &sent, &cluster.bootstrap(&rest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frozen_gateway_is_fenced_and_commits_nothing() {
    let (mut cluster, producer, load, tail, before) = three_gateways_with_load().await;
    let victim = busiest(&before);
    let rest: Vec<usize> = (0..GATEWAYS).filter(|n| *n != victim).collect();
    eprintln!(
        "SIGSTOP gw-{victim} for 4 s; leaders before: {:?}",
        before.leaders
    );
    let frozen_at = Instant::now();
    let frozen_wall = SystemTime::now();
    cluster.signal(victim, "STOP");
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.signal(victim, "CONT");
    let resumed = Instant::now();
    let status = tokio::task::block_in_place(|| cluster.wait_exit(victim, Duration::from_secs(10)));
    let Some(status) = status else {
        panic!(
            "gw-{victim} still runs 10 s after SIGCONT although it was fenced\n{}",
            cluster.logs()
        );
    };
    eprintln!(
        "gw-{victim} exited {status} {:.1?} after SIGCONT",
        resumed.elapsed()
    );
    assert!(
        !status.success(),
        "a fenced gateway exits with a failure status\n{}",
        cluster.logs()
    );
    let log = cluster.log(victim);
    assert!(
        log.contains("fenced"),
        "gw-{victim} logs that it was fenced\n{}",
        cluster.logs()
    );
    produce_for(&load, Duration::from_secs(2), &cluster).await;
    let started = load.started;
    let sent = load.finish(&cluster).await;
    let ended = Instant::now();
    if let Some(after) = metadata(&producer) {
        eprintln!("leaders after: {:?}", after.leaders);
    }
    drop(producer);
    report_gaps(
        &format!("SIGSTOP gw-{victim}"),
        &sent.acked,
        started,
        frozen_at,
        ended,
        &before.leaders,
    );
    eprintln!("fencing, timed from SIGSTOP (SIGCONT at +4 s):");
    print_timed_lines(
        &cluster,
        &(0..GATEWAYS).collect::<Vec<_>>(),
        "fenced",
        frozen_wall,
    );
    eprintln!("{} records acknowledged", sent.acked.len());
    tokio::task::block_in_place(|| tail.finish(&sent, frozen_at, &cluster));
    assert_everything_acknowledged_is_there(&cluster, &sent, &cluster.bootstrap(&rest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_out_and_in_keeps_every_record() {
    let mut cluster = Cluster::new();
    cluster.start(0);
    common::kafka::create_topic(&cluster.bootstrap(&[0]), TOPIC, PARTITIONS).await;
    // All three addresses, as a client configured for the scaled-out group.
    let producer = common::kafka::durable_producer(&cluster.bootstrap(&[0, 1, 2]));
    let load = Load::start(&producer);
    let tail = Tail::start(&cluster.bootstrap(&[0, 1, 2]));
    produce_for(&load, Duration::from_secs(3), &cluster).await;
    let alone = metadata(&producer).expect("Metadata from gw-0");
    assert_eq!(
        alone.leader_nodes().into_iter().collect::<Vec<_>>(),
        vec![0],
        "gw-0 alone leads every partition"
    );

    let scaled_out = Instant::now();
    cluster.start(1);
    cluster.start(2);
    let spread = wait_for_view(&producer, |v| {
        v.brokers.len() == GATEWAYS && v.leader_nodes().len() > 1
    })
    .await
    .expect("Metadata after scale-out");
    eprintln!(
        "after scale-out: brokers {:?}, leaders {:?}",
        spread.brokers, spread.leaders
    );
    assert_eq!(
        spread.brokers.len(),
        GATEWAYS,
        "Metadata lists the three gateways\n{}",
        cluster.logs()
    );
    assert!(
        spread.leader_nodes().len() > 1,
        "leaders spread over more than one gateway: {:?}\n{}",
        spread.leaders,
        cluster.logs()
    );
    produce_for(&load, Duration::from_secs(4), &cluster).await;

    // SIGTERM the first gateway (the only one that existed when the producer
    // bootstrapped).
    let before_term = metadata(&producer).expect("Metadata before SIGTERM");
    let terminated = Instant::now();
    let code = cluster.gateway(0).terminate();
    eprintln!("gw-0 drained and exited in {:.1?}", terminated.elapsed());
    assert_eq!(code, Some(0), "SIGTERM exits 0\n{}", cluster.logs());
    produce_for(&load, Duration::from_secs(4), &cluster).await;
    let started = load.started;
    let sent = load.finish(&cluster).await;
    let ended = Instant::now();
    if let Some(after) = metadata(&producer) {
        eprintln!("leaders after SIGTERM: {:?}", after.leaders);
    }
    drop(producer);
    report_gaps(
        "scale out 1 -> 3",
        &sent.acked,
        started,
        scaled_out,
        terminated,
        &alone.leaders,
    );
    report_gaps(
        "SIGTERM gw-0",
        &sent.acked,
        started,
        terminated,
        ended,
        &before_term.leaders,
    );
    eprintln!("{} records acknowledged", sent.acked.len());
    tokio::task::block_in_place(|| tail.finish(&sent, scaled_out, &cluster));
    assert_everything_acknowledged_is_there(&cluster, &sent, &cluster.bootstrap(&[1, 2]));
}
