//! The brokers a bench drives: gateways it starts as child processes of the
//! `floe` binary (so their CPU and memory are measured apart from the client's),
//! or running brokers at an address. Both are observed the same way: CPU time
//! and peak RSS from `/proc/<pid>`, store requests and their cost from the
//! gateways' Prometheus endpoints.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::BenchError;

/// How to start gateways: the executable and the settings they all share.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `floe` binary.
    pub exe: PathBuf,
    /// Arguments every gateway gets (settings given to `floe bench`), before
    /// the ones the bench sets per gateway.
    pub args: Vec<OsString>,
    /// The data directory to share; None: a fresh temporary one (embedded
    /// backend) removed at the end.
    pub data_dir: Option<PathBuf>,
    /// Environment for the gateways, on top of the bench's own.
    pub env: Vec<(String, String)>,
}

/// What the bench drives.
#[derive(Debug, Clone)]
pub enum Target {
    /// Start `count` gateways (one cluster) and stop them at the end.
    Start { count: usize, launch: Launch },
    /// Brokers already running. `pids` (local processes) are measured for CPU
    /// and memory, `metrics` (`host:port` of `/metrics`) for store requests.
    Connect {
        bootstrap: Vec<String>,
        pids: Vec<u32>,
        metrics: Vec<String>,
    },
}

/// Running brokers and how to observe them.
#[derive(Debug)]
pub struct Brokers {
    pub bootstrap: String,
    pids: Vec<u32>,
    metrics: Vec<String>,
    children: Vec<Child>,
    temp_dir: Option<PathBuf>,
}

/// Store counters summed over the gateways' `/metrics` endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct StoreCounters {
    pub flushes: f64,
    pub s3_put: f64,
    pub s3_get: f64,
    pub s3_list: f64,
    pub s3_delete: f64,
    pub dynamodb_requests: f64,
    pub dynamodb_write_units: f64,
    pub dynamodb_read_units: f64,
    /// Dollars at list prices, as the gateways estimate them.
    pub cost_dollars: f64,
}

impl StoreCounters {
    pub fn minus(&self, before: &StoreCounters) -> StoreCounters {
        StoreCounters {
            flushes: self.flushes - before.flushes,
            s3_put: self.s3_put - before.s3_put,
            s3_get: self.s3_get - before.s3_get,
            s3_list: self.s3_list - before.s3_list,
            s3_delete: self.s3_delete - before.s3_delete,
            dynamodb_requests: self.dynamodb_requests - before.dynamodb_requests,
            dynamodb_write_units: self.dynamodb_write_units - before.dynamodb_write_units,
            dynamodb_read_units: self.dynamodb_read_units - before.dynamodb_read_units,
            cost_dollars: self.cost_dollars - before.cost_dollars,
        }
    }

    /// Adds one gateway's exposition text.
    fn add_exposition(&mut self, text: &str) {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.trim().parse::<f64>() else {
                continue;
            };
            match name {
                "floe_flushes_total" => self.flushes += v,
                "floe_s3_requests_total{op=\"put\"}" => self.s3_put += v,
                "floe_s3_requests_total{op=\"get\"}" => self.s3_get += v,
                "floe_s3_requests_total{op=\"list\"}" => self.s3_list += v,
                "floe_s3_requests_total{op=\"delete\"}" => self.s3_delete += v,
                "floe_dynamodb_requests_total" => self.dynamodb_requests += v,
                "floe_dynamodb_write_units_total" => self.dynamodb_write_units += v,
                "floe_dynamodb_read_units_total" => self.dynamodb_read_units += v,
                n if n.starts_with("floe_estimated_cost_dollars_total{") => self.cost_dollars += v,
                _ => {}
            }
        }
    }
}

/// CPU time and memory of the measured processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ProcessSample {
    /// User + system CPU seconds, summed over the processes.
    pub cpu_seconds: f64,
    /// Largest resident set size so far (VmHWM), summed over the processes.
    pub peak_rss_bytes: u64,
    /// Processes that could be read.
    pub processes: usize,
}

/// `/proc` reports CPU time in USER_HZ ticks, 100 per second on Linux's
/// supported architectures (the ABI fixes it whatever the kernel's HZ).
const USER_HZ: f64 = 100.0;

pub(crate) fn read_process(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state (3).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(((utime + stime) / USER_HZ, hwm_kib * 1024))
}

/// A free local port (bound, then released for the gateway to take).
fn free_port() -> Result<u16, BenchError> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BenchError::Setup(format!("cannot find a free port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| BenchError::Setup(format!("cannot find a free port: {e}")))?
        .port())
}

/// `GET /metrics` over HTTP/1.0 (the endpoint closes the connection after
/// the response).
fn scrape(addr: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n"
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .map_err(|e| format!("{addr}: {e}"))?;
    let (head, text) = body
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: not an HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "{addr}: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(text.to_string())
}

/// Starts gateway `i` of a cluster sharing `data_dir`, its log in `log_path`.
fn spawn_gateway(
    launch: &Launch,
    data_dir: &Path,
    i: usize,
    listen: &str,
    metrics: &str,
    log_path: &Path,
) -> Result<Child, BenchError> {
    let log = std::fs::File::create(log_path)
        .map_err(|e| BenchError::Setup(format!("cannot create {}: {e}", log_path.display())))?;
    let log2 = log
        .try_clone()
        .map_err(|e| BenchError::Setup(format!("{}: {e}", log_path.display())))?;
    let mut cmd = Command::new(&launch.exe);
    cmd.args(&launch.args)
        .arg("--listen")
        .arg(listen)
        .arg("--metrics-listen")
        .arg(metrics)
        .arg("--gateway-id")
        .arg(format!("bench-{i}"))
        .arg("--node-id")
        .arg(i.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    for (k, v) in &launch.env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .map_err(|e| BenchError::Setup(format!("cannot start {}: {e}", launch.exe.display())))
}

fn wait_until_listening(addr: &str, child: &mut Child, log: &Path) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(BenchError::Setup(format!(
                "gateway exited ({status}) before listening on {addr}; see {}",
                log.display()
            )));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "gateway not listening on {addr} after 60 s; see {}",
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Brokers {
    /// Starts or connects to the target; gateway logs go to `out`.
    pub fn open(target: &Target, out: &Path) -> Result<Brokers, BenchError> {
        match target {
            Target::Connect {
                bootstrap,
                pids,
                metrics,
            } => Ok(Brokers {
                bootstrap: bootstrap.join(","),
                pids: pids.clone(),
                metrics: metrics.clone(),
                children: Vec::new(),
                temp_dir: None,
            }),
            Target::Start { count, launch } => Self::start(*count, launch, out),
        }
    }

    fn start(count: usize, launch: &Launch, out: &Path) -> Result<Brokers, BenchError> {
        let (data_dir, temp_dir) = match &launch.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let d = std::env::temp_dir().join(format!("floe-bench-{}", uuid::Uuid::new_v4()));
                (d.clone(), Some(d))
            }
        };
        let mut brokers = Brokers {
            bootstrap: String::new(),
            pids: Vec::new(),
            metrics: Vec::new(),
            children: Vec::new(),
            temp_dir,
        };
        let mut addrs = Vec::new();
        for i in 0..count {
            // A port found free can be taken by someone else before the
            // gateway binds it: then the gateway exits and gets new ports.
            let mut attempt = 0;
            let (listen, metrics) = loop {
                attempt += 1;
                let listen = format!("127.0.0.1:{}", free_port()?);
                let metrics = format!("127.0.0.1:{}", free_port()?);
                let log_path = out.join(format!("gateway-{i}.log"));
                let mut child = spawn_gateway(launch, &data_dir, i, &listen, &metrics, &log_path)?;
                match wait_until_listening(&listen, &mut child, &log_path) {
                    Ok(()) => {
                        brokers.pids.push(child.id());
                        brokers.children.push(child);
                        break (listen, metrics);
                    }
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        if attempt >= 3 {
                            return Err(e);
                        }
                    }
                }
            };
            addrs.push(listen);
            brokers.metrics.push(metrics);
        }
        brokers.bootstrap = addrs.join(",");
        Ok(brokers)
    }

    /// Whether the bench started the brokers (and so can measure them fully).
    pub fn started(&self) -> bool {
        !self.children.is_empty()
    }

    pub fn processes(&self) -> ProcessSample {
        let mut s = ProcessSample::default();
        for pid in &self.pids {
            if let Some((cpu, rss)) = read_process(*pid) {
                s.cpu_seconds += cpu;
                s.peak_rss_bytes += rss;
                s.processes += 1;
            }
        }
        s
    }

    /// Store counters now; None when there is no endpoint to read.
    pub fn store_counters(&self) -> Result<Option<StoreCounters>, BenchError> {
        if self.metrics.is_empty() {
            return Ok(None);
        }
        let mut c = StoreCounters::default();
        for addr in &self.metrics {
            let text = scrape(addr).map_err(BenchError::Metrics)?;
            c.add_exposition(&text);
        }
        Ok(Some(c))
    }

    /// Whether any gateway exposes S3 and DynamoDB counters (the AWS backend).
    pub fn has_request_counters(&self) -> bool {
        self.metrics.iter().any(|a| {
            scrape(a)
                .map(|t| t.contains("floe_s3_requests_total"))
                .unwrap_or(false)
        })
    }

    /// Stops started gateways with SIGTERM (they release their partitions and
    /// drain), killing any still running after 30 s.
    pub fn stop(&mut self) {
        for child in &self.children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for child in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
        if let Some(d) = self.temp_dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(d) = self.temp_dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_counters_are_summed_and_differenced() {
        let text = "# TYPE floe_flushes counter\nfloe_flushes_total 10\n\
            floe_s3_requests_total{op=\"put\"} 10\nfloe_s3_requests_total{op=\"get\"} 3\n\
            floe_dynamodb_requests_total 12\nfloe_dynamodb_write_units_total 40.5\n\
            floe_estimated_cost_dollars_total{item=\"s3_put\"} 0.00005\n\
            floe_estimated_cost_dollars_total{item=\"dynamodb_write\"} 0.00001\n";
        let mut a = StoreCounters::default();
        a.add_exposition(text);
        a.add_exposition(text);
        assert_eq!(a.flushes, 20.0);
        assert_eq!(a.s3_put, 20.0);
        assert_eq!(a.s3_get, 6.0);
        assert_eq!(a.dynamodb_write_units, 81.0);
        assert!((a.cost_dollars - 0.00012).abs() < 1e-12);
        let mut b = StoreCounters::default();
        b.add_exposition(text);
        assert_eq!(a.minus(&b).s3_put, 10.0);
    }

    #[test]
    fn this_process_can_be_measured() {
        let s = read_process(std::process::id()).expect("own /proc entry");
        assert!(s.1 > 0, "{s:?}");
    }
}
