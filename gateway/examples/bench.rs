//! `cargo run --release -p floe-gateway --example bench [-- MiB [record-bytes]]`
//!
//! Starts a gateway in-process on the embedded backend (temp dir), drives it
//! with librdkafka, and prints what it measured: produce throughput, produce
//! acknowledgement latency, end-to-end latency of a tailing consumer, segment
//! objects and bytes per object, and the S3 request cost per GiB this write
//! pattern would have (COSTS.md prices). Figures, not assertions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use floe_core::settings::Settings;
use floe_gateway::metrics::cost::S3_PUT_PER_1000;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

const PARTITIONS: i32 = 8;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let record: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Settings {
        data_dir: dir.path().to_path_buf(),
        log_level: "warn".into(),
        default_partitions: PARTITIONS,
        ..Settings::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let bs = listener.local_addr().expect("addr").to_string();
    let stores = floe_core::backend::open_backend(&settings, None)
        .await
        .expect("backend");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let flush_interval = settings.flush_interval;
    let segment_bytes = settings.segment_bytes;
    let obj = stores.objects.clone();
    let server = tokio::spawn(floe_gateway::run(listener, settings, stores, async {
        let _ = stopped.await;
    }));

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("compression.type", "none")
        .create()
        .expect("producer");
    // Auto-create the topic with one record, then assign a tailing consumer.
    producer
        .send(
            FutureRecord::<(), _>::to("bench").payload("warmup"),
            Duration::from_secs(10),
        )
        .await
        .expect("warmup");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .set("group.id", "bench")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "500")
        .create()
        .expect("consumer");
    // Start from the current ends, resolved now: Offset::End would be resolved
    // later and could skip the first records of the run.
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (_, hi) = consumer
            .fetch_watermarks("bench", p, Duration::from_secs(10))
            .expect("watermarks");
        tpl.add_partition_offset("bench", p, Offset::Offset(hi))
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");

    let total = mib * 1024 * 1024 / record as u64;
    let payload = vec![b'x'; record];
    let e2e: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
    let received = Arc::new(AtomicU64::new(0));
    let consumer_task = {
        let e2e = e2e.clone();
        let received = received.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            while received.load(Ordering::Relaxed) < total + 200 && Instant::now() < deadline {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    if let Some(Ok(k)) = m.key_view::<[u8]>()
                        && k.len() == 16
                    {
                        let sent = u128::from_be_bytes(k.try_into().unwrap_or([0; 16]));
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_nanos())
                            .unwrap_or(0);
                        e2e.lock()
                            .expect("lock")
                            .push(Duration::from_nanos(now.saturating_sub(sent) as u64));
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // Unloaded latency: one record at a time, each waiting for its ack.
    let mut single = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = Instant::now();
        let key = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_be_bytes();
        producer
            .send(
                FutureRecord::to("bench")
                    .key(&key[..])
                    .payload("ping")
                    .partition(0),
                Duration::from_secs(10),
            )
            .await
            .expect("ping");
        single.push(t.elapsed());
    }
    single.sort();
    let before = obj.list("segments/").await.map(|v| v.len()).unwrap_or(0);
    let start = Instant::now();
    let mut acks = Vec::with_capacity(total as usize);
    let mut waits = Vec::with_capacity(total as usize);
    for i in 0..total {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = now.to_be_bytes();
        let part = (i % PARTITIONS as u64) as i32;
        let t = Instant::now();
        let f = loop {
            match producer.send_result(
                FutureRecord::to("bench")
                    .key(&key[..])
                    .payload(&payload)
                    .partition(part),
            ) {
                Ok(f) => break f,
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        waits.push(tokio::spawn(async move {
            let r = f.await;
            (t.elapsed(), matches!(r, Ok(Ok(_))))
        }));
    }
    let mut failed = 0;
    for w in waits {
        if let Ok((d, ok)) = w.await {
            acks.push(d);
            if !ok {
                failed += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    eprintln!("produced in {elapsed:?}; waiting for the tailing consumer");
    let _ = consumer_task.join();
    let after = obj.list("segments/").await.expect("list objects");
    let objects_written = after.len().saturating_sub(before);
    let bytes: u64 = after.iter().map(|o| o.size).sum();
    acks.sort();
    let e2e = e2e.lock().expect("lock").clone();
    // The consumer sees the 200 unloaded pings first (partition 0, produced first).
    let mut ping_e2e: Vec<Duration> = e2e.iter().take(200).copied().collect();
    ping_e2e.sort();
    let mut e2e: Vec<Duration> = e2e.into_iter().skip(200).collect();
    e2e.sort();
    let gib = (total as f64 * record as f64) / (1u64 << 30) as f64;
    let puts_per_gib = objects_written as f64 / gib;
    println!(
        "floe bench: embedded backend, flush-interval {flush_interval:?}, segment-bytes {segment_bytes}"
    );
    println!("records            {total} x {record} B = {mib} MiB, {failed} failed");
    println!(
        "produce throughput {:.1} MiB/s, {:.0} records/s",
        mib as f64 / elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "unloaded ack latency (1 in flight) p50 {:?}  p99 {:?}",
        pct(&single, 0.5),
        pct(&single, 0.99)
    );
    println!(
        "unloaded end-to-end (tailing consumer, long poll woken by the commit) p50 {:?}  p99 {:?}",
        pct(&ping_e2e, 0.5),
        pct(&ping_e2e, 0.99)
    );
    println!(
        "burst ack latency (all enqueued at once) p50 {:?}  p99 {:?}  max {:?}",
        pct(&acks, 0.5),
        pct(&acks, 0.99),
        pct(&acks, 1.0)
    );
    println!(
        "burst end-to-end latency (produce to tailing consumer) p50 {:?}  p99 {:?}  ({} samples)",
        pct(&e2e, 0.5),
        pct(&e2e, 0.99),
        e2e.len()
    );
    println!(
        "segment objects    {objects_written}, avg {:.0} KiB, {:.0} PUTs per GiB",
        bytes as f64 / after.len().max(1) as f64 / 1024.0,
        puts_per_gib
    );
    println!(
        "S3 PUT cost        ${:.5} per GiB at ${S3_PUT_PER_1000}/1000 PUTs (this write pattern)",
        puts_per_gib * S3_PUT_PER_1000 / 1000.0
    );
    drop(producer);
    let _ = stop.send(());
    let _ = server.await;
}
