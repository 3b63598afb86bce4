#!/usr/bin/env bash
# The Go client suites: franz-go and IBM sarama against the floe binary (see README.md).
# Usage: tests/go/run.sh [go test args, e.g. -run Sarama]
#   FLOE_BIN=/path/to/floe (default target/debug/floe); FLOE_TEST_BACKEND=aws with
#   FLOE_TEST_MOTO_ENDPOINT runs them on the AWS backend.
# FLOE_TEST_INSTALL=only: download the modules and compile the tests, then stop.
# Last line of output: "N passed, M failed" (top-level tests and subtests); exit status non-zero
# if anything failed.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
. "$repo/tests/floe-bin.sh"
cd "$here"
if ! command -v go >/dev/null 2>&1; then
  echo "go is needed (https://go.dev/dl or apt-get install golang)"
  echo "0 passed, 1 failed"
  exit 1
fi
if [ "${FLOE_TEST_INSTALL:-}" = only ]; then
  go mod download && go test -count=1 -run '^$' ./... >/dev/null
  exit $?
fi
if [ ! -x "$FLOE_BIN" ]; then
  echo "floe binary not found or not executable: $FLOE_BIN (build it or set FLOE_BIN)"
  echo "0 passed, 1 failed"
  exit 1
fi
out=$(mktemp)
# -p 1: one package anyway; tests within it run one at a time (each starts its own gateway).
go test -count=1 -v -timeout 20m "$@" ./... 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
passed=$(grep -cE '^\s*--- PASS' "$out")
failed=$(grep -cE '^\s*--- FAIL' "$out")
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "go test exited $rc without a failed test (build error or panic, above)"
  failed=1
fi
rm -f "$out"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$rc" -eq 0 ]
