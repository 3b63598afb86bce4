//! `floe drill failover` run as an operator would: the binary against gateway
//! processes, once against a single quiet gateway and once against three
//! gateways sharing a backend while the drill's own `--disrupt` kills one.
//! The drill's verdict (exit status and summary lines) is what is checked; the
//! drill itself verifies every acknowledged record.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a drill may run before the test calls it hung.
const DRILL_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `floe drill failover ARGS`; returns its exit code and stdout+stderr.
fn drill(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(common::floe_bin())
        .args(["drill", "failover"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn floe drill");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + DRILL_DEADLINE;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    let Some(status) = status else {
        panic!("the drill did not finish within {DRILL_DEADLINE:?}:\n{text}");
    };
    (status.code(), text)
}

/// Creates `topic` through the gateway on `port` and returns each partition's
/// leader (node id) once all have one and they have settled.
async fn create_and_describe(port: u16, topic: &str, partitions: i32) -> Vec<i32> {
    use common::wire::{connect, roundtrip, sb};
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        ApiKey, CreateTopicsRequest, CreateTopicsResponse, MetadataRequest, MetadataResponse,
        TopicName,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = connect(addr).await;
    let mut t = CreatableTopic::default();
    t.name = TopicName(sb(topic));
    t.num_partitions = partitions;
    t.replication_factor = -1;
    let mut req = CreateTopicsRequest::default();
    req.topics.push(t);
    req.timeout_ms = 10_000;
    let created: CreateTopicsResponse = roundtrip(&mut s, ApiKey::CreateTopics, 7, &req).await;
    assert_eq!(created.topics[0].error_code, 0, "create {topic}");
    let mut req = MetadataRequest::default();
    let mut mt = MetadataRequestTopic::default();
    mt.name = Some(TopicName(sb(topic)));
    req.topics = Some(vec![mt]);
    // The creating gateway claims every partition first and hands the
    // others' shares over at their next rounds: the leaders are settled once
    // they stay the same for a second (five heartbeat rounds).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut settled: Option<(Vec<i32>, Instant)> = None;
    loop {
        let m: MetadataResponse = roundtrip(&mut s, ApiKey::Metadata, 12, &req).await;
        let leaders: Vec<i32> = m
            .topics
            .first()
            .map(|t| t.partitions.iter().map(|p| p.leader_id.0).collect())
            .unwrap_or_default();
        if leaders.len() == partitions as usize && leaders.iter().all(|l| *l >= 0) {
            match &settled {
                Some((same, since)) if *same == leaders => {
                    if since.elapsed() >= Duration::from_secs(1) {
                        return leaders;
                    }
                }
                _ => settled = Some((leaders, Instant::now())),
            }
        }
        assert!(Instant::now() < deadline, "{topic} has leaders: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The number after `phrase` on the summary line that starts with it.
fn count(output: &str, phrase: &str) -> u64 {
    output
        .lines()
        .find_map(|l| {
            l.strip_prefix(phrase)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {phrase:?} line in the drill output:\n{output}"))
}

#[test]
fn drill_against_one_quiet_gateway_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = common::Process::start(dir.path(), common::free_port(), &[]);
    let bootstrap = gw.bootstrap();
    let (code, out) = drill(&[
        "--bootstrap",
        &bootstrap,
        "--duration",
        "4s",
        "--timeout",
        "10s",
    ]);
    assert_eq!(code, Some(0), "the drill passes:\n{out}");
    assert!(count(&out, "acknowledged ") > 0, "{out}");
    assert_eq!(count(&out, "lost "), 0, "{out}");
    assert_eq!(count(&out, "duplicates "), 0, "{out}");
    assert_eq!(count(&out, "offset gaps "), 0, "{out}");
    assert_eq!(count(&out, "ownership moves "), 0, "{out}");
    for p in 0..6 {
        assert!(
            out.contains(&format!("partition {p}: longest unavailability 0.00s")),
            "partition {p} never unavailable:\n{out}"
        );
    }
}

#[test]
fn drill_survives_a_gateway_killed_by_its_disrupt_command() {
    const GATEWAYS: usize = 3;
    const TOPIC: &str = "drill-kill";
    const PARTITIONS: i32 = 8;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let log = |n: usize| dir.path().join(format!("gw-{n}.log"));
    let gateways: Vec<common::Process> = (0..GATEWAYS)
        .map(|n| {
            let id = format!("gw-{n}");
            let node = n.to_string();
            common::Process::start_logged(
                &data,
                common::free_port(),
                &[
                    ("gateway-id", &id),
                    ("node-id", &node),
                    ("heartbeat-interval", "200ms"),
                    ("session-timeout", "1500ms"),
                    ("checkpoint-interval", "1s"),
                ],
                &[],
                Some(&log(n)),
            )
        })
        .collect();
    let bootstrap = gateways
        .iter()
        .map(common::Process::bootstrap)
        .collect::<Vec<_>>()
        .join(",");
    // Ownership hashes the topic's identity, so which gateway leads what is
    // only known once the topic exists: create it, then kill the gateway that
    // leads the most partitions.
    let leaders = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(create_and_describe(gateways[0].port, TOPIC, PARTITIONS));
    let mut led = [0usize; GATEWAYS];
    for node in &leaders {
        led[usize::try_from(*node).expect("every partition has a leader")] += 1;
    }
    let victim_node = (0..GATEWAYS).max_by_key(|n| led[*n]).expect("gateways");
    let victim = gateways[victim_node]
        .child
        .as_ref()
        .expect("the victim runs")
        .id();
    let disrupt = format!("kill -9 {victim}");
    let partitions = PARTITIONS.to_string();
    let (code, out) = drill(&[
        "--bootstrap",
        &bootstrap,
        "--topic",
        TOPIC,
        "--partitions",
        &partitions,
        "--duration",
        "12s",
        "--disrupt-after",
        "3s",
        "--disrupt",
        &disrupt,
        "--timeout",
        "10s",
    ]);
    let logs = (0..GATEWAYS)
        .map(|n| {
            let text = std::fs::read_to_string(log(n)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- gw-{n} log (tail) ---\n{}", tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(code, Some(0), "the drill passes:\n{out}\n{logs}");
    assert!(out.contains("disrupt: exit status: 0"), "{out}");
    assert!(count(&out, "acknowledged ") > 0, "{out}");
    assert_eq!(count(&out, "lost "), 0, "{out}\n{logs}");
    assert_eq!(count(&out, "duplicates "), 0, "{out}\n{logs}");
    assert_eq!(count(&out, "offset gaps "), 0, "{out}\n{logs}");
    assert!(count(&out, "ownership moves ") >= 1, "{out}\n{logs}");
    assert!(
        out.lines()
            .any(|l| l.contains("partition ")
                && l.contains(&format!(": node {victim_node} -> node "))),
        "a move away from the killed gateway is printed:\n{out}"
    );
    assert!(
        out.contains(&format!("gateway node {victim_node} (")),
        "the departure is printed:\n{out}"
    );
    drop(gateways);
}
