"""Consumer groups end to end, as a Kafka user sees them, with confluent-kafka and kafka-python,
over both group protocols: the classic one (JoinGroup/SyncGroup, client-side assignors) with both
clients, and KIP-848's consumer protocol (ConsumerGroupHeartbeat, server-side assignors, member
epochs) with confluent-kafka (`group.protocol=consumer`; kafka-python does not implement it). Each
scenario is written once and parametrized by (client, protocol).

Members subscribe (never assign) and are polled by threads of the test (`group_member.py`); the one
that crashes runs in a child process and gets SIGKILL. A confluent-kafka idempotent producer
(acks=all) writes records with explicit partitions round-robin, most tests while the group
rebalances; every acknowledged record must then have been consumed by some member (no loss), with
the content that was acknowledged at that offset. Duplicates are allowed only where Kafka allows
them: records a crashed member consumed and had not committed.

Members use session.timeout.ms 6000 (Kafka's minimum), heartbeat.interval.ms 500,
max.poll.interval.ms 30000 (the rebalance timeout), auto.offset.reset earliest, and commit
synchronously after every batch (auto-commit also commits before a revocation and on close). The
gateways run with `--group-initial-rebalance-delay 500ms` (Kafka's default is 3 s) so that a new
group forms quickly while members started together still land in one generation. With the
consumer protocol the coordinator owns the session timeout and heartbeat interval (librdkafka
refuses both settings): the gateways give the same 6 s and 500 ms
(`--consumer-group-session-timeout`, `--consumer-group-heartbeat-interval`; Kafka's 45 s and 5 s
would make the crash and static-membership scenarios slow).

Scenarios: resume from committed offsets; three members splitting 12 partitions through a
LeaveGroup and a crash; static membership (a restarted member takes its place back without a
rebalance); incremental rebalance (cooperative-sticky, and inherent in KIP-848) and the assignors
(range/roundrobin client-side, uniform/range server-side); the admin APIs (list with state filter,
describe, offsets, delete); the group's coordinator gateway killed; a classic and a consumer-protocol
member refused in one group.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import Consumer as CkConsumer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient

from conftest import wait_for_leaders
from group_member import MemberProcess, MemberThread
from helpers import wait_until

CLIENTS = ["confluent", "kafka-python"]
# (client, group protocol) of the members of a scenario: kafka-python has only the classic protocol.
MEMBER_KINDS = [
    pytest.param("confluent", "classic", id="confluent-classic"),
    pytest.param("kafka-python", "classic", id="kafka-python-classic"),
    pytest.param("confluent", "consumer", id="confluent-consumer"),
]
GROUP_FLAGS = ("--group-initial-rebalance-delay", "500ms",
               "--consumer-group-session-timeout", "6s", "--consumer-group-heartbeat-interval", "500ms")
TIMEOUT = 15.0
# How long the test waits for an admin future: longer than librdkafka's request timeout (TIMEOUT), so
# that a request to an unreachable coordinator ends as librdkafka's retriable _TIMED_OUT, not as a
# TimeoutError of the future racing it.
RESULT_TIMEOUT = TIMEOUT + 10
# Long enough for a session to expire (6 s), the group to rebalance and members to catch up.
GROUP_WAIT_S = 40.0

pytestmark = pytest.mark.floe_args(*GROUP_FLAGS)


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def teardown():
    """Callbacks run at the end of the test in reverse order, even when it fails (members are
    closed and children killed before the gateways stop: request this fixture after floe/cluster)."""
    fns = []
    yield fns.append
    for fn in reversed(fns):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            print(f"teardown: {e!r}")


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    with AdminClient({"bootstrap.servers": bootstrap, "client.id": "floe-e2e-admin"}) as admin:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                            operation_timeout=TIMEOUT, request_timeout=TIMEOUT)[name].result(timeout=RESULT_TIMEOUT)

        def ready():
            t = admin.list_topics(name, timeout=5).topics.get(name)
            return t is not None and t.error is None and len(t.partitions) == partitions

        wait_until(ready, timeout=TIMEOUT, what=f"{name} with {partitions} partitions in metadata")


def value_of(tag: str, i: int) -> bytes:
    return b"%s-%d" % (tag.encode(), i)


class Load:
    """confluent-kafka idempotent producer (acks=all) writing record i to partition i % partitions.
    `acked` maps (partition, offset) to the acknowledged record's number; `sent` counts records
    handed to the producer. produce(n) writes n and waits for them; start()/stop() write in the
    background, `per_tick` records every `tick` seconds."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, tag: str):
        self.topic, self.partitions, self.tag = topic, partitions, tag
        self.p = Producer({"bootstrap.servers": bootstrap, "client.id": "floe-e2e-group-load",
                           "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                           "message.timeout.ms": 60_000})
        self.acked: dict[tuple[int, int], int] = {}
        self.failures: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _on_delivery(self, i, err, msg):
        if err is not None:
            self.failures.append(f"record {i}: {err}")
        else:
            self.acked[(msg.partition(), msg.offset())] = i

    def _send(self, n: int) -> None:
        for _ in range(n):
            i = self.sent
            while True:
                try:
                    self.p.produce(self.topic, key=b"k%d" % i, value=value_of(self.tag, i),
                                   partition=i % self.partitions,
                                   on_delivery=lambda err, msg, i=i: self._on_delivery(i, err, msg))
                    break
                except BufferError:
                    self.p.poll(0.05)
            self.sent += 1
        self.p.poll(0)

    def _flush(self) -> None:
        remaining = self.p.flush(60)
        assert remaining == 0, f"{remaining} records without an outcome after flush(60)"
        assert not self.failures, f"{len(self.failures)} deliveries failed, first {self.failures[:5]}"
        assert len(self.acked) == self.sent, f"{self.sent} sent, {len(self.acked)} acknowledged"

    def produce(self, n: int) -> None:
        self._send(n)
        self._flush()

    def start(self, per_tick: int = 12, tick: float = 0.1) -> "Load":
        def run():
            try:
                while not self._stop.is_set():
                    self._send(per_tick)
                    time.sleep(tick)
            except BaseException as e:  # noqa: BLE001 - re-raised by stop()
                self._error = e

        self._thread = threading.Thread(target=run, name="load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the background load, waits for every outcome (all must be acknowledged)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(30)
            assert not self._thread.is_alive(), "producer thread did not stop"
            self._thread = None
        if self._error is not None:
            raise self._error
        self._flush()

    def close(self) -> None:
        """Ends the producer (teardown): what is still queued is dropped, not waited for."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.p.purge()
        self.p.close()

    def ends(self) -> dict[int, int]:
        """Per partition, the end offset (acknowledged offsets must be exactly 0..n-1)."""
        per: dict[int, list[int]] = {p: [] for p in range(self.partitions)}
        for p, off in self.acked:
            per[p].append(off)
        for p, offs in per.items():
            assert sorted(offs) == list(range(len(offs))), f"partition {p}: acknowledged offsets not 0..{len(offs) - 1}"
        return {p: len(offs) for p, offs in per.items()}


def check(views) -> None:
    for v in views:
        v.check()


def summaries(views) -> str:
    return "\n  ".join(v.summary() for v in views)


def wait_split(views, partitions: int, sizes=None, timeout: float = GROUP_WAIT_S) -> list[frozenset]:
    """Waits until the members' assignments are disjoint and cover all `partitions` (each member
    with sizes[i] partitions if given); returns them."""
    def ok():
        check(views)
        got = [v.assignment for v in views]
        union = frozenset().union(*got)
        if sum(len(a) for a in got) != partitions or union != frozenset(range(partitions)):
            return None
        if sizes is not None and [len(a) for a in got] != list(sizes):
            return None
        return got

    try:
        return wait_until(ok, timeout=timeout, interval=0.1, what=f"{partitions} partitions split {sizes or ''}")
    except AssertionError as e:
        raise AssertionError(f"{e}\n  {summaries(views)}") from None


def wait_quiet(views, quiet: float = 1.0, timeout: float = GROUP_WAIT_S) -> None:
    """Waits until no member has had a rebalance callback for `quiet` seconds (the callbacks of a
    rebalance that just completed have all been served)."""
    def ok():
        check(views)
        last = max((t for v in views for t, _, _ in v.events), default=0.0)
        return time.monotonic() - last >= quiet

    wait_until(ok, timeout=timeout, interval=0.1, what=f"no rebalance callback for {quiet}s")


def consumed(views) -> Counter:
    """(partition, offset) -> how many times consumed, over all members."""
    c: Counter = Counter()
    for v in views:
        for p, off, _i in list(v.records):
            c[(p, off)] += 1
    return c


def wait_consumed(load: Load, views, below: int | None = None, timeout: float = GROUP_WAIT_S) -> None:
    """Waits until every record numbered < `below` (default: every record sent so far) has been
    acknowledged and consumed by one of `views`."""
    below = load.sent if below is None else below

    def missing():
        check(views)
        acked = [(po, i) for po, i in list(load.acked.items()) if i < below]
        if len(acked) < below:
            return f"{below - len(acked)} of {below} not acknowledged yet"
        have = consumed(views)
        gone = sorted(po for po, _ in acked if po not in have)
        return f"{len(gone)} acknowledged records not consumed, first {gone[:8]}" if gone else None

    last = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = missing()
        if last is None:
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for records < {below} to be consumed: {last}\n  "
                         f"{summaries(views)}")


def check_no_loss(load: Load, views, what: str) -> dict:
    """Every acknowledged record was consumed, with its acknowledged content, and nothing else was;
    returns {(partition, offset): copies} for records consumed more than once."""
    seen = consumed(views)
    wrong = [(v.name, p, off, i, load.acked.get((p, off))) for v in views for p, off, i in v.records
             if load.acked.get((p, off)) != i]
    assert not wrong, f"{what}: consumed records that differ from the acknowledged ones (member, p, off, got, acked): {wrong[:5]}"
    missing = sorted(set(load.acked) - set(seen))
    assert not missing, f"{what}: {len(missing)} acknowledged records never consumed, first {missing[:10]}\n  {summaries(views)}"
    return {po: n for po, n in seen.items() if n > 1}


def exactly_once(load: Load, views, what: str) -> None:
    dups = check_no_loss(load, views, what)
    assert not dups, (f"{what}: {len(dups)} records consumed twice, first {sorted(dups)[:10]} "
                      f"(no member crashed, every batch and revocation was committed)\n  {summaries(views)}")


def spec(client: str, bootstrap: str, group: str, topic: str, client_id: str, **kw) -> dict:
    return {"client": client, "bootstrap": bootstrap, "group": group, "topic": topic, "client_id": client_id, **kw}


# ----------------------------------------------------------------- admin views of a group (both clients)


RETRIABLE_ADMIN = {KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
                   KafkaError.NOT_COORDINATOR, KafkaError._TRANSPORT, KafkaError._TIMED_OUT}


@dataclass
class GroupMember:
    member_id: str
    instance_id: str | None
    client_id: str
    host: str
    partitions: frozenset


@dataclass
class GroupView:
    state: str  # lower case, no separators: "stable", "empty", "preparingrebalance", "dead"
    consumer_protocol: bool  # protocol type "consumer" (not a simple, commit-only group)
    assignor: str
    members: list[GroupMember] = field(default_factory=list)
    coordinator: tuple | None = None  # (node id, host, port) where the client reports it


def norm_state(s) -> str:
    # confluent-kafka's enum says PREPARING_REBALANCING, Kafka (and kafka-python) PreparingRebalance
    return str(getattr(s, "name", s)).lower().replace("_", "").replace("rebalancing", "rebalance")


class ConfluentAdmin:
    def __init__(self, bootstrap: str):
        self.a = AdminClient({"bootstrap.servers": bootstrap, "client.id": "floe-e2e-group-admin"})

    def close(self):
        # Destroys the client on this thread. Left to the garbage collector, it may be destroyed on
        # librdkafka's background thread (which runs the futures' callbacks, so collections), and
        # librdkafka aborts the process then (confluent-kafka-python PR #2131).
        self.a.__exit__(None, None, None)

    @staticmethod
    def retry(fn, what: str, budget: float = 20.0):
        """fn() again on retriable coordinator errors, for `budget` seconds."""
        deadline = time.monotonic() + budget
        while True:
            try:
                return fn()
            except KafkaException as e:
                if e.args[0].code() not in RETRIABLE_ADMIN or time.monotonic() > deadline:
                    raise AssertionError(f"{what}: {e.args[0]}") from None
                time.sleep(0.2)

    def list(self, states=None) -> dict[str, str]:
        kw = {"states": {getattr(ConsumerGroupState, s.upper()) for s in states}} if states else {}

        def run():
            res = self.a.list_consumer_groups(request_timeout=TIMEOUT, **kw).result(timeout=RESULT_TIMEOUT)
            assert not res.errors, f"list_consumer_groups errors: {res.errors}"
            return {g.group_id: norm_state(g.state) for g in res.valid}

        return self.retry(run, "list_consumer_groups")

    def describe(self, group: str) -> GroupView:
        d = self.retry(lambda: self.a.describe_consumer_groups([group], request_timeout=TIMEOUT)[group]
                       .result(timeout=RESULT_TIMEOUT), f"describe_consumer_groups({group})")
        return GroupView(
            state=norm_state(d.state), consumer_protocol=not d.is_simple_consumer_group,
            assignor=d.partition_assignor,
            members=[GroupMember(m.member_id, m.group_instance_id, m.client_id, m.host,
                                 frozenset(tp.partition for tp in m.assignment.topic_partitions))
                     for m in d.members],
            coordinator=(d.coordinator.id, d.coordinator.host, d.coordinator.port))

    def offsets(self, group: str, topic: str, partitions: int) -> dict[int, int | None]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        req = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])]
        res = self.retry(lambda: self.a.list_consumer_group_offsets(req, request_timeout=TIMEOUT)[group]
                         .result(timeout=RESULT_TIMEOUT), f"list_consumer_group_offsets({group})")
        for tp in res.topic_partitions:
            assert tp.error is None, f"list_consumer_group_offsets({group}): p{tp.partition}: {tp.error}"
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in res.topic_partitions}

    def delete(self, groups: list[str]) -> dict[str, str | None]:
        out = {}
        for g, fut in self.a.delete_consumer_groups(groups, request_timeout=TIMEOUT).items():
            try:
                fut.result(timeout=RESULT_TIMEOUT)
                out[g] = None
            except KafkaException as e:
                out[g] = e.args[0].name()
        return out


class KafkaPythonAdmin:
    def __init__(self, bootstrap: str):
        self.a = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="floe-e2e-group-admin",
                                  request_timeout_ms=15_000)

    def close(self):
        self.a.close()

    def list(self, states=None) -> dict[str, str]:
        groups = self.a.list_groups(states_filter=list(states) if states else None)
        return {g["group_id"]: norm_state(g.get("group_state", "")) for g in groups}

    def describe(self, group: str) -> GroupView:
        d = self.a.describe_groups([group])[group]
        assert d.get("error") is None, f"describe_groups({group}): {d['error']}"
        members = []
        for m in d["members"]:
            a = m["member_assignment"] or {}
            parts = frozenset(p for t in a.get("assigned_partitions", []) for p in t["partitions"])
            members.append(GroupMember(m["member_id"], m["group_instance_id"], m["client_id"], m["client_host"], parts))
        return GroupView(state=norm_state(d["group_state"]), consumer_protocol=d["protocol_type"] == "consumer",
                         assignor=d["protocol_data"], members=members)

    def offsets(self, group: str, topic: str, partitions: int) -> dict[int, int | None]:
        res = self.a.list_group_offsets({group: None})[group]
        out = {p: None for p in range(partitions)}
        for tp, om in res.items():
            if tp.topic == topic:
                out[tp.partition] = om.offset if om.offset >= 0 else None
        return out

    def delete(self, groups: list[str]) -> dict[str, str | None]:
        return {g: (None if r == "OK" else r) for g, r in self.a.delete_groups(groups).items()}


def admin_for(client: str, bootstrap: str, teardown):
    """That client's admin, closed at the end of the test."""
    admin = ConfluentAdmin(bootstrap) if client == "confluent" else KafkaPythonAdmin(bootstrap)
    teardown(admin.close)
    return admin


def wait_committed(admin, group: str, load: Load, timeout: float = GROUP_WAIT_S) -> dict:
    """Waits until the group's committed offsets equal the end of every partition."""
    ends = load.ends()
    last = {}

    def ok():
        last["c"] = admin.offsets(group, load.topic, load.partitions)
        return last["c"] == ends

    try:
        wait_until(ok, timeout=timeout, interval=0.2, what=f"{group}: committed offsets at the end offsets")
    except AssertionError as e:
        raise AssertionError(f"{e}: committed {last.get('c')}, ends {ends}") from None
    return ends


# --------------------------------------------------------------------------- 1. resume after commit


@pytest.mark.parametrize("client,protocol", MEMBER_KINDS)
def test_new_member_resumes_after_committed_offsets(floe, teardown, client, protocol):
    """A consumer subscribes, consumes all 300 records of 3 partitions, commits (explicitly:
    enable.auto.commit off) and closes. The committed offsets are the end offsets. 150 more
    records; a new consumer in the same group consumes exactly those: nothing already committed
    is delivered again, nothing is missing. (Consumer protocol: the commits are OffsetCommit v9
    naming the member's epoch, and the new member's OffsetFetch names its own.)"""
    topic, group = f"resume-{client}-{protocol}", f"g-resume-{client}-{protocol}"
    create_topic(floe.bootstrap, topic, 3)
    load = Load(floe.bootstrap, topic, 3, "resume")
    teardown(load.close)
    load.produce(300)
    first = dict(load.acked)
    manual = dict(auto_commit=False, commit_each_batch=False, protocol=protocol)
    a = MemberThread(spec(client, floe.bootstrap, group, topic, "floe-e2e-resume-a", **manual), "a")
    teardown(a.close)
    wait_consumed(load, [a])
    assert a.call(lambda m: m.commit()) is None, f"commit failed: {a.summary()}"
    admin = admin_for("confluent", floe.bootstrap, teardown)
    assert admin.offsets(group, topic, 3) == {0: 100, 1: 100, 2: 100}
    a.close()

    load.produce(150)
    b = MemberThread(spec(client, floe.bootstrap, group, topic, "floe-e2e-resume-b", **manual), "b")
    teardown(b.close)
    wait_consumed(load, [a, b])
    assert b.call(lambda m: m.commit()) is None, f"commit failed: {b.summary()}"
    assert admin.offsets(group, topic, 3) == {0: 150, 1: 150, 2: 150}
    b.close()

    exactly_once(load, [a, b], f"{client}/{protocol}")
    assert {(p, off) for p, off, _ in a.records} == set(first), "the first consumer read other records than the first 300"
    assert {(p, off) for p, off, _ in b.records} == set(load.acked) - set(first), (
        f"the second consumer did not start exactly at the committed offsets: it read "
        f"{sorted((p, off) for p, off, _ in b.records if (p, off) in first)[:10]} (committed before it joined)")


# --------------------------------------------------------------------------- 2. split, leave, crash


@pytest.mark.parametrize("client,protocol", MEMBER_KINDS)
def test_members_split_partitions_through_leave_and_crash(floe, teardown, client, protocol, tmp_path):
    """Three members (two threads, one child process) split a 12-partition topic 4/4/4 while a
    producer writes. One member closes (LeaveGroup; consumer protocol: a heartbeat with epoch -1):
    the other two take its partitions (6/6). The child is SIGKILLed, so the gateway only learns of
    it when its 6 s session expires: the survivor then gets all 12. Every acknowledged record is
    consumed; the only duplicates allowed are records the child consumed (it may have died before
    committing them). The classic members use their default assignor (range), the consumer
    protocol the gateway's default (uniform); both split 12 partitions evenly."""
    topic, group = f"split-{client}-{protocol}", f"g-split-{client}-{protocol}"
    create_topic(floe.bootstrap, topic, 12)
    load = Load(floe.bootstrap, topic, 12, "split").start()
    teardown(load.close)
    child = MemberProcess(spec(client, floe.bootstrap, group, topic, "floe-e2e-split-child", protocol=protocol), "child",
                          tmp_path / "child.log")
    teardown(child.close)
    stays = MemberThread(spec(client, floe.bootstrap, group, topic, "floe-e2e-split-stays", protocol=protocol), "stays")
    teardown(stays.close)
    leaves = MemberThread(spec(client, floe.bootstrap, group, topic, "floe-e2e-split-leaves", protocol=protocol), "leaves")
    teardown(leaves.close)
    views = [stays, leaves, child]

    wait_split(views, 12, sizes=[4, 4, 4])
    wait_consumed(load, views)

    leaves.close()
    wait_split([stays, child], 12, sizes=[6, 6])
    # two records per partition produced after the split: the child consumes from its new partitions
    wait_consumed(load, views, below=load.sent + 24)

    child.kill9()
    crashed_with = sorted(child.assignment)
    wait_split([stays], 12, sizes=[12])
    wait_consumed(load, views)
    load.stop()
    wait_consumed(load, views)
    admin = admin_for("confluent", floe.bootstrap, teardown)
    wait_committed(admin, group, load)
    stays.close()

    dups = check_no_loss(load, views, f"{client}/{protocol}")
    by_child = {(p, off) for p, off, _ in child.records}
    not_child = sorted(po for po in dups if po not in by_child)
    assert not not_child, (f"{len(not_child)} records consumed twice that the crashed child never had, first "
                           f"{not_child[:10]}; commit errors: stays {stays.commit_errors[:3]}, "
                           f"leaves {leaves.commit_errors[:3]}")
    print(f"\n{client}/{protocol}: {len(load.acked)} records; child crashed owning {crashed_with}; "
          f"{len(dups)} records consumed again after the crash")


# --------------------------------------------------------------------------- 3. static membership


STATIC_CASES = [
    *(pytest.param(c, "classic", a, id=f"{c}-classic-{a}") for c in CLIENTS for a in ("range", "cooperative-sticky")),
    pytest.param("confluent", "consumer", "uniform", id="confluent-consumer-uniform"),
]


@pytest.mark.parametrize("client,protocol,assignor", STATIC_CASES)
def test_static_member_restart_keeps_partitions_without_rebalance(floe, teardown, client, protocol, assignor):
    """Two static members (group.instance.id "static-a", then "static-b") split 6 partitions.
    static-b closes (a static member does not send LeaveGroup) and a new consumer with the same
    group.instance.id starts at once, well within the 6 s session: it gets the same partitions,
    and the group does not rebalance: static-a gets no revoke/assign callback and keeps
    consuming, DescribeGroups shows the same assignment with static-b's new member id. Nothing
    is lost or consumed twice (static-b committed on close, its successor resumes there).

    static-a joins first so that it is the group's leader (Kafka elects the first member to
    join) and the member that restarts is a follower: a restarted static *leader* is given the
    members to assign again, and with JoinGroup below v9 (no KIP-814 skip_assignment; kafka-python
    uses v7) kafka-python computes that assignment before it has the topic's metadata and then
    rejoins to fix it, a rebalance it would cause on Kafka too.

    With cooperative-sticky the restarted member's subscription differs from its predecessor's
    (it owns no partitions yet); Kafka still does not rebalance, because the group's protocol
    stays the same (GroupCoordinator: "Static member which joins during Stable stage and doesn't
    affect selectProtocol will not trigger rebalance").

    Consumer protocol: static-b's close is a heartbeat with member epoch -2, after which the
    coordinator keeps its partitions (assigned to no one else) until its session times out; the
    new consumer's first heartbeat with the same group.instance.id takes them over, with static-b's
    epoch, and the group epoch does not move."""
    topic, group = f"static-{client}-{protocol}-{assignor}", f"g-static-{client}-{protocol}-{assignor}"
    create_topic(floe.bootstrap, topic, 6)
    load = Load(floe.bootstrap, topic, 6, "static").start(per_tick=6)
    teardown(load.close)
    kw = dict(assignor=assignor, protocol=protocol)
    a = MemberThread(spec(client, floe.bootstrap, group, topic, "floe-e2e-static-a", instance_id="static-a", **kw), "a")
    teardown(a.close)
    wait_split([a], 6)
    b = MemberThread(spec(client, floe.bootstrap, group, topic, "floe-e2e-static-b", instance_id="static-b", **kw), "b")
    teardown(b.close)
    part_a, part_b = wait_split([a, b], 6, sizes=[3, 3])
    wait_consumed(load, [a, b])
    admin = admin_for(client, floe.bootstrap, teardown)
    before = admin.describe(group)
    assert before.state == "stable", before
    ids_before = {m.instance_id: m for m in before.members}
    assert set(ids_before) == {"static-a", "static-b"}, before.members
    wait_quiet([a, b])
    a_events = list(a.events)

    b.close()
    b2 = MemberThread(spec(client, floe.bootstrap, group, topic, "floe-e2e-static-b2", instance_id="static-b", **kw), "b2")
    teardown(b2.close)
    wait_until(lambda: check([a, b2]) or b2.assignment == part_b, timeout=GROUP_WAIT_S,
               what=f"the restarted static-b to get {sorted(part_b)} back")
    # Several heartbeat rounds of static-a (500 ms) in which the group would have told it to rejoin.
    wait_consumed(load, [a, b, b2], below=load.sent + 6 * 20)
    assert a.assignment == part_a, f"static-a's partitions changed: {a.summary()}"
    assert a.events == a_events, (f"static-a was rebalanced when static-b was replaced: callbacks "
                                  f"{[(k, p) for _, k, p in a.events[len(a_events):]]}")
    assigned = [p for _, k, p in b2.events if k == "assign"]
    assert assigned == [sorted(part_b)], f"the restarted static-b was assigned {assigned}: {b2.summary()}"
    after = admin.describe(group)
    assert after.state == "stable", after
    ids_after = {m.instance_id: m for m in after.members}
    assert set(ids_after) == {"static-a", "static-b"}, after.members
    assert ids_after["static-a"] == ids_before["static-a"], (ids_before["static-a"], ids_after["static-a"])
    assert ids_after["static-b"].member_id != ids_before["static-b"].member_id, "static-b kept its old member id"
    assert ids_after["static-b"].partitions == ids_before["static-b"].partitions == part_b, (before, after)

    load.stop()
    wait_consumed(load, [a, b, b2])
    exactly_once(load, [a, b, b2], f"{client}/{protocol}/{assignor}")


# --------------------------------------------------------------------------- 4. assignors


INCREMENTAL_CASES = [
    *(pytest.param(c, "classic", "cooperative-sticky", id=f"{c}-classic-cooperative-sticky") for c in CLIENTS),
    pytest.param("confluent", "consumer", "uniform", id="confluent-consumer-uniform"),
]


@pytest.mark.parametrize("client,protocol,assignor", INCREMENTAL_CASES)
def test_incremental_rebalance_moves_only_the_partitions_that_change_owner(floe, teardown, client, protocol, assignor):
    """An incremental rebalance (classic: partition.assignment.strategy cooperative-sticky;
    consumer protocol: inherent, here with the gateway's sticky uniform assignor): one member
    consumes all 12 partitions while a producer writes; a second member joins. The first member's
    revoke callbacks name only the 6 partitions that move to the newcomer (never all 12), it keeps
    the other 6 assigned throughout and consumes each of them exactly once from offset 0 to the
    end, with no gap. No record is lost or consumed twice."""
    topic, group = f"incr-{client}-{protocol}", f"g-incr-{client}-{protocol}"
    create_topic(floe.bootstrap, topic, 12)
    load = Load(floe.bootstrap, topic, 12, "incr").start()
    teardown(load.close)
    kw = dict(assignor=assignor, protocol=protocol)
    first = MemberThread(spec(client, floe.bootstrap, group, topic, "floe-e2e-incr-1", **kw), "first")
    teardown(first.close)
    wait_split([first], 12)
    wait_consumed(load, [first])

    joined_at = time.monotonic()
    second = MemberThread(spec(client, floe.bootstrap, group, topic, "floe-e2e-incr-2", **kw), "second")
    teardown(second.close)
    kept, moved = wait_split([first, second], 12, sizes=[6, 6])
    wait_consumed(load, [first, second])
    load.stop()
    wait_consumed(load, [first, second])

    revoked = [p for k, p in first.events_since(joined_at) if k == "revoke"]
    assert revoked, f"the first member got no revoke callback: {first.summary()}"
    assert set().union(*map(set, revoked)) == moved, (
        f"revoked {revoked}, but the partitions that moved are {sorted(moved)} (incremental revocation)")
    assert not any(k == "lost" for k, _ in first.events_since(joined_at)), first.summary()
    full = next(i for i, (_, a) in enumerate(first.history) if len(a) == 12)
    gaps = [(round(t - joined_at, 2), sorted(a)) for t, a in first.history[full:] if not kept <= a]
    assert not gaps, f"partitions {sorted(kept)} stayed with the first member but were unassigned at times: {gaps[:5]}"
    ends = load.ends()
    for p in sorted(kept):
        offs = [off for q, off, _ in first.records if q == p]
        assert offs == list(range(ends[p])), (f"kept partition {p}: the first member did not consume 0..{ends[p] - 1} "
                                              f"exactly once in order (got {len(offs)} records)")
    exactly_once(load, [first, second], f"{client}/{protocol}")


ASSIGNOR_RECORDS = 120


ASSIGNOR_CASES = [
    *(pytest.param(c, "classic", a, id=f"{c}-classic-{a}") for a in ("range", "roundrobin") for c in [*CLIENTS, "mixed"]),
    *(pytest.param("confluent", "consumer", a, id=f"confluent-consumer-{a}") for a in ("uniform", "range")),
]


@pytest.mark.parametrize("client,protocol,assignor", ASSIGNOR_CASES)
def test_assignor_gives_complete_disjoint_assignment(floe, teardown, client, protocol, assignor):
    """Three members configured with one assignor split 12 partitions 4/4/4, disjoint and
    complete, shaped as that assignor shapes them (range: consecutive partitions; roundrobin:
    every third; uniform: only balanced, its shape depends on the order the members joined in).
    Classic protocol: DescribeGroups names the assignor as the group's protocol. Consumer protocol
    (group.remote.assignor): the gateway runs the assignor. Every record is consumed exactly once.
    "mixed": confluent-kafka, kafka-python and confluent-kafka members in one group (their
    subscriptions are encoded by different libraries)."""
    topic, group = f"assign-{client}-{protocol}-{assignor}", f"g-assign-{client}-{protocol}-{assignor}"
    create_topic(floe.bootstrap, topic, 12)
    load = Load(floe.bootstrap, topic, 12, "assign")
    teardown(load.close)
    load.produce(ASSIGNOR_RECORDS)
    views = []
    for n in range(3):
        c = client if client != "mixed" else CLIENTS[n % 2]
        v = MemberThread(spec(c, floe.bootstrap, group, topic, f"floe-e2e-assign-{n}", assignor=assignor,
                              protocol=protocol), f"m{n}")
        teardown(v.close)
        views.append(v)
    split = wait_split(views, 12, sizes=[4, 4, 4])
    for a in split:
        ps = sorted(a)
        if assignor == "range":
            assert ps == list(range(ps[0], ps[0] + 4)), f"range gave non-consecutive partitions {ps}: {split}"
        elif assignor == "roundrobin":
            assert all(q - p == 3 for p, q in zip(ps, ps[1:])), f"roundrobin did not give every third partition: {split}"
    wait_consumed(load, views)
    g = admin_for("confluent", floe.bootstrap, teardown).describe(group)
    assert g.state == "stable", g
    if protocol == "classic":
        assert g.assignor == assignor, g
    assert sorted(sorted(m.partitions) for m in g.members) == sorted(sorted(a) for a in split), (g.members, split)
    exactly_once(load, views, f"{client}/{protocol}/{assignor}")


# --------------------------------------------------------------------------- 5. admin


ADMIN_PARTITIONS = 4
ADMIN_RECORDS = 200


@pytest.mark.parametrize("client,protocol", MEMBER_KINDS)
def test_admin_lists_describes_and_deletes_groups(floe, teardown, client, protocol):
    """The admin APIs of each client on a group with 2 members (assignor range) and on a
    commit-only group (a consumer that assigns its partitions and commits, no members: Empty).
    ListGroups: both, with their states; the state filter Stable returns the active group only,
    Empty the other only. DescribeGroups: Stable, consumer protocol type, the two members with
    their client ids, hosts and disjoint complete assignments (confluent-kafka also reports the
    coordinator: this gateway); classic: the assignor range as the group's protocol. OffsetFetch:
    the end offsets. A consumer outside the group cannot commit to it while it has members
    (UNKNOWN_MEMBER_ID). DeleteGroups fails with NON_EMPTY_GROUP while members exist; once they
    closed it succeeds, the offsets are gone (a new member starts again from the beginning) and
    the group is no longer listed; deleting an unknown group fails with GROUP_ID_NOT_FOUND.

    Consumer protocol: librdkafka's describe_consumer_groups asks ConsumerGroupDescribe first;
    Floe does not offer it (ApiVersions), so librdkafka falls back to DescribeGroups, where Floe
    reports the KIP-848 members and their assignments as a classic consumer group's."""
    topic = f"admin-{client}-{protocol}"
    group, simple = f"g-admin-{client}-{protocol}", f"g-admin-simple-{client}-{protocol}"
    create_topic(floe.bootstrap, topic, ADMIN_PARTITIONS)
    load = Load(floe.bootstrap, topic, ADMIN_PARTITIONS, "admin")
    teardown(load.close)
    load.produce(ADMIN_RECORDS)
    admin = admin_for(client, floe.bootstrap, teardown)

    c = CkConsumer({"bootstrap.servers": floe.bootstrap, "group.id": simple, "client.id": "floe-e2e-simple",
                    "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 42)], asynchronous=False)
    finally:
        c.close()

    members = [MemberThread(spec(client, floe.bootstrap, group, topic, f"floe-e2e-admin-{n}", assignor="range",
                                 protocol=protocol), f"m{n}")
               for n in range(2)]
    for m in members:
        teardown(m.close)
    split = wait_split(members, ADMIN_PARTITIONS, sizes=[2, 2])
    wait_consumed(load, members)
    ends = wait_committed(admin, group, load)

    listed = admin.list()
    assert listed.get(group) == "stable" and listed.get(simple) == "empty", listed
    stable, empty = admin.list(states=["stable"]), admin.list(states=["empty"])
    assert group in stable and simple not in stable, stable
    assert simple in empty and group not in empty, empty

    g = admin.describe(group)
    assert g.state == "stable" and g.consumer_protocol, g
    if protocol == "classic":
        assert g.assignor == "range", g
    assert sorted(m.client_id for m in g.members) == ["floe-e2e-admin-0", "floe-e2e-admin-1"], g.members
    assert all(m.member_id and m.host and m.instance_id is None for m in g.members), g.members
    by_client = {m.client_id: m.partitions for m in g.members}
    assert [by_client[f"floe-e2e-admin-{n}"] for n in range(2)] == split, (g.members, split)
    if client == "confluent":
        assert g.coordinator == (0, "127.0.0.1", floe.port), g.coordinator
    s = admin.describe(simple)
    assert s.state == "empty" and not s.members and not s.consumer_protocol, s

    assert admin.offsets(group, topic, ADMIN_PARTITIONS) == ends
    assert admin.offsets(simple, topic, ADMIN_PARTITIONS) == {0: 42, 1: None, 2: None, 3: None}
    refused = outsider_commit(client, floe.bootstrap, group, topic)
    assert refused == ("UNKNOWN_MEMBER_ID" if client == "confluent" else "CommitFailedError"), (
        f"a consumer outside the group committed to it while it has members: {refused}")
    assert admin.offsets(group, topic, ADMIN_PARTITIONS) == ends, "a refused commit changed the offsets"

    assert admin.delete([group]) == {group: "NON_EMPTY_GROUP" if client == "confluent" else "NonEmptyGroupError"}
    assert admin.list().get(group) == "stable", "a refused delete changed the group"
    for m in members:
        m.close()
    wait_until(lambda: admin.describe(group).state == "empty", timeout=TIMEOUT, what=f"{group} empty after its members left")
    assert admin.delete([group, simple]) == {group: None, simple: None}
    # Deleted for good: not listed again a moment later either (a coordinator still storing the group's
    # last membership change must not bring it back): for 1 s, ten ticks of the gateways' group timer.
    deadline = time.monotonic() + 1.0
    while True:
        listed = admin.list()
        assert group not in listed and simple not in listed, f"listed after a successful DeleteGroups: {listed}"
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert admin.offsets(group, topic, ADMIN_PARTITIONS) == {p: None for p in range(ADMIN_PARTITIONS)}
    assert admin.offsets(simple, topic, ADMIN_PARTITIONS) == {p: None for p in range(ADMIN_PARTITIONS)}
    missing = "GROUP_ID_NOT_FOUND" if client == "confluent" else "GroupIdNotFoundError"
    assert admin.delete([group]) == {group: missing}

    again = MemberThread(spec(client, floe.bootstrap, group, topic, "floe-e2e-admin-again", protocol=protocol), "again")
    teardown(again.close)
    wait_consumed(load, [again])
    assert sorted((p, off) for p, off, _ in again.records) == sorted(load.acked), (
        "a member of the deleted group did not start from the beginning, exactly once")


def outsider_commit(client: str, bootstrap: str, group: str, topic: str) -> str | None:
    """A consumer that assigns partition 0 itself and commits offset 1 in `group` (no member id,
    generation -1); the error it gets (None if the commit succeeded)."""
    if client == "confluent":
        c = CkConsumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "floe-e2e-outsider",
                        "enable.auto.commit": False})
        try:
            c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
            return None
        except KafkaException as e:
            return e.args[0].name()
        finally:
            c.close()
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition
    from kafka.structs import OffsetAndMetadata

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id="floe-e2e-outsider",
                      enable_auto_commit=False, request_timeout_ms=15_000)
    try:
        tp = KTopicPartition(topic, 0)
        c.assign([tp])
        c.commit({tp: OffsetAndMetadata(1, "", -1)}, timeout_ms=10_000)
        return None
    except Exception as e:  # noqa: BLE001 - the error is the result
        return type(e).__name__
    finally:
        c.close()


# --------------------------------------------------------------------------- 6. coordinator failover


FAILOVER_PARTITIONS = 6
# How long a member stops polling so that a rebalance waits for it while the coordinator is killed.
PAUSE_S = 5.0


@pytest.mark.parametrize("phase", ["stable", "rebalancing"])
@pytest.mark.parametrize("client,protocol", MEMBER_KINDS)
def test_group_survives_coordinator_gateway_kill9(cluster, teardown, client, protocol, phase):
    """Three gateways; a group of two members (bootstrap.servers lists all three gateways)
    consumes 6 partitions while a producer writes. The gateway coordinating the group (from
    DescribeGroups) is SIGKILLed, either while the group is Stable or while it rebalances: a third
    member has joined and the group waits for a member that is not polling (classic:
    PreparingRebalance, the member must rejoin; consumer protocol: Reconciling, the member must
    revoke the partition that moves to the newcomer). Another gateway then coordinates the group:
    Stable with every member, the partitions split evenly, consumption goes on, every acknowledged
    record is consumed and the group's committed offsets reach the end of every partition."""
    for n in range(3):
        cluster.start(n)
    bootstrap = cluster.bootstrap()
    topic, group = f"failover-{client}-{protocol}-{phase}", f"g-failover-{client}-{protocol}-{phase}"
    create_topic(bootstrap, topic, FAILOVER_PARTITIONS)
    wait_for_leaders(cluster, topic, FAILOVER_PARTITIONS, {0, 1, 2})
    load = Load(bootstrap, topic, FAILOVER_PARTITIONS, "failover").start(per_tick=6)
    teardown(load.close)
    members = [MemberThread(spec(client, bootstrap, group, topic, f"floe-e2e-failover-{n}", protocol=protocol), f"m{n}")
               for n in range(2)]
    for m in members:
        teardown(m.close)
    wait_split(members, FAILOVER_PARTITIONS, sizes=[3, 3])
    wait_consumed(load, members)
    admin = admin_for("confluent", bootstrap, teardown)
    before = admin.describe(group)
    victim = before.coordinator[0]
    assert victim in (0, 1, 2) and before.state == "stable", before
    if phase == "rebalancing":
        members[1].pause(PAUSE_S)
        joiner = MemberThread(spec(client, bootstrap, group, topic, "floe-e2e-failover-2", protocol=protocol), "m2")
        teardown(joiner.close)
        members.append(joiner)
        # confluent-kafka's ConsumerGroupState has no Reconciling: kafka-python's admin reports the name as sent
        raw = admin_for("kafka-python", bootstrap, teardown)
        waiting = "preparingrebalance" if protocol == "classic" else "reconciling"
        wait_until(lambda: check(members) or raw.describe(group).state == waiting, timeout=TIMEOUT,
                   what=f"{group} {waiting} for the third member")

    killed_at = time.monotonic()
    cluster.kill9(victim)
    survivors = admin_for("confluent", cluster.bootstrap(), teardown)
    last = {}

    def recovered():
        try:
            g = survivors.describe(group)
        except AssertionError as e:  # retriable errors beyond their budget: try again
            last["g"] = str(e)
            return None
        last["g"] = g
        return g.coordinator[0] != victim and g.state == "stable" and len(g.members) == len(members)

    wait_until(recovered, timeout=GROUP_WAIT_S, interval=0.5,
               what=f"{group} stable with {len(members)} members on a gateway other than gw-{victim} (last: {last.get('g')})")
    wait_split(members, FAILOVER_PARTITIONS, sizes=[6 // len(members)] * len(members))
    wait_consumed(load, members)
    load.stop()
    wait_consumed(load, members)
    wait_committed(survivors, group, load)
    dups = check_no_loss(load, members, f"{client}/{protocol} failover")
    after = survivors.describe(group)
    resumed = {m.member_id for m in before.members} <= {m.member_id for m in after.members}
    # Kafka keeps a group's members and generation when its coordinator moves; a member that could not
    # reach any coordinator for session.timeout.ms rejoins (new member id, rebalance): printed, not failed.
    print(f"\n{client}/{protocol}/{phase}: coordinator gw-{victim} killed; now gw-{after.coordinator[0]}; members kept "
          f"their ids: {resumed}; {len(load.acked)} records, {len(dups)} consumed twice; rebalance callbacks "
          f"after the kill: {[(m.name, m.events_since(killed_at)) for m in members]}")


# --------------------------------------------------------------------------- 7. protocols do not mix


MIXED_PARTITIONS = 4


@pytest.mark.parametrize("first", ["classic", "consumer"], ids=["classic-first", "consumer-first"])
def test_classic_and_consumer_protocol_members_cannot_share_a_group(floe, teardown, first):
    """A confluent-kafka member of one protocol owns all 4 partitions of a group while a producer
    writes; a second confluent-kafka member subscribes to the same group with the other protocol.
    The gateway refuses it with INCONSISTENT_GROUP_PROTOCOL (Floe does not convert a group between
    protocols), which librdkafka surfaces on poll: a classic JoinGroup's error is a consumer error
    and librdkafka keeps retrying the join; a ConsumerGroupHeartbeat's is a fatal error (as in
    Kafka's Java client). The second member never gets a partition or a record; the first keeps
    all 4 without a rebalance callback, DescribeGroups shows it alone, and every record is
    consumed by it exactly once."""
    second = "consumer" if first == "classic" else "classic"
    topic, group = f"mixed-protocols-{first}", f"g-mixed-protocols-{first}"
    create_topic(floe.bootstrap, topic, MIXED_PARTITIONS)
    load = Load(floe.bootstrap, topic, MIXED_PARTITIONS, "mixedproto").start(per_tick=4)
    teardown(load.close)
    owner = MemberThread(spec("confluent", floe.bootstrap, group, topic, "floe-e2e-proto-owner", protocol=first), "owner")
    teardown(owner.close)
    wait_split([owner], MIXED_PARTITIONS)
    wait_consumed(load, [owner])
    wait_quiet([owner])
    owner_events = list(owner.events)

    intruder = MemberThread(spec("confluent", floe.bootstrap, group, topic, "floe-e2e-proto-intruder", protocol=second),
                            "intruder")
    teardown(lambda: intruder.close(expect_error=True))

    def refused():
        owner.check()
        if second == "consumer":
            return intruder.error is not None
        return any("INCONSISTENT_GROUP_PROTOCOL" in e for e in intruder.consume_errors)

    wait_until(refused, timeout=TIMEOUT, what=f"the {second}-protocol member to be refused")
    if second == "consumer":
        err = intruder.error
        assert isinstance(err, KafkaException) and err.args[0].code() == KafkaError._FATAL \
            and "Inconsistent group protocol" in err.args[0].str(), f"the intruder failed otherwise: {err!r}"
    else:
        intruder.check()
        other = [e for e in intruder.consume_errors if "INCONSISTENT_GROUP_PROTOCOL" not in e]
        assert not other, f"the intruder got other errors too: {other}"
    # A few more heartbeats of the owner (500 ms) in which a rebalance would have reached it.
    wait_consumed(load, [owner], below=load.sent + 4 * 20)
    assert intruder.assignment == frozenset() and not intruder.records, intruder.summary()
    assert owner.assignment == frozenset(range(MIXED_PARTITIONS)), owner.summary()
    assert owner.events == owner_events, (f"the owner was rebalanced when the {second}-protocol member tried to "
                                          f"join: {[(k, p) for _, k, p in owner.events[len(owner_events):]]}")
    g = admin_for("confluent", floe.bootstrap, teardown).describe(group)
    assert g.state == "stable" and [m.client_id for m in g.members] == ["floe-e2e-proto-owner"], g
    load.stop()
    wait_consumed(load, [owner])
    exactly_once(load, [owner, intruder], f"{first} first")
