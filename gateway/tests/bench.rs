//! `floe bench` as a user runs it: the binary starts its own gateway (on the
//! test backend: embedded, or moto with `FLOE_TEST_BACKEND=aws`) or drives a
//! running one by address, and its results must account for every record.
//! Figures are not asserted (they are what the bench is for); what every
//! record did, and what was measured at all, is.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn bench(args: &[String]) -> Output {
    Command::new(common::floe_bin())
        .arg("bench")
        .args(args)
        .output()
        .expect("run floe bench")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn results(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("results.json is JSON")
}

fn phase<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} phase in {r:#}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn started_gateway_every_phase_accounts_for_every_record() {
    let out = tempfile::tempdir().expect("tempdir");
    let mut a = args(&[
        "--workload",
        "all",
        "--partitions",
        "3",
        "--record-bytes",
        "300",
        "--keys",
        "50",
        "--rate",
        "800",
        "--duration",
        "2s",
        "--compression",
        "lz4",
        "--flush-interval",
        "20ms",
        "--log-level",
        "warn",
    ]);
    let backend = common::test_backend("floe-bench");
    let aws = !backend.is_empty();
    for (k, v) in &backend {
        a.push(format!("--{}", k.replace('_', "-")));
        a.push(v.clone());
    }
    a.push("--out".into());
    a.push(out.path().display().to_string());
    let o = bench(&a);
    let log = text(&o);
    assert_eq!(o.status.code(), Some(0), "{log}");
    assert!(
        log.contains("[bench] end-to-end"),
        "progress is shown: {log}"
    );
    assert!(log.contains("targets:"), "{log}");
    let r = results(out.path());
    assert_eq!(r["settings"]["gateways"], 1, "{r:#}");
    assert_eq!(r["settings"]["partitions"], 3, "{r:#}");
    assert_eq!(r["requests_counted"], aws, "{r:#}");

    let e2e = phase(&r, "end-to-end");
    let produced = n(&e2e["produced"]["records"]);
    assert!(
        produced > 500,
        "about 1,600 records at 800/s for 2 s: {e2e:#}"
    );
    assert_eq!(e2e["failed"], 0, "{e2e:#}");
    // Idempotent producer, tailing consumers from the ends: each record once.
    assert_eq!(n(&e2e["consumed"]["records"]), produced, "{e2e:#}");
    assert_eq!(
        n(&e2e["produce_latency_ms"]["samples"]),
        produced,
        "{e2e:#}"
    );
    assert_eq!(
        n(&e2e["end_to_end_latency_ms"]["samples"]),
        produced,
        "{e2e:#}"
    );
    assert_eq!(
        n(&e2e["produced"]["bytes"]),
        produced * 300,
        "values of --record-bytes: {e2e:#}"
    );
    let g = &e2e["gateway"];
    assert_eq!(g["processes"], 1, "{e2e:#}");
    assert!(g["cpu_seconds"].as_f64().unwrap_or(0.0) > 0.0, "{e2e:#}");
    assert!(n(&g["peak_rss_bytes"]) > 1 << 20, "{e2e:#}");
    let req = &e2e["requests"]["total"];
    assert!(req["flushes"].as_f64().unwrap_or(0.0) >= 1.0, "{e2e:#}");
    if aws {
        // One PUT per flush; tailing consumers are served from the gateway.
        assert_eq!(req["s3_put"], req["flushes"], "{e2e:#}");
        assert_eq!(req["s3_get"].as_f64(), Some(0.0), "{e2e:#}");
        assert!(
            req["dynamodb_requests"].as_f64().unwrap_or(0.0) >= 1.0,
            "{e2e:#}"
        );
        assert!(e2e["requests"]["dollars_per_gib"].as_f64().unwrap_or(0.0) > 0.0);
    }

    // Catch-up reads everything in the topic: the warm-up records too (one
    // per partition), and nothing else.
    let catch = phase(&r, "catch-up");
    assert_eq!(n(&catch["consumed"]["records"]), produced + 3, "{catch:#}");
    assert!(catch["produced"].is_null(), "{catch:#}");

    for plot in ["throughput.svg", "latency.svg"] {
        let svg = std::fs::read_to_string(out.path().join(plot)).expect(plot);
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{plot}"
        );
    }
    assert!(out.path().join("gateway-0.log").exists());
}

#[test]
fn running_broker_is_driven_by_address_and_measured_by_pid_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let port = common::free_port();
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let gw = common::Process::start(
        &dir.path().join("data"),
        port,
        &[("metrics-listen", metrics.as_str())],
    );
    let pid = gw.child.as_ref().expect("running").id().to_string();
    let o = bench(&args(&[
        "--bootstrap",
        &gw.bootstrap(),
        "--pid",
        &pid,
        "--metrics",
        &metrics,
        "--workload",
        "produce",
        "--idempotence",
        "false",
        "--acks",
        "1",
        "--producers",
        "2",
        "--record-bytes",
        "100",
        "--rate",
        "1000",
        "--duration",
        "1s",
        "--label",
        "by-address",
        "--out",
        &out.display().to_string(),
    ]));
    let log = text(&o);
    assert_eq!(o.status.code(), Some(0), "{log}");
    let r = results(&out);
    assert_eq!(r["label"], "by-address");
    assert_eq!(r["settings"]["backend"], "external");
    assert!(r["settings"]["gateways"].is_null(), "{r:#}");
    let p = phase(&r, "produce");
    assert!(n(&p["produced"]["records"]) > 300, "{p:#}");
    assert!(p["consumed"].is_null(), "{p:#}");
    assert_eq!(p["gateway"]["processes"], 1, "{p:#}");
    assert!(
        p["requests"]["total"]["flushes"].as_f64().unwrap_or(0.0) >= 1.0,
        "{p:#}"
    );
    // Nothing to start, so no gateway logs.
    assert!(!out.join("gateway-0.log").exists());
    drop(gw);
}

#[test]
fn bad_options_get_a_clear_message_and_exit_2() {
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().display().to_string();
    for (a, expect) in [
        (
            vec!["--record-bytes", "8", "--out", &dir],
            "at least 16 bytes",
        ),
        (
            vec!["--bootstrap", "127.0.0.1:1", "--s3-latency"],
            "cannot be used with",
        ),
        (vec!["--workload", "sideways"], "unknown workload"),
        (vec!["--client-config", "linger.ms"], "expected KEY=VALUE"),
        (vec!["--pid", "1"], "--bootstrap"),
    ] {
        let o = bench(&args(&a));
        let log = text(&o);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {log}");
        assert!(log.contains(expect), "{a:?}: {log}");
    }
}
