//! Test harness: a gateway in-process on port 0, or the `floe` binary as a child
//! process (for kill -9 and restart). Every server listens on 127.0.0.1 only and
//! is stopped by the test.
#![allow(dead_code)]

pub mod batches;
pub mod kafka;
pub mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use floe_core::settings::Settings;
use tokio::sync::oneshot;

/// A gateway running inside the test process.
pub struct InProcess {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<floe_core::Result<()>>>,
}

impl InProcess {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            flush_interval: Some(Duration::from_millis(2)),
            ..Settings::default()
        };
        tune(&mut settings);
        use_test_backend(&mut settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stores = floe_core::backend::open_backend(&settings, None)
            .await
            .expect("open backend");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(floe_gateway::run(listener, settings, stores, async {
            let _ = rx.await;
        }));
        InProcess {
            addr,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Graceful stop; asserts the server exits cleanly.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("server stops within 60s")
                .expect("server task");
            r.expect("server exits cleanly");
        }
    }
}

/// With `FLOE_TEST_BACKEND=aws`, in-process gateways run on a fresh bucket and
/// table on the moto server of `FLOE_TEST_MOTO_ENDPOINT` (created by `floe
/// init`); otherwise on the embedded backend in their temporary directory.
fn use_test_backend(settings: &mut Settings) {
    for (key, value) in test_backend("floe-it") {
        settings
            .apply(key, &value)
            .expect("the test backend's settings");
    }
}

/// The settings that put a gateway on the test backend: none for the embedded
/// one; with `FLOE_TEST_BACKEND=aws`, a fresh bucket and table named after
/// `prefix` (one call, one backend: gateways meant to share it share the list).
pub fn test_backend(prefix: &str) -> Vec<(&'static str, String)> {
    match std::env::var("FLOE_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("embedded") => Vec::new(),
        Ok("aws") => kafka::fresh_aws_backend(prefix),
        Ok(other) => panic!("FLOE_TEST_BACKEND={other:?}: expected embedded or aws"),
    }
}

/// Path of the `floe` binary built for these tests.
pub fn floe_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_floe"))
}

/// A port for a child process to listen on. Chosen below the kernel's ephemeral
/// range (32768+), so neither port-0 listeners of parallel tests nor outgoing
/// client connections can take it between this check and the child's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..1000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((seed.wrapping_add(n.wrapping_mul(104_729))) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999");
}

/// The `floe` binary as a child process on a fixed port and data dir.
pub struct Process {
    pub port: u16,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
    extra: Vec<(String, String)>,
    env: Vec<(String, String)>,
    /// Where stderr (the log) goes; None: inherited.
    log: Option<PathBuf>,
}

impl Process {
    pub fn start(data_dir: &Path, port: u16, extra: &[(&str, &str)]) -> Self {
        Self::start_logged(data_dir, port, extra, &[], None)
    }

    /// Like `start`, with environment variables and the log appended to `log`.
    pub fn start_logged(
        data_dir: &Path,
        port: u16,
        extra: &[(&str, &str)],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Self {
        let own = |kv: &[(&str, &str)]| -> Vec<(String, String)> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut p = Process {
            port,
            data_dir: data_dir.to_path_buf(),
            child: None,
            extra: own(extra),
            env: own(env),
            log: log.map(Path::to_path_buf),
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let addr = format!("127.0.0.1:{}", self.port);
        let mut cmd = Command::new(floe_bin());
        cmd.args(["--listen", &addr, "--advertised-listener", &addr])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // Defaults a test may override.
        for (k, v) in [("flush-interval", "2ms"), ("log-level", "warn")] {
            if !self.extra.iter().any(|(given, _)| given == k) {
                cmd.arg(format!("--{k}")).arg(v);
            }
        }
        for (k, v) in &self.extra {
            cmd.arg(format!("--{k}")).arg(v);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(path) = &self.log {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open the gateway log");
            cmd.stderr(f);
        }
        let mut child = cmd.spawn().expect("spawn floe");
        wait_for_port(self.port, Duration::from_secs(30));
        // The port answering must be this child, not something else bound there.
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(Some(status)) = child.try_wait() {
            panic!("floe exited at start ({status}); port {} taken?", self.port);
        }
        self.child = Some(child);
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, no warning.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn wait_for_port(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("port {port} did not open within {within:?}");
}

/// The body of `GET /metrics` on `port` (a gateway's `--metrics-listen`).
pub fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    raw.split_once("\r\n\r\n").expect("body").1.to_string()
}
