"""Fixtures that run a real `floe` broker process for end-to-end client tests.

Binary lookup order: $FLOE_BIN, <repo>/target/release/floe, <repo>/target/debug/floe.
A missing binary is a test *failure* (never a skip).

Fixtures:
  floe        -> FloeBroker (already started); .bootstrap, .restart(), .kill9(), .stop()
  bootstrap   -> "127.0.0.1:PORT" of the `floe` fixture's broker

Extra broker flags for one test:  @pytest.mark.floe_args("--auto-create-topics", "true")

Several gateways on one backend (multi-gateway and consumer-group tests):
  cluster     -> GatewayCluster (empty; the test starts gateways gw-N with .start(N))
  wait_for_leaders(cluster, topic, partitions, nodes) -> {partition: leader node id} once they agree

Backend: embedded by default. With FLOE_TEST_BACKEND=aws every broker gets its own S3 bucket and
DynamoDB table (`floe-py-<hex>`) on the moto server named by FLOE_TEST_MOTO_ENDPOINT, created
with `floe init` before its first start and reused by every restart, so restarts see the same
durable state. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION default to test / test /
us-east-1.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from helpers import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
INIT_TIMEOUT_S = 60.0
AWS_REGION = "us-east-1"
AWS_ENV_DEFAULTS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": AWS_REGION}


def selected_backend() -> str:
    """"embedded" or "aws", from FLOE_TEST_BACKEND; anything else fails the test."""
    backend = os.environ.get("FLOE_TEST_BACKEND", "") or "embedded"
    if backend not in ("embedded", "aws"):
        pytest.fail(f"FLOE_TEST_BACKEND={backend!r}: expected 'embedded' or 'aws'", pytrace=False)
    if backend == "aws" and not os.environ.get("FLOE_TEST_MOTO_ENDPOINT"):
        pytest.fail(
            "FLOE_TEST_BACKEND=aws needs FLOE_TEST_MOTO_ENDPOINT (the moto server): "
            'eval "$(localstack/emulators.sh start)"',
            pytrace=False,
        )
    return backend


def find_floe_bin() -> Path:
    env = os.environ.get("FLOE_BIN")
    if env:
        p = Path(env)
        if not p.is_absolute():
            p = (Path.cwd() / p).resolve()
        if not (p.is_file() and os.access(p, os.X_OK)):
            pytest.fail(f"FLOE_BIN={env!r} does not point to an executable file", pytrace=False)
        return p
    candidates = [REPO_ROOT / "target" / "release" / "floe", REPO_ROOT / "target" / "debug" / "floe"]
    for p in candidates:
        if p.is_file() and os.access(p, os.X_OK):
            return p
    pytest.fail(
        "floe binary not found: set FLOE_BIN or build it (cargo build --bin floe); looked in "
        + ", ".join(str(c) for c in candidates),
        pytrace=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(n: int) -> int:
    """The first of n consecutive free ports (a gateway with `--broker-ids n` listens on all of
    them). Above the kernel's ephemeral range (32768-60999), where client connections would take
    the ports after a free one."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(61000, 65535 - n)
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports in 61000-65535")


class FloeBroker:
    """One floe process bound to a fixed port and data dir; can be restarted/killed."""

    def __init__(self, binary: Path, workdir: Path, extra_args=(), port: int | None = None):
        self.binary = binary
        ids = int(extra_args[list(extra_args).index("--broker-ids") + 1]) if "--broker-ids" in extra_args else 1
        self.port = port or (free_port() if ids == 1 else free_port_block(ids))
        self.host = "127.0.0.1"
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "floe.log"
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.killed = False  # True after kill9() until the next start()
        self.backend = selected_backend()
        # aws: one bucket and table per broker, kept across restarts (see the module docstring).
        self.aws_name = f"floe-py-{secrets.token_hex(6)}" if self.backend == "aws" else None
        self.aws_initialized = False

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def backend_args(self) -> list[str]:
        if self.backend != "aws":
            return []
        return [
            "--backend", "aws",
            "--bucket", self.aws_name,
            "--table", self.aws_name,
            "--endpoint-url", os.environ["FLOE_TEST_MOTO_ENDPOINT"],
            "--region", AWS_REGION,
        ]

    def command(self) -> list[str]:
        addr = self.bootstrap
        return [
            str(self.binary),
            "--listen", addr,
            "--advertised-listener", addr,
            "--data-dir", str(self.data_dir),
            "--flush-interval", "5ms",
            "--default-partitions", "1",
            "--log-level", "info",
            *self.backend_args(),
            *self.extra_args,
        ]

    def child_env(self) -> dict[str, str]:
        # FLOE_* variables would override floe's settings (and FLOE_BIN is ours): the flags alone decide.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
        env.setdefault("RUST_BACKTRACE", "1")
        if self.backend == "aws":
            for k, v in AWS_ENV_DEFAULTS.items():
                if not env.get(k):
                    env[k] = v
        return env

    def init_backend(self) -> None:
        """aws: create this broker's bucket and table (`floe init`), once."""
        if self.backend != "aws" or self.aws_initialized:
            return
        cmd = [str(self.binary), "init", *self.backend_args()]
        try:
            res = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                env=self.child_env(), timeout=INIT_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"floe init did not finish within {INIT_TIMEOUT_S:.0f}s: {' '.join(cmd)}", pytrace=False)
        with open(self.log_path, "a") as log:
            log.write(f"\n===== init: {' '.join(cmd)} (exit {res.returncode})\n{res.stdout}{res.stderr}")
        if res.returncode != 0:
            pytest.fail(
                f"floe init failed (exit {res.returncode}): {' '.join(cmd)}\n{res.stdout}{res.stderr}",
                pytrace=False,
            )
        self.aws_initialized = True

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "<no broker log>"
        return "\n".join(text.splitlines()[-lines:])

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.is_running(), "broker already running"
        self.init_backend()
        self.starts += 1
        self.killed = False
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=str(self.data_dir.parent), env=self.child_env(),
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            rc = self.proc.poll()
            if rc is not None:
                pytest.fail(
                    f"floe exited with code {rc} during startup (start #{self.starts}).\n"
                    f"command: {' '.join(self.command())}\n--- broker log tail ---\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(
                    f"floe did not accept TCP on {self.bootstrap} within {START_TIMEOUT_S:.0f}s.\n"
                    f"--- broker log tail ---\n{self.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM and wait for a graceful exit (kill -9 after 20 s). Returns the exit code
        (negative = killed by signal; -9 means the drain timed out)."""
        assert self.proc is not None, "broker was never started"
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def stop_ok(self) -> None:
        rc = self.stop()
        assert rc == 0, (
            f"floe did not exit 0 on SIGTERM (rc={rc}; -9 = still running after {STOP_TIMEOUT_S:.0f}s)\n"
            f"--- broker log tail ---\n{self.log_tail()}"
        )

    def kill9(self) -> None:
        """Crash the broker: SIGKILL, no drain."""
        assert self.is_running(), "kill9: broker is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.killed = True

    def restart(self) -> None:
        """Restart on the same port and data dir (aws: the same bucket and table). Graceful
        (SIGTERM, must exit 0) if it is running; after kill9() it is simply started again."""
        if self.is_running():
            self.stop_ok()
        self.start()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def pytest_configure(config):
    config.addinivalue_line("markers", "floe_args(*args): extra command-line flags for the floe broker")


@pytest.fixture(scope="session")
def floe_bin() -> Path:
    return find_floe_bin()


@pytest.fixture
def floe(request, floe_bin, tmp_path):
    marker = request.node.get_closest_marker("floe_args")
    extra = list(marker.args) if marker else []
    broker = FloeBroker(floe_bin, tmp_path, extra)
    broker.start()
    try:
        yield broker
    finally:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            print(f"--- floe log tail ({broker.log_path}) ---\n{broker.log_tail(120)}")
        if broker.is_running():
            broker.stop_ok()
        elif broker.proc is not None and not broker.killed:
            pytest.fail(
                f"floe died during the test (rc={broker.proc.returncode})\n"
                f"--- broker log tail ---\n{broker.log_tail()}",
                pytrace=False,
            )


@pytest.fixture
def bootstrap(floe) -> str:
    return floe.bootstrap


# --------------------------------------------------------------------------- several gateways

# Gateway membership flags of cluster gateways: a killed gateway's partitions (and groups) move after ~2 s.
CLUSTER_FLAGS = ["--heartbeat-interval", "200ms", "--session-timeout", "1500ms", "--checkpoint-interval", "1s"]


# --------------------------------------------------------------------------- cluster fixture


class Gateway(FloeBroker):
    """A FloeBroker whose log filter can be set with FLOE_TEST_LOG_LEVEL (e.g.
    "info,floe_flusher=debug") to dig into a failure; info by default."""

    def command(self) -> list[str]:
        cmd = super().command()
        level = os.environ.get("FLOE_TEST_LOG_LEVEL")
        if level:
            cmd[cmd.index("--log-level") + 1] = level
        return cmd


class GatewayCluster:
    """floe gateways `gw-N` (node id N) sharing one backend; each is a FloeBroker with its own port
    and log (`<tmp>/gw-N/floe.log`) but the cluster's data dir, or its bucket and table on aws."""

    def __init__(self, binary, workdir, extra_args=()):
        self.binary = binary
        self.workdir = workdir
        self.extra_args = list(extra_args)  # flags for every gateway (the test's floe_args marker)
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.gateways: dict[int, FloeBroker] = {}
        self.metrics_ports: dict[int, int] = {}
        self.retired: set[int] = set()  # stopped by the test itself (SIGTERM scale-in)
        self.aws_name = None
        self.aws_initialized = False
        self.t0 = time.time()

    def start(self, n: int, zone: str | None = None, metrics: bool = False, extra=()) -> FloeBroker:
        """Starts gateway gw-n (node id n); `extra`: more floe flags for it."""
        assert n not in self.gateways, f"gw-{n} already started"
        args = ["--gateway-id", f"gw-{n}", "--node-id", str(n), *CLUSTER_FLAGS, *self.extra_args, *extra]
        if zone:
            args += ["--zone", zone]
        if metrics:
            self.metrics_ports[n] = free_port()
            args += ["--metrics-listen", f"127.0.0.1:{self.metrics_ports[n]}"]
        gw = Gateway(self.binary, self.workdir / f"gw-{n}", args)
        gw.data_dir = self.data_dir
        if gw.backend == "aws":
            # one bucket and table for the whole cluster, `floe init`ed by the first gateway
            self.aws_name = self.aws_name or gw.aws_name
            gw.aws_name = self.aws_name
            gw.aws_initialized = self.aws_initialized
        self.gateways[n] = gw
        gw.start()
        self.aws_initialized = True
        self.wait_settled()
        return gw

    def wait_settled(self, timeout: float = 20.0) -> None:
        """Waits until every running gateway, asked alone, lists the same brokers, every running
        gateway's node id among them: their membership views agree. (For a heartbeat or so after a
        gateway starts they do not, and a client that meets both views drops the broker handle the
        older one leaves out, failing a request in flight on it with _DESTROY_BROKER.)"""
        live = self.live()

        def ok():
            views = [broker_ids(self.gateways[n].bootstrap) for n in live]
            return views[0] is not None and all(v == views[0] for v in views) and set(live) <= views[0]

        wait_until(ok, timeout=timeout, interval=0.1, what=f"gateways {live} to agree on the membership")

    def live(self) -> list[int]:
        return sorted(n for n, gw in self.gateways.items() if gw.is_running())

    def bootstrap(self, nodes=None) -> str:
        nodes = self.live() if nodes is None else nodes
        return ",".join(self.gateways[n].bootstrap for n in nodes)

    def kill9(self, n: int) -> None:
        self.gateways[n].kill9()

    def scale_in(self, n: int) -> int:
        """SIGTERM gateway n (releases its partitions); returns the exit code."""
        self.retired.add(n)
        return self.gateways[n].stop()

    def log_tails(self, lines: int = 60) -> str:
        return "\n".join(
            f"--- gw-{n} log tail ({gw.log_path}) ---\n{gw.log_tail(lines)}" for n, gw in sorted(self.gateways.items())
        )

    def timeline(self, t0: float, pattern=r"membership changed|claimed|released|signal received|fenced|ERROR|WARN") -> str:
        """The log lines of every gateway matching `pattern`, in time order, each prefixed with its
        time in seconds after `t0` (time.time()); gateways log RFC 3339 UTC timestamps."""
        rx = re.compile(pattern)
        rows = []
        for n, gw in self.gateways.items():
            try:
                lines = gw.log_path.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            for line in lines:
                if not rx.search(line):
                    continue
                try:
                    ts = datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
                except (ValueError, IndexError):
                    continue
                rows.append((ts, f"  +{ts - t0:6.2f}s gw-{n}: {line.split(None, 1)[1][:200]}"))
        return "\n".join(r for _, r in sorted(rows))

    def metrics_sample(self, n: int, name: str) -> float:
        url = f"http://127.0.0.1:{self.metrics_ports[n]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"gw-{n}: no sample {name!r} at {url}")

    def shutdown(self) -> list[str]:
        """SIGTERM every running gateway at once and wait; returns the problems found (a gateway that
        died by itself during the test, or one that did not exit 0 on SIGTERM)."""
        problems = []
        for n, gw in self.gateways.items():
            if gw.proc is None:
                continue
            if gw.is_running():
                gw.proc.terminate()
            elif not gw.killed and n not in self.retired:
                problems.append(f"gw-{n} died during the test (rc={gw.proc.returncode})")
        for n, gw in self.gateways.items():
            if gw.proc is None or gw.killed or n in self.retired:
                continue
            try:
                rc = gw.proc.wait(timeout=20)
            except Exception:
                gw.proc.kill()
                gw.proc.wait()
                rc = "still running 20 s after SIGTERM (killed)"
            if rc != 0 and not any(p.startswith(f"gw-{n} died") for p in problems):
                problems.append(f"gw-{n} did not exit 0 on SIGTERM: rc={rc}")
        return problems


@pytest.fixture
def cluster(request, floe_bin, tmp_path):
    """An empty GatewayCluster; the test starts its gateways, each with the test's floe_args flags.
    Every gateway is stopped at the end, also when the test fails; then a gateway that crashed or
    did not exit 0 on SIGTERM fails it."""
    selected_backend()
    marker = request.node.get_closest_marker("floe_args")
    c = GatewayCluster(floe_bin, tmp_path, marker.args if marker else ())
    try:
        yield c
    finally:
        problems = c.shutdown()
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed or problems:
            print(f"--- membership and ownership events (s after the cluster fixture started) ---\n"
                  f"{c.timeline(c.t0)}\n{c.log_tails(80)}")
        if problems:
            pytest.fail("; ".join(problems) + "\n" + c.log_tails(), pytrace=False)


def broker_ids(bootstrap: str):
    """The broker ids one Metadata response lists, or None."""
    with AdminClient({"bootstrap.servers": bootstrap, "client.id": "floe-e2e-view"}) as admin:
        try:
            return set(admin.list_topics(timeout=5).brokers)
        except Exception:
            return None


def cluster_view(bootstrap: str, topic: str):
    """(broker node ids, {partition: leader node id}) from one Metadata response, or None."""
    # `with`: destroyed here, never by a garbage collection on a librdkafka thread (which aborts)
    with AdminClient({"bootstrap.servers": bootstrap, "client.id": "floe-e2e-view"}) as admin:
        try:
            md = admin.list_topics(topic, timeout=5)
        except Exception:
            return None
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return set(md.brokers), {p: pm.leader for p, pm in t.partitions.items()}


def wait_for_leaders(cluster: GatewayCluster, topic: str, partitions: int, nodes, timeout: float = 20.0):
    """Waits until every gateway of `nodes`, asked alone, lists exactly `nodes` as brokers and names
    the same leader, one of them, for every partition. Returns {partition: leader}. Leaders follow a
    rendezvous hash of the gateway id and the topic's random id, so a gateway may lead none of a
    few partitions. (A named leader may still be claiming the partition for a moment: readers retry
    NOT_LEADER_OR_FOLLOWER, as clients do.)"""
    nodes = set(nodes)
    last = {}

    def ok():
        views = [cluster_view(cluster.bootstrap([n]), topic) for n in sorted(nodes)]
        last["views"] = views
        if any(v is None for v in views):
            return None
        brokers, leaders = views[0]
        if all(v == views[0] for v in views) and brokers == nodes and len(leaders) == partitions \
                and set(leaders.values()) <= nodes:
            return leaders
        return None

    try:
        return wait_until(ok, timeout=timeout, interval=0.2, what=f"{topic}: gateways {sorted(nodes)} agreeing")
    except AssertionError as e:
        raise AssertionError(f"{e}; last views per gateway {dict(zip(sorted(nodes), last.get('views', [])))}") from None
