#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite: formatting and lints,
# Rust unit/contract/end-to-end tests (rdkafka), the Python client suites
# (confluent-kafka, kafka-python), kcat, kafkajs and the librdkafka test-suite
# allow-list, the client suites on the embedded backend and again on the AWS
# backend (S3 + DynamoDB on moto). Ends with one line "N passed, M failed" over
# every suite.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
logs=$(mktemp -d)
passed=0
failed=0
status=0

stage() { echo; echo "=== $* ==="; }
count() { # name log passed failed
  echo "--- $1: $3 passed, $4 failed"
  passed=$((passed + $3)); failed=$((failed + $4))
  if [ "$4" -ne 0 ]; then status=1; fi
}

stage "system packages"
need=()
command -v kcat >/dev/null 2>&1 || need+=(kcat)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
      || echo "warning: could not install ${need[*]}"
  else
    echo "warning: not root; cannot install ${need[*]}"
  fi
fi
command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest --locked

stage "format and lints"
if cargo fmt --all -- --check; then count fmt x 1 0; else count fmt x 0 1; fi
if cargo clippy --workspace --all-targets --locked -- -D warnings; then count clippy x 1 0; else count clippy x 0 1; fi

stage "IaC lint (cfn-lint)"
# cfn-lint from PATH, else a pinned copy in a cached venv.
cfn_lint=$(command -v cfn-lint || true)
if [ -z "$cfn_lint" ]; then
  cfn_venv="$HOME/.cache/floe-cfn-lint"
  { [ -x "$cfn_venv/bin/cfn-lint" ] || { python3 -m venv "$cfn_venv" &&
    "$cfn_venv/bin/pip" install -q --disable-pip-version-check "cfn-lint==1.51.0"; }; } \
    && cfn_lint="$cfn_venv/bin/cfn-lint"
fi
if [ -n "$cfn_lint" ] && "$cfn_lint" infra/cloudformation/*.json; then
  count cfn-lint x 1 0
else
  count cfn-lint x 0 1
fi

stage "build"
cargo build --workspace --all-targets --locked || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
export FLOE_BIN="$root/target/debug/floe"

stage "AWS emulators (moto: S3 + DynamoDB; LocalStack: S3)"
if localstack/emulators.sh install && emu_env=$(localstack/emulators.sh start); then
  eval "$emu_env"
  trap 'localstack/emulators.sh stop >/dev/null 2>&1 || true' EXIT
else
  # The emulator tests then fail (they never skip silently).
  echo "warning: emulators did not start; the AWS contract tests will fail"
fi

nextest_line() { # name log
  local line np nf
  line=$(grep -E "Summary \[" "$2" | tail -1)
  np=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
  nf=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 0)
  [ -n "$line" ] || nf=1
  count "$1" "$2" "${np:-0}" "${nf:-0}"
}

stage "rust tests (nextest), emulator tests included"
cargo nextest run --workspace --locked --no-fail-fast --run-ignored all -E 'not test(write_fuzz_seeds)' 2>&1 | tee "$logs/nextest.log"
nextest_line rust "$logs/nextest.log"

# The in-process end-to-end suites again, each gateway on a fresh bucket and
# table on moto (tests/common/mod.rs reads FLOE_TEST_BACKEND).
stage "rust end-to-end suites on the AWS backend (moto)"
if [ -n "${FLOE_TEST_MOTO_ENDPOINT:-}" ]; then
  FLOE_TEST_BACKEND=aws cargo nextest run -p floe-gateway --locked --no-fail-fast \
    --test e2e_rdkafka --test wire_apis --test versions --test failover --test zones \
    --test offsets --test groups 2>&1 | tee "$logs/nextest-aws.log"
  nextest_line rust-aws "$logs/nextest-aws.log"
else
  echo "moto is not running"; count rust-aws x 0 1
fi

pytest_line() { # name log: pytest's "N passed, M failed, K errors in ..." line
  local line pp pf
  line=$(tail -5 "$2" | grep -E "passed|failed|error" | tail -1)
  pp=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
  pf=$(echo "$line" | grep -oE '[0-9]+ (failed|errors?)' | awk '{s+=$1} END {print s+0}')
  [ -n "$line" ] || pf=1
  count "$1" "$2" "${pp:-0}" "${pf:-0}"
}

stage "python clients (confluent-kafka, kafka-python)"
tests/python/run.sh -q 2>&1 | tee "$logs/python.log"
pytest_line python "$logs/python.log"

suite_line() { # name log
  local line sp sf
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$2" | tail -1)
  sp=$(echo "$line" | grep -oE '^[0-9]+' || echo 0)
  sf=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 1)
  [ -n "$line" ] || sf=1
  count "$1" "$2" "${sp:-0}" "${sf:-0}"
}

stage "kcat"
bash tests/kcat/run.sh 2>&1 | tee "$logs/kcat.log"
suite_line kcat "$logs/kcat.log"

for suite in node; do
  if [ -x "tests/$suite/run.sh" ]; then
    stage "$suite"
    bash "tests/$suite/run.sh" 2>&1 | tee "$logs/$suite.log"
    suite_line "$suite" "$logs/$suite.log"
  fi
done

# The same client suites on the AWS backend: FLOE_TEST_BACKEND=aws gives every
# broker they start its own bucket and table on moto (see their READMEs).
aws_suite() { # name parser command...
  local name=$1 parser=$2
  shift 2
  stage "$name: AWS backend on moto"
  if [ -z "${FLOE_TEST_MOTO_ENDPOINT:-}" ]; then
    echo "moto is not running"; count "$name" x 0 1; return
  fi
  FLOE_TEST_BACKEND=aws "$@" 2>&1 | tee "$logs/$name.log"
  "$parser" "$name" "$logs/$name.log"
}
# Consumer groups on DynamoDB are covered by the Rust suites above (groups.rs,
# both protocols, coordinator killed); the Python group suite runs on the
# embedded backend only, to keep CI under its time budget.
aws_suite python-aws pytest_line tests/python/run.sh -q --ignore=test_groups.py
aws_suite kcat-aws suite_line bash tests/kcat/run.sh
if [ -x tests/node/run.sh ]; then aws_suite node-aws suite_line bash tests/node/run.sh; fi

# librdkafka's allow-list against a fresh gateway. The suite assumes Kafka's
# defaults for auto-created topics (4 partitions).
run_librdkafka() { # name port extra floe args...
  local name=$1 port=$2 dir pid
  shift 2
  dir=$(mktemp -d)
  "$FLOE_BIN" --listen "127.0.0.1:$port" --data-dir "$dir" --default-partitions 4 \
    --log-level warn "$@" >"$logs/$name-floe.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  local install_flag=()
  [ "$(id -u)" = 0 ] && install_flag=(--install)
  BOOTSTRAP="127.0.0.1:$port" bash tests/librdkafka/run.sh "${install_flag[@]}" 2>&1 | tee "$logs/$name.log"
  kill -TERM "$pid" 2>/dev/null
  if ! wait "$pid"; then
    echo "floe ($name) exited non-zero"; tail -20 "$logs/$name-floe.log"
    echo "0 passed, 1 failed" >>"$logs/$name.log"
  fi
  suite_line "$name" "$logs/$name.log"
  rm -rf "$dir"
}

stage "librdkafka test suite (allow-list), embedded backend"
run_librdkafka librdkafka 29092

stage "librdkafka test suite (allow-list), AWS backend on moto"
if [ -n "${FLOE_TEST_MOTO_ENDPOINT:-}" ]; then
  aws_name="floe-lrk-$$"
  aws_args=(--backend aws --bucket "$aws_name" --table "$aws_name"
    --endpoint-url "$FLOE_TEST_MOTO_ENDPOINT" --region us-east-1)
  if "$FLOE_BIN" init "${aws_args[@]}"; then
    GATEWAY_BACKEND=aws run_librdkafka librdkafka-aws 29093 "${aws_args[@]}" --flush-interval 10ms
  else
    count librdkafka-aws x 0 1
  fi
else
  echo "moto is not running"; count librdkafka-aws x 0 1
fi

echo
echo "$passed passed, $failed failed"
exit $status
