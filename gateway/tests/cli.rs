//! The `floe` command line: bad settings are refused at start with a message that
//! names the setting; flags, FLOE_* variables and a TOML file all configure it;
//! SIGTERM drains and exits 0.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

fn floe() -> Command {
    let mut c = Command::new(common::floe_bin());
    // Nothing from the caller's environment may configure these runs.
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOE_") {
            c.env_remove(k);
        }
    }
    c.stdin(Stdio::null());
    c
}

fn refused(args: &[&str], envs: &[(&str, &str)], mentions: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = floe()
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .envs(envs.iter().copied())
        .output()
        .expect("run floe");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} {envs:?} must be refused"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(mentions),
        "message for {args:?} {envs:?} names {mentions}: {err}"
    );
}

#[test]
fn bad_values_are_refused_at_start() {
    refused(&["--flush-interval", "fast"], &[], "flush-interval");
    refused(&["--segment-bytes", "huge"], &[], "segment-bytes");
    refused(
        &["--auto-create-topics", "perhaps"],
        &[],
        "auto-create-topics",
    );
    refused(&["--default-partitions", "0"], &[], "default-partitions");
    refused(
        &["--advertised-listener", "nohost"],
        &[],
        "advertised-listener",
    );
    refused(&[], &[("FLOE_FLUSH_INTERVAL", "soon")], "flush-interval");
    refused(
        &[],
        &[("FLOE_MAX_BUFFER_BYTES", "1KiB")],
        "max-buffer-bytes",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("floe.toml");
    std::fs::write(&cfg, "flush_interval = \"sometimes\"\n").expect("write");
    refused(
        &["--config", cfg.to_str().expect("utf8")],
        &[],
        "flush-interval",
    );
    std::fs::write(&cfg, "no_such_setting = 1\n").expect("write");
    refused(
        &["--config", cfg.to_str().expect("utf8")],
        &[],
        "no_such_setting",
    );
}

#[test]
fn settings_from_env_and_file_then_sigterm_drains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port();
    let cfg = dir.path().join("floe.toml");
    // The file sets the listener; the environment overrides the file's partitions.
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndefault_partitions = 2\nflush_interval = \"3ms\"\n"
        ),
    )
    .expect("write");
    let mut child = floe()
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("FLOE_DEFAULT_PARTITIONS", "3")
        .env("FLOE_LOG_LEVEL", "warn")
        .spawn()
        .expect("spawn");
    common::wait_for_port(port, Duration::from_secs(30));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let addr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut s = common::wire::connect(addr).await;
        let mut t = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
        t.name = Some(kafka_protocol::messages::TopicName(common::wire::sb(
            "auto",
        )));
        let mut req = kafka_protocol::messages::MetadataRequest::default();
        req.topics = Some(vec![t]);
        req.allow_auto_topic_creation = true;
        let r: kafka_protocol::messages::MetadataResponse =
            common::wire::roundtrip(&mut s, kafka_protocol::messages::ApiKey::Metadata, 9, &req)
                .await;
        assert_eq!(r.topics[0].error_code, 0);
        assert_eq!(
            r.topics[0].partitions.len(),
            3,
            "FLOE_DEFAULT_PARTITIONS overrides the file"
        );
    });
    assert!(
        dir.path().join("data").join("meta.sqlite").exists(),
        "--data-dir used"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "SIGTERM drains and exits 0");
}

#[test]
fn init_prepares_the_backend_and_checks_aws_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = floe()
        .arg("init")
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("d").join("meta.sqlite").exists());
    refused(&["--backend", "aws"], &[], "--bucket and --table");
    refused(&["--backend", "s3"], &[], "backend");
}
