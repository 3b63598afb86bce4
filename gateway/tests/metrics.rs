//! Request accounting through the `floe` binary: known data is produced and
//! consumed with librdkafka, `/metrics` is scraped over plain TCP and must count
//! it, and SIGTERM logs a summary built from the same counters.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const PARTITIONS: i32 = 3;
const RECORDS: usize = 1000;

/// The response to `GET path` with `headers`: (status, headers, body).
fn http_get(port: u16, path: &str, headers: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n"
    )
    .expect("send request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header/body separator");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// The value of the sample `series` (name with labels, as exposed).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// A `floe` child process, killed if the test ends without stopping it.
struct Floe(Option<Child>);

impl Drop for Floe {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `floe` with its log in `log`, metrics on `metrics_port`.
fn spawn_floe(
    data: &Path,
    port: u16,
    metrics_port: u16,
    log: &Path,
    extra: &[(&str, &str)],
) -> Floe {
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(common::floe_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOE_") {
            cmd.env_remove(k);
        }
    }
    // moto takes any credentials; keep the caller's if it set some.
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        if std::env::var_os(k).is_none() {
            cmd.env(k, "test");
        }
    }
    cmd.args(["--listen", &addr, "--advertised-listener", &addr])
        .arg("--data-dir")
        .arg(data)
        .args(["--flush-interval", "5ms", "--log-level", "info"])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    for (k, v) in extra {
        cmd.arg(format!("--{k}")).arg(v);
    }
    let child = Floe(Some(cmd.spawn().expect("spawn floe")));
    common::wait_for_port(port, Duration::from_secs(30));
    common::wait_for_port(metrics_port, Duration::from_secs(10));
    child
}

fn sigterm(floe: &mut Floe) -> Option<i32> {
    let mut child = floe.0.take()?;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// What a scenario saw: the last scrape and the summary line.
struct Seen {
    scrape: String,
    summary: String,
    payload_bytes: u64,
}

/// Produces and consumes known data through a fresh gateway, scrapes
/// `/metrics`, checks what every backend must count, stops it with SIGTERM.
async fn scenario(extra: &[(&str, &str)]) -> Seen {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, metrics_port) = (common::free_port(), common::free_port());
    let log = dir.path().join("floe.log");
    let mut child = spawn_floe(&dir.path().join("data"), port, metrics_port, &log, extra);
    let bs = format!("127.0.0.1:{port}");

    common::kafka::create_topic(&bs, "metered", PARTITIONS).await;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .create()
        .expect("admin");
    // One known error response.
    let again = admin
        .create_topics(
            [&NewTopic::new(
                "metered",
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .expect("create_topics");
    assert!(again[0].is_err(), "{again:?}");
    drop(admin);

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "none")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let mut payload_bytes = 0u64;
    let mut pending = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        // Four rounds, each acknowledged before the next: several flushes.
        if i % (RECORDS / 4) == 0 {
            for p in pending.drain(..) {
                let p: rdkafka::producer::DeliveryFuture = p;
                p.await.expect("delivery").expect("acknowledged");
            }
        }
        let value = format!("{i:06}-").repeat(30 + i % 20);
        payload_bytes += value.len() as u64;
        let queued = producer
            .send_result(
                FutureRecord::<(), _>::to("metered")
                    .payload(&value)
                    .partition((i % PARTITIONS as usize) as i32),
            )
            .map_err(|(e, _)| e)
            .expect("queued");
        pending.push(queued);
    }
    for p in pending {
        p.await.expect("delivery").expect("acknowledged");
    }
    drop(producer);

    let records = common::kafka::consume_all(&bs, "metered", PARTITIONS);
    let consumed: usize = records.values().map(Vec::len).sum();
    let consumed_bytes: u64 = records
        .values()
        .flatten()
        .map(|(_, v)| v.len() as u64)
        .sum();
    assert_eq!(consumed, RECORDS, "every record read back");
    assert_eq!(consumed_bytes, payload_bytes);

    let (status, head, text) = http_get(metrics_port, "/metrics", "");
    assert_eq!(status, 200, "{head}\n{text}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let produced = value(&text, "floe_produce_bytes_total");
    assert!(
        produced >= payload_bytes as f64,
        "produce bytes {produced} < payload {payload_bytes}"
    );
    assert_eq!(
        value(&text, "floe_produce_records_total"),
        RECORDS as f64,
        "records in"
    );
    let fetched = value(&text, "floe_fetch_bytes_total");
    assert!(
        fetched >= payload_bytes as f64,
        "fetch bytes {fetched} < payload {payload_bytes}"
    );
    assert!(value(&text, "floe_requests_total{api=\"Produce\"}") > 0.0);
    assert!(value(&text, "floe_requests_total{api=\"Fetch\"}") > 0.0);
    assert!(value(&text, "floe_requests_total{api=\"Metadata\"}") > 0.0);
    assert!(
        value(&text, "floe_flushes_total") >= 4.0,
        "one flush per round at least"
    );
    assert!(value(&text, "floe_flush_bytes_total") >= produced);
    assert!(value(&text, "floe_connections_accepted_total") >= 3.0);
    assert!(value(&text, "floe_produce_ack_duration_seconds_count") > 0.0);
    assert_eq!(
        value(
            &text,
            "floe_error_responses_total{error=\"TOPIC_ALREADY_EXISTS\"}"
        ),
        1.0,
        "the second CreateTopics"
    );

    // OpenMetrics for scrapers that ask for it; nothing but GET /metrics.
    let (status, head, om) = http_get(
        metrics_port,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
    );
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert_eq!(value(&om, "floe_produce_records_total"), RECORDS as f64);
    assert_eq!(http_get(metrics_port, "/", "").0, 404);
    assert_eq!(http_get(metrics_port, "/metrics/x", "").0, 404);

    assert_eq!(sigterm(&mut child), Some(0), "SIGTERM drains and exits 0");
    let logged = std::fs::read_to_string(&log).expect("read log");
    let summary = logged
        .lines()
        .find(|l| l.contains("summary: in "))
        .unwrap_or_else(|| panic!("no summary line in the log:\n{logged}"))
        .to_string();
    assert!(
        summary.contains(&format!(" bytes, {RECORDS} records)")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("({} bytes, ", produced as u64)),
        "the summary reads the endpoint's counters: {summary}"
    );
    Seen {
        scrape: text,
        summary,
        payload_bytes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_produce_fetch_and_flushes_embedded() {
    let seen = scenario(&[]).await;
    eprintln!("{}", seen.summary);
    assert!(
        seen.summary.contains("backend embedded (no request cost)"),
        "{}",
        seen.summary
    );
    assert!(!seen.scrape.contains("floe_s3_requests"), "{}", seen.scrape);
    assert!(seen.payload_bytes > 0);
}

/// In-process: the endpoint serves while the gateway runs and is closed once
/// `run` has returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_stops_with_the_gateway() {
    let metrics_port = common::free_port();
    let g = common::InProcess::start_with(|s| {
        s.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    })
    .await;
    // `run` binds the endpoint in its own task, soon after start returns.
    let (status, _, text) = tokio::task::spawn_blocking(move || {
        common::wait_for_port(metrics_port, Duration::from_secs(10));
        http_get(metrics_port, "/metrics", "")
    })
    .await
    .expect("scrape");
    assert_eq!(status, 200);
    assert_eq!(value(&text, "floe_connections_open"), 0.0);
    g.stop().await;
    assert!(
        TcpStream::connect(("127.0.0.1", metrics_port)).is_err(),
        "the metrics endpoint still answers after the gateway stopped"
    );
}

/// A metrics address that cannot be bound stops `floe` at start, naming it.
#[test]
fn unbindable_metrics_address_is_a_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(common::floe_bin())
        .args(["--listen", &format!("127.0.0.1:{}", common::free_port())])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--metrics-listen", &format!("127.0.0.1:{taken_port}")])
        .env_remove("FLOE_METRICS_LISTEN")
        .stdin(Stdio::null())
        .output()
        .expect("run floe");
    assert!(!out.status.success(), "floe must not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics-listen") && err.contains(&taken_port.to_string()),
        "{err}"
    );
}

/// The cost in dollars the summary line reports.
fn summary_cost(summary: &str) -> f64 {
    summary
        .split("cost $")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no cost in {summary}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto at FLOE_TEST_MOTO_ENDPOINT: scripts/test-all.sh starts it"]
async fn metrics_count_aws_requests_and_cost_on_moto() {
    let endpoint = std::env::var("FLOE_TEST_MOTO_ENDPOINT").expect(
        "FLOE_TEST_MOTO_ENDPOINT must name the moto server \
         (eval \"$(localstack/emulators.sh start moto)\")",
    );
    let name = format!("floe-metrics-{}", uuid::Uuid::new_v4().simple());
    let args = [
        ("backend", "aws"),
        ("bucket", name.as_str()),
        ("table", name.as_str()),
        ("endpoint-url", endpoint.as_str()),
        ("region", "us-east-1"),
    ];
    let mut init = Command::new(common::floe_bin());
    init.arg("init");
    for (k, v) in &args {
        init.arg(format!("--{k}")).arg(v);
    }
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        if std::env::var_os(k).is_none() {
            init.env(k, "test");
        }
    }
    let out = init.output().expect("floe init");
    assert!(
        out.status.success(),
        "floe init: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let seen = scenario(&args).await;
    eprintln!("{}", seen.summary);
    let t = &seen.scrape;
    let puts = value(t, "floe_s3_requests_total{op=\"put\"}");
    let flushes = value(t, "floe_flushes_total");
    assert!(puts >= flushes, "S3 PUTs {puts} < flushes {flushes}");
    assert!(value(t, "floe_s3_requests_total{op=\"get\"}") >= 0.0);
    assert!(value(t, "floe_dynamodb_requests_total") >= flushes);
    assert!(value(t, "floe_dynamodb_write_units_total") > 0.0, "{t}");
    let put_cost = value(t, "floe_estimated_cost_dollars_total{item=\"s3_put\"}");
    assert!(put_cost > 0.0, "{t}");
    assert!(
        value(
            t,
            "floe_estimated_cost_dollars_total{item=\"dynamodb_write\"}"
        ) > 0.0
    );

    let s = &seen.summary;
    assert!(s.contains("S3 PUT "), "{s}");
    assert!(s.contains(" WRU, "), "{s}");
    assert!(s.contains(" per GiB in"), "{s}");
    // The summary is taken after the final flush and checkpoint, so it has at
    // least what the scrape saw.
    assert!(summary_cost(s) >= put_cost, "{s}");
}
