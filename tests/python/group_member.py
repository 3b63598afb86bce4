"""One consumer-group member for test_groups.py, with either client, run in a thread of the test
(`MemberThread`) or as a child process (`MemberProcess`: `python group_member.py '<spec json>'`,
which prints one JSON line per observation and can be SIGKILLed like a crashed application).

A member subscribes to one topic and polls in a loop. After every non-empty batch it reports the
records and, unless `commit_each_batch` is off, commits synchronously what it consumed, as an
at-least-once application does. Auto-commit (on by default, as in both clients) also commits
before partitions are revoked and on close. Rebalance callbacks are recorded, never acted on: both
clients then apply the assignment themselves (incrementally under cooperative-sticky).

Spec keys: client ("confluent" | "kafka-python"), bootstrap, group, topic, client_id; optional
protocol ("classic", the default, or "consumer": KIP-848, confluent-kafka only), instance_id
(group.instance.id), assignor (classic: partition.assignment.strategy "range" | "roundrobin" |
"cooperative-sticky"; consumer: group.remote.assignor "uniform" | "range"), auto_commit (default
True), commit_each_batch (default True), session_timeout_ms (classic only; default 6000, Kafka's
minimum).

With protocol "consumer" the coordinator decides the session timeout and heartbeat interval and
runs the assignor, so librdkafka refuses session.timeout.ms, heartbeat.interval.ms and
partition.assignment.strategy: they are not set (the gateways of test_groups.py run with
`--consumer-group-session-timeout 6s --consumer-group-heartbeat-interval 500ms`).

FLOE_TEST_RDKAFKA_DEBUG (e.g. "cgrp") turns on librdkafka debug logs (stderr) of confluent-kafka
members, to dig into a failure.

Records are reported as (partition, offset, index) where index is the producer's record number
taken from the value `<tag>-<index>`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

POLL_S = 0.2
HEARTBEAT_MS = 500
# The rebalance timeout: how long a rebalance may wait for a live member to rejoin.
MAX_POLL_INTERVAL_MS = 30_000


def index_of(value: bytes) -> int:
    return int(value.rsplit(b"-", 1)[1])


class ConfluentMember:
    def __init__(self, spec: dict, report):
        from confluent_kafka import Consumer, KafkaError, KafkaException

        self.KafkaError, self.KafkaException = KafkaError, KafkaException
        self.report = report
        conf = {
            "bootstrap.servers": spec["bootstrap"],
            "group.id": spec["group"],
            "client.id": spec["client_id"],
            "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
            "enable.auto.commit": spec.get("auto_commit", True),
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 100,
        }
        if spec.get("protocol", "classic") == "consumer":
            conf["group.protocol"] = "consumer"
            if spec.get("assignor"):
                conf["group.remote.assignor"] = spec["assignor"]
        else:
            conf["session.timeout.ms"] = spec.get("session_timeout_ms", 6000)
            conf["heartbeat.interval.ms"] = HEARTBEAT_MS
            if spec.get("assignor"):
                conf["partition.assignment.strategy"] = spec["assignor"]
        if spec.get("instance_id"):
            conf["group.instance.id"] = spec["instance_id"]
        if os.environ.get("FLOE_TEST_RDKAFKA_DEBUG"):
            conf["debug"] = os.environ["FLOE_TEST_RDKAFKA_DEBUG"]
        self.c = Consumer(conf)
        self.c.subscribe(
            [spec["topic"]],
            on_assign=lambda _c, tps: self._event("assign", tps),
            on_revoke=lambda _c, tps: self._event("revoke", tps),
            on_lost=lambda _c, tps: self._event("lost", tps),
        )

    def _event(self, kind, tps):
        self.report("event", [kind, sorted(tp.partition for tp in tps)])

    def poll(self) -> list:
        out = []
        for m in self.c.consume(num_messages=500, timeout=POLL_S):
            err = m.error()
            if err is not None:
                # A fatal error of the consumer comes back as _FATAL (KafkaError.fatal() is False on
                # it); the consumer is unusable from then on.
                if err.fatal() or err.code() == self.KafkaError._FATAL:
                    raise self.KafkaException(err)
                self.report("consume_error", str(err))
                continue
            out.append((m.partition(), m.offset(), index_of(m.value())))
        return out

    def assignment(self) -> list:
        return sorted(tp.partition for tp in self.c.assignment())

    def commit(self):
        """Synchronous commit of what was consumed; None or the error (as text)."""
        try:
            res = self.c.commit(asynchronous=False)
        except self.KafkaException as e:
            err = e.args[0]
            if err.code() == self.KafkaError._NO_OFFSET:
                return None
            return err.name()
        bad = [f"p{tp.partition}: {tp.error}" for tp in res or [] if tp.error is not None]
        return "; ".join(bad) or None

    def close(self):
        self.c.close()


class KafkaPythonMember:
    def __init__(self, spec: dict, report):
        assert spec.get("protocol", "classic") == "classic", "kafka-python has no KIP-848 consumer protocol"
        from kafka import ConsumerRebalanceListener, KafkaConsumer
        from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

        self.report = report
        member = self

        class Listener(ConsumerRebalanceListener):
            # Runs on kafka-python's IO thread: it must not block, so it only records.
            def on_partitions_revoked(self, revoked):
                member._event("revoke", revoked)

            def on_partitions_assigned(self, assigned):
                member._event("assign", assigned)

            def on_partitions_lost(self, lost):
                member._event("lost", lost)

        assignors = {"range": [RangePartitionAssignor], "roundrobin": [RoundRobinPartitionAssignor],
                     "cooperative-sticky": [CooperativeStickyAssignor]}
        extra = {}
        if spec.get("assignor"):
            extra["partition_assignment_strategy"] = assignors[spec["assignor"]]
        self.c = KafkaConsumer(
            bootstrap_servers=spec["bootstrap"].split(","),
            group_id=spec["group"],
            group_instance_id=spec.get("instance_id"),
            client_id=spec["client_id"],
            session_timeout_ms=spec.get("session_timeout_ms", 6000),
            heartbeat_interval_ms=HEARTBEAT_MS,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            request_timeout_ms=15_000,
            enable_auto_commit=spec.get("auto_commit", True),
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            **extra,
        )
        self.c.subscribe([spec["topic"]], listener=Listener())

    def _event(self, kind, tps):
        self.report("event", [kind, sorted(tp.partition for tp in tps)])

    def poll(self) -> list:
        out = []
        for recs in self.c.poll(timeout_ms=int(POLL_S * 1000), max_records=500).values():
            out += [(r.partition, r.offset, index_of(r.value)) for r in recs]
        return out

    def assignment(self) -> list:
        return sorted(tp.partition for tp in self.c.assignment())

    def commit(self):
        try:
            self.c.commit(timeout_ms=10_000)
            return None
        except Exception as e:  # noqa: BLE001 - reported, the member goes on (at least once)
            return f"{type(e).__name__}: {e}"

    def close(self):
        self.c.close(timeout_ms=10_000)


def run_member(spec: dict, report, stop: threading.Event, calls: queue.Queue | None = None) -> None:
    """Polls until `stop` is set, then closes the consumer (LeaveGroup for a dynamic member).
    `calls` carries (fn, Future) pairs: fn(consumer adapter) is run between polls."""
    member = (ConfluentMember if spec["client"] == "confluent" else KafkaPythonMember)(spec, report)
    try:
        last = None
        while not stop.is_set():
            while calls is not None and not calls.empty():
                fn, fut = calls.get()
                try:
                    fut.set_result(fn(member))
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    fut.set_exception(e)
            recs = member.poll()
            assignment = member.assignment()
            if assignment != last:
                report("assignment", assignment)
                last = assignment
            if recs:
                report("records", recs)
                if spec.get("commit_each_batch", True):
                    err = member.commit()
                    if err:
                        report("commit_error", err)
    finally:
        member.close()


class MemberView:
    """What a member reported: records [(partition, offset, index)], rebalance callbacks
    events [(t, kind, partitions)], assignment (after its last poll) and its history
    [(t, frozenset)], commit and consume errors (text)."""

    def __init__(self, spec: dict, name: str):
        self.spec = spec
        self.name = name
        self.records: list[tuple[int, int, int]] = []
        self.events: list[tuple[float, str, list[int]]] = []
        self.assignment: frozenset[int] = frozenset()
        self.history: list[tuple[float, frozenset[int]]] = []
        self.commit_errors: list[str] = []
        self.consume_errors: list[str] = []

    def report(self, kind: str, data) -> None:
        now = time.monotonic()
        if kind == "records":
            self.records.extend(tuple(r) for r in data)
        elif kind == "assignment":
            self.assignment = frozenset(data)
            self.history.append((now, self.assignment))
        elif kind == "event":
            self.events.append((now, data[0], list(data[1])))
        elif kind == "commit_error":
            self.commit_errors.append(data)
        elif kind == "consume_error":
            self.consume_errors.append(data)

    def events_since(self, t: float) -> list[tuple[str, list[int]]]:
        return [(k, p) for at, k, p in self.events if at >= t]

    def summary(self) -> str:
        evs = ", ".join(f"{k}{p}" for _, k, p in self.events[-8:])
        return (f"{self.name}: assignment {sorted(self.assignment)}, {len(self.records)} records, "
                f"last events [{evs}], commit errors {self.commit_errors[-3:]}, "
                f"consume errors {self.consume_errors[-3:]}")


class MemberThread(MemberView):
    """A member polled by its own thread of the test process."""

    def __init__(self, spec: dict, name: str):
        super().__init__(spec, name)
        self._stop = threading.Event()
        self._calls: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            run_member(self.spec, self.report, self._stop, self._calls)
        except BaseException as e:  # noqa: BLE001 - re-raised by check()
            self.error = e

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"{self.name} failed: {self.error!r}") from self.error
        assert self.thread.is_alive() or self._stop.is_set(), f"{self.name}: poll thread ended"

    def call(self, fn, timeout: float = 30.0):
        """fn(consumer adapter), run on the member's own thread between polls."""
        self.check()
        fut: Future = Future()
        self._calls.put((fn, fut))
        return fut.result(timeout=timeout)

    def pause(self, seconds: float) -> None:
        """The member stops polling for `seconds` (an application busy with a batch): its client
        keeps heartbeating but cannot serve a rebalance, so the group waits for it. Returns once
        the pause has begun."""
        self.check()
        started = threading.Event()

        def busy(_m):
            started.set()
            time.sleep(seconds)

        self._calls.put((busy, Future()))
        assert started.wait(30), f"{self.name}: the pause did not begin within 30 s"

    def close(self, timeout: float = 30.0, expect_error: bool = False) -> None:
        """Stops polling and closes the consumer; raises what the member's thread raised, unless
        the test expected it to fail (`expect_error`)."""
        self._stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.name}: close() did not finish within {timeout}s"
        if self.error is not None and not expect_error:
            raise AssertionError(f"{self.name} failed: {self.error!r}") from self.error


class MemberProcess(MemberView):
    """A member in a child process (this file run as a script); its JSON lines are read back.
    stderr goes to `log_path`. It stops by itself when its stdin closes (the test ended)."""

    def __init__(self, spec: dict, name: str, log_path: Path):
        super().__init__(spec, name)
        self.log_path = log_path
        self.killed = False
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
        )
        self.reader = threading.Thread(target=self._read, name=f"{name}-reader", daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                kind, data = json.loads(line)
            except ValueError:
                continue
            self.report(kind, data)

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def check(self) -> None:
        rc = self.proc.poll()
        if rc is not None and not self.killed:
            raise AssertionError(f"{self.name}: child process exited with {rc}:\n{self.stderr_tail()}")

    def kill9(self) -> None:
        """Crash: SIGKILL, no LeaveGroup, no commit. Everything it printed is read first."""
        self.check()
        self.killed = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.reader.join(10)

    def close(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the child closes its consumer and exits
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _child_main() -> None:
    spec = json.loads(sys.argv[1])
    lock = threading.Lock()

    def report(kind, data):
        with lock:
            print(json.dumps([kind, data]), flush=True)

    stop = threading.Event()

    def watch_stdin():
        sys.stdin.read()  # EOF: the parent closed the pipe or died
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_member(spec, report, stop)


if __name__ == "__main__":
    _child_main()
