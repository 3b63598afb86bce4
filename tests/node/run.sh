#!/usr/bin/env bash
# kafkajs end-to-end suite against the floe binary (see README.md).
# Usage: tests/node/run.sh [test files...]   FLOE_BIN=/path/to/floe (default target/debug/floe)
# Last line of output: "N passed, M failed"; exit status non-zero if anything failed.
# FLOE_TEST_INSTALL=only: npm ci (and the Python venv's confluent-kafka) and stop; =skip: no
# installs (scripts/test-all.sh installs first, then runs suites side by side).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
. "$repo/tests/floe-bin.sh"
if [ "${FLOE_TEST_INSTALL:-}" != only ] && [ ! -x "$FLOE_BIN" ]; then
  echo "floe binary not found or not executable: $FLOE_BIN (build it or set FLOE_BIN)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

cd "$here"
# Exact versions from package-lock.json; .npmrc sets ignore-scripts (no native builds).
if [ "${FLOE_TEST_INSTALL:-}" != skip ]; then
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi

# The independent read-back (read_back.py) uses confluent-kafka from the Python suite's venv.
py="${FLOE_NODE_PYTHON:-$repo/tests/python/.venv/bin/python}"
if [ "${FLOE_TEST_INSTALL:-}" != skip ] && ! "$py" -c 'import confluent_kafka' >/dev/null 2>&1; then
  base="${PYTHON:-python3.11}"
  command -v "$base" >/dev/null 2>&1 || base=python3
  [ -x "$repo/tests/python/.venv/bin/python" ] || "$base" -m venv "$repo/tests/python/.venv"
  "$repo/tests/python/.venv/bin/pip" install -q --disable-pip-version-check -r "$repo/tests/python/requirements.txt"
  py="$repo/tests/python/.venv/bin/python"
fi
export FLOE_NODE_PYTHON="$py"
[ "${FLOE_TEST_INSTALL:-}" != only ] || exit 0

if [ "$#" -gt 0 ]; then files=("$@"); else files=(test/*.test.js); fi
tap="$(mktemp)"
trap 'rm -f "$tap"' EXIT
set +e
node --test \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" \
  "${files[@]}"
rc=$?
set -e
pass="$(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)"
fail="$(sed -n 's/^# fail \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)"
# Tests cancelled because a before() hook threw (e.g. floe did not start) count as failed.
cancelled="$(sed -n 's/^# cancelled \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)"
[ -z "$fail" ] || fail=$((fail + ${cancelled:-0}))
if [ -z "$pass" ] || [ -z "$fail" ]; then
  echo "node --test printed no summary (exit $rc)" >&2
  echo "${pass:-0} passed, $(( ${fail:-0} + 1 )) failed"
  exit 1
fi
if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
  echo "node --test exited $rc with no failed test" >&2
  fail=1
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
