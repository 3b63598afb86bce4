#!/usr/bin/env bash
# The Java client suite: kafka-clients (4.x and the 3.9 line) against the floe binary, with Maven
# and JUnit 5 (see README.md).
# Usage: tests/java/run.sh [maven args, e.g. -Dtest=AdminTest]
#   FLOE_BIN=/path/to/floe (default target/debug/floe); FLOE_TEST_BACKEND=aws with
#   FLOE_TEST_MOTO_ENDPOINT runs it on the AWS backend; FLOE_JAVA_KAFKA_VERSIONS="4.3.1 3.9.1"
#   picks the client versions (each is a whole run of the suite); FLOE_JAVA_REFERENCE=kafka runs it
#   against Apache Kafka 4.3.1 instead (the reference behaviour).
# FLOE_TEST_INSTALL=only: fetch the dependencies and compile for every version, then stop; =skip:
# no fetching beyond what Maven lacks (scripts/test-all.sh installs first, then runs suites side
# by side).
# Last line of output: "N passed, M failed"; exit status non-zero if anything failed.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
. "$repo/tests/floe-bin.sh"
# 4.3.1: the newest 4.x whose every artifact the suite uses (connect-file too) is on the
# registry these machines reach.
versions=(${FLOE_JAVA_KAFKA_VERSIONS:-4.3.1 3.9.1})
build_dir="$here/target/${FLOE_TEST_BACKEND:-embedded}"
mvn_flags=(-B --no-transfer-progress -f "$here/pom.xml")
# FLOE_JAVA_REFERENCE=kafka: the same suite against Apache Kafka 4.3.1 (a KRaft node from Maven
# Central's kafka_2.13), the reference behaviour; Floe-only tests are skipped there.
if [ "${FLOE_JAVA_REFERENCE:-}" = kafka ]; then
  versions=(${FLOE_JAVA_KAFKA_VERSIONS:-4.3.1})
  build_dir="$here/target/reference"
  mvn_flags+=(-Preference -Dfloe.reference=kafka)
fi
mvn_flags+=(-Dfloe.build.dir="$build_dir")

if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
  echo "java and mvn are needed (apt-get install openjdk-17-jdk-headless maven)"
  echo "0 passed, 1 failed"
  exit 1
fi

if [ "${FLOE_TEST_INSTALL:-}" = only ]; then
  rc=0
  # the reference broker's artifacts too
  mvn "${mvn_flags[@]}" -q -Preference dependency:resolve -Dkafka.version=4.3.1 >/dev/null || rc=1
  for v in "${versions[@]}"; do
    # test-compile fetches the clients; surefire and its JUnit provider come with a run that
    # selects no test.
    mvn "${mvn_flags[@]}" -q test -Dkafka.version="$v" -Dtest=NoSuchTest -Dsurefire.failIfNoSpecifiedTests=false \
      || rc=1
  done
  exit $rc
fi
if [ "${FLOE_JAVA_REFERENCE:-}" != kafka ] && [ ! -x "$FLOE_BIN" ]; then
  echo "floe binary not found or not executable: $FLOE_BIN (build it or set FLOE_BIN)"
  echo "0 passed, 1 failed"
  exit 1
fi

passed=0
failed=0
for v in "${versions[@]}"; do
  reports="$build_dir/surefire-reports-$v"
  rm -rf "$reports"
  echo "=== kafka-clients $v against ${FLOE_JAVA_REFERENCE:-floe}, backend ${FLOE_TEST_BACKEND:-embedded} ==="
  mvn "${mvn_flags[@]}" test -Dkafka.version="$v" "$@"
  # Counts from the reports: a test that failed or erred counts once.
  counts=$(python3 - "$reports" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
t = f = s = 0
for path in glob.glob(sys.argv[1] + "/TEST-*.xml"):
    r = ET.parse(path).getroot()
    t += int(r.get("tests", 0)); s += int(r.get("skipped", 0))
    f += int(r.get("failures", 0)) + int(r.get("errors", 0))
print(t - f - s, f)
PY
  )
  read -r p f <<<"${counts:-0 0}"
  if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
    echo "kafka-clients $v: no test ran (see the Maven output above)"
    f=1
  fi
  echo "kafka-clients $v: $p passed, $f failed"
  passed=$((passed + p))
  failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
