"""End-to-end tests: confluent-kafka (librdkafka) against a real floe broker.

No consumer groups: librdkafka insists on a group.id, but every consumer here uses assign()
with explicit offsets, never subscribes and never commits.
"""

from __future__ import annotations

import functools
import threading
import time

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

from helpers import CODECS, assert_partitions_equal, group_expected, make_records, wait_until

RT_RECORDS = 20_000
TIMEOUT = 15.0


# --------------------------------------------------------------------------- helpers


def admin_client(bootstrap) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "client.id": "floe-e2e-admin"})


def create_topic(admin: AdminClient, name: str, partitions: int, configs=None):
    futs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                         config=configs or {})], operation_timeout=TIMEOUT,
                               request_timeout=TIMEOUT)
    futs[name].result(timeout=TIMEOUT)
    wait_until(lambda: topic_partitions(admin, name) == partitions, timeout=10,
               what=f"{name} with {partitions} partitions in metadata")


def topic_partitions(admin: AdminClient, name: str):
    md = admin.list_topics(timeout=TIMEOUT)
    t = md.topics.get(name)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def describe_topic_configs(admin: AdminClient, name: str) -> dict:
    res = ConfigResource(ResourceType.TOPIC, name)
    return admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)


def new_producer(bootstrap, **conf) -> Producer:
    cfg = {
        "bootstrap.servers": bootstrap,
        "client.id": "floe-e2e-producer",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 60_000,
    }
    cfg.update(conf)
    return Producer(cfg)


def new_consumer(bootstrap, **conf) -> Consumer:
    cfg = {
        "bootstrap.servers": bootstrap,
        "client.id": "floe-e2e-consumer",
        "group.id": "floe-e2e-unused-group",  # required by librdkafka; never joined or committed
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": False,
        "check.crcs": True,
    }
    cfg.update(conf)
    return Consumer(cfg)


def produce_all(p: Producer, topic: str, records, partition: int | None = None):
    """Produce records in order; returns [(partition, offset)] per record (index-aligned)."""
    placements: list = [None] * len(records)
    errors = []

    def on_delivery(i, err, msg):
        if err is not None:
            errors.append((i, err))
        else:
            placements[i] = (msg.partition(), msg.offset())

    for i, r in enumerate(records):
        kw = dict(key=r.key, value=r.value, headers=list(r.headers), timestamp=r.ts,
                  on_delivery=functools.partial(on_delivery, i))
        if partition is not None:
            kw["partition"] = partition
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    remaining = p.flush(60)
    assert remaining == 0, f"{remaining} messages still undelivered after flush(60)"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    assert all(pl is not None for pl in placements)
    return placements


def consume_all(c: Consumer, topic: str, partitions, expected_total: int, start: int | dict = 0,
                timeout: float = 60.0):
    """assign at explicit offsets, consume until expected_total or timeout, then check nothing extra."""
    starts = start if isinstance(start, dict) else {p: start for p in partitions}
    c.assign([TopicPartition(topic, p, starts[p]) for p in partitions])
    got: dict[int, list] = {}
    n = 0
    deadline = time.monotonic() + timeout
    while n < expected_total and time.monotonic() < deadline:
        for m in c.consume(num_messages=5000, timeout=0.5):
            assert m.error() is None, f"consume error: {m.error()}"
            ts_type, ts = m.timestamp()
            assert ts_type == TIMESTAMP_CREATE_TIME, f"timestamp type {ts_type} at {m.partition()}@{m.offset()}"
            got.setdefault(m.partition(), []).append(
                (m.offset(), m.key(), m.value(), tuple(m.headers() or ()), ts))
            n += 1
    assert n >= expected_total, f"consumed only {n}/{expected_total} from {topic} within {timeout}s"
    extra = [m for m in c.consume(num_messages=100, timeout=1.0) if m.error() is None]
    assert not extra, f"unexpected extra records: {[(m.partition(), m.offset()) for m in extra[:5]]}"
    return got


# --------------------------------------------------------------------------- produce / consume


@pytest.mark.parametrize("codec", CODECS)
def test_idempotent_produce_consume_roundtrip(bootstrap, codec):
    topic = f"ck-rt-{codec}"
    admin = admin_client(bootstrap)
    create_topic(admin, topic, 3)
    records = make_records(RT_RECORDS, seed=2000 + CODECS.index(codec), tag=f"ck-{codec}")

    p = new_producer(bootstrap, **{"compression.type": codec, "batch.size": 64 * 1024})
    placements = produce_all(p, topic, records)
    expected = group_expected(records, placements)
    assert len(expected) == 3, f"keys should spread over all 3 partitions, got {sorted(expected)}"

    c = new_consumer(bootstrap)
    try:
        got = consume_all(c, topic, range(3), RT_RECORDS)
        for part, rows in expected.items():
            assert c.get_watermark_offsets(TopicPartition(topic, part), timeout=TIMEOUT) == (0, len(rows))
    finally:
        c.close()
    assert_partitions_equal(expected, got, what=f"compression.type={codec}")


# --------------------------------------------------------------------------- admin


def test_create_topics_validate_only_does_not_create(bootstrap):
    admin = admin_client(bootstrap)
    name = "ck-validate-only"
    futs = admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1,
                                         config={"retention.ms": "60000"})],
                               validate_only=True, operation_timeout=TIMEOUT, request_timeout=TIMEOUT)
    assert futs[name].result(timeout=TIMEOUT) is None
    assert name not in admin.list_topics(timeout=TIMEOUT).topics

    # validate_only still reports errors: an existing topic name is rejected
    create_topic(admin, "ck-validate-existing", 1)
    futs = admin.create_topics([NewTopic("ck-validate-existing", num_partitions=1, replication_factor=1)],
                               validate_only=True, request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        futs["ck-validate-existing"].result(timeout=TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, ei.value

    # and a real create afterwards works
    create_topic(admin, name, 2)
    assert topic_partitions(admin, name) == 2


def test_incremental_alter_configs_then_describe(bootstrap):
    admin = admin_client(bootstrap)
    name = "ck-alter-configs"
    create_topic(admin, name, 1, {"retention.ms": "3600000"})

    before = describe_topic_configs(admin, name)
    assert before["retention.ms"].value == "3600000"
    assert ConfigSource(before["retention.ms"].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    default_retention_bytes = before["retention.bytes"].value

    res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET),
    ])
    admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)

    after = describe_topic_configs(admin, name)
    for k, v in {"retention.ms": "7200000", "retention.bytes": "1048576", "max.message.bytes": "2000000"}.items():
        assert after[k].value == v, f"{k}: {after[k]}"
        assert ConfigSource(after[k].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG, f"{k}: {after[k]}"

    # DELETE reverts a key to its default, leaving the others alone
    res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    reverted = describe_topic_configs(admin, name)
    assert reverted["retention.bytes"].value == default_retention_bytes, reverted["retention.bytes"]
    assert ConfigSource(reverted["retention.bytes"].source) != ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert reverted["retention.ms"].value == "7200000"
    assert reverted["max.message.bytes"].value == "2000000"

    # validate_only does not apply
    res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET),
    ])
    admin.incremental_alter_configs([res], validate_only=True, request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    assert describe_topic_configs(admin, name)["retention.ms"].value == "7200000"

    # an invalid value is rejected with INVALID_CONFIG and not applied
    res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", "not-a-number", incremental_operation=AlterConfigOpType.SET),
    ])
    with pytest.raises(KafkaException) as ei:
        admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG, ei.value
    assert describe_topic_configs(admin, name)["retention.ms"].value == "7200000"


# --------------------------------------------------------------------------- long poll


def test_delete_records_then_consumers_start_at_the_new_log_start(bootstrap):
    topic = "ck-delete-records"
    admin = admin_client(bootstrap)
    create_topic(admin, topic, 2)
    p = new_producer(bootstrap, **{"linger.ms": 0})
    for start in range(0, 20, 5):  # several flushes per partition
        produce_all(p, topic, make_records(5, seed=start, tag="dr"), partition=0)
    produce_all(p, topic, make_records(3, seed=99, tag="dr1"), partition=1)

    def delete(offsets):
        futs = admin.delete_records([TopicPartition(topic, part, off) for part, off in offsets],
                                    request_timeout=TIMEOUT, operation_timeout=TIMEOUT)
        return {tp.partition: f for tp, f in futs.items()}

    done = delete([(0, 7), (1, -1)])  # -1: everything so far
    assert done[0].result(timeout=TIMEOUT).low_watermark == 7
    assert done[1].result(timeout=TIMEOUT).low_watermark == 3
    with pytest.raises(KafkaException) as bad:
        delete([(0, 21)])[0].result(timeout=TIMEOUT)
    assert bad.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE

    c = new_consumer(bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (7, 20)
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=TIMEOUT) == (3, 3)
        # From offset 0, below the log start: reset to it.
        got = consume_all(c, topic, [0], 13, start=0, timeout=30)
        assert [r[0] for r in got[0]] == list(range(7, 20))
    finally:
        c.close()


def test_long_poll_delivers_record_produced_while_waiting(bootstrap):
    admin = admin_client(bootstrap)
    topic = "ck-long-poll"
    create_topic(admin, topic, 1)
    p = new_producer(bootstrap, **{"linger.ms": 0})
    produce_all(p, topic, make_records(3, seed=7, tag="pre"))

    # fetch.wait.max.ms large enough that a fetch is parked on the broker when the record arrives
    c = new_consumer(bootstrap, **{"fetch.wait.max.ms": 5000, "fetch.min.bytes": 1})
    try:
        tp = TopicPartition(topic, 0)
        assert c.get_watermark_offsets(tp, timeout=TIMEOUT) == (0, 3)
        c.assign([TopicPartition(topic, 0, 3)])
        # consumer is at the end: nothing to deliver while it sits in poll
        for _ in range(3):
            m = c.poll(0.5)
            assert m is None or (m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF), (
                f"unexpected message at end offset: {m.partition()}@{m.offset()} err={m.error()}")

        produced = threading.Event()

        def produce_later():
            time.sleep(0.5)
            p.produce(topic, key=b"late", value=b"arrived-while-polling", partition=0)
            p.flush(10)
            produced.set()

        t = threading.Thread(target=produce_later, daemon=True)
        t.start()
        deadline = time.monotonic() + 10.0
        msg = None
        while msg is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is None, f"poll error: {m.error()}"
                msg = m
        t.join(timeout=10)
        assert produced.is_set(), "background producer did not finish"
        assert msg is not None, "record produced while the consumer was long-polling never arrived (10 s)"
        assert (msg.partition(), msg.offset(), msg.key(), msg.value()) == (0, 3, b"late", b"arrived-while-polling")
    finally:
        c.close()


# --------------------------------------------------------------------------- durability


def test_acked_records_survive_kill9_and_offsets_continue(floe):
    bootstrap = floe.bootstrap
    topic = "ck-durable"
    admin = admin_client(bootstrap)
    create_topic(admin, topic, 3)
    del admin

    records = make_records(5000, seed=42, tag="before-crash")
    p = new_producer(bootstrap, **{"compression.type": "lz4"})
    placements = produce_all(p, topic, records)
    del p  # all acked (acks=all); destroy the producer before the crash
    expected = group_expected(records, placements)
    counts = {part: len(rows) for part, rows in expected.items()}
    assert len(counts) == 3

    floe.kill9()
    floe.restart()

    c = new_consumer(bootstrap)
    try:
        got = consume_all(c, topic, range(3), 5000)
        for part, n in counts.items():
            assert c.get_watermark_offsets(TopicPartition(topic, part), timeout=TIMEOUT) == (0, n)
    finally:
        c.close()
    assert_partitions_equal(expected, got, what="after kill -9 + restart")

    # a new (idempotent) producer appends with no gap and no overlap
    more = make_records(300, seed=43, tag="after-crash", base_ts=records[-1].ts + 1)
    p = new_producer(bootstrap)
    more_placements = produce_all(p, topic, more)
    del p
    next_off = dict(counts)
    for rec, (part, off) in zip(more, more_placements):
        assert off == next_off[part], (
            f"partition {part}: record {rec.idx} got offset {off}, expected {next_off[part]} (continuation)")
        next_off[part] += 1
        expected[part].append((off, rec.key, rec.value, rec.headers, rec.ts))

    c = new_consumer(bootstrap)
    try:
        got = consume_all(c, topic, range(3), 5300)
    finally:
        c.close()
    assert_partitions_equal(expected, got, what="after producing post-restart")

    # and a graceful restart (SIGTERM -> exit 0) keeps everything too
    floe.restart()
    c = new_consumer(bootstrap)
    try:
        for part, n in next_off.items():
            assert c.get_watermark_offsets(TopicPartition(topic, part), timeout=TIMEOUT) == (0, n)
        got = consume_all(c, topic, range(3), 5300)
    finally:
        c.close()
    assert_partitions_equal(expected, got, what="after graceful restart")
