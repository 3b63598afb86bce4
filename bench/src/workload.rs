//! The client side: librdkafka producers and consumers on their own threads,
//! counting what is acknowledged and consumed, and timing both.
//!
//! Every record's value starts with a 16-byte header, the send time (Unix
//! nanoseconds) and a sequence number, so a consumer can time each record end
//! to end. The rest is random hex text, which compresses about 2:1.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::{BenchError, Options};

/// Bytes of the header every value starts with.
pub const HEADER_BYTES: usize = 16;

/// Latencies are kept in microseconds, up to an hour, 3 significant digits.
pub fn histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .map_err(|e| BenchError::Setup(format!("latency histogram: {e}")))
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What the clients have done so far; read by the progress sampler.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acked_records: AtomicU64,
    pub acked_bytes: AtomicU64,
    pub failed: AtomicU64,
    pub consumed_records: AtomicU64,
    pub consumed_bytes: AtomicU64,
}

/// Counters and latency histograms shared by a phase's clients.
#[derive(Debug)]
pub struct Shared {
    pub counters: Counters,
    pub ack: Mutex<Histogram<u64>>,
    pub e2e: Mutex<Histogram<u64>>,
    pub first_error: Mutex<Option<String>>,
    epoch: Instant,
}

impl Shared {
    pub fn new() -> Result<Arc<Shared>, BenchError> {
        Ok(Arc::new(Shared {
            counters: Counters::default(),
            ack: Mutex::new(histogram()?),
            e2e: Mutex::new(histogram()?),
            first_error: Mutex::new(None),
            epoch: Instant::now(),
        }))
    }

    fn error(&self, e: String) {
        self.counters.failed.fetch_add(1, Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(e);
    }

    fn micros_since_epoch(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// Where a phase's clients wait until all are connected and warmed up, so
/// the clock starts with every client ready.
#[derive(Debug, Default)]
pub struct Gate {
    arrived: AtomicUsize,
    /// None until opened; then whether to go (false: the phase is aborted).
    state: Mutex<Option<bool>>,
    opened: Condvar,
}

impl Gate {
    /// Clients that have arrived.
    pub fn arrived(&self) -> usize {
        self.arrived.load(Relaxed)
    }

    /// Arrives and waits for the gate; true to go, false to give up.
    pub fn wait(&self) -> bool {
        self.arrived.fetch_add(1, Relaxed);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(go) = *s {
                return go;
            }
            s = self.opened.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub fn open(&self, go: bool) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(go);
        self.opened.notify_all();
    }
}

/// Delivery reports: one acknowledgement latency per record.
struct AckContext {
    shared: Arc<Shared>,
    /// Warm-up records are neither counted nor timed.
    warming: AtomicBool,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    /// Microseconds since the phase's epoch when the record was handed over.
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: Box<u64>) {
        if self.warming.load(Relaxed) {
            if let Err((e, _)) = result {
                self.shared.error(format!("warm-up delivery failed: {e}"));
            }
            return;
        }
        match result {
            Ok(m) => {
                let c = &self.shared.counters;
                c.acked_records.fetch_add(1, Relaxed);
                c.acked_bytes
                    .fetch_add(m.payload().map_or(0, <[u8]>::len) as u64, Relaxed);
                let micros = self.shared.micros_since_epoch().saturating_sub(*sent_at);
                self.shared
                    .ack
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .saturating_record(micros.max(1));
            }
            Err((e, _)) => self.shared.error(format!("delivery failed: {e}")),
        }
    }
}

/// librdkafka settings of the bench's producers.
pub fn producer_config(o: &Options, bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("acks", &o.clients.acks)
        .set("compression.type", &o.clients.compression)
        .set("linger.ms", o.clients.linger.as_millis().to_string())
        .set("batch.size", o.clients.batch_bytes.to_string())
        .set("enable.idempotence", o.clients.idempotence.to_string())
        .set("message.timeout.ms", "300000");
    for (k, v) in &o.clients.client_config {
        c.set(k, v);
    }
    c
}

fn consumer_config(o: &Options, bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", "floe-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (k, v) in &o.clients.client_config {
        // Producer-only keys would only make librdkafka warn on a consumer.
        if !matches!(
            k.as_str(),
            "acks" | "linger.ms" | "batch.size" | "compression.type" | "enable.idempotence"
        ) {
            c.set(k, v);
        }
    }
    c
}

/// Random hex text of `len` bytes: values that compress about 2:1.
fn filler(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 32);
    while v.len() < len {
        v.extend_from_slice(uuid::Uuid::new_v4().simple().to_string().as_bytes());
    }
    v.truncate(len);
    v
}

/// One producer thread: connects and sends one warm-up record to each
/// partition, waits at `gate`, then sends for `duration` (at `rate` records/s
/// if given) and waits for every outstanding delivery report. Returns how
/// long that last wait took.
#[allow(clippy::too_many_arguments)]
pub fn produce(
    o: &Options,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    index: usize,
    shared: Arc<Shared>,
    gate: &Gate,
    duration: Duration,
    rate: Option<f64>,
) -> Result<Duration, BenchError> {
    let producer: ThreadedProducer<AckContext> = match producer_config(o, bootstrap)
        .create_with_context(AckContext {
            shared: shared.clone(),
            warming: AtomicBool::new(true),
        }) {
        Ok(p) => p,
        // Leaving without arriving at the gate: the phase sees it and aborts.
        Err(e) => return Err(BenchError::Client(format!("producer: {e}"))),
    };
    for p in 0..partitions {
        let record = BaseRecord::<(), str, _>::with_opaque_to(topic, Box::new(0))
            .payload("warm-up")
            .partition(p);
        if let Err((e, _)) = producer.send(record) {
            shared.error(format!("warm-up send: {e}"));
        }
    }
    let warmed = producer.flush(Duration::from_secs(60));
    producer.context().warming.store(false, Relaxed);
    if !gate.wait() {
        return Ok(Duration::ZERO);
    }
    warmed.map_err(|e| BenchError::Client(format!("warm-up: {e}")))?;
    let until = Instant::now() + duration;
    let mut value = filler(o.clients.record_bytes.max(HEADER_BYTES));
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut next = Instant::now();
    let mut seq = index as u64;
    while Instant::now() < until {
        if let Some(iv) = interval {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next += iv;
        }
        value[..8].copy_from_slice(&unix_nanos().to_be_bytes());
        value[8..16].copy_from_slice(&seq.to_be_bytes());
        let key = (o.clients.keys > 0).then(|| (seq % o.clients.keys).to_be_bytes());
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(shared.micros_since_epoch()))
            .payload(&value[..]);
        if let Some(k) = &key {
            record = record.key(&k[..]);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // The client's queue is full: wait for deliveries, as a
                    // producing application would.
                    std::thread::sleep(Duration::from_millis(1));
                    record = r;
                }
                Err((e, _)) => {
                    shared.error(format!("send: {e}"));
                    break;
                }
            }
        }
        shared.counters.sent.fetch_add(1, Relaxed);
        seq += o.clients.producers as u64;
    }
    let stopped = Instant::now();
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| BenchError::Client(format!("flush: {e}")))?;
    Ok(stopped.elapsed())
}

/// The partitions of `topic` consumer `index` of `count` reads.
fn share(partitions: i32, index: usize, count: usize) -> Vec<i32> {
    (0..partitions)
        .filter(|p| *p as usize % count == index)
        .collect()
}

/// Where each partition of `topic` ends now.
pub fn high_watermarks(
    o: &Options,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<Vec<(i64, i64)>, BenchError> {
    let c: BaseConsumer = consumer_config(o, bootstrap)
        .create()
        .map_err(|e| BenchError::Client(format!("consumer: {e}")))?;
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(30))
                .map_err(|e| BenchError::Client(format!("watermarks of {topic}-{p}: {e}")))
        })
        .collect()
}

/// Where a consumer starts.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// At these offsets (the ends before producing), timing each record end
    /// to end.
    Tail(&'a [(i64, i64)]),
    /// At the beginning, reading what is there.
    Beginning,
}

/// One consumer thread: reads its share of the partitions until `done`
/// returns true (checked between polls) or `deadline`.
#[allow(clippy::too_many_arguments)]
pub fn consume(
    o: &Options,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    index: usize,
    start: Start<'_>,
    shared: Arc<Shared>,
    gate: &Gate,
    done: &AtomicBool,
    deadline: Instant,
) -> Result<(), BenchError> {
    let consumer: BaseConsumer = match consumer_config(o, bootstrap).create() {
        Ok(c) => c,
        Err(e) => return Err(BenchError::Client(format!("consumer: {e}"))),
    };
    let mut tpl = TopicPartitionList::new();
    for p in share(partitions, index, o.clients.consumers) {
        let offset = match start {
            Start::Tail(ends) => Offset::Offset(ends[p as usize].1),
            Start::Beginning => Offset::Beginning,
        };
        tpl.add_partition_offset(topic, p, offset)
            .map_err(|e| BenchError::Client(format!("assign: {e}")))?;
    }
    let assigned = consumer.assign(&tpl);
    if !gate.wait() {
        return Ok(());
    }
    assigned.map_err(|e| BenchError::Client(format!("assign: {e}")))?;
    let timed = matches!(start, Start::Tail(_));
    let c = &shared.counters;
    let mut e2e = histogram()?;
    while !done.load(Relaxed) && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let value = m.payload().unwrap_or_default();
                c.consumed_records.fetch_add(1, Relaxed);
                c.consumed_bytes.fetch_add(value.len() as u64, Relaxed);
                if timed && value.len() >= HEADER_BYTES {
                    let mut sent = [0u8; 8];
                    sent.copy_from_slice(&value[..8]);
                    let micros = unix_nanos().saturating_sub(u64::from_be_bytes(sent)) / 1000;
                    e2e.saturating_record(micros.max(1));
                }
            }
            Some(Err(e)) => shared.error(format!("consume: {e}")),
            None => {}
        }
        // Hand the samples over now and then so progress can show them.
        if e2e.len() >= 10_000 {
            let mut all = shared.e2e.lock().unwrap_or_else(|p| p.into_inner());
            let _ = all.add(&e2e);
            e2e.reset();
        }
    }
    let _ = shared
        .e2e
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .add(&e2e);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_share_every_partition_once() {
        let mut all: Vec<i32> = (0..3).flat_map(|i| share(10, i, 3)).collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(share(4, 0, 1), vec![0, 1, 2, 3]);
    }

    #[test]
    fn filler_is_hex_text_of_the_asked_length() {
        let f = filler(1000);
        assert_eq!(f.len(), 1000);
        assert!(f.iter().all(u8::is_ascii_hexdigit));
    }
}
