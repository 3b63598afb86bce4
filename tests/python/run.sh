#!/usr/bin/env bash
# Create/refresh tests/python/.venv and run the Python end-to-end suite against the floe binary.
# Usage: tests/python/run.sh [pytest args...]     (FLOE_BIN=/path/to/floe to pick a binary)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if [ ! -x "$here/.venv/bin/python" ]; then
  "$py" -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
cd "$here"
exec "$here/.venv/bin/python" -m pytest "$@"
