#!/usr/bin/env bash
# AWS emulators for Floe's tests, without Docker: moto server (S3 + DynamoDB) and
# LocalStack in host mode (S3 only offline). See localstack/README.md.
#
#   emulators.sh install [moto|localstack]   create/refresh the cached venvs (idempotent)
#   emulators.sh start   [moto|localstack]   start in the background, wait until healthy,
#                                            print shell exports on stdout
#   emulators.sh stop    [moto|localstack]   TERM, wait up to 10 s, KILL; remove pid files
#   emulators.sh status  [moto|localstack]   say what runs
#   emulators.sh env     [moto|localstack]   print the shell exports only
#
# Typical use:  eval "$(localstack/emulators.sh start)"; ...; localstack/emulators.sh stop
# Progress and errors go to stderr; stdout carries only the exports.
#
# Settings (environment):
#   FLOE_EMU_HOME          cache root (default ~/.cache/floe-emulators)
#   FLOE_EMU_STATE         pid files, logs, LocalStack's filesystem (default $FLOE_EMU_HOME/state)
#   FLOE_MOTO_PORT         moto port on 127.0.0.1 (default 5599)
#   FLOE_LOCALSTACK_PORT   LocalStack port on 127.0.0.1 (default 4566)
#   FLOE_EMU_TIMEOUT       seconds to wait for health (default 60)
#   FLOE_EMU_PY311 / FLOE_EMU_PY313   interpreters to build the venvs from
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EMU_HOME="${FLOE_EMU_HOME:-$HOME/.cache/floe-emulators}"
STATE="${FLOE_EMU_STATE:-$EMU_HOME/state}"
MOTO_PORT="${FLOE_MOTO_PORT:-5599}"
LS_PORT="${FLOE_LOCALSTACK_PORT:-4566}"
TIMEOUT="${FLOE_EMU_TIMEOUT:-60}"
STOP_GRACE=10

for _p in "$MOTO_PORT" "$LS_PORT"; do
  [[ "$_p" =~ ^[0-9]+$ ]] && (( _p >= 1 && _p <= 65535 )) \
    || { printf 'emulators: error: bad port %q (1-65535)\n' "$_p" >&2; exit 1; }
done
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || { printf 'emulators: error: bad FLOE_EMU_TIMEOUT %q\n' "$TIMEOUT" >&2; exit 1; }

MOTO_VENV="$EMU_HOME/moto-py311"
LS_VENV="$EMU_HOME/localstack-py313"
MOTO_REQ="$HERE/requirements-moto.txt"
LS_REQ="$HERE/requirements-localstack.txt"

log() { printf 'emulators: %s\n' "$*" >&2; }
die() { printf 'emulators: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- interpreters

pyenv_python() { # $1 = version prefix, e.g. 3.11
  local root cand
  root="${PYENV_ROOT:-}"
  if [[ -z "$root" ]] && command -v pyenv >/dev/null 2>&1; then root="$(pyenv root 2>/dev/null || true)"; fi
  [[ -n "$root" ]] || root="$HOME/.pyenv"
  # Newest installed patch release of that minor version.
  for cand in $(ls -d "$root/versions/$1".* 2>/dev/null | sort -V -r); do
    if [[ -x "$cand/bin/python3" ]]; then echo "$cand/bin/python3"; return 0; fi
  done
  return 1
}

find_python() { # $1 = minor version (3.11 / 3.13), $2 = override
  local want="$1" override="$2" p
  if [[ -n "$override" ]]; then echo "$override"; return 0; fi
  if [[ "$want" == 3.13 && -x "$HOME/.pyenv/versions/3.13.0/bin/python3" ]]; then
    echo "$HOME/.pyenv/versions/3.13.0/bin/python3"; return 0
  fi
  if p="$(pyenv_python "$want")"; then echo "$p"; return 0; fi
  for p in "python$want" python3; do
    if command -v "$p" >/dev/null 2>&1 &&
       [[ "$("$p" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" == "$want" ]]; then
      command -v "$p"; return 0
    fi
  done
  die "no Python $want found (pyenv install $want, or set FLOE_EMU_PY${want/./})"
}

# ---------------------------------------------------------------- install

req_hash() { # requirement file + interpreter version -> stamp content
  { cat "$1"; "$2" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}

install_venv() { # $1 = name, $2 = venv dir, $3 = requirements, $4 = python
  local name="$1" venv="$2" req="$3" py="$4" stamp want
  stamp="$venv/.floe-stamp"
  want="$(req_hash "$req" "$py")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
    log "$name: up to date ($venv)"
    return 0
  fi
  log "$name: installing into $venv with $("$py" --version 2>&1) ..."
  local t0=$SECONDS
  rm -rf "$venv"
  mkdir -p "$EMU_HOME"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" \
    || die "$name: pip install failed (rm -rf $venv and retry to start clean)"
  echo "$want" > "$stamp"
  log "$name: installed in $((SECONDS - t0)) s"
}

install_moto() { install_venv moto "$MOTO_VENV" "$MOTO_REQ" "$(find_python 3.11 "${FLOE_EMU_PY311:-}")"; }
install_localstack() { install_venv localstack "$LS_VENV" "$LS_REQ" "$(find_python 3.13 "${FLOE_EMU_PY313:-}")"; }

require_installed() { # $1 = name, $2 = venv
  [[ -f "$2/.floe-stamp" && -x "$2/bin/python" ]] || die "$1 is not installed: run '$0 install $1' first"
}

# ---------------------------------------------------------------- processes

pidfile() { echo "$STATE/$1.pid"; }

# Alive and not a zombie. Emulators are re-parented to PID 1 once this script exits, and
# on some machines PID 1 reaps late (seconds): `kill -0` alone would call a zombie alive.
alive() { # $1 = pid
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}
logfile() { echo "$STATE/$1.log"; }

# Is the pid in the pid file alive and still our emulator (guards against pid reuse)?
running_pid() { # $1 = name; prints pid
  local f pid
  f="$(pidfile "$1")"
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  local pattern
  case "$1" in
    moto) pattern='moto_server|moto\.server' ;;
    localstack) pattern='localstack' ;;
  esac
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -Eq "$pattern" || return 1
  echo "$pid"
}

port_busy() { # $1 = port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

log_tail() { # $1 = name
  local f
  f="$(logfile "$1")"
  printf -- '--- last lines of %s ---\n' "$f" >&2
  tail -n 30 "$f" >&2 2>/dev/null || true
  printf -- '---\n' >&2
}

# Health probes use the venv's python (urllib) so curl is not needed.
probe_moto() {
  "$MOTO_VENV/bin/python" - "$MOTO_PORT" <<'EOF' 2>/dev/null
import sys, urllib.request
port = sys.argv[1]
# moto answers an unsigned ListBuckets on / with 200 and a ListAllMyBucketsResult.
with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
    body = r.read()
    sys.exit(0 if r.status == 200 and b"ListAllMyBucketsResult" in body else 1)
EOF
}

probe_localstack() {
  "$LS_VENV/bin/python" - "$LS_PORT" <<'EOF' 2>/dev/null
import sys, json, urllib.request
port = sys.argv[1]
with urllib.request.urlopen(f"http://127.0.0.1:{port}/_localstack/health", timeout=2) as r:
    svc = json.load(r).get("services", {})
    sys.exit(0 if svc.get("s3") in ("running", "available") else 1)
EOF
}

wait_healthy() { # $1 = name, $2 = pid
  local name="$1" pid="$2" t0 now
  t0=$(date +%s%N)
  while :; do
    if ! alive "$pid"; then
      rm -f "$(pidfile "$name")"
      log "$name exited during start-up"
      log_tail "$name"
      die "$name failed to start"
    fi
    if "probe_$name"; then
      now=$(date +%s%N)
      log "$name healthy after $(( (now - t0) / 1000000 )) ms (pid $pid, log $(logfile "$name"))"
      return 0
    fi
    now=$(date +%s%N)
    if (( (now - t0) / 1000000000 >= TIMEOUT )); then
      log "$name not healthy after ${TIMEOUT} s; stopping it"
      log_tail "$name"
      stop_one "$name" >/dev/null 2>&1 || true
      die "$name failed to become healthy"
    fi
    sleep 0.2
  done
}

# Start "$@" in its own session (so stop can signal the whole process group),
# detached from our stdin/stdout, and write its pid file.
spawn() { # $1 = name, rest = env + command
  local name="$1"; shift
  mkdir -p "$STATE"
  : > "$(logfile "$name")"
  setsid env "$@" < /dev/null >> "$(logfile "$name")" 2>&1 &
  local pid=$!
  echo "$pid" > "$(pidfile "$name")"
  echo "$pid"
}

start_moto() {
  require_installed moto "$MOTO_VENV"
  local pid
  if pid="$(running_pid moto)"; then log "moto already running (pid $pid)"; return 0; fi
  rm -f "$(pidfile moto)"
  port_busy "$MOTO_PORT" && die "port 127.0.0.1:$MOTO_PORT is in use by another process (set FLOE_MOTO_PORT)"
  log "starting moto on 127.0.0.1:$MOTO_PORT"
  # moto_server.py: moto's own server, with its transactions' rollback state
  # kept per item instead of per table (see that file)
  pid="$(spawn moto "$MOTO_VENV/bin/python" "$HERE/moto_server.py" -H 127.0.0.1 -p "$MOTO_PORT")"
  wait_healthy moto "$pid"
}

start_localstack() {
  require_installed localstack "$LS_VENV"
  local pid
  if pid="$(running_pid localstack)"; then log "localstack already running (pid $pid)"; return 0; fi
  rm -f "$(pidfile localstack)"
  port_busy "$LS_PORT" && die "port 127.0.0.1:$LS_PORT is in use by another process (set FLOE_LOCALSTACK_PORT)"
  log "starting localstack on 127.0.0.1:$LS_PORT"
  # Fresh filesystem each start: no state survives a restart (like moto).
  rm -rf "$STATE/localstack-fs"
  mkdir -p "$STATE/localstack-fs"
  # hypercorn: the default gateway binds 0.0.0.0 whatever GATEWAY_LISTEN says.
  # FILESYSTEM_ROOT keeps LocalStack's files out of the venv's site-packages.
  pid="$(spawn localstack \
    GATEWAY_SERVER=hypercorn GATEWAY_LISTEN="127.0.0.1:$LS_PORT" SERVICES=s3,sts \
    DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 OVERRIDE_IN_DOCKER=0 \
    FILESYSTEM_ROOT="$STATE/localstack-fs" DISABLE_EVENTS=1 LOCALSTACK_TELEMETRY_DISABLED=1 \
    "$LS_VENV/bin/python" -m localstack.runtime.main)"
  wait_healthy localstack "$pid"
}

stop_one() { # $1 = name
  local name="$1" pid target i
  if ! pid="$(running_pid "$name")"; then
    if [[ -f "$(pidfile "$name")" ]]; then log "$name: removing stale pid file"; rm -f "$(pidfile "$name")"
    else log "$name: not running"; fi
    return 0
  fi
  # spawn used setsid, so the pid leads its own process group: signal the group
  # (catches any children). Fall back to the pid alone if that is not the case.
  target="$pid"
  if [[ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$pid" ]]; then target="-$pid"; fi
  log "$name: stopping (pid $pid)"
  kill -TERM -- "$target" 2>/dev/null || true
  for ((i = 0; i < STOP_GRACE * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name: still running after ${STOP_GRACE} s, sending KILL"
    kill -KILL -- "$target" 2>/dev/null || true
    sleep 0.2
  elif [[ "$target" == -* ]]; then
    # Leader is gone; make sure no group member lingers.
    kill -KILL -- "$target" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")"
  log "$name: stopped"
}

# ---------------------------------------------------------------- exports

print_env() { # $@ = which
  local w
  for w in "$@"; do
    case "$w" in
      moto) echo "export FLOE_TEST_MOTO_ENDPOINT=http://127.0.0.1:$MOTO_PORT" ;;
      localstack) echo "export FLOE_TEST_LOCALSTACK_ENDPOINT=http://127.0.0.1:$LS_PORT" ;;
    esac
  done
  echo "export AWS_ACCESS_KEY_ID=test"
  echo "export AWS_SECRET_ACCESS_KEY=test"
  echo "export AWS_REGION=us-east-1"
  echo "export AWS_DEFAULT_REGION=us-east-1"
}

# ---------------------------------------------------------------- main

usage() {
  sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

cmd="${1:-}"
[[ -n "$cmd" ]] || usage
shift
case "${1:-all}" in
  all) which=(moto localstack) ;;
  moto | localstack) which=("$1") ;;
  *) die "unknown emulator '$1' (moto or localstack)" ;;
esac

case "$cmd" in
  install)
    for w in "${which[@]}"; do "install_$w"; done ;;
  start)
    for w in "${which[@]}"; do
      if ! "start_$w"; then exit 1; fi
    done
    print_env "${which[@]}" ;;
  stop)
    for w in "${which[@]}"; do stop_one "$w"; done ;;
  status)
    for w in "${which[@]}"; do
      if pid="$(running_pid "$w")"; then echo "$w: running (pid $pid)"; else echo "$w: stopped"; fi
    done ;;
  env)
    print_env "${which[@]}" ;;
  -h | --help | help) usage ;;
  *) die "unknown command '$cmd' (install, start, stop, status, env)" ;;
esac
