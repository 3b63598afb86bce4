# Sourced by the client suites' run.sh after they set `repo` (the repository root): makes
# FLOE_BIN (default target/debug/floe) an absolute path, relative paths taken from the current
# directory if the file is there, else from the repository root, and exports it.
FLOE_BIN="${FLOE_BIN:-target/debug/floe}"
case "$FLOE_BIN" in
  /*) ;;
  *) if [ -e "$FLOE_BIN" ]; then FLOE_BIN="$(pwd)/$FLOE_BIN"; else FLOE_BIN="$repo/$FLOE_BIN"; fi ;;
esac
export FLOE_BIN
