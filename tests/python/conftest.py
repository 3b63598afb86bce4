"""Fixtures that run a real `floe` broker process for end-to-end client tests.

Binary lookup order: $FLOE_BIN, <repo>/target/release/floe, <repo>/target/debug/floe.
A missing binary is a test *failure* (never a skip).

Fixtures:
  floe        -> FloeBroker (already started); .bootstrap, .restart(), .kill9(), .stop()
  bootstrap   -> "127.0.0.1:PORT" of the `floe` fixture's broker

Extra broker flags for one test:  @pytest.mark.floe_args("--auto-create-topics", "true")

Backend: embedded by default. With FLOE_TEST_BACKEND=aws every broker gets its own S3 bucket and
DynamoDB table (`floe-py-<hex>`) on the moto server named by FLOE_TEST_MOTO_ENDPOINT, created
with `floe init` before its first start and reused by every restart, so restarts see the same
durable state. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION default to test / test /
us-east-1.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

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


class FloeBroker:
    """One floe process bound to a fixed port and data dir; can be restarted/killed."""

    def __init__(self, binary: Path, workdir: Path, extra_args=(), port: int | None = None):
        self.binary = binary
        self.port = port or free_port()
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
