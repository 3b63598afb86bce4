#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite: formatting and lints,
# Rust unit/contract/end-to-end tests (rdkafka), the Python client suites
# (confluent-kafka, kafka-python), kcat, kafkajs, the Java client (kafka-clients
# 4.3 and 3.9), the Go clients (franz-go, sarama) and the librdkafka test-suite
# allow-list, the client suites on the embedded backend and again on the AWS
# backend (S3 + DynamoDB on moto). Ends with one line "N passed, M failed" over
# every suite.
#
# Lints, builds and the Rust tests run one after another (cargo and nextest
# use both cores). The client suites and the librdkafka allow-lists, which are
# mostly waiting on timeouts and rebalance delays, then run side by side in two
# lanes (see "side by side" below); their logs are printed whole, in a fixed
# order, once both lanes are done.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
logs=$(mktemp -d)
passed=0
failed=0
status=0

# The seconds since the start on every header: CI output shows where time goes.
stage() { echo; echo "=== $* === [+${SECONDS}s]"; }
count() { # name log passed failed
  echo "--- $1: $3 passed, $4 failed"
  passed=$((passed + $3)); failed=$((failed + $4))
  if [ "$4" -ne 0 ]; then status=1; fi
}

stage "system packages"
need=()
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
# Debian's Go is older than tests/go/go.mod asks; it then fetches that toolchain
# from the module proxy (GOTOOLCHAIN=auto).
command -v go >/dev/null 2>&1 || need+=(golang-go)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
      || echo "warning: could not install ${need[*]}"
  else
    echo "warning: not root; cannot install ${need[*]}"
  fi
fi
command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest --locked

# Every cargo command below builds one feature set, so the workspace compiles
# once: the Lambda function's feature is on for all of them (cargo unifies
# features over the packages it is asked for, and `-p` alone would pick a
# second set and compile the dependency tree again). Incremental state only
# speeds up edits, and a clean checkout makes none: on a fresh machine it was
# 2.3 GB of a 6 GB target directory, and CI's disk is not unlimited.
export CARGO_INCREMENTAL=0
ws=(--workspace --locked --features floe-compactor/lambda)

stage "format and lints"
if cargo fmt --all -- --check; then count fmt x 1 0; else count fmt x 0 1; fi
if cargo clippy "${ws[@]}" --all-targets -- -D warnings; then
  count clippy x 1 0
else
  count clippy x 0 1
fi

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
# With the compactor's Lambda function (`floe-compactor-lambda`, feature
# `lambda`): tests/python/test_lambda.py runs it under cargo-lambda's Runtime
# API emulator in the Python suite on moto.
cargo build "${ws[@]}" --all-targets || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
export FLOE_BIN="$root/target/debug/floe"

# floe-core's backends are features: a crate that takes only `aws` (a Lambda
# compactor) must build without SQLite, one that takes only `embedded`
# without the AWS SDK.
stage "floe-core with one backend each (no SQLite with aws, no AWS SDK with embedded)"
features_ok=1
for only in aws embedded; do
  # crates the other backend needs, as `cargo tree` prints them
  other=$([ "$only" = aws ] && echo '^(rusqlite|libsqlite3-sys) v' || echo '^aws-(sdk|config|smithy)')
  # `check`, not `build`: whether it compiles is the question, and metadata
  # alone answers it without a third copy of the AWS SDK's object code.
  if ! cargo check -q -p floe-core --lib --locked --no-default-features --features "$only"; then
    echo "floe-core does not build with only the $only feature"; features_ok=0
    continue
  fi
  leaked=$(cargo tree -q -p floe-core --no-default-features --features "$only" -e normal --prefix none \
    | grep -E "$other" | sort -u | tr '\n' ' ')
  if [ -n "$leaked" ]; then
    echo "floe-core with only $only still depends on: $leaked"; features_ok=0
  else
    echo "floe-core with only $only: builds, and none of $other"
  fi
done
# The Lambda function as `cargo lambda build` ships it: floe-core with `aws`
# alone (the workspace build above unifies `embedded` in).
if cargo check -q --locked -p floe-compactor --features lambda --bin floe-compactor-lambda; then
  echo "floe-compactor-lambda: builds on floe-core with only aws"
else
  echo "floe-compactor-lambda does not build on floe-core with only aws"; features_ok=0
fi
if [ "$features_ok" = 1 ]; then count features x 1 0; else count features x 0 1; fi

stage "AWS emulators (moto: S3 + DynamoDB; LocalStack: S3)"
if localstack/emulators.sh install && emu_env=$(localstack/emulators.sh start); then
  eval "$emu_env"
  trap 'localstack/emulators.sh stop >/dev/null 2>&1 || true' EXIT
else
  # The emulator tests then fail (they never skip silently).
  echo "warning: emulators did not start; the AWS contract tests will fail"
fi
# The emulator behaviours Floe relies on (conditional puts, transactions and
# their rollback): a failure here explains failures of the AWS suites below.
if "${FLOE_EMU_HOME:-$HOME/.cache/floe-emulators}/moto-py311/bin/python" localstack/smoke.py; then
  count emulator-smoke x 1 0
else
  count emulator-smoke x 0 1
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
cargo nextest run "${ws[@]}" --no-fail-fast --run-ignored all -E 'not test(write_fuzz_seeds)' 2>&1 | tee "$logs/nextest.log"
nextest_line rust "$logs/nextest.log"

# The in-process end-to-end suites again, each gateway on a fresh bucket and
# table on moto (tests/common/mod.rs reads FLOE_TEST_BACKEND).
stage "rust end-to-end suites on the AWS backend (moto)"
if [ -n "${FLOE_TEST_MOTO_ENDPOINT:-}" ]; then
  # The workspace's build, not `-p floe-gateway` (a second feature set and a
  # second copy of every test binary); the filter picks the suites.
  suites=$(printf 'binary(=%s) | ' e2e_rdkafka wire_apis versions failover zones offsets groups bench)
  FLOE_TEST_BACKEND=aws cargo nextest run "${ws[@]}" --no-fail-fast \
    -E "package(=floe-gateway) & (${suites% | })" 2>&1 | tee "$logs/nextest-aws.log"
  nextest_line rust-aws "$logs/nextest-aws.log"
else
  echo "moto is not running"; count rust-aws x 0 1
fi

pytest_line() { # name log: pytest's "N passed, M failed, K errors in ..." line
  local line pp pf
  # Only pytest's own summary line: a client's log line printed after it (a
  # librdkafka "Connect to ...:38671 failed") must not be read as a count.
  line=$(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected)[^%]* in [0-9.]+s' "$2" | tail -1)
  pp=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
  pf=$(echo "$line" | grep -oE '[0-9]+ (failed|errors?)' | awk '{s+=$1} END {print s+0}')
  [ -n "$line" ] || pf=1
  count "$1" "$2" "${pp:-0}" "${pf:-0}"
}

suite_line() { # name log
  local line sp sf
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$2" | tail -1)
  sp=$(echo "$line" | grep -oE '^[0-9]+' || echo 0)
  sf=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 1)
  [ -n "$line" ] || sf=1
  count "$1" "$2" "${sp:-0}" "${sf:-0}"
}

# Everything the suites below install is installed here, one at a time: they
# then run side by side, and two of them writing the same venv, node_modules or
# librdkafka build at once would race. (kcat came from apt above.)
stage "test dependencies: Python venv, Maven (kafka-clients), Go modules, kafkajs, librdkafka's test-runner"
FLOE_TEST_INSTALL=only tests/python/run.sh \
  || echo "warning: the Python venv did not install; the Python and node suites will fail"
FLOE_TEST_INSTALL=only bash tests/java/run.sh >/dev/null \
  || echo "warning: Maven could not fetch kafka-clients; the Java suites will fail"
FLOE_TEST_INSTALL=only bash tests/go/run.sh \
  || echo "warning: the Go modules did not download; the Go suites will fail"
if [ -x tests/node/run.sh ]; then
  FLOE_TEST_INSTALL=only bash tests/node/run.sh \
    || echo "warning: npm ci failed; the node suites will fail"
fi
lrk_flags=(--build-only)
[ "$(id -u)" = 0 ] && lrk_flags=(--install --build-only)
if bash tests/librdkafka/run.sh "${lrk_flags[@]}"; then
  lrk_built=1
else
  lrk_built=0
  echo "warning: librdkafka's test-runner did not build; both allow-list runs fail"
fi

# ------------------------------------------------------------- side by side
# Two lanes, each running its suites one after another (times from CI on 2 cores):
#   1: the allow-list on the embedded backend (~590 s), python (~225 s), java
#      (~170 s: kafka-clients 4.3.1 and 3.9.1), go (~40 s), then the Java suite
#      against Apache Kafka as the reference (~110 s)
#   2: python-aws (~80 s), kcat-aws, java-aws (~150 s), go-aws (~40 s), node-aws
#      (~105 s), the allow-list on moto (~420 s), then kcat and node (~110 s)
# Both are mostly waiting on timeouts and rebalance delays, so two lanes fit 2
# cores; no cargo runs here. Every suite on moto is in lane 2, so moto (seen
# stalling for seconds when several tests hammered it) serves one suite at a
# time; every gateway has its own bucket and table anyway. The two allow-list
# runs share librdkafka's build but not their test.conf and logs (RUN_NAME).
# FLOE_CI_SERIAL=1 runs the lanes one after the other (to tell a failure caused
# by running side by side from a real one).
# A suite writes only its own log; logs are printed and counted at the end.

suite() { # name command...: runs the command, its output in $logs/name.log
  local name=$1 t0=$SECONDS rc=0
  shift
  "$@" >"$logs/$name.log" 2>&1 </dev/null || rc=$?
  echo "$((SECONDS - t0)) s, exit $rc" >"$logs/$name.took"
  # one short line per suite (a single write: the lanes' lines do not mix)
  echo "[+${SECONDS}s] $name done: $((SECONDS - t0)) s, exit $rc"
}

# The same client suites on the AWS backend: FLOE_TEST_BACKEND=aws gives every
# broker they start its own bucket and table on moto (see their READMEs).
on_moto() { # command...
  if [ -z "${FLOE_TEST_MOTO_ENDPOINT:-}" ]; then echo "moto is not running"; return 1; fi
  FLOE_TEST_BACKEND=aws "$@"
}

# librdkafka's allow-list against a fresh gateway. The suite assumes Kafka's
# defaults for auto-created topics (4 partitions). Ports 19092/19093: below
# 20000-31999 (the node and Rust suites' brokers) and the kernel's ephemeral
# range (32768-60999: Python and kcat brokers, client connections), so no other
# suite's broker can hold the port.
run_librdkafka() { # name port extra floe args...
  local name=$1 port=$2 dir pid rc
  shift 2
  if [ "$lrk_built" != 1 ]; then echo "librdkafka's test-runner did not build (see above)"; return 1; fi
  # never run the list against some other process's broker
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "127.0.0.1:$port is already in use"; return 1; fi
  dir=$(mktemp -d)
  "$FLOE_BIN" --listen "127.0.0.1:$port" --data-dir "$dir" --default-partitions 4 \
    --log-level warn "$@" >"$logs/$name-floe.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  RUN_NAME="$name" BOOTSTRAP="127.0.0.1:$port" bash tests/librdkafka/run.sh
  rc=$?
  kill -TERM "$pid" 2>/dev/null
  if ! wait "$pid"; then
    echo "floe ($name) exited non-zero"; tail -20 "$logs/$name-floe.log"
    echo "0 passed, 1 failed"
    rc=1
  fi
  rm -rf "$dir"
  return $rc
}

librdkafka_on_moto() {
  if [ -z "${FLOE_TEST_MOTO_ENDPOINT:-}" ]; then echo "moto is not running"; return 1; fi
  if [ "$lrk_built" != 1 ]; then echo "librdkafka's test-runner did not build (see above)"; return 1; fi
  local aws_name="floe-lrk-$$" aws_args
  aws_args=(--backend aws --bucket "$aws_name" --table "$aws_name"
    --endpoint-url "$FLOE_TEST_MOTO_ENDPOINT" --region us-east-1)
  "$FLOE_BIN" init "${aws_args[@]}" || { echo "floe init failed"; return 1; }
  GATEWAY_BACKEND=aws run_librdkafka librdkafka-aws 19093 "${aws_args[@]}" --flush-interval 10ms
}

stage "client suites and librdkafka allow-lists, side by side (logs follow when all are done)"
# Installed above: the suites must not pip install or npm ci now.
export FLOE_TEST_INSTALL=skip
(
  suite librdkafka run_librdkafka librdkafka 19092
  suite python tests/python/run.sh -q
  suite java bash tests/java/run.sh
  suite go bash tests/go/run.sh
  suite java-kafka env FLOE_JAVA_REFERENCE=kafka bash tests/java/run.sh
) &
lane1=$!
if [ "${FLOE_CI_SERIAL:-}" = 1 ]; then wait "$lane1"; fi
(
  # Consumer groups on DynamoDB are covered by the Rust suites above (groups.rs,
  # both protocols, coordinator killed); the Python group suite runs on the
  # embedded backend only, to keep CI under its time budget.
  suite python-aws on_moto tests/python/run.sh -q --ignore=test_groups.py
  suite kcat-aws on_moto bash tests/kcat/run.sh
  suite java-aws on_moto bash tests/java/run.sh
  suite go-aws on_moto bash tests/go/run.sh
  if [ -x tests/node/run.sh ]; then suite node-aws on_moto bash tests/node/run.sh; fi
  suite librdkafka-aws librdkafka_on_moto
  suite kcat bash tests/kcat/run.sh
  if [ -x tests/node/run.sh ]; then suite node bash tests/node/run.sh; fi
) &
lane2=$!
wait "$lane1"
wait "$lane2"

show() { # name parser title: the suite's whole log, then its counts
  stage "$3 ($(cat "$logs/$1.took" 2>/dev/null || echo "did not run"))"
  cat "$logs/$1.log" 2>/dev/null
  "$2" "$1" "$logs/$1.log"
}
show python pytest_line "python clients (confluent-kafka, kafka-python)"
show kcat suite_line "kcat"
show java suite_line "java (kafka-clients 4.3.1 and 3.9.1)"
show go suite_line "go (franz-go, sarama)"
show java-kafka suite_line "java-kafka: the Java suite against Apache Kafka 4.3.1 (the reference)"
if [ -x tests/node/run.sh ]; then show node suite_line "node"; fi
show python-aws pytest_line "python-aws: AWS backend on moto"
show kcat-aws suite_line "kcat-aws: AWS backend on moto"
show java-aws suite_line "java-aws: AWS backend on moto"
show go-aws suite_line "go-aws: AWS backend on moto"
if [ -x tests/node/run.sh ]; then show node-aws suite_line "node-aws: AWS backend on moto"; fi
show librdkafka suite_line "librdkafka test suite (allow-list), embedded backend"
show librdkafka-aws suite_line "librdkafka test suite (allow-list), AWS backend on moto"

echo
echo "$passed passed, $failed failed"
exit $status
