#!/usr/bin/env bash
# kcat (librdkafka 2.0.2 on Debian 12: an older protocol mix than the rdkafka
# crate's bundled librdkafka) against the `floe` binary on a free port with a
# temporary data dir:
#   - metadata listing (-L);
#   - 1000 keyed lines (-K:) produced in two halves per codec (-z none, gzip,
#     snappy, lz4, zstd), consumed back (-o beginning -e) and compared byte-exact;
#   - offsets by timestamp (-Q): the instant between the halves maps to offset
#     500, time 0 to offset 0, a future time to -1;
#   - a balanced consumer group (-G) reads a topic, and resumes after its
#     committed offset when run again;
#   - SIGTERM, and the broker exits 0.
# Prints "N passed, M failed" last; exits non-zero on any failure.
#
# Environment: FLOE_BIN (default target/debug/floe), KCAT (default kcat),
# FLOE_TEST_BACKEND (embedded, the default, or aws).
#
# On the AWS backend (S3 + DynamoDB on the moto server):
#   eval "$(localstack/emulators.sh start)"   # exports FLOE_TEST_MOTO_ENDPOINT
#   FLOE_TEST_BACKEND=aws tests/kcat/run.sh
# The broker then gets its own bucket and table (floe-kcat-<hex>), created with
# `floe init` first. FLOE_TEST_BACKEND=aws without FLOE_TEST_MOTO_ENDPOINT is a
# failure, not a skip. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION
# default to test / test / us-east-1.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
floe=${FLOE_BIN:-$root/target/debug/floe}
kcat=${KCAT:-kcat}
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

if ! command -v "$kcat" >/dev/null 2>&1; then
  echo "kcat not found (apt-get install -y kcat)"
  fail "kcat installed"
  finish
fi
if [ ! -x "$floe" ]; then
  echo "floe binary not found at $floe (cargo build -p floe-gateway, or set FLOE_BIN)"
  fail "floe binary"
  finish
fi

backend=${FLOE_TEST_BACKEND:-embedded}
backend_args=()
case "$backend" in
  embedded) ;;
  aws)
    if [ -z "${FLOE_TEST_MOTO_ENDPOINT:-}" ]; then
      echo "FLOE_TEST_BACKEND=aws needs FLOE_TEST_MOTO_ENDPOINT (eval \"\$(localstack/emulators.sh start)\")"
      fail "moto endpoint set"
      finish
    fi
    export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test} \
      AWS_REGION=${AWS_REGION:-us-east-1}
    aws_name="floe-kcat-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    backend_args=(--backend aws --bucket "$aws_name" --table "$aws_name"
      --endpoint-url "$FLOE_TEST_MOTO_ENDPOINT" --region us-east-1)
    ;;
  *)
    echo "FLOE_TEST_BACKEND=$backend: expected embedded or aws"
    fail "known backend"
    finish
    ;;
esac

work=$(mktemp -d)
broker_pid=
cleanup() {
  if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -9 "$broker_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000))
}
port=$(free_port)
bootstrap="127.0.0.1:$port"

if [ "$backend" = aws ]; then
  if timeout 60 "$floe" init "${backend_args[@]}" >"$work/init.log" 2>&1; then
    cat "$work/init.log"
  else
    fail "floe init ${backend_args[*]}"
    cat "$work/init.log"
    finish
  fi
fi

"$floe" --listen "$bootstrap" --advertised-listener "$bootstrap" \
  --data-dir "$work/data" --flush-interval 2ms --log-level warn "${backend_args[@]}" \
  >"$work/floe.log" 2>&1 &
broker_pid=$!
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$broker_pid" 2>/dev/null || break
  sleep 0.1
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  fail "floe listening on $bootstrap"
  cat "$work/floe.log"
  finish
fi
echo "floe pid $broker_pid on $bootstrap ($backend backend); $("$kcat" -V 2>&1 | grep -m1 -o 'librdkafka [0-9.]*')"

# kcat with a wall-clock limit, so a stuck client fails the check instead of
# hanging the suite.
k() { timeout 60 "$kcat" -b "$bootstrap" "$@"; }

# 1000 "key:value" lines: UTF-8, tabs, colons in values, empty values, and
# values up to ~2 KB so a producer batch spans several records of mixed size.
awk 'BEGIN {
  for (i = 0; i < 1000; i++) {
    v = sprintf("value %d \303\244\303\266\303\274 \342\234\223\ttab: colon: %d", i, i * 7)
    if (i % 97 == 0) v = ""
    pad = ""
    for (j = 0; j < (i % 50); j++) pad = pad "x0123456789abcdefghijklmnopqrstuvwxyz"
    printf "key-%04d:%s%s\n", i, v, pad
  }
}' >"$work/lines"
head -n 500 "$work/lines" >"$work/first"
tail -n 500 "$work/lines" >"$work/second"

now_ms() { date +%s%3N; }

# Metadata before any topic exists: the one broker, at its advertised address.
if k -L >"$work/meta0" 2>&1 && grep -q "1 brokers:" "$work/meta0" \
  && grep -q "broker 0 at $bootstrap" "$work/meta0"; then
  pass "-L lists the broker"
else
  fail "-L lists the broker"; cat "$work/meta0"
fi

for codec in none gzip snappy lz4 zstd; do
  topic="kcat-$codec"
  ok=1
  for half in first second; do
    if [ "$half" = second ]; then
      sleep 0.05
      mid=$(now_ms)
      sleep 0.05
    fi
    # -X acks=all: wait for durability; -c stops exactly after the lines.
    if k -P -t "$topic" -p 0 -K: -z "$codec" -X acks=all -l "$work/$half" \
      >"$work/produce-$codec-$half.log" 2>&1 \
      && ! grep -qiE "error|fail" "$work/produce-$codec-$half.log"; then
      :
    else
      ok=0
      cat "$work/produce-$codec-$half.log"
    fi
  done
  if [ $ok = 1 ]; then pass "produce 1000 keyed lines -z $codec"; else fail "produce 1000 keyed lines -z $codec"; fi

  if k -C -t "$topic" -p 0 -o beginning -e -q -f '%k:%s\n' >"$work/got-$codec" 2>"$work/consume-$codec.log" \
    && cmp -s "$work/lines" "$work/got-$codec"; then
    pass "consume -z $codec back byte-exact"
  else
    fail "consume -z $codec back byte-exact ($(wc -l <"$work/got-$codec") lines)"
    diff <(head -c 2000 "$work/lines") <(head -c 2000 "$work/got-$codec") | head -10
    head -5 "$work/consume-$codec.log"
  fi

  # By-time lookups read record timestamps inside the (compressed) batches.
  # "last" asks for the newest record's own timestamp: the answer is the first
  # offset stamped at or after it, usually inside a batch, not at its start.
  k -C -t "$topic" -p 0 -o beginning -e -q -f '%o %T\n' >"$work/ts-$codec" 2>/dev/null
  last_ts=$(awk 'END {print $2}' "$work/ts-$codec")
  last_want=$(awk -v t="$last_ts" '$2 >= t {print $1; exit}' "$work/ts-$codec")
  for q in "mid:$mid:500" "zero:0:0" "last:${last_ts:-x}:${last_want:-x}" \
    "future:$(( $(now_ms) + 86400000 )):-1"; do
    IFS=: read -r name ts want <<<"$q"
    out=$(k -Q -t "$topic:0:$ts" 2>&1)
    got=$(echo "$out" | grep -oE 'offset -?[0-9]+' | awk '{print $2}' | head -1)
    if [ "$got" = "$want" ]; then
      pass "-Q $codec at $name time -> offset $want"
    else
      fail "-Q $codec at $name time ($ts): want offset $want, got: $out"
    fi
  done
done

# A balanced consumer (-G: JoinGroup/SyncGroup/Heartbeat, commits on exit)
# reads the whole topic; run again in the same group it resumes after its
# committed offset and reads nothing. (No -o: in -G mode kcat assigns the -o
# offset explicitly, overriding the committed one.)
if k -G kcat-group -X auto.offset.reset=earliest -e -q -f '%k:%s\n' -X session.timeout.ms=6000 kcat-none \
  >"$work/group1" 2>"$work/group1.log" && cmp -s "$work/lines" "$work/group1"; then
  pass "-G consumer group reads the topic byte-exact"
else
  fail "-G consumer group reads the topic ($(wc -l <"$work/group1") lines)"
  head -5 "$work/group1.log"
fi
if k -G kcat-group -X auto.offset.reset=earliest -e -q -f '%k:%s\n' -X session.timeout.ms=6000 kcat-none \
  >"$work/group2" 2>"$work/group2.log" && [ ! -s "$work/group2" ]; then
  pass "-G again resumes after the committed offset"
else
  fail "-G again resumes after the committed offset ($(wc -l <"$work/group2") lines re-read)"
  head -5 "$work/group2.log"
fi

# Metadata now lists the five topics, one partition each, led by broker 0.
if k -L >"$work/meta1" 2>&1 && [ "$(grep -cE 'topic "kcat-(none|gzip|snappy|lz4|zstd)" with 1 partitions' "$work/meta1")" = 5 ] \
  && ! grep -q "Broker: " "$work/meta1"; then
  pass "-L lists the five topics"
else
  fail "-L lists the five topics"; cat "$work/meta1"
fi

kill -TERM "$broker_pid"
rc=
for _ in $(seq 1 600); do
  if ! kill -0 "$broker_pid" 2>/dev/null; then
    wait "$broker_pid"
    rc=$?
    break
  fi
  sleep 0.1
done
if [ "$rc" = 0 ]; then
  pass "SIGTERM: floe exits 0"
else
  fail "SIGTERM: floe exit status ${rc:-still running after 60s}"
  tail -20 "$work/floe.log"
fi
broker_pid=
if grep -qE "panicked|ERROR" "$work/floe.log"; then
  fail "floe log has no panics or errors"
  grep -E "panicked|ERROR" "$work/floe.log" | head -5
else
  pass "floe log has no panics or errors"
fi

finish
