//! The failover drill: produce, watch ownership, disrupt, verify.
//!
//! Each partition has one batch in flight. A batch that fails (retriable
//! error, refused or reset connection, no answer in time) is sent again,
//! byte for byte with the same producer id, epoch and sequence, to whichever
//! gateway the latest Metadata names as leader, until it is acknowledged or
//! the partition has been unavailable for `timeout`. So a retry can never
//! duplicate a record unless the gateway forgets the producer's sequence,
//! and the read-back at the end finds out.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, InitProducerIdRequest, ProduceRequest, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::watch;

use super::client::{self, Client, SharedView, View, lock, refresh};
use super::verify::{self, Check};

/// Longest wait for any single answer; beyond it the gateway counts as down.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Metadata is asked of one gateway after another: a frozen one must not
/// hold the drill for long.
const METADATA_TIMEOUT: Duration = Duration::from_secs(1);
const WATCH_INTERVAL: Duration = Duration::from_millis(250);
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// Records per batch when a partition has fallen behind its schedule.
const MAX_BATCH: u64 = 10;
const PAYLOAD_BYTES: usize = 100;

/// What `floe drill failover` was asked to do.
#[derive(Debug, Clone)]
pub struct FailoverOptions {
    /// Gateways to start from (any of them may be gone later).
    pub bootstrap: Vec<String>,
    /// Topic to produce to [default: floe-drill-<run id>, created].
    pub topic: Option<String>,
    pub partitions: i32,
    /// Records per second over all partitions.
    pub rate: f64,
    pub duration: Duration,
    pub disrupt_after: Duration,
    /// Shell command run once (`sh -c`) after `disrupt_after`.
    pub disrupt: Option<String>,
    /// A partition unavailable this long is given up (the drill fails).
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// The options cannot make a drill; fix the command line.
    #[error("{0}")]
    Invalid(String),
    /// The cluster could not be reached or prepared; nothing was verified.
    #[error("{0}")]
    Setup(String),
}

impl FailoverOptions {
    pub fn validate(&self) -> Result<(), DrillError> {
        let bad = |m: &str| Err(DrillError::Invalid(m.to_string()));
        if self.bootstrap.iter().all(|b| b.trim().is_empty()) {
            return bad("--bootstrap names no gateway");
        }
        if self.partitions < 1 {
            return bad("--partitions must be at least 1");
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return bad("--rate must be a positive number of records per second");
        }
        if self.duration.is_zero() {
            return bad("--duration must be longer than 0s");
        }
        if self.timeout.is_zero() {
            return bad("--timeout must be longer than 0s");
        }
        if self.disrupt.is_some() && self.disrupt_after >= self.duration {
            return bad("--disrupt-after must be shorter than --duration");
        }
        Ok(())
    }
}

/// One partition's outcome.
#[derive(Debug, Clone)]
pub struct PartitionReport {
    pub partition: i32,
    pub acknowledged: u64,
    /// Longest time from a failed attempt to the next acknowledgement.
    pub longest_unavailable: Duration,
    /// When (since the drill started) that longest window began.
    pub longest_from: Option<Duration>,
    pub windows: u32,
    /// Why the partition was given up, if it was.
    pub gave_up: Option<String>,
    /// The read-back, or why it could not be done.
    pub check: Result<Check, String>,
}

/// The drill's verdict.
#[derive(Debug, Clone)]
pub struct Report {
    pub topic: String,
    pub run_id: String,
    pub elapsed: Duration,
    pub acknowledged: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub moves: u64,
    pub partitions: Vec<PartitionReport>,
}

impl Report {
    /// Nothing acknowledged lost, duplicated or missing, and every partition
    /// recovered and read back.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.gaps == 0
            && self
                .partitions
                .iter()
                .all(|p| p.gave_up.is_none() && p.check.is_ok())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "--- summary: topic {}, run {}, {} partitions, {:.1}s ---",
            self.topic,
            self.run_id,
            self.partitions.len(),
            self.elapsed.as_secs_f64()
        )?;
        let mut unacknowledged = 0;
        for p in &self.partitions {
            write!(
                f,
                "partition {}: longest unavailability {:.2}s",
                p.partition,
                p.longest_unavailable.as_secs_f64()
            )?;
            if let Some(from) = p.longest_from {
                write!(
                    f,
                    " (from +{:.1}s; {} window{})",
                    from.as_secs_f64(),
                    p.windows,
                    if p.windows == 1 { "" } else { "s" }
                )?;
            }
            writeln!(f, ", {} acknowledged", p.acknowledged)?;
            if let Some(why) = &p.gave_up {
                writeln!(f, "  NOT RECOVERED: {why}")?;
            }
            match &p.check {
                Ok(c) => {
                    unacknowledged += c.unacknowledged;
                    for e in &c.examples {
                        writeln!(f, "  {e}")?;
                    }
                }
                Err(e) => writeln!(f, "  NOT VERIFIED: {e}")?,
            }
        }
        writeln!(f, "acknowledged {} records", self.acknowledged)?;
        writeln!(f, "lost {}", self.lost)?;
        writeln!(f, "duplicates {}", self.duplicates)?;
        writeln!(f, "offset gaps {}", self.gaps)?;
        writeln!(f, "ownership moves {}", self.moves)?;
        writeln!(
            f,
            "unacknowledged records present {unacknowledged} (in doubt when the drill stopped; allowed)"
        )?;
        write!(f, "{}", if self.passed() { "PASS" } else { "FAIL" })
    }
}

/// Shared by every task of one drill.
struct Ctx {
    topic: String,
    run_id: String,
    producer_id: i64,
    producer_epoch: i16,
    start: Instant,
    end: Instant,
    /// Time between two records of one partition.
    interval: Duration,
    timeout: Duration,
    view: SharedView,
    acknowledged: AtomicU64,
}

impl Ctx {
    fn say(&self, msg: impl fmt::Display) {
        say(self.start, msg);
    }

    fn payload(&self, partition: i32, n: u64) -> Vec<u8> {
        payload(&self.run_id, partition, n)
    }
}

fn say(start: Instant, msg: impl fmt::Display) {
    println!("+{:.1}s  {msg}", start.elapsed().as_secs_f64());
}

/// Record `n` of `partition`: readable, unique per run, about 100 bytes.
fn payload(run_id: &str, partition: i32, n: u64) -> Vec<u8> {
    let mut v = format!("drill {run_id} p{partition} n{n} ").into_bytes();
    if v.len() < PAYLOAD_BYTES {
        v.resize(PAYLOAD_BYTES, b'.');
    }
    v
}

/// The record number of a payload of this run and partition.
fn record_number(run_id: &str, partition: i32, value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let mut words = text.split_ascii_whitespace();
    if words.next()? != "drill" || words.next()? != run_id {
        return None;
    }
    if words.next()?.strip_prefix('p')?.parse::<i32>().ok()? != partition {
        return None;
    }
    words.next()?.strip_prefix('n')?.parse().ok()
}

fn node(id: i32) -> String {
    if id < 0 {
        "none".into()
    } else {
        format!("node {id}")
    }
}

/// Runs the drill and returns its report (also printed as it goes).
pub async fn run(opts: FailoverOptions) -> Result<Report, DrillError> {
    opts.validate()?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let topic = opts
        .topic
        .clone()
        .unwrap_or_else(|| format!("floe-drill-{run_id}"));
    let bootstrap: Vec<String> = opts
        .bootstrap
        .iter()
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    let view = View::new(bootstrap);
    let mut client = Client::new("floe-drill");
    let setup_started = Instant::now();

    let partitions = prepare_topic(&mut client, &view, &topic, &opts).await?;
    let (producer_id, producer_epoch) = init_producer(&mut client, &view).await?;
    {
        let v = lock(&view);
        let gateways: Vec<String> = v
            .brokers
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect();
        let leaders: Vec<String> = v
            .leaders
            .iter()
            .map(|(p, l)| format!("{p}:{}", node(*l)))
            .collect();
        println!(
            "drill {run_id}: topic {topic}, {partitions} partitions, {} records/s for {:.1}s, producer id {producer_id} epoch {producer_epoch}",
            opts.rate,
            opts.duration.as_secs_f64()
        );
        println!("gateways (node=address): {}", gateways.join(" "));
        println!("leaders: {}", leaders.join(" "));
        match &opts.disrupt {
            Some(cmd) => println!(
                "disruption at +{:.1}s: sh -c {cmd:?}",
                opts.disrupt_after.as_secs_f64()
            ),
            None => println!(
                "no --disrupt: kill, freeze, add or remove gateways now; the drill watches"
            ),
        }
    }
    tracing::debug!(setup = ?setup_started.elapsed(), "drill ready");

    let start = Instant::now();
    let ctx = Arc::new(Ctx {
        topic: topic.clone(),
        run_id: run_id.clone(),
        producer_id,
        producer_epoch,
        start,
        end: start + opts.duration,
        interval: Duration::from_secs_f64(partitions as f64 / opts.rate),
        timeout: opts.timeout,
        view: view.clone(),
        acknowledged: AtomicU64::new(0),
    });

    let (stop_watch, stopped) = watch::channel(false);
    let watcher = tokio::spawn(watch_cluster(ctx.clone(), stopped));
    let disrupt_started = Arc::new(AtomicBool::new(false));
    let disruptor = opts.disrupt.clone().map(|cmd| {
        tokio::spawn(disrupt(
            ctx.clone(),
            cmd,
            opts.disrupt_after,
            disrupt_started.clone(),
        ))
    });
    let producers: Vec<_> = (0..partitions)
        .map(|p| tokio::spawn(produce_partition(ctx.clone(), p)))
        .collect();
    let mut runs = Vec::new();
    for (p, h) in producers.into_iter().enumerate() {
        runs.push(h.await.unwrap_or_else(|e| PartitionRun {
            gave_up: Some(format!("producer task of partition {p} failed: {e}")),
            ..PartitionRun::default()
        }));
    }
    ctx.say(format!(
        "stopped producing: {} records acknowledged; reading every partition back",
        ctx.acknowledged.load(Ordering::Relaxed)
    ));
    let _ = stop_watch.send(true);
    let moves = watcher.await.unwrap_or(0);
    if let Some(d) = disruptor {
        if disrupt_started.load(Ordering::Relaxed) {
            // The operator's command is part of the drill: let it finish.
            let _ = d.await;
        } else {
            d.abort();
        }
    }

    let mut reports = Vec::new();
    let _ = refresh(&mut client, &view, &topic, METADATA_TIMEOUT).await;
    for (p, run) in (0..partitions).zip(runs) {
        let check = match verify::read_partition(&mut client, &view, &topic, p, opts.timeout).await
        {
            Ok((log, high_watermark)) => Ok(verify::check(
                &run.acked,
                &log,
                high_watermark,
                |n| payload(&run_id, p, n),
                |v| record_number(&run_id, p, v),
            )),
            Err(e) => Err(e),
        };
        reports.push(PartitionReport {
            partition: p,
            acknowledged: run.acked.len() as u64,
            longest_unavailable: run.longest,
            longest_from: run.longest_from,
            windows: run.windows,
            gave_up: run.gave_up,
            check,
        });
    }
    let sum = |f: fn(&Check) -> u64| -> u64 {
        reports
            .iter()
            .filter_map(|r| r.check.as_ref().ok())
            .map(f)
            .sum()
    };
    Ok(Report {
        topic,
        run_id,
        elapsed: start.elapsed(),
        acknowledged: reports.iter().map(|r| r.acknowledged).sum(),
        lost: sum(|c| c.lost),
        duplicates: sum(|c| c.duplicates),
        gaps: sum(|c| c.gaps),
        moves,
        partitions: reports,
    })
}

/// Finds or creates the topic and waits until every partition has a leader;
/// returns its partition count.
async fn prepare_topic(
    client: &mut Client,
    view: &SharedView,
    topic: &str,
    opts: &FailoverOptions,
) -> Result<i32, DrillError> {
    let deadline = Instant::now() + opts.timeout;
    let mut created = false;
    loop {
        let m = refresh(client, view, topic, METADATA_TIMEOUT)
            .await
            .map_err(|e| DrillError::Setup(e.to_string()))?;
        let t = client::find_topic(&m, topic);
        let exists = t.is_some_and(|t| t.error_code == 0 && !t.partitions.is_empty());
        if exists {
            let v = lock(view);
            let count = v.leaders.len() as i32;
            if (0..count).all(|p| v.leader(p).is_some()) {
                if count != opts.partitions && !created {
                    println!(
                        "topic {topic} exists with {count} partitions (not --partitions {}); using it",
                        opts.partitions
                    );
                }
                return Ok(count);
            }
        } else if !created {
            create_topic(client, view, topic, opts.partitions).await?;
            created = true;
        }
        if Instant::now() > deadline {
            return Err(DrillError::Setup(format!(
                "topic {topic} has no leader for every partition after {:?}",
                opts.timeout
            )));
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}

async fn create_topic(
    client: &mut Client,
    view: &SharedView,
    topic: &str,
    partitions: i32,
) -> Result<(), DrillError> {
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.num_partitions = partitions;
    t.replication_factor = -1;
    let mut req = CreateTopicsRequest::default();
    req.topics.push(t);
    req.timeout_ms = REQUEST_TIMEOUT.as_millis() as i32;
    let mut last = String::from("no gateway known");
    let addrs = lock(view).addresses();
    for addr in addrs {
        match client.call(&addr, 7, &req, REQUEST_TIMEOUT).await {
            Ok(resp) => {
                let code = resp.topics.first().map_or(0, |t| t.error_code);
                return match code.err() {
                    None | Some(ResponseError::TopicAlreadyExists) => Ok(()),
                    Some(e) => Err(DrillError::Setup(format!(
                        "create topic {topic}: {e:?} {}",
                        resp.topics
                            .first()
                            .and_then(|t| t.error_message.as_ref())
                            .map_or("", |m| m.as_str())
                    ))),
                };
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(DrillError::Setup(format!("create topic {topic}: {last}")))
}

async fn init_producer(client: &mut Client, view: &SharedView) -> Result<(i64, i16), DrillError> {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.transaction_timeout_ms = 60_000;
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    let mut last = String::from("no gateway known");
    let addrs = lock(view).addresses();
    for addr in addrs {
        match client.call(&addr, 4, &req, REQUEST_TIMEOUT).await {
            Ok(r) if r.error_code == 0 => return Ok((r.producer_id.0, r.producer_epoch)),
            Ok(r) => last = format!("{addr}: {:?}", r.error_code.err()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(DrillError::Setup(format!("InitProducerId: {last}")))
}

/// What one partition's producer saw.
#[derive(Debug, Default)]
struct PartitionRun {
    /// (offset, record number) of every acknowledged record.
    acked: Vec<(i64, u64)>,
    longest: Duration,
    longest_from: Option<Duration>,
    windows: u32,
    gave_up: Option<String>,
}

/// Produces partition `p` on schedule until the drill ends, one batch in
/// flight; gives up only after `timeout` without an acknowledgement.
async fn produce_partition(ctx: Arc<Ctx>, p: i32) -> PartitionRun {
    let mut client = Client::new(&format!("floe-drill-p{p}"));
    let mut run = PartitionRun::default();
    let mut n: u64 = 0;
    loop {
        let due = ctx.start + ctx.interval.mul_f64(n as f64);
        if due >= ctx.end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        // Catch up after an outage with a few records per batch.
        let due_now = (ctx.start.elapsed().as_secs_f64() / ctx.interval.as_secs_f64()) as u64 + 1;
        let count = due_now.saturating_sub(n).clamp(1, MAX_BATCH);
        let batch = match encode_batch(&ctx, p, n, count) {
            Ok(b) => b,
            Err(e) => {
                run.gave_up = Some(format!("cannot encode a batch: {e}"));
                break;
            }
        };
        match send_batch(&ctx, &mut client, p, batch, &mut run).await {
            Ok(base) => {
                run.acked
                    .extend((0..count).map(|i| (base + i as i64, n + i)));
                ctx.acknowledged.fetch_add(count, Ordering::Relaxed);
                n += count;
            }
            Err(why) => {
                let why = format!(
                    "no acknowledgement for {:.1}s (record n{n}): {why}",
                    ctx.timeout.as_secs_f64()
                );
                ctx.say(format!("partition {p}: giving up: {why}"));
                run.gave_up = Some(why);
                break;
            }
        }
    }
    run
}

fn encode_batch(ctx: &Ctx, p: i32, first: u64, count: u64) -> Result<Bytes, String> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: ctx.producer_id,
            producer_epoch: ctx.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: (first + i) as i32,
            timestamp: now_ms,
            key: None,
            value: Some(Bytes::from(ctx.payload(p, first + i))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Sends `batch` until a leader acknowledges it; returns its base offset.
/// Records the unavailability window if any attempt failed.
async fn send_batch(
    ctx: &Ctx,
    client: &mut Client,
    p: i32,
    batch: Bytes,
    run: &mut PartitionRun,
) -> Result<i64, String> {
    let mut window: Option<Instant> = None;
    let mut last_error = String::new();
    loop {
        let attempt = Instant::now();
        if window.is_some_and(|w| attempt - w >= ctx.timeout) {
            return Err(last_error);
        }
        match produce_once(ctx, client, p, &batch).await {
            Ok((leader, base)) => {
                if let Some(w) = window {
                    let d = w.elapsed();
                    run.windows += 1;
                    if d > run.longest {
                        run.longest = d;
                        run.longest_from = Some(w - ctx.start);
                    }
                    ctx.say(format!(
                        "partition {p}: acknowledged again by node {leader} after {:.2}s",
                        d.as_secs_f64()
                    ));
                }
                return Ok(base);
            }
            Err(e) => {
                if window.is_none() {
                    window = Some(attempt);
                    ctx.say(format!("partition {p}: {e}; retrying the same batch"));
                }
                last_error = e;
                let _ = refresh(client, &ctx.view, &ctx.topic, METADATA_TIMEOUT).await;
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
        }
    }
}

/// One Produce of `batch` to the current leader: (leader, base offset).
async fn produce_once(
    ctx: &Ctx,
    client: &mut Client,
    p: i32,
    batch: &Bytes,
) -> Result<(i32, i64), String> {
    let Some((leader, addr)) = lock(&ctx.view).leader(p) else {
        return Err("no leader known".into());
    };
    let mut data = PartitionProduceData::default();
    data.index = p;
    data.records = Some(batch.clone());
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_string(ctx.topic.clone()));
    topic.partition_data.push(data);
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = (REQUEST_TIMEOUT.as_millis() as i32) - 1000;
    req.topic_data.push(topic);
    // A frozen leader never answers: stop waiting as soon as Metadata names
    // another one (the retry is the same batch, so abandoning is safe).
    let resp = tokio::select! {
        r = client.call(&addr, 9, &req, REQUEST_TIMEOUT) => {
            r.map_err(|e| format!("node {leader}: {e}"))?
        }
        moved = leader_moved(ctx, p, leader) => {
            return Err(format!("node {leader} did not answer; {} leads now", node(moved)));
        }
    };
    let Some(r) = resp
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .find(|r| r.index == p)
    else {
        return Err(format!("node {leader}: no answer for partition {p}"));
    };
    if let Some(e) = r.error_code.err() {
        let kind = if e.is_retriable() {
            ""
        } else {
            " (not retriable)"
        };
        return Err(format!("node {leader}: {e:?}{kind}"));
    }
    if r.base_offset < 0 {
        return Err(format!("node {leader}: base offset {}", r.base_offset));
    }
    Ok((leader, r.base_offset))
}

/// Resolves with the new leader once the view no longer names `leader` for
/// partition `p`.
async fn leader_moved(ctx: &Ctx, p: i32, leader: i32) -> i32 {
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let now = lock(&ctx.view).leaders.get(&p).copied().unwrap_or(-1);
        if now != leader {
            return now;
        }
    }
}

/// Polls Metadata and prints every change of leader and of the gateway list;
/// returns the number of ownership moves (leader changed from one gateway to
/// another, possibly through "no leader").
async fn watch_cluster(ctx: Arc<Ctx>, mut stopped: watch::Receiver<bool>) -> u64 {
    let mut client = Client::new("floe-drill-watch");
    let (mut brokers, mut leaders) = {
        let v = lock(&ctx.view);
        (v.brokers.clone(), v.leaders.clone())
    };
    let mut last_owner: BTreeMap<i32, i32> = leaders
        .iter()
        .filter(|(_, l)| **l >= 0)
        .map(|(p, l)| (*p, *l))
        .collect();
    let mut moves = 0;
    let mut unreachable = false;
    let mut next_progress = ctx.start + PROGRESS_INTERVAL;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            _ = stopped.changed() => break,
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_INTERVAL;
            ctx.say(format!(
                "{} records acknowledged",
                ctx.acknowledged.load(Ordering::Relaxed)
            ));
        }
        let m = match refresh(&mut client, &ctx.view, &ctx.topic, METADATA_TIMEOUT).await {
            Ok(m) => m,
            Err(e) => {
                if !unreachable {
                    ctx.say(format!("metadata: {e}"));
                    unreachable = true;
                }
                continue;
            }
        };
        if unreachable {
            ctx.say("metadata: a gateway answers again");
            unreachable = false;
        }
        let now_brokers = client::brokers(&m);
        for (id, addr) in &now_brokers {
            if !brokers.contains_key(id) {
                ctx.say(format!("gateway node {id} ({addr}) joined"));
            }
        }
        for (id, addr) in &brokers {
            if !now_brokers.contains_key(id) {
                ctx.say(format!("gateway node {id} ({addr}) left"));
            }
        }
        brokers = now_brokers;
        let Some(t) = client::find_topic(&m, &ctx.topic) else {
            continue;
        };
        for part in &t.partitions {
            let (p, now) = (part.partition_index, part.leader_id.0);
            let before = leaders.insert(p, now).unwrap_or(-1);
            if before != now {
                ctx.say(format!("partition {p}: {} -> {}", node(before), node(now)));
            }
            if now >= 0 && last_owner.insert(p, now).is_some_and(|o| o != now) {
                moves += 1;
            }
        }
    }
    moves
}

/// Runs the operator's disruption once, at `after`, and prints how it ended.
async fn disrupt(ctx: Arc<Ctx>, cmd: String, after: Duration, started: Arc<AtomicBool>) {
    tokio::time::sleep_until((ctx.start + after).into()).await;
    started.store(true, Ordering::Relaxed);
    ctx.say(format!("disrupt: sh -c {cmd:?}"));
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stdin(std::process::Stdio::null())
            .status()
    })
    .await;
    match status {
        Ok(Ok(s)) => ctx.say(format!("disrupt: {s}")),
        Ok(Err(e)) => ctx.say(format!("disrupt: could not run sh: {e}")),
        Err(e) => ctx.say(format!("disrupt: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_are_told_apart() {
        let v = payload("abcd1234", 3, 17);
        assert_eq!(v.len(), PAYLOAD_BYTES);
        assert_eq!(record_number("abcd1234", 3, &v), Some(17));
        assert_eq!(record_number("abcd1234", 2, &v), None);
        assert_eq!(record_number("other", 3, &v), None);
        assert_eq!(record_number("abcd1234", 3, b"not ours"), None);
    }

    #[test]
    fn options_are_checked() {
        let ok = FailoverOptions {
            bootstrap: vec!["127.0.0.1:9092".into()],
            topic: None,
            partitions: 6,
            rate: 200.0,
            duration: Duration::from_secs(30),
            disrupt_after: Duration::from_secs(5),
            disrupt: Some("true".into()),
            timeout: Duration::from_secs(30),
        };
        assert!(ok.validate().is_ok());
        let late = FailoverOptions {
            disrupt_after: Duration::from_secs(30),
            ..ok.clone()
        };
        assert!(late.validate().is_err());
        let none = FailoverOptions { rate: 0.0, ..ok };
        assert!(none.validate().is_err());
    }
}
