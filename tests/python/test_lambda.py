"""The compactor as an AWS Lambda function, run by cargo-lambda's local emulator.

`cargo lambda watch --only-lambda-apis` serves the Lambda Runtime API; the
function binary (`floe-compactor-lambda`, built with `--features lambda`) polls
it, configured by FLOE_* environment variables as on AWS; `cargo lambda invoke`
sends it an EventBridge scheduled event. Against a gateway on moto: the first
invocation compacts (its JSON answer says so), the next ones, past
`FLOE_OBJECT_DELETE_DELAY`, delete the objects nothing references, and a
confluent-kafka consumer reads the same records before, on the live gateway
after, and after a restart.

Needs the AWS backend (FLOE_TEST_BACKEND=aws: the Python suite on moto); on
the embedded backend it is skipped. The function binary is looked up as
$FLOE_LAMBDA_BIN, else next to the floe binary; cargo-lambda as
$CARGO_LAMBDA, else in this venv (requirements.txt), else on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import AWS_ENV_DEFAULTS, AWS_REGION, REPO_ROOT, free_port, selected_backend

pytestmark = pytest.mark.skipif(
    selected_backend() != "aws", reason="the Lambda function runs on the AWS backend (FLOE_TEST_BACKEND=aws)"
)

PARTITIONS = 2
RECORDS = 200

SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-12-07T12:00:00Z",
    "region": AWS_REGION,
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/floe-compact"],
    "detail": {},
}


def lambda_bin(floe_bin: Path) -> Path:
    env = os.environ.get("FLOE_LAMBDA_BIN")
    p = Path(env) if env else floe_bin.parent / "floe-compactor-lambda"
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(
            f"{p} not found: build it (cargo build -p floe-compactor --features lambda "
            "--bin floe-compactor-lambda) or set FLOE_LAMBDA_BIN",
            pytrace=False,
        )
    return p


def cargo_lambda() -> str:
    for c in (os.environ.get("CARGO_LAMBDA"), str(Path(sys.executable).parent / "cargo-lambda"), shutil.which("cargo-lambda")):
        if c and os.access(c, os.X_OK):
            return c
    pytest.fail("cargo-lambda not found (pip install -r tests/python/requirements.txt)", pytrace=False)


def read_all(bootstrap: str, topic: str) -> dict[int, list[tuple]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "lambda-reader", "enable.auto.commit": False})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        out: dict[int, list[tuple]] = {p: [] for p in range(PARTITIONS)}
        deadline = time.time() + 60
        while sum(len(v) for v in out.values()) < sum(ends.values()) and time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            out[m.partition()].append((m.offset(), m.key(), m.value(), m.timestamp(), m.headers()))
        assert sum(len(v) for v in out.values()) == sum(ends.values()), "read up to the high watermarks"
        return out
    finally:
        c.close()


class Function:
    """cargo-lambda's Runtime API emulator and the function polling it."""

    def __init__(self, binary: Path, env: dict[str, str], workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.log = open(workdir / "lambda.log", "w")
        self.emulator = subprocess.Popen(
            [cargo_lambda(), "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(self.port)],
            # It reads the crate's manifest (`cargo metadata`), even with no function to build.
            stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO_ROOT / "compactor",
        )
        deadline = time.time() + 30
        while "starting Runtime server" not in (workdir / "lambda.log").read_text(errors="replace"):
            assert self.emulator.poll() is None and time.time() < deadline, self.tail()
            time.sleep(0.1)
        self.function = subprocess.Popen(
            [str(binary)],
            env={
                **env,
                "AWS_LAMBDA_FUNCTION_NAME": "_",
                "AWS_LAMBDA_FUNCTION_VERSION": "1",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
                "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{self.port}/.rt",
            },
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def invoke(self) -> dict:
        event = self.workdir / "scheduled-event.json"
        event.write_text(json.dumps(SCHEDULED_EVENT))
        res = subprocess.run(
            [cargo_lambda(), "lambda", "invoke", "-A", "127.0.0.1", "-P", str(self.port),
             "--data-file", str(event), "-o", "json", "_"],
            capture_output=True, text=True, timeout=120,
        )
        assert res.returncode == 0, f"invoke failed: {res.stdout}{res.stderr}\n{self.tail()}"
        return json.loads(res.stdout)

    def tail(self) -> str:
        self.log.flush()
        return (self.workdir / "lambda.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        for p in (self.function, self.emulator):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.log.close()


# The owner stores its partitions, and trims the flush records naming the
# flushes' objects, a second after they change (the AWS default waits 10
# minutes): the objects compacted away become unreferenced within the test.
@pytest.mark.floe_args("--checkpoint-interval", "200ms", "--checkpoint-delay", "1s")
def test_scheduled_invocations_compact_and_delete_unreferenced_objects(floe, floe_bin, tmp_path):
    topic = "compacted-by-lambda"
    admin = AdminClient({"bootstrap.servers": floe.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS)])[topic].result(30)
    p = Producer({"bootstrap.servers": floe.bootstrap, "linger.ms": 0})
    for i in range(RECORDS):  # each acknowledged before the next: its own flush
        p.produce(topic, key=f"k{i}", value=f"v{i}-" + "x" * (i % 300), partition=i % PARTITIONS,
                  headers=[("i", str(i).encode())], timestamp=1_700_000_000_000 + i)
        p.flush(30)
    time.sleep(1)  # checkpointed
    before = read_all(floe.bootstrap, topic)

    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
    env.update(AWS_ENV_DEFAULTS)
    env.update({
        "FLOE_BACKEND": "aws",
        "FLOE_BUCKET": floe.aws_name,
        "FLOE_TABLE": floe.aws_name,
        "FLOE_ENDPOINT_URL": os.environ["FLOE_TEST_MOTO_ENDPOINT"],
        "FLOE_REGION": AWS_REGION,
        "FLOE_OBJECT_DELETE_DELAY": "4s",
    })
    fn = Function(lambda_bin(floe_bin), env, tmp_path)
    try:
        first = fn.invoke()
        assert first["partitions_compacted"] == PARTITIONS, first
        assert first["entries_merged"] >= RECORDS - 2 * PARTITIONS, first
        assert first["partitions_failed"] == 0 and not first["cut_short"], first
        assert first["objects_deleted"] == 0, first
        # Its requests as its stores counted them, and their price plus the
        # invocation's GB-seconds at the function's 1,024 MB.
        req, cost = first["requests"], first["estimated_cost_usd"]
        assert req["s3_get"] >= first["entries_merged"] and req["s3_put"] >= PARTITIONS, first
        assert req["dynamodb_write_units"] >= first["entries_deleted"], first
        assert cost["lambda"] >= first["seconds"] * 0.0000133334, first
        assert abs(cost["total"] - sum(v for k, v in cost.items() if k != "total")) < 1e-12, first
        # Scheduled often (a sighting holds while passes run more often than
        # half the delay): the flushes' objects go once unreferenced for 4 s.
        deleted, started = 0, time.time()
        while deleted < RECORDS - 2 * PARTITIONS:
            assert time.time() - started < 60, f"{deleted} deleted"
            time.sleep(0.5)
            later = fn.invoke()
            assert later["partitions_compacted"] == 0 and later["partitions_failed"] == 0, later
            deleted += later["objects_deleted"]
        assert time.time() - started >= 4, "not before the delay"
    finally:
        fn.stop()

    assert read_all(floe.bootstrap, topic) == before, "identical on the live gateway"
    floe.restart()
    assert read_all(floe.bootstrap, topic) == before, "identical after a restart"
