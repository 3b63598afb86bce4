"""End-to-end tests: kafka-python 3 against a real floe broker.

No consumer groups: every consumer uses group_id=None + assign() + explicit seek().
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as Errors
from kafka.admin import ConfigResource, ConfigResourceType

from helpers import (
    BASE_TS,
    CODECS,
    assert_partitions_equal,
    group_expected,
    make_records,
    wait_until,
)

RT_RECORDS = 20_000
REQ_TIMEOUT_MS = 15_000


# --------------------------------------------------------------------------- helpers


def admin_client(bootstrap) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQ_TIMEOUT_MS,
                            client_id="floe-e2e-admin")


def producer(bootstrap, **kw) -> KafkaProducer:
    cfg = dict(bootstrap_servers=bootstrap, request_timeout_ms=REQ_TIMEOUT_MS, max_block_ms=REQ_TIMEOUT_MS,
               client_id="floe-e2e-producer")
    cfg.update(kw)
    return KafkaProducer(**cfg)


def consumer(bootstrap, **kw) -> KafkaConsumer:
    cfg = dict(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
               auto_offset_reset="none", request_timeout_ms=REQ_TIMEOUT_MS, client_id="floe-e2e-consumer",
               check_crcs=True)
    cfg.update(kw)
    return KafkaConsumer(**cfg)


def create_topic(admin, name, partitions, configs=None):
    admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1,
                                "configs": configs or {}}})
    admin.wait_for_topics([name], timeout_ms=10_000)


def partition_count(admin, name) -> int:
    (t,) = admin.describe_topics([name])
    assert t["error_code"] == 0, f"describe_topics({name}) error_code={t['error_code']}"
    return len(t["partitions"])


def topic_configs(admin, name, config_filter="all") -> dict:
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)], config_filter=config_filter)
    return res.get("topic", {}).get(name, {})


def consume_all(c: KafkaConsumer, topic: str, partitions, expected_total: int, timeout: float = 60.0):
    """assign + seek to 0; poll until expected_total records or timeout; then one extra poll to make
    sure nothing beyond the expected records shows up. Returns {partition: [(off, key, value, headers, ts)]}."""
    tps = [TopicPartition(topic, p) for p in partitions]
    c.assign(tps)
    for tp in tps:
        c.seek(tp, 0)
    got: dict[int, list] = {}
    n = 0
    deadline = time.monotonic() + timeout
    while n < expected_total and time.monotonic() < deadline:
        for tp, recs in c.poll(timeout_ms=500, max_records=5000).items():
            for r in recs:
                assert r.timestamp_type == 0, f"expected CreateTime (0), got {r.timestamp_type} at {tp}@{r.offset}"
                got.setdefault(tp.partition, []).append((r.offset, r.key, r.value, tuple(r.headers), r.timestamp))
            n += len(recs)
    assert n >= expected_total, f"consumed only {n}/{expected_total} records from {topic} within {timeout}s"
    extra = c.poll(timeout_ms=1000)
    assert not any(extra.values()), f"unexpected extra records after {n}: {extra}"
    return got


# --------------------------------------------------------------------------- admin


def test_admin_create_topic_with_configs_and_describe(bootstrap):
    name = "kp-configs"
    configs = {
        "retention.ms": "3600000",
        "max.message.bytes": "500000",
        "cleanup.policy": "delete",
        "segment.bytes": "10485760",
        "message.timestamp.type": "CreateTime",
    }
    with admin_client(bootstrap) as admin:
        create_topic(admin, name, 3, configs)
        (t,) = admin.describe_topics([name])
        assert t["error_code"] == 0
        assert sorted(p["partition_index"] for p in t["partitions"]) == [0, 1, 2]
        for p in t["partitions"]:
            assert p["error_code"] == 0 and p["leader_id"] >= 0, p
        assert name in admin.list_topics()

        # creating it again must fail with TopicAlreadyExists
        with pytest.raises(Errors.TopicAlreadyExistsError):
            admin.create_topics({name: {"num_partitions": 3, "replication_factor": 1}})

        all_cfg = topic_configs(admin, name, "all")
        for k, v in configs.items():
            assert k in all_cfg, f"describe_configs is missing {k}; got keys {sorted(all_cfg)}"
            assert all_cfg[k]["value"] == v, f"{k}: {all_cfg[k]}"
            assert all_cfg[k]["config_source"] == "DYNAMIC_TOPIC_CONFIG", f"{k}: {all_cfg[k]}"
        # a config we did not set is still described, as a non-override
        assert "retention.bytes" in all_cfg, sorted(all_cfg)
        assert all_cfg["retention.bytes"]["config_source"] != "DYNAMIC_TOPIC_CONFIG", all_cfg["retention.bytes"]

        # default filter ('modified') returns exactly the overrides we set
        modified = topic_configs(admin, name, "modified")
        assert {k: v["value"] for k, v in modified.items()} == configs

        # asking for specific keys returns only those keys
        res = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, configs=["retention.ms", "cleanup.policy"])],
            config_filter="all")
        assert {k: v["value"] for k, v in res["topic"][name].items()} == {
            "retention.ms": "3600000", "cleanup.policy": "delete"}


def test_delete_topic_removes_it_from_metadata(bootstrap):
    name = "kp-delete-me"
    with admin_client(bootstrap) as admin:
        create_topic(admin, name, 2)
        with producer(bootstrap) as p:
            futs = [p.send(name, key=b"k", value=b"v%d" % i, partition=i % 2) for i in range(10)]
            p.flush(timeout=30)
            for f in futs:
                f.get(timeout=30)
        assert name in admin.list_topics()

        admin.delete_topics([name])
        wait_until(lambda: name not in admin.list_topics(), timeout=10, what=f"{name} to leave metadata")
        (t,) = admin.describe_topics([name])
        assert t["error_code"] == Errors.UnknownTopicOrPartitionError.errno, t

        with pytest.raises(Errors.UnknownTopicOrPartitionError):
            admin.delete_topics([name])

        # the name can be reused and the new topic starts empty
        def recreate():
            try:
                admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1}})
                return True
            except Errors.TopicAlreadyExistsError:
                return False
        wait_until(recreate, timeout=10, what=f"re-creating {name}")
        admin.wait_for_topics([name], timeout_ms=10_000)
        assert partition_count(admin, name) == 1
    with consumer(bootstrap) as c:
        tp = TopicPartition(name, 0)
        assert c.beginning_offsets([tp], timeout_ms=REQ_TIMEOUT_MS) == {tp: 0}
        assert c.end_offsets([tp], timeout_ms=REQ_TIMEOUT_MS) == {tp: 0}


def test_create_partitions_increases_count(bootstrap):
    name = "kp-grow"
    with admin_client(bootstrap) as admin:
        create_topic(admin, name, 1)
        assert partition_count(admin, name) == 1
        admin.create_partitions({name: 4})
        wait_until(lambda: partition_count(admin, name) == 4, timeout=10, what="4 partitions in metadata")
        (t,) = admin.describe_topics([name])
        for p in t["partitions"]:
            assert p["error_code"] == 0 and p["leader_id"] >= 0, p

        # shrinking is not allowed
        with pytest.raises(Errors.InvalidPartitionsError):
            admin.create_partitions({name: 2})
        assert partition_count(admin, name) == 4

    with producer(bootstrap) as p:
        futs = [p.send(name, key=b"k%d" % part, value=b"to-%d" % part, partition=part) for part in range(4)]
        p.flush(timeout=30)
        mds = [f.get(timeout=30) for f in futs]
    assert [(m.partition, m.offset) for m in mds] == [(0, 0), (1, 0), (2, 0), (3, 0)]
    with consumer(bootstrap) as c:
        got = consume_all(c, name, range(4), 4, timeout=30)
    assert {part: [(r[0], r[1], r[2]) for r in rows] for part, rows in got.items()} == {
        part: [(0, b"k%d" % part, b"to-%d" % part)] for part in range(4)}


# --------------------------------------------------------------------------- produce / consume


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_roundtrip(bootstrap, codec):
    topic = f"kp-rt-{codec}"
    with admin_client(bootstrap) as admin:
        create_topic(admin, topic, 3)
    records = make_records(RT_RECORDS, seed=1000 + CODECS.index(codec), tag=f"kp-{codec}")

    with producer(bootstrap, acks="all", compression_type=None if codec == "none" else codec,
                  linger_ms=10, batch_size=64 * 1024) as p:
        futs = [p.send(topic, key=r.key, value=r.value, headers=list(r.headers), timestamp_ms=r.ts)
                for r in records]
        p.flush(timeout=60)
        placements = []
        for f in futs:
            md = f.get(timeout=30)
            placements.append((md.partition, md.offset))
    expected = group_expected(records, placements)
    assert len(expected) == 3, f"keys should spread over all 3 partitions, got {sorted(expected)}"

    with consumer(bootstrap, max_partition_fetch_bytes=1024 * 1024) as c:
        got = consume_all(c, topic, range(3), RT_RECORDS)
        end = c.end_offsets([TopicPartition(topic, part) for part in range(3)], timeout_ms=REQ_TIMEOUT_MS)
    assert_partitions_equal(expected, got, what=f"codec={codec}")
    assert {tp.partition: off for tp, off in end.items()} == {part: len(rows) for part, rows in expected.items()}


def test_list_offsets_and_offsets_for_times(bootstrap):
    topic = "kp-offsets"
    n = 100
    ts = [BASE_TS + i * 1000 for i in range(n)]
    with admin_client(bootstrap) as admin:
        create_topic(admin, topic, 2)
    # several small batches (flush every 10) so lookups hit both batch boundaries and batch interiors
    with producer(bootstrap, acks="all", linger_ms=0) as p:
        placements = []
        for start in range(0, n, 10):
            futs = [p.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0, timestamp_ms=ts[i])
                    for i in range(start, start + 10)]
            p.flush(timeout=30)
            placements += [(md.partition, md.offset) for md in (f.get(timeout=30) for f in futs)]
    assert placements == [(0, i) for i in range(n)]

    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    with consumer(bootstrap) as c:
        assert c.beginning_offsets([tp0, tp1], timeout_ms=REQ_TIMEOUT_MS) == {tp0: 0, tp1: 0}
        assert c.end_offsets([tp0, tp1], timeout_ms=REQ_TIMEOUT_MS) == {tp0: n, tp1: 0}

        def lookup(target):
            r = c.offsets_for_times({tp0: target}, timeout_ms=REQ_TIMEOUT_MS)[tp0]
            return None if r is None else (r.offset, r.timestamp)

        assert lookup(ts[0] - 86_400_000) == (0, ts[0])      # before everything -> first record
        assert lookup(ts[0]) == (0, ts[0])
        assert lookup(ts[50]) == (50, ts[50])                # exact hit on a batch's first record
        assert lookup(ts[50] - 1) == (50, ts[50])            # first record with ts >= target
        assert lookup(ts[13] + 1) == (14, ts[14])            # inside a batch
        assert lookup(ts[37]) == (37, ts[37])
        assert lookup(ts[n - 1]) == (n - 1, ts[n - 1])
        assert lookup(ts[n - 1] + 1) is None                 # after everything -> no offset
        empty = c.offsets_for_times({tp1: ts[0]}, timeout_ms=REQ_TIMEOUT_MS)
        assert empty == {tp1: None}

        # the records carry the timestamps we set
        got = consume_all(c, topic, [0], n, timeout=30)
    assert [(r[0], r[4]) for r in got[0]] == [(i, ts[i]) for i in range(n)]


def test_delete_records_moves_beginning_offsets(bootstrap):
    topic = "kp-delete-records"
    with admin_client(bootstrap) as admin:
        create_topic(admin, topic, 1)
        with producer(bootstrap, acks="all", linger_ms=0) as p:
            for start in range(0, 30, 10):  # three flushes
                for i in range(start, start + 10):
                    p.send(topic, value=b"v%d" % i, partition=0)
                p.flush(timeout=30)
        tp = TopicPartition(topic, 0)
        result = admin.delete_records({tp: 12}, timeout_ms=REQ_TIMEOUT_MS)
        assert result[tp]["low_watermark"] == 12 and result[tp]["error_code"] == 0
        with pytest.raises(Errors.OffsetOutOfRangeError):
            admin.delete_records({tp: 31}, timeout_ms=REQ_TIMEOUT_MS)
    with consumer(bootstrap) as c:
        assert c.beginning_offsets([tp], timeout_ms=REQ_TIMEOUT_MS) == {tp: 12}
        assert c.end_offsets([tp], timeout_ms=REQ_TIMEOUT_MS) == {tp: 30}
    # A consumer positioned below the log start (consume_all seeks to 0)
    # resets to it.
    with consumer(bootstrap, auto_offset_reset="earliest") as c:
        got = consume_all(c, topic, [0], 18, timeout=30)
    assert [r[0] for r in got[0]] == list(range(12, 30))


@pytest.mark.floe_args("--auto-create-topics", "true")
def test_produce_to_unknown_topic_auto_creates(bootstrap):
    topic = "kp-auto-created"
    with admin_client(bootstrap) as admin:
        assert topic not in admin.list_topics()
    with producer(bootstrap, acks="all") as p:
        futs = [p.send(topic, key=b"k", value=b"auto-%d" % i) for i in range(5)]
        p.flush(timeout=30)
        mds = [f.get(timeout=30) for f in futs]
    assert [(m.topic, m.partition, m.offset) for m in mds] == [(topic, 0, i) for i in range(5)]
    with admin_client(bootstrap) as admin:
        assert topic in admin.list_topics()
        assert partition_count(admin, topic) == 1  # --default-partitions 1
    with consumer(bootstrap) as c:
        got = consume_all(c, topic, [0], 5, timeout=30)
    assert [(r[0], r[2]) for r in got[0]] == [(i, b"auto-%d" % i) for i in range(5)]


@pytest.mark.floe_args("--auto-create-topics", "false")
def test_produce_to_unknown_topic_without_auto_create_fails(bootstrap):
    topic = "kp-not-auto-created"
    with producer(bootstrap, acks="all", max_block_ms=3000) as p:
        with pytest.raises((Errors.KafkaTimeoutError, Errors.UnknownTopicOrPartitionError)):
            p.send(topic, value=b"x").get(timeout=10)
    with admin_client(bootstrap) as admin:
        assert topic not in admin.list_topics()


def test_record_larger_than_max_message_bytes_is_rejected(bootstrap):
    topic = "kp-small-max"
    with admin_client(bootstrap) as admin:
        create_topic(admin, topic, 1, {"max.message.bytes": "1000"})
        assert topic_configs(admin, topic)["max.message.bytes"]["value"] == "1000"
    # non-idempotent so the rejection is isolated from sequence-number bookkeeping;
    # the record is sent alone so the client cannot split the batch
    with producer(bootstrap, acks=1, enable_idempotence=False, retries=0, linger_ms=0) as p:
        with pytest.raises(Errors.MessageSizeTooLargeError):
            p.send(topic, key=b"big", value=b"x" * 2000).get(timeout=30)
        # a small record still goes through, and the rejected one consumed no offset
        md = p.send(topic, key=b"small", value=b"y" * 100).get(timeout=30)
        assert (md.partition, md.offset) == (0, 0)
    with consumer(bootstrap) as c:
        got = consume_all(c, topic, [0], 1, timeout=30)
    assert [(r[0], r[1], r[2]) for r in got[0]] == [(0, b"small", b"y" * 100)]
