"""Shared test data and comparison helpers for the Floe end-to-end tests."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

# Fixed CreateTime base so timestamps are explicit and deterministic (2023-11-14T22:13:20Z).
BASE_TS = 1_700_000_000_000


@dataclass(frozen=True)
class Rec:
    idx: int
    key: bytes | None
    value: bytes | None
    headers: tuple  # ((str, bytes), ...)
    ts: int


def make_records(n: int, seed: int, tag: str, base_ts: int = BASE_TS, n_keys: int = 500) -> list[Rec]:
    """Deterministic keyed records with headers and explicit, strictly increasing timestamps.

    Values mix random (incompressible) and repetitive (compressible) bytes; every 1000th
    value is None (tombstone) and a few are empty, to check null vs empty round-trips.
    Headers include duplicate keys and empty values.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        key = b"key-%d" % rng.randrange(n_keys)
        if i % 1000 == 999:
            value = None
        elif i % 1000 == 500:
            value = b""
        else:
            value = rng.randbytes(rng.randrange(0, 48)) + (b"floe-%d|" % i) * rng.randrange(0, 12)
        headers = [("idx", str(i).encode()), ("tag", tag.encode()), ("bin", rng.randbytes(rng.randrange(0, 8)))]
        if i % 7 == 0:
            headers += [("dup", b"a"), ("dup", b"b")]
        out.append(Rec(i, key, value, tuple(headers), base_ts + i))
    return out


def group_expected(records: list[Rec], placements: list[tuple[int, int]]) -> dict[int, list[tuple]]:
    """placements[i] = (partition, offset) reported by the producer for records[i].

    Returns {partition: [(offset, key, value, headers, ts), ...]} in producer send order, and
    asserts that the broker assigned contiguous offsets 0..n-1 per partition in send order and
    that every key always mapped to one partition.
    """
    assert len(records) == len(placements)
    per_part: dict[int, list[tuple]] = {}
    key_part: dict[bytes, int] = {}
    for rec, (part, off) in zip(records, placements):
        per_part.setdefault(part, []).append((off, rec.key, rec.value, rec.headers, rec.ts))
        if rec.key is not None:
            assert key_part.setdefault(rec.key, part) == part, f"key {rec.key!r} landed in two partitions"
    for part, rows in per_part.items():
        offsets = [r[0] for r in rows]
        assert offsets == list(range(len(rows))), (
            f"partition {part}: producer-reported offsets are not 0..{len(rows) - 1} in send order; "
            f"first bad index {first_mismatch(offsets, list(range(len(rows))))}"
        )
    return per_part


def first_mismatch(a: list, b: list):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i, x, y
    if len(a) != len(b):
        return min(len(a), len(b)), f"len {len(a)}", f"len {len(b)}"
    return None


def assert_partitions_equal(expected: dict[int, list[tuple]], actual: dict[int, list[tuple]], what: str = ""):
    extra = sorted(p for p, rows in actual.items() if rows and p not in expected)
    assert not extra, f"{what}: consumed records from partitions {extra} that were never produced to"
    for part, exp_rows in expected.items():
        got_rows = actual.get(part, [])
        if got_rows != exp_rows:
            mm = first_mismatch(got_rows, exp_rows)
            raise AssertionError(
                f"{what}: partition {part}: consumed {len(got_rows)} records, expected {len(exp_rows)}; "
                f"first difference at index {mm[0] if mm else '?'}:\n  got      {mm[1] if mm else ''!r}\n"
                f"  expected {mm[2] if mm else ''!r}"
            )


def wait_until(pred, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")
