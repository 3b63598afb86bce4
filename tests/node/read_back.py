"""Independent read-back for the kafkajs suite: dump every record of a topic as JSON lines.

Usage: read_back.py BOOTSTRAP TOPIC [TIMEOUT_S]

Uses confluent-kafka (librdkafka), a Kafka implementation independent of kafkajs. Every
partition is assign()ed from offset 0 (no consumer group is joined, nothing is committed)
and read up to the high watermark taken before reading. One line per record:

  {"partition": P, "offset": O, "key": b64|null, "value": b64|null,
   "headers": [[name, b64|null], ...], "timestamp": ms, "timestampType": 0|1|2}

Exit status 2 with a message on stderr if the topic is missing or the read times out.
"""

from __future__ import annotations

import base64
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition


def b64(b: bytes | None):
    return None if b is None else base64.b64encode(b).decode("ascii")


def main() -> int:
    bootstrap, topic = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    deadline = time.monotonic() + timeout
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "floe-node-readback-unused",  # required by librdkafka; never joined
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": False,
        "check.crcs": True,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    try:
        md = c.list_topics(topic, timeout=10)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None or not tmd.partitions:
            print(f"topic {topic!r} not found: {tmd.error if tmd else 'absent'}", file=sys.stderr)
            return 2
        parts = sorted(tmd.partitions)
        highs = {}
        for p in parts:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            highs[p] = hi
        todo = {p for p in parts if highs[p] > 0}
        if todo:
            c.assign([TopicPartition(topic, p, 0) for p in sorted(todo)])
        out = []
        while todo:
            if time.monotonic() > deadline:
                print(f"timed out; partitions still short of their high watermark: {sorted(todo)} "
                      f"highs={highs}", file=sys.stderr)
                return 2
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            p = m.partition()
            if p not in highs or m.offset() >= highs[p]:
                continue
            ts_type, ts = m.timestamp()
            out.append({
                "partition": p,
                "offset": m.offset(),
                "key": b64(m.key()),
                "value": b64(m.value()),
                "headers": [[k, b64(v)] for k, v in (m.headers() or [])],
                "timestamp": ts,
                "timestampType": ts_type,
            })
            if m.offset() + 1 >= highs[p]:
                todo.discard(p)
        for row in out:
            sys.stdout.write(json.dumps(row) + "\n")
        sys.stderr.write(json.dumps({"highWatermarks": highs}) + "\n")
        return 0
    finally:
        c.close()


if __name__ == "__main__":
    sys.exit(main())
