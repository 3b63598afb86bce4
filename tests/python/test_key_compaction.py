"""Key compaction (`cleanup.policy=compact`) as a Kafka user sees it, through the floe binary.

Topics are created with the Admin API; a confluent-kafka producer writes several flushes of keyed
records (current CreateTime timestamps; each record carries a small compressible header, so every
codec really compresses); then one compaction pass runs from the command line,

    floe compact --once --object-delete-delay 1h --data-dir <the gateway's> [its backend flags]

beside the running gateway (no object is deleted during a test). A pass cleans only what the
partition's owner has checkpointed, so the gateway checkpoints every 200 ms and the tests wait
CHECKPOINTED seconds after producing (no Kafka-visible signal says a checkpoint happened). The
gateway runs no pass of its own (`--compact-interval 0s`), and adopts what a pass stored within
200 ms (`--retention-check-interval`), so consumers of the live gateway see the cleaned log: the
tests poll until they do. Checks that nothing was cleaned read the log after a graceful restart,
from what the pass stored, instead of waiting an arbitrary time.

What it proves (Kafka's cleaning rules):
  - per key only the record with the highest offset stays, at exactly its original offset and
    byte-identical (key, value, headers, timestamp), for uncompressed, gzip, snappy, lz4 and zstd
    batches, read by confluent-kafka (a new group, auto.offset.reset=earliest) and kafka-python;
    the low and high watermarks do not move; the cleaned log survives a restart and takes new
    records at the next offsets;
  - a tombstone stays (and its key's older values go) while it is younger than
    `delete.retention.ms`, and goes with them once older;
  - nothing is cleaned while the dirty part is below `min.cleanable.dirty.ratio` (default 0.5) or
    younger than `min.compaction.lag.ms`, and it is once the config is lowered;
  - `cleanup.policy=delete` (the default) topics are never key-compacted; `compact,delete` ones are;
  - a consumer group that committed mid-log before cleaning resumes at its committed offset and
    gets exactly the surviving records from there, also when the committed record was removed.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from typing import NamedTuple

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

from helpers import CODECS

pytestmark = pytest.mark.floe_args(
    "--checkpoint-interval", "200ms",  # a pass cleans only what the owner checkpointed
    "--compact-interval", "0s",  # the gateway runs no pass itself: only `floe compact --once` cleans
    "--retention-check-interval", "200ms",  # the owner adopts a pass's index within 200 ms (default 5 min)
    "--group-initial-rebalance-delay", "500ms",  # subscribing consumers get their partition sooner
)

TIMEOUT = 15.0  # one admin or client request
READ_TIMEOUT_S = 60.0  # reading a whole (small) log
CLEANED_TIMEOUT_S = 60.0  # until the live gateway serves what a pass stored
PASS_TIMEOUT_S = 120.0  # one `floe compact --once`
CHECKPOINTED = 1.5  # > several checkpoint intervals (200 ms)

# Topic configs: key-compacted, cleaned by any pass (min.cleanable.dirty.ratio 0.5 by default).
COMPACT_NOW = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}
HEADERS = (("pad", b"compressible padding " * 4),)


class Row(NamedTuple):
    """A record as a consumer sees it."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple
    timestamp: int


def show(r: Row) -> str:
    value = "<tombstone>" if r.value is None else r.value.decode(errors="replace")
    return f"{r.offset}:{r.key.decode(errors='replace') if r.key else r.key}={value}"


# --------------------------------------------------------------------------- Kafka's cleaning rules


def cleaned(log: list[Row], tombstones_expired: bool = False) -> list[Row]:
    """What Kafka's cleaner leaves of `log`, a whole partition from offset 0, all of it
    checkpointed and older than min.compaction.lag.ms: per key the record with the highest offset,
    at its offset; a key whose latest record is a tombstone older than delete.retention.ms
    (`tombstones_expired`) disappears; the last record of the log stays whatever it is."""
    latest = {r.key: r for r in log}
    keep = {r.offset: r for r in latest.values() if not (tombstones_expired and r.value is None)}
    keep[log[-1].offset] = log[-1]
    return [keep[o] for o in sorted(keep)]


def diff(got: list[Row], expected: list[Row]) -> str:
    g = {r.offset: r for r in got}
    e = {r.offset: r for r in expected}
    lines = [f"read {len(got)} records, expected {len(expected)}"]
    if [r.offset for r in got] != sorted(g):
        lines.append(f"offsets not strictly increasing: {[r.offset for r in got][:40]}")
    missing = sorted(e.keys() - g.keys())
    if missing:
        lines.append(f"missing: {', '.join(show(e[o]) for o in missing[:20])}")
    extra = sorted(g.keys() - e.keys())
    if extra:
        lines.append(f"not expected: {', '.join(show(g[o]) for o in extra[:20])}")
    for o in [o for o in sorted(e.keys() & g.keys()) if e[o] != g[o]][:5]:
        lines.append(f"at offset {o}: got {g[o]!r}, expected {e[o]!r}")
    return "\n  ".join(lines)


def assert_log(got: list[Row], expected: list[Row], what: str) -> None:
    if got != expected:
        raise AssertionError(f"{what}: {diff(got, expected)}")


# --------------------------------------------------------------------------- clients


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "client.id": "floe-e2e-admin"})


def create_topic(admin: AdminClient, name: str, configs: dict) -> None:
    """One partition: every key, and so the whole log, in partition 0."""
    futs = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1, config=configs)],
                               operation_timeout=TIMEOUT, request_timeout=TIMEOUT)
    futs[name].result(timeout=TIMEOUT)


def set_config(admin: AdminClient, topic: str, name: str, value: str) -> None:
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)


def new_producer(bootstrap: str, codec: str = "none") -> Producer:
    return Producer({
        "bootstrap.servers": bootstrap,
        "client.id": "floe-e2e-producer",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": codec,
        "message.timeout.ms": 60_000,
    })


def produce(p: Producer, topic: str, records: list[tuple[str, str | None]]) -> list[Row]:
    """Produces `records` ((key, value); value None: a tombstone) in order to partition 0 and waits
    for every acknowledgement (so one call is one batch, one flush, apart from those before it).
    Returns them as Rows at their acknowledged offsets, which must follow on in send order."""
    rows: list[Row | None] = [None] * len(records)
    errors = []

    def delivered(i, row, err, msg):
        if err is not None:
            errors.append((row, err))
        else:
            rows[i] = row._replace(offset=msg.offset())

    for i, (key, value) in enumerate(records):
        ts = int(time.time() * 1000)
        row = Row(-1, key.encode(), None if value is None else value.encode(), HEADERS, ts)
        p.produce(topic, key=row.key, value=row.value, headers=list(HEADERS), timestamp=ts, partition=0,
                  on_delivery=lambda err, msg, i=i, row=row: delivered(i, row, err, msg))
        p.poll(0)
    assert p.flush(60) == 0, "records still unacknowledged after 60 s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    offsets = [r.offset for r in rows]
    assert offsets == list(range(offsets[0], offsets[0] + len(rows))), f"acknowledged offsets {offsets}"
    return rows


def read_log(bootstrap: str, topic: str) -> list[Row]:
    """Partition 0 from its start up to its end, as a consumer of a new group
    (auto.offset.reset=earliest) reads it."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "client.id": "floe-e2e-reader",
        "group.id": f"kc-reader-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "check.crcs": True,
    })
    try:
        # No offset: the group's committed one, of which there is none, so auto.offset.reset.
        c.assign([TopicPartition(topic, 0)])
        return poll_to_end(c, topic)
    finally:
        c.close()


def poll_to_end(c: Consumer, topic: str) -> list[Row]:
    """Polls until the consumer reaches the partition's end (PARTITION_EOF)."""
    rows = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error() is not None:
            if m.error().code() == KafkaError._PARTITION_EOF:
                return rows
            raise KafkaException(m.error())
        rows.append(Row(m.offset(), m.key(), m.value(), tuple(m.headers() or ()), m.timestamp()[1]))
    raise AssertionError(f"{topic}: end not reached within {READ_TIMEOUT_S:.0f}s; read {len(rows)} records, "
                         f"last {show(rows[-1]) if rows else None}")


def read_log_kafka_python(bootstrap: str, topic: str) -> list[Row]:
    """The same with kafka-python (its own batch decoder, its own handling of offset gaps)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=int(TIMEOUT * 1000),
                      client_id="floe-e2e-kafka-python", check_crcs=True)
    try:
        tp = KpTopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        end = c.end_offsets([tp])[tp]
        rows = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while (c.position(tp) or 0) < end:
            assert time.monotonic() < deadline, f"kafka-python: at {c.position(tp)} of {end} after {READ_TIMEOUT_S}s"
            for recs in c.poll(timeout_ms=500).values():
                rows += [Row(r.offset, r.key, r.value, tuple(r.headers), r.timestamp) for r in recs]
        return rows
    finally:
        c.close()


def watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    """(log start offset, high watermark) of partition 0."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "kc-watermarks", "enable.auto.commit": False})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT, cached=False)
    finally:
        c.close()


def group_member(bootstrap: str, group: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "client.id": f"floe-e2e-{group}",
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    })


# --------------------------------------------------------------------------- compaction passes


def wait_checkpointed() -> None:
    """A pass cleans only what the owner has checkpointed (every 200 ms here)."""
    time.sleep(CHECKPOINTED)


def compact_once(floe) -> str:
    """One `floe compact --once` on the gateway's backend; it must exit 0. Returns its report."""
    cmd = [str(floe.binary), "compact", "--once", "--object-delete-delay", "1h", "--log-level", "warn",
           "--data-dir", str(floe.data_dir), *floe.backend_args()]
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                             env=floe.child_env(), timeout=PASS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"floe compact did not finish within {PASS_TIMEOUT_S:.0f}s: {' '.join(cmd)}", pytrace=False)
    with open(floe.log_path, "a") as log:
        log.write(f"\n===== {' '.join(cmd)} (exit {res.returncode})\n{res.stdout}{res.stderr}")
    assert res.returncode == 0, f"floe compact failed (exit {res.returncode}): {' '.join(cmd)}\n{res.stdout}{res.stderr}"
    return res.stdout.strip()


def wait_cleaned(bootstrap: str, topic: str, expected: list[Row], report: str) -> None:
    """Polls until consumers of the live gateway read `expected` (its owner adopts what a pass
    stored within a retention check interval)."""
    deadline = time.monotonic() + CLEANED_TIMEOUT_S
    while True:
        got = read_log(bootstrap, topic)
        if got == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic}: after the pass, the live gateway still does not serve the cleaned "
                                 f"log within {CLEANED_TIMEOUT_S:.0f}s: {diff(got, expected)}\n  pass: {report}")
        time.sleep(0.2)


def key_versions(keys, version: int) -> list[tuple[str, str]]:
    """(key, value) of one round: key "k<i>", value "k<i>-v<version>", for each i of `keys`."""
    return [(f"k{i}", f"k{i}-v{version}") for i in keys]


def tombstones(keys) -> list[tuple[str, None]]:
    return [(f"k{i}", None) for i in keys]


# --------------------------------------------------------------------------- 1. latest value per key

KEYS = 20
VERSIONS = 10


@pytest.mark.parametrize("codec", CODECS)
def test_pass_keeps_the_latest_record_of_each_key_at_its_offset(floe, codec):
    """k0..k19, 10 versions each, interleaved (each round in a shuffled key order), one flush per
    round: after a pass each key appears once, with its last value at its original offset; the
    watermarks stay (0, 200); both clients read it; it survives a restart; new records follow on."""
    topic = f"kc-latest-{codec}"
    admin = admin_client(floe.bootstrap)
    create_topic(admin, topic, COMPACT_NOW)
    p = new_producer(floe.bootstrap, codec)
    rng = random.Random(f"kc-latest-{codec}")
    log: list[Row] = []
    for v in range(VERSIONS):
        keys = list(range(KEYS))
        rng.shuffle(keys)
        log += produce(p, topic, key_versions(keys, v))
    end = KEYS * VERSIONS
    assert [r.offset for r in log] == list(range(end))
    wait_checkpointed()
    assert_log(read_log(floe.bootstrap, topic), log, "before the pass")

    report = compact_once(floe)
    expected = cleaned(log)
    # The model: every key once, at the offset its last version was acknowledged at.
    assert sorted(r.value for r in expected) == sorted(f"k{i}-v{VERSIONS - 1}".encode() for i in range(KEYS))
    assert expected[-1] == log[-1]
    wait_cleaned(floe.bootstrap, topic, expected, report)
    assert watermarks(floe.bootstrap, topic) == (0, end), "log start and high watermark unchanged"
    assert_log(read_log_kafka_python(floe.bootstrap, topic), expected, f"kafka-python, {codec}")

    floe.restart()
    assert_log(read_log(floe.bootstrap, topic), expected, "after a restart")
    assert watermarks(floe.bootstrap, topic) == (0, end)

    # The cleaned log takes new records, at the next offsets.
    more = produce(new_producer(floe.bootstrap, codec), topic, key_versions(range(KEYS), VERSIONS))
    assert [r.offset for r in more] == list(range(end, end + KEYS)), "offsets go on from the high watermark"
    assert_log(read_log(floe.bootstrap, topic), expected + more, "new records after the cleaned ones")
    assert watermarks(floe.bootstrap, topic) == (0, end + KEYS)


# --------------------------------------------------------------------------- 2. tombstones


def test_tombstones_stay_for_delete_retention_ms_then_go(floe):
    """Keys k0, k2, .. k8 end with a tombstone. With delete.retention.ms one day the tombstones
    stay and their keys' older values go; with delete.retention.ms=0 the keys disappear entirely
    (the log ends with a value, so the last-record rule keeps no tombstone)."""
    kept, expired = "kc-tombstones-kept", "kc-tombstones-expired"
    admin = admin_client(floe.bootstrap)
    create_topic(admin, kept, {**COMPACT_NOW, "delete.retention.ms": str(24 * 3600 * 1000)})
    create_topic(admin, expired, {**COMPACT_NOW, "delete.retention.ms": "0"})
    p = new_producer(floe.bootstrap)
    deleted, live = range(0, 10, 2), range(1, 10, 2)
    logs = {}
    for topic in (kept, expired):
        log = []
        for v in range(3):
            log += produce(p, topic, key_versions(range(10), v))
        log += produce(p, topic, tombstones(deleted))
        logs[topic] = log
    logs[expired] += produce(p, expired, key_versions([1], 3))
    wait_checkpointed()
    report = compact_once(floe)

    expect_kept = cleaned(logs[kept])
    assert {r.key: r.value for r in expect_kept} == {
        **{f"k{i}".encode(): None for i in deleted}, **{f"k{i}".encode(): f"k{i}-v2".encode() for i in live}}
    wait_cleaned(floe.bootstrap, kept, expect_kept, report)

    expect_expired = cleaned(logs[expired], tombstones_expired=True)
    assert {r.key: r.value for r in expect_expired} == {
        **{f"k{i}".encode(): f"k{i}-v2".encode() for i in live}, b"k1": b"k1-v3"}
    wait_cleaned(floe.bootstrap, expired, expect_expired, report)

    for topic, log in logs.items():
        assert watermarks(floe.bootstrap, topic) == (0, len(log)), f"{topic}: watermarks unchanged"


# --------------------------------------------------------------------------- 3. when a pass cleans


def test_nothing_is_cleaned_below_min_cleanable_dirty_ratio(floe):
    """Default min.cleanable.dirty.ratio (0.5): 200 keys x 2 versions, all dirty: a pass cleans.
    5 new versions of existing keys (dirty: 5 of 205 records): a pass leaves them and the versions
    they supersede. Lowered to 0.01 (IncrementalAlterConfigs), the next pass cleans them."""
    topic = "kc-dirty-ratio"
    admin = admin_client(floe.bootstrap)
    create_topic(admin, topic, {"cleanup.policy": "compact"})
    p = new_producer(floe.bootstrap)
    log = produce(p, topic, key_versions(range(200), 0)) + produce(p, topic, key_versions(range(200), 1))
    wait_checkpointed()
    report = compact_once(floe)
    clean = cleaned(log)
    assert len(clean) == 200
    wait_cleaned(floe.bootstrap, topic, clean, report)

    dirty = produce(p, topic, key_versions(range(5), 2))
    wait_checkpointed()
    compact_once(floe)
    floe.restart()  # what the pass stored, as an owner loads it
    assert_log(read_log(floe.bootstrap, topic), clean + dirty, "dirty ratio ~2 % < 0.5: not cleaned")

    set_config(admin_client(floe.bootstrap), topic, "min.cleanable.dirty.ratio", "0.01")
    report = compact_once(floe)
    wait_cleaned(floe.bootstrap, topic, cleaned(clean + dirty), report)
    assert watermarks(floe.bootstrap, topic) == (0, len(log) + len(dirty))


def test_records_younger_than_min_compaction_lag_are_not_cleaned(floe):
    """min.compaction.lag.ms one hour: a pass removes nothing from records produced just now. Set
    to 0, the next pass cleans them."""
    topic = "kc-compaction-lag"
    admin = admin_client(floe.bootstrap)
    create_topic(admin, topic, {**COMPACT_NOW, "min.compaction.lag.ms": "3600000"})
    p = new_producer(floe.bootstrap)
    log = []
    for v in range(3):
        log += produce(p, topic, key_versions(range(KEYS), v))
    wait_checkpointed()
    compact_once(floe)
    floe.restart()
    assert_log(read_log(floe.bootstrap, topic), log, "younger than min.compaction.lag.ms: not cleaned")

    set_config(admin_client(floe.bootstrap), topic, "min.compaction.lag.ms", "0")
    report = compact_once(floe)
    wait_cleaned(floe.bootstrap, topic, cleaned(log), report)


# --------------------------------------------------------------------------- 4. cleanup.policy


def test_only_compact_policies_are_key_compacted(floe):
    """Three topics with the same records and min.cleanable.dirty.ratio 0.01: cleanup.policy unset
    (delete) and delete keep every version through a pass; compact,delete is cleaned."""
    topics = {
        "kc-policy-default": {"min.cleanable.dirty.ratio": "0.01"},
        "kc-policy-delete": {"cleanup.policy": "delete", "min.cleanable.dirty.ratio": "0.01"},
        "kc-policy-compact-delete": {"cleanup.policy": "compact,delete", "min.cleanable.dirty.ratio": "0.01"},
    }
    admin = admin_client(floe.bootstrap)
    p = new_producer(floe.bootstrap)
    logs = {}
    for topic, configs in topics.items():
        create_topic(admin, topic, configs)
        logs[topic] = [r for v in range(5) for r in produce(p, topic, key_versions(range(KEYS), v))]
    wait_checkpointed()
    compact_once(floe)
    floe.restart()
    assert_log(read_log(floe.bootstrap, "kc-policy-default"), logs["kc-policy-default"], "default policy (delete)")
    assert_log(read_log(floe.bootstrap, "kc-policy-delete"), logs["kc-policy-delete"], "cleanup.policy=delete")
    assert_log(read_log(floe.bootstrap, "kc-policy-compact-delete"), cleaned(logs["kc-policy-compact-delete"]),
               "cleanup.policy=compact,delete")
    for topic, log in logs.items():
        assert watermarks(floe.bootstrap, topic) == (0, len(log)), topic


# --------------------------------------------------------------------------- 5. consumer groups


def consume_and_commit(bootstrap: str, topic: str, group: str, upto: int) -> list[Row]:
    """A member of `group` (subscribed) consumes offsets 0..upto-1, commits `upto` and closes."""
    c = group_member(bootstrap, group)
    rows = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + READ_TIMEOUT_S
        while not rows or rows[-1].offset < upto - 1:
            assert time.monotonic() < deadline, f"{group}: read {len(rows)} records in {READ_TIMEOUT_S}s"
            m = c.poll(0.5)
            if m is None or (m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF):
                continue
            if m.error() is not None:
                raise KafkaException(m.error())
            rows.append(Row(m.offset(), m.key(), m.value(), tuple(m.headers() or ()), m.timestamp()[1]))
        c.commit(offsets=[TopicPartition(topic, 0, upto)], asynchronous=False)
    finally:
        c.close()
    return rows


def committed(bootstrap: str, topic: str, group: str) -> int:
    c = group_member(bootstrap, group)
    try:
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)
        return tp.offset
    finally:
        c.close()


def resume(bootstrap: str, topic: str, group: str) -> list[Row]:
    """A new member of `group` (subscribed) reads from the group's committed offset to the end."""
    c = group_member(bootstrap, group)
    try:
        c.subscribe([topic])
        return poll_to_end(c, topic)
    finally:
        c.close()


def test_group_resumes_after_its_committed_offset_on_the_cleaned_log(floe):
    """Offsets 0..29: k0..k9 three times; 30..39: k0..k4 twice more. Survivors: k5..k9 at 25..29,
    k0..k4 at 35..39. Before the pass, one group commits 27 (a survivor; 25 and 26 before it were
    consumed), another 31 (removed by the pass). After it, each group's new member gets exactly
    the survivors from its committed offset on: 27..29 and 35..39, and 35..39."""
    topic = "kc-group-resume"
    admin = admin_client(floe.bootstrap)
    create_topic(admin, topic, COMPACT_NOW)
    p = new_producer(floe.bootstrap)
    log = [r for v in range(3) for r in produce(p, topic, key_versions(range(10), v))]
    log += [r for v in range(3, 5) for r in produce(p, topic, key_versions(range(5), v))]
    expected = cleaned(log)
    assert [r.offset for r in expected] == [25, 26, 27, 28, 29, 35, 36, 37, 38, 39]

    commits = {"kc-resume-at-survivor": 27, "kc-resume-at-removed": 31}
    for group, at in commits.items():
        assert_log(consume_and_commit(floe.bootstrap, topic, group, at), log[:at], f"{group} before committing")
    wait_checkpointed()
    report = compact_once(floe)
    wait_cleaned(floe.bootstrap, topic, expected, report)

    for group, at in commits.items():
        assert committed(floe.bootstrap, topic, group) == at, f"{group}: cleaning leaves committed offsets alone"
        assert_log(resume(floe.bootstrap, topic, group), [r for r in expected if r.offset >= at],
                   f"{group} resuming at its committed offset {at}")
