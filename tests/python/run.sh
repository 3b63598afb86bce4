#!/usr/bin/env bash
# Create/refresh tests/python/.venv and run the Python end-to-end suite against the floe binary.
# Usage: tests/python/run.sh [pytest args...]     (FLOE_BIN=/path/to/floe to pick a binary)
# FLOE_TEST_INSTALL=only: create/refresh the venv and stop; =skip: run on the venv as it is
# (scripts/test-all.sh installs first, then runs suites side by side that must not pip install).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "${FLOE_TEST_INSTALL:-}" != skip ]; then
  py="${PYTHON:-python3.11}"
  command -v "$py" >/dev/null 2>&1 || py=python3
  if [ ! -x "$here/.venv/bin/python" ]; then
    "$py" -m venv "$here/.venv"
  fi
  "$here/.venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
fi
[ "${FLOE_TEST_INSTALL:-}" != only ] || exit 0
cd "$here"
exec "$here/.venv/bin/python" -m pytest "$@"
