#!/usr/bin/env bash
# Azurite (the Azure Storage emulator, from npm) on the loopback interface: the Azure Blob API for
# Assay's object-storage tests. Needs Node.js and npm.
#
#   bash scripts/azurite.sh fetch            npm install (pinned in scripts/azurite/package.json) into .cache/azurite
#   bash scripts/azurite.sh start [PORT]     start the blob service on 127.0.0.1:PORT (default 10000)
#   bash scripts/azurite.sh stop [PORT]      SIGTERM, then SIGKILL after AZURITE_STOP_TIMEOUT s (10)
#   bash scripts/azurite.sh status [PORT]    exit 0 and print the endpoint when it is running
#   bash scripts/azurite.sh log [PORT]       the tail of its log
#
# Environment:
#   AZURITE_DATA_DIR    run folder (data, log, pid); default .cache/azurite/run-PORT
#   AZURITE_WATCH_PID   if set, the emulator is stopped when that process ends (test sessions)
#   AZURITE_CACHE_DIR   where node_modules live (default .cache/azurite)
#   AZURITE_STOP_TIMEOUT seconds between SIGTERM and SIGKILL at stop (default 10; 0: SIGKILL at once)
# The account is Azurite's well-known development account (devstoreaccount1, its documented key).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$ROOT/scripts/azurite/package.json"
CACHE="${AZURITE_CACHE_DIR:-$ROOT/.cache/azurite}"
BIN="$CACHE/node_modules/.bin/azurite-blob"
STAMP="$CACHE/.fetched"

die() { echo "azurite.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"; }
pkg_sum() { sha256sum "$PKG" | cut -d' ' -f1; }
fetched() { [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$(pkg_sum)" ]]; }

cmd_fetch() {
  fetched && return 0
  need npm "Azurite installs from the npm registry"
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.fetch.lock"
  flock -w 600 9 || die "timed out waiting for another fetch"
  fetched && return 0
  cp "$PKG" "$CACHE/package.json"
  echo "azurite.sh: npm install (scripts/azurite/package.json)..." >&2
  if ! (cd "$CACHE" && npm install --no-audit --no-fund --omit=dev >"$CACHE/fetch.log" 2>&1); then
    tail -n 30 "$CACHE/fetch.log" >&2
    die "npm install failed (full log: $CACHE/fetch.log)"
  fi
  [[ -x "$BIN" ]] || die "npm installed no azurite-blob"
  pkg_sum >"$STAMP"
}

PORT="${2:-10000}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$PORT'"
RUN="${AZURITE_DATA_DIR:-$CACHE/run-$PORT}"
PIDFILE="$RUN/azurite.pid"
LOG="$RUN/azurite.log"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

server_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--location $RUN/data" || return 1
  echo "$pid"
}

cmd_start() {
  fetched || cmd_fetch
  need node "Azurite is a Node.js program"
  if pid="$(server_pid)"; then echo "http://127.0.0.1:$PORT/devstoreaccount1"; return 0; fi
  port_open "$PORT" && die "port $PORT is already in use by another program"
  mkdir -p "$RUN/data"
  # --loose: accept headers the emulator does not implement; --skipApiVersionCheck: newer clients.
  setsid node "$CACHE/node_modules/azurite/dist/src/blob/main.js" --blobHost 127.0.0.1 --blobPort "$PORT" \
      --location "$RUN/data" --loose --skipApiVersionCheck --disableProductStyleUrl \
      >"$LOG" 2>&1 </dev/null &
  local started=$!
  echo "$started" >"$PIDFILE"
  if [[ -n "${AZURITE_WATCH_PID:-}" ]]; then
    (while kill -0 "$AZURITE_WATCH_PID" 2>/dev/null; do sleep 2; done; "$0" stop "$PORT" >/dev/null 2>&1) \
      >/dev/null 2>&1 </dev/null &
  fi
  for _ in $(seq 1 300); do
    port_open "$PORT" && { echo "http://127.0.0.1:$PORT/devstoreaccount1"; return 0; }
    kill -0 "$started" 2>/dev/null || { tail -n 30 "$LOG" >&2; die "Azurite exited while starting"; }
    sleep 0.1
  done
  tail -n 30 "$LOG" >&2
  die "Azurite did not open port $PORT in 30 s"
}

cmd_stop() {
  local pid
  local grace="${AZURITE_STOP_TIMEOUT:-10}"
  pid="$(server_pid)" || return 0
  if [[ "$grace" != 0 ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) pid="$(server_pid)" || exit 3; echo "running pid=$pid http://127.0.0.1:$PORT/devstoreaccount1" ;;
  log) tail -n 60 "$LOG" 2>/dev/null || echo "(no log at $LOG)" ;;
  *) die "usage: $0 fetch|start|stop|status|log [PORT]" ;;
esac
