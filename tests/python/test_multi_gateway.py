"""Several floe gateways on one backend, seen by independent clients (kafka-python, confluent-kafka).

Three gateway processes share a data dir (embedded) or a bucket + table (FLOE_TEST_BACKEND=aws)
and split a topic's partitions. While a producer writes, one gateway is SIGKILLed, or one is
SIGTERMed (scale-in) and a new one joins (scale-out); a fresh consumer on the surviving gateways
must then find every acknowledged record at its acknowledged offset, with no offset gap. With
two gateways in two zones, a consumer with `client.rack` reads a partition led in the other zone
from the gateway of its own zone (KIP-392), whose `floe_fetch_bytes_total` grows.

Gateway flags: `--log-level info` (FLOE_TEST_LOG_LEVEL overrides it), `--heartbeat-interval 200ms --session-timeout 1500ms --checkpoint-interval 1s`, so
a killed gateway's partitions move after ~2 s. Every gateway's log is `<tmp>/gw-N/floe.log`; the
tails of all of them are printed when a test fails.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import NewTopic as KNewTopic

from conftest import wait_for_leaders
from helpers import wait_until

TIMEOUT = 15.0


# --------------------------------------------------------------------------- helpers


RETRIABLE = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError._TRANSPORT,
             KafkaError._TIMED_OUT, KafkaError.UNKNOWN_TOPIC_OR_PART}


def watermarks(c: Consumer, topic: str, p: int, timeout: float = 10.0):
    """get_watermark_offsets, retried on retriable errors (librdkafka does not retry them here)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return c.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)
        except KafkaException as e:
            if e.args[0].code() not in RETRIABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def value_of(tag: str, i: int) -> bytes:
    # unique per record; the index is recoverable from the value; some random padding
    pad = random.Random(i).randbytes(i % 64)
    return b"%s-%06d|" % (tag.encode(), i) + pad


def key_of(i: int) -> bytes:
    return b"key-%d" % (i % 97)


def index_of(value: bytes) -> int:
    return int(value.split(b"|", 1)[0].rsplit(b"-", 1)[1])


class Background:
    """Runs fn in a thread; join() re-raises what it raised (incl. pytest.fail)."""

    def __init__(self, fn):
        self.result = None
        self.error: BaseException | None = None

        def run():
            try:
                self.result = fn()
            except BaseException as e:  # noqa: BLE001 - re-raised in join()
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 30.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "background action still running"
        if self.error is not None:
            raise self.error
        return self.result


def gaps_report(acks, started: float) -> str:
    """Per partition, the longest pause between consecutive acknowledgements and when it began
    (seconds after the load started): the partition's unavailability window, roughly."""
    by_part: dict[int, list[float]] = {}
    for p, _off, _val, at in acks:
        by_part.setdefault(p, []).append(at)
    out = []
    for p in sorted(by_part):
        ts = sorted(by_part[p])
        gap, at = max(((b - a, a) for a, b in zip(ts, ts[1:])), default=(0.0, ts[0]))
        out.append(f"p{p}: {gap:.2f}s at +{at - started:.2f}s")
    return ", ".join(out)


def check_read_back(acked, read, sent_values, what: str, exact: bool):
    """acked: [(partition, offset, value)]; read: {partition: [(offset, key, value)]} from offset 0 to
    the high watermark. Asserts contiguous offsets from 0, every acknowledged record at its offset,
    nothing foreign, every sent record present; duplicates (a value at two offsets) must be absent
    when `exact`, else they are only counted. Returns the number of duplicate copies."""
    ack_at: dict[tuple[int, int], bytes] = {}
    for p, off, val in acked:
        prev = ack_at.setdefault((p, off), val)
        assert prev == val, f"{what}: two records acknowledged at partition {p} offset {off}: {prev!r} and {val!r}"
    for p, rows in read.items():
        offs = [r[0] for r in rows]
        assert offs == list(range(len(rows))), (
            f"{what}: partition {p} offsets not contiguous from 0 (first bad at "
            f"{next(i for i, o in enumerate(offs) if o != i)}, offsets around it "
            f"{offs[max(0, next(i for i, o in enumerate(offs) if o != i) - 2):][:5]})")
    for (p, off), val in sorted(ack_at.items()):
        rows = read.get(p, [])
        assert off < len(rows), f"{what}: acknowledged {val[:12]!r} at {p}@{off} is beyond the end ({len(rows)})"
        assert rows[off][2] == val, f"{what}: at {p}@{off} read {rows[off][2][:16]!r}, acknowledged {val[:16]!r}"
    seen = Counter()
    for p, rows in read.items():
        for off, key, val in rows:
            assert val in sent_values, f"{what}: {p}@{off} holds a value never sent: {val[:32]!r}"
            assert key == key_of(index_of(val)), f"{what}: {p}@{off}: key {key!r} for value {val[:16]!r}"
            seen[val] += 1
    missing = [index_of(v) for v in sent_values if seen[v] == 0]
    assert not missing, f"{what}: {len(missing)} sent and acknowledged records never read, first {missing[:10]}"
    dups = {index_of(v): n for v, n in seen.items() if n > 1}
    n_dup = sum(n - 1 for n in dups.values())
    if exact:
        assert not dups, f"{what}: {n_dup} duplicate copies (record index: copies) {dict(list(dups.items())[:10])}"
    total = sum(len(rows) for rows in read.values())
    assert total == len(sent_values) + n_dup
    return n_dup


def kp_read_all(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0):
    """kafka-python: assign every partition from 0, read up to the end offsets taken first."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="none", request_timeout_ms=15_000, client_id="floe-e2e-mg-reader",
                      check_crcs=True)
    try:
        tps = [KTopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        ends = c.end_offsets(tps)
        begins = c.beginning_offsets(tps)
        assert all(v == 0 for v in begins.values()), f"low watermarks {begins}"
        for tp in tps:
            c.seek(tp, 0)
        read: dict[int, list] = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + timeout
        while any(c.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, (
                f"read timed out: positions {[c.position(tp) for tp in tps]} ends {[ends[tp] for tp in tps]}")
            for tp, recs in c.poll(timeout_ms=500, max_records=5000).items():
                read[tp.partition].extend((r.offset, r.key, r.value) for r in recs)
        extra = c.poll(timeout_ms=500)
        assert not any(extra.values()), f"records beyond the end offsets {ends}: {extra}"
        return read
    finally:
        c.close()


def ck_read_all(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0, **conf):
    """confluent-kafka: assign every partition from 0, read up to the high watermarks taken first."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "floe-e2e-unused-group", "enable.auto.commit": False,
                  "enable.auto.offset.store": False, "auto.offset.reset": "error", "enable.partition.eof": False,
                  "check.crcs": True, "client.id": "floe-e2e-mg-reader", **conf})
    try:
        highs = {}
        for p in range(partitions):
            lo, hi = watermarks(c, topic, p)
            assert lo == 0, f"partition {p} low watermark {lo}"
            highs[p] = hi
        todo = {p for p, hi in highs.items() if hi > 0}
        c.assign([TopicPartition(topic, p, 0) for p in sorted(todo)])
        read: dict[int, list] = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + timeout
        while todo:
            assert time.monotonic() < deadline, f"read timed out; short of the high watermark: {sorted(todo)} {highs}"
            for m in c.consume(num_messages=5000, timeout=0.5):
                assert m.error() is None, f"consume error: {m.error()}"
                read[m.partition()].append((m.offset(), m.key(), m.value()))
                if m.offset() + 1 >= highs[m.partition()]:
                    todo.discard(m.partition())
        extra = [m for m in c.consume(num_messages=100, timeout=0.5) if m.error() is None]
        assert not extra, f"records beyond the high watermarks {highs}: {[(m.partition(), m.offset()) for m in extra]}"
        return read
    finally:
        c.close()


# --------------------------------------------------------------------------- a. kafka-python, SIGKILL


PARTITIONS = 6
# ROUNDS x PER_ROUND records, one round every PACE_S: ~6 s of steady load, so produce requests are
# in flight when a gateway is killed or stopped
ROUNDS = 200
PER_ROUND = 15
PACE_S = 0.03


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_kafka_python_producer_survives_gateway_kill9(cluster, idempotent):
    """kafka-python producer (acks=all, unbounded retries) writes ~3000 keyed records to 6 partitions
    over 3 gateways; the gateway leading the most partitions is SIGKILLed a third of the way in.

    plain: kafka-python without idempotence may write a record twice. A produce request the killed
    gateway had appended and made durable, but whose response never reached the client (the
    connection died first), is retried on the new leader and appended again. So duplicates are
    counted and printed, not failed; every acknowledged record must be at its offset and there
    must be no gap. idempotent: kafka-python 3 implements idempotence (its default): the retry
    carries the same producer id and sequence, so the new leader must reject it as a duplicate;
    exactly once."""
    for n in range(3):
        cluster.start(n)
    topic = f"mg-kp-{'idem' if idempotent else 'plain'}"
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(), request_timeout_ms=15_000,
                             client_id="floe-e2e-admin")
    try:
        admin.create_topics([KNewTopic(topic, PARTITIONS, 1)])
    finally:
        admin.close()
    leaders = wait_for_leaders(cluster, topic, PARTITIONS, {0, 1, 2})
    victim = Counter(leaders.values()).most_common(1)[0][0]

    p = KafkaProducer(bootstrap_servers=cluster.bootstrap(), acks="all", retries=2**31 - 1,
                      enable_idempotence=idempotent, linger_ms=5, retry_backoff_ms=100,
                      request_timeout_ms=10_000, delivery_timeout_ms=60_000, max_block_ms=30_000,
                      client_id="floe-e2e-mg-producer")
    futures = []
    acks, failures = [], []
    lock = threading.Lock()

    def on_ok(i, md):
        with lock:
            acks.append((md.partition, md.offset, value_of("kp", i), time.monotonic()))

    def on_err(i, exc):
        with lock:
            failures.append((i, repr(exc)))

    started, started_wall = time.monotonic(), time.time()
    killed_at = None
    try:
        for r in range(ROUNDS):
            if r == ROUNDS // 3:
                cluster.kill9(victim)
                killed_at = time.monotonic() - started
            for j in range(PER_ROUND):
                i = r * PER_ROUND + j
                f = p.send(topic, key=key_of(i), value=value_of("kp", i))
                f.add_callback(lambda md, i=i: on_ok(i, md))
                f.add_errback(lambda exc, i=i: on_err(i, exc))
                futures.append(f)
            time.sleep(PACE_S)
        p.flush(timeout=60)
    finally:
        p.close(timeout=10)
    elapsed = time.monotonic() - started
    assert all(f.is_done for f in futures), f"{sum(not f.is_done for f in futures)} records without an outcome"
    assert not failures, f"{len(failures)} deliveries failed, first {failures[:5]}"
    assert len(acks) == ROUNDS * PER_ROUND

    survivors = [n for n in range(3) if n != victim]
    after = wait_for_leaders(cluster, topic, PARTITIONS, set(survivors))
    read = kp_read_all(cluster.bootstrap(survivors), topic, PARTITIONS)
    n_dup = check_read_back([a[:3] for a in acks], read, {value_of("kp", i) for i in range(ROUNDS * PER_ROUND)},
                            what=f"kafka-python {'idempotent' if idempotent else 'plain'}", exact=idempotent)
    print(f"\nkafka-python {'idempotent' if idempotent else 'plain'}: killed gw-{victim} (led "
          f"{sorted(q for q, n in leaders.items() if n == victim)}) at +{killed_at:.2f}s; load took {elapsed:.1f}s; "
          f"leaders after {after}; duplicates {n_dup}; longest ack pause per partition: {gaps_report(acks, started)}")
    print(cluster.timeline(started_wall))


# --------------------------------------------------------------------------- b. confluent idempotent, scale in + out


def test_confluent_idempotent_producer_exact_through_scale_in_and_out(cluster):
    """confluent-kafka idempotent producer (acks=all) writes ~3000 keyed records to 6 partitions over
    gw-0..2; a third of the way in the gateway leading the most partitions gets SIGTERM (scale-in:
    must exit 0, releasing its partitions at once) and two thirds in gw-3 joins (scale-out, not in
    the producer's bootstrap list; whether it takes partitions depends on the topic's random id,
    ~91% for 6 partitions, and is printed). Every record must be acknowledged, and read back exactly once at its acknowledged offset;
    acknowledged offsets per partition are exactly 0..n-1."""
    for n in range(3):
        cluster.start(n)
    topic = "mg-ck-scale"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap(), "client.id": "floe-e2e-admin"})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                        operation_timeout=TIMEOUT, request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    before = wait_for_leaders(cluster, topic, PARTITIONS, {0, 1, 2})
    leaving = Counter(before.values()).most_common(1)[0][0]
    staying = sorted({0, 1, 2} - {leaving})

    p = Producer({"bootstrap.servers": cluster.bootstrap([0, 1, 2]), "client.id": "floe-e2e-mg-producer",
                  "enable.idempotence": True, "acks": "all", "linger.ms": 5, "message.timeout.ms": 60_000,
                  "retry.backoff.ms": 100, "topic.metadata.refresh.interval.ms": 1000})
    acks, failures = [], []

    def on_delivery(err, msg):
        if err is not None:
            failures.append((msg.value()[:12], str(err)))
        else:
            acks.append((msg.partition(), msg.offset(), msg.value(), time.monotonic()))

    started, started_wall = time.monotonic(), time.time()
    events = {}
    produced = 0

    def produce_for(seconds: float, until=lambda: True):
        """Paced load for at least `seconds`, and on until `until()` holds (30 s at most)."""
        nonlocal produced
        t_end = time.monotonic() + seconds
        limit = time.monotonic() + 30
        while time.monotonic() < t_end or not until():
            assert time.monotonic() < limit, "load phase did not end within 30 s"
            for _ in range(PER_ROUND):
                i = produced
                while True:
                    try:
                        p.produce(topic, key=key_of(i), value=value_of("ck", i), on_delivery=on_delivery)
                        break
                    except BufferError:
                        p.poll(0.05)
                produced += 1
            p.poll(0)
            time.sleep(PACE_S)

    def mark(what):
        events[what] = round(time.monotonic() - started, 2)

    def do_scale_in():
        rc = cluster.scale_in(leaving)
        mark(f"gw-{leaving} exited")
        return rc

    def do_scale_out():
        cluster.start(3)
        mark("gw-3 accepts connections")

    produce_for(2.0)
    mark(f"SIGTERM gw-{leaving}")
    scale_in = Background(do_scale_in)
    produce_for(1.5, until=lambda: not scale_in.thread.is_alive())
    mark("start gw-3")
    scale_out = Background(do_scale_out)
    produce_for(2.0, until=lambda: not scale_out.thread.is_alive())
    remaining = p.flush(60)
    elapsed = time.monotonic() - started
    rc = scale_in.join()
    scale_out.join()
    assert rc == 0, f"gw-{leaving} did not exit 0 on SIGTERM (rc={rc})"
    assert remaining == 0, f"{remaining} records without an outcome after flush(60)"
    assert not failures, f"{len(failures)} deliveries failed, first {failures[:5]}"
    assert len(acks) == produced

    per_part: dict[int, list[int]] = {}
    for part, off, _v, _t in acks:
        per_part.setdefault(part, []).append(off)
    for part, offs in per_part.items():
        assert sorted(offs) == list(range(len(offs))), (
            f"partition {part}: acknowledged offsets are not exactly 0..{len(offs) - 1}: "
            f"dups {[o for o, c in Counter(offs).items() if c > 1][:10]}, "
            f"missing {sorted(set(range(max(offs) + 1)) - set(offs))[:10]}")

    after = wait_for_leaders(cluster, topic, PARTITIONS, {*staying, 3})
    read = ck_read_all(cluster.bootstrap([*staying, 3]), topic, PARTITIONS)
    check_read_back([a[:3] for a in acks], read, {value_of("ck", i) for i in range(produced)},
                    what="confluent idempotent", exact=True)
    for part, offs in per_part.items():
        assert len(read[part]) == len(offs), f"partition {part}: {len(read[part])} records, {len(offs)} acknowledged"
    print(f"\nconfluent idempotent: {produced} records; events (s after load start) {events}; load took {elapsed:.1f}s; "
          f"leaders before {before} after {after} (gw-3 leads {sorted(q for q, n in after.items() if n == 3)}); longest ack pause per partition: {gaps_report(acks, started)}")
    print(cluster.timeline(started_wall))


# --------------------------------------------------------------------------- c. zone-local reads


ZONE_PARTITIONS = 4
ZONES = {1: "zone-a", 2: "zone-b"}


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_consumer_reads_from_gateway_in_its_zone(cluster, client):
    """gw-1 in zone-a, gw-2 in zone-b. A consumer whose client.rack names the zone of the gateway
    that does NOT lead partition 0 is pointed by the leader at its own zone's gateway (KIP-392
    preferred read replica): it reads exactly the acknowledged records, and that gateway's
    floe_fetch_bytes_total grows by at least their key+value bytes. (Which gateway leads partition
    0 depends on the topic's random id, so the roles are picked at run time.) kafka-python 3
    implements KIP-392 too (client_rack + preferred_read_replica, Fetch v11+); kafkajs only in
    consumer groups, which floe does not have."""
    for n, zone in ZONES.items():
        cluster.start(n, zone=zone, metrics=True)
    topic = f"mg-zones-{client}"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap(), "client.id": "floe-e2e-admin"})
    admin.create_topics([NewTopic(topic, num_partitions=ZONE_PARTITIONS, replication_factor=1)],
                        operation_timeout=TIMEOUT, request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    leaders = wait_for_leaders(cluster, topic, ZONE_PARTITIONS, set(ZONES))
    part = 0
    leader = leaders[part]
    local = next(n for n in ZONES if n != leader)  # the gateway in the consumer's zone
    rack = ZONES[local]

    n_records = 500
    p = Producer({"bootstrap.servers": cluster.bootstrap(), "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "client.id": "floe-e2e-mg-producer"})
    acked, failures = [], []

    def on_delivery(err, msg):
        if err is not None:
            failures.append(str(err))
        else:
            acked.append((msg.offset(), msg.key(), msg.value()))

    for i in range(n_records):
        p.produce(topic, key=key_of(i), value=value_of("zone", i), partition=part, on_delivery=on_delivery)
    assert p.flush(30) == 0
    assert not failures, failures[:3]
    acked.sort()
    assert [a[0] for a in acked] == list(range(n_records)), "acknowledged offsets not 0..n-1"
    payload = sum(len(a[1]) + len(a[2]) for a in acked)

    leader_before = cluster.metrics_sample(leader, "floe_fetch_bytes_total")
    local_before = cluster.metrics_sample(local, "floe_fetch_bytes_total")
    got = []
    deadline = time.monotonic() + 30
    if client == "confluent":
        c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "floe-e2e-unused-group",
                      "enable.auto.commit": False, "enable.auto.offset.store": False,
                      "auto.offset.reset": "error", "enable.partition.eof": False, "fetch.wait.max.ms": 100,
                      "client.rack": rack, "client.id": f"floe-e2e-{rack}"})
        try:
            c.assign([TopicPartition(topic, part, 0)])
            while len(got) < n_records and time.monotonic() < deadline:
                for m in c.consume(num_messages=1000, timeout=0.5):
                    assert m.error() is None, f"consume error: {m.error()}"
                    got.append((m.offset(), m.key(), m.value()))
            extra = c.consume(num_messages=100, timeout=1.0)
            got += [(m.offset(), m.key(), m.value()) for m in extra if m.error() is None]
        finally:
            c.close()
    else:
        c = KafkaConsumer(bootstrap_servers=cluster.bootstrap(), group_id=None, enable_auto_commit=False,
                          auto_offset_reset="none", client_rack=rack, fetch_max_wait_ms=100,
                          client_id=f"floe-e2e-{rack}", request_timeout_ms=15_000)
        try:
            tp = KTopicPartition(topic, part)
            c.assign([tp])
            c.seek(tp, 0)
            while len(got) < n_records and time.monotonic() < deadline:
                for recs in c.poll(timeout_ms=500).values():
                    got += [(r.offset, r.key, r.value) for r in recs]
            for recs in c.poll(timeout_ms=1000).values():
                got += [(r.offset, r.key, r.value) for r in recs]
        finally:
            c.close()
    leader_served = cluster.metrics_sample(leader, "floe_fetch_bytes_total") - leader_before
    local_served = cluster.metrics_sample(local, "floe_fetch_bytes_total") - local_before
    print(f"\n{client}: partition {part} led by gw-{leader} ({ZONES[leader]}) read with client.rack={rack}; "
          f"key+value {payload} B; floe_fetch_bytes_total grew by {leader_served:.0f} on the leader gw-{leader}, "
          f"{local_served:.0f} on gw-{local} ({rack})")
    assert got == acked, (f"{rack} consumer read {len(got)} records, {n_records} acknowledged; first difference at "
                          f"{next((i for i, (x, y) in enumerate(zip(got, acked)) if x != y), min(len(got), len(acked)))}")
    assert local_served >= payload, (
        f"gw-{local} ({rack}) served {local_served:.0f} bytes, less than the {payload} B of key+value read by its "
        f"zone's consumer (the leader gw-{leader} served {leader_served:.0f})")


# --------------------------------------------------------------------------- d. several broker ids per gateway


IDS_PARTITIONS = 24


def metadata_brokers(bootstrap: str, topic: str):
    """({broker id: "host:port"}, {partition: leader id}) from one confluent Metadata response."""
    with AdminClient({"bootstrap.servers": bootstrap, "client.id": "floe-e2e-ids-view"}) as admin:
        md = admin.list_topics(topic, timeout=10)
    t = md.topics[topic]
    assert t.error is None, t.error
    return ({b.id: f"{b.host}:{b.port}" for b in md.brokers.values()},
            {p: pm.leader for p, pm in t.partitions.items()})


@pytest.mark.parametrize("client", ["confluent-idempotent", "kafka-python"])
def test_a_gateway_answers_as_several_broker_ids(cluster, client):
    """gw-1 runs with `--broker-ids 4`: Metadata lists broker ids 1, 1001, 2001 and 3001 at its
    port, port + 1, + 2 and + 3, and its 24 partitions' leadership is spread evenly over them (6 each). The client
    then opens a connection per broker id (the gateway's open-connection gauge shows at least 4
    from the producer), every keyed record is acknowledged at consecutive offsets, and DescribeConfigs
    answers for broker "2001". When gw-2 (`--broker-ids 2`) joins, every gateway lists all six ids,
    each partition's leader is an id of the gateway leading it, and a fresh consumer reads every
    record back exactly, at its acknowledged offset."""
    gw1 = cluster.start(1, metrics=True, extra=["--broker-ids", "4"])
    topic = f"ids-{client}"
    admin = AdminClient({"bootstrap.servers": gw1.bootstrap, "client.id": "floe-e2e-admin"})
    admin.create_topics([NewTopic(topic, num_partitions=IDS_PARTITIONS, replication_factor=1)],
                        operation_timeout=TIMEOUT, request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    gw1_ids = {1, 1001, 2001, 3001}

    def settled_alone():
        brokers, leaders = metadata_brokers(gw1.bootstrap, topic)
        return (brokers, leaders) if set(brokers) == gw1_ids and len(leaders) == IDS_PARTITIONS else None

    brokers, leaders = wait_until(settled_alone, timeout=20, what="gw-1 to list its four broker ids")
    assert brokers == {i: f"127.0.0.1:{gw1.port + i // 1000}" for i in gw1_ids}, brokers
    assert Counter(leaders.values()) == {i: IDS_PARTITIONS // 4 for i in gw1_ids}, leaders

    # librdkafka sends a broker's DescribeConfigs to that broker id.
    res = ConfigResource(ConfigResource.Type.BROKER, "2001")
    configs = admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    assert configs, "no configs for broker 2001"

    n = 2000
    acks: list[tuple[int, int, bytes]] = []
    connections_before = cluster.metrics_sample(1, "floe_connections_open")
    if client == "confluent-idempotent":
        p = Producer({"bootstrap.servers": gw1.bootstrap, "client.id": "floe-e2e-ids-producer",
                      "enable.idempotence": True, "acks": "all", "linger.ms": 20})
        failures = []

        def on_delivery(err, msg):
            if err is not None:
                failures.append(str(err))
            else:
                acks.append((msg.partition(), msg.offset(), msg.value()))

        for i in range(n):
            p.produce(topic, key=key_of(i), value=value_of("ids", i), on_delivery=on_delivery)
            if i % 100 == 0:
                p.poll(0)
        assert p.flush(60) == 0
        assert not failures, failures[:5]
        connections_during = cluster.metrics_sample(1, "floe_connections_open")
    else:
        kp = KafkaProducer(bootstrap_servers=gw1.bootstrap, client_id="floe-e2e-ids-producer", acks="all",
                           linger_ms=20, request_timeout_ms=15_000)
        futures = [(i, kp.send(topic, key=key_of(i), value=value_of("ids", i))) for i in range(n)]
        for i, f in futures:
            md = f.get(timeout=60)
            acks.append((md.partition, md.offset, value_of("ids", i)))
        connections_during = cluster.metrics_sample(1, "floe_connections_open")
        kp.close()
    # One connection per broker id the producer sends to (all four lead partitions), beside the
    # admin client's.
    assert connections_during - connections_before >= 4, (connections_before, connections_during)
    assert len(acks) == n
    per_part: dict[int, list[int]] = {}
    for part, off, _v in acks:
        per_part.setdefault(part, []).append(off)
    for part, offs in per_part.items():
        assert sorted(offs) == list(range(len(offs))), f"partition {part}: offsets {sorted(offs)[:20]}…"

    cluster.start(2, extra=["--broker-ids", "2"])
    all_ids = gw1_ids | {2, 1002}

    def settled_both():
        views = [metadata_brokers(cluster.bootstrap([g]), topic) for g in (1, 2)]
        if all(set(b) == all_ids for b, _ in views) and views[0][1] == views[1][1] \
                and set(views[0][1].values()) & {2, 1002}:
            return views[0]
        return None

    brokers, leaders = wait_until(settled_both, timeout=30, what="both gateways to list all six ids")
    for bid, addr in brokers.items():
        assert addr == f"127.0.0.1:{cluster.gateways[1 if bid in gw1_ids else 2].port + bid // 1000}", brokers
    if client == "confluent-idempotent":
        read = ck_read_all(cluster.bootstrap([2]), topic, IDS_PARTITIONS)
    else:
        read = kp_read_all(cluster.bootstrap([2]), topic, IDS_PARTITIONS)
    check_read_back(acks, read, {value_of("ids", i) for i in range(n)}, what=client, exact=True)
    print(f"\n{client}: leaders after gw-2 joined {Counter(leaders.values())}; "
          f"connections on gw-1 {connections_before} -> {connections_during}")
