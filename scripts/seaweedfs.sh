#!/usr/bin/env bash
# SeaweedFS (Apache-2.0) on the loopback interface: a real S3-compatible server for Assay's
# object-storage tests and benchmarks. Its `weed` command is built from its Go module, fetched
# through the Go module proxy (needs Go; nothing prebuilt is downloaded).
#
#   bash scripts/seaweedfs.sh fetch              build .cache/seaweedfs/bin/weed (once; idempotent)
#   bash scripts/seaweedfs.sh start [PORT]       master, volume, filer and the S3 gateway on 127.0.0.1;
#                                                S3 on PORT (default 8333); prints the endpoint
#   bash scripts/seaweedfs.sh bucket NAME [PORT] create a bucket (no error if it exists)
#   bash scripts/seaweedfs.sh stop [PORT]        SIGTERM, then SIGKILL after SEAWEEDFS_STOP_TIMEOUT s (15)
#   bash scripts/seaweedfs.sh status [PORT]      exit 0 and print the endpoint when it is running
#   bash scripts/seaweedfs.sh log [PORT]         the tail of its log
#
# Environment:
#   SEAWEEDFS_DATA_DIR     run folder (data, config, log, pid); default .cache/seaweedfs/run-PORT
#   SEAWEEDFS_ACCESS_KEY   the S3 identity's access key (default assay-test)
#   SEAWEEDFS_SECRET_KEY   its secret key (default assay-test-secret); requests must be signed
#   SEAWEEDFS_WATCH_PID    if set, the server is stopped when that process ends (test sessions)
#   SEAWEEDFS_CACHE_DIR    where bin/ lives (default .cache/seaweedfs)
#   SEAWEEDFS_STOP_TIMEOUT seconds between SIGTERM and SIGKILL at stop (default 15; 0: SIGKILL at once)
# The other ports (master, volume, filer and their gRPC ports) are free ones, kept in the run folder.
set -euo pipefail

MODULE="github.com/seaweedfs/seaweedfs"
# SeaweedFS tags releases without a v prefix, so the proxy serves them as pseudo-versions; this one
# is the newest on the proxy when this was written (2026-11-09), built and tested here.
VERSION="v0.0.0-20261109003541-7506e5f91cd6"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SEAWEEDFS_CACHE_DIR:-$ROOT/.cache/seaweedfs}"
WEED="$CACHE/bin/weed"
STAMP="$CACHE/bin/.version"

die() { echo "seaweedfs.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"; }
built() { [[ -x "$WEED" && -f "$STAMP" && "$(cat "$STAMP")" == "$VERSION" ]]; }

cmd_fetch() {
  built && return 0
  need go "weed is built from its Go module (apt-get install golang, or Go from its release)"
  mkdir -p "$CACHE/bin"
  exec 9>"$CACHE/.fetch.lock"
  flock -w 1800 9 || die "timed out waiting for another build"
  built && return 0
  echo "seaweedfs.sh: building weed $VERSION from the Go module proxy (a few minutes, once)..." >&2
  local dir src="$CACHE/src"
  # `go install module/weed@version` refuses modules with replace directives, so the module is
  # downloaded (checksummed against the Go checksum database) and built as the main module.
  dir="$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || die "go mod download $MODULE@$VERSION gave no folder"
  rm -rf "$src"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  if ! (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$WEED.tmp" ./weed) \
        >"$CACHE/build.log" 2>&1; then
    tail -n 30 "$CACHE/build.log" >&2
    die "go build failed (full log: $CACHE/build.log)"
  fi
  mv "$WEED.tmp" "$WEED"
  echo "$VERSION" >"$STAMP"
  rm -rf "$src"
  echo "seaweedfs.sh: built $WEED" >&2
}

PORT="${3:-${2:-8333}}"
[[ "${1:-}" == "bucket" ]] && PORT="${3:-8333}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$PORT'"
RUN="${SEAWEEDFS_DATA_DIR:-$CACHE/run-$PORT}"
PIDFILE="$RUN/weed.pid"
LOG="$RUN/weed.log"
ACCESS="${SEAWEEDFS_ACCESS_KEY:-assay-test}"
SECRET="${SEAWEEDFS_SECRET_KEY:-assay-test-secret}"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 30000 ))
    port_open "$p" || { echo "$p"; return 0; }
  done
  die "no free port found"
}

server_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-dir=$RUN/data" || return 1
  echo "$pid"
}

cmd_start() {
  built || cmd_fetch
  if pid="$(server_pid)"; then echo "http://127.0.0.1:$PORT"; return 0; fi
  port_open "$PORT" && die "port $PORT is already in use by another program"
  mkdir -p "$RUN/data"
  # master, volume, filer, then the gRPC ports of the four services (fixed: the defaults are +10000)
  [[ -f "$RUN/ports" ]] || echo "$(free_port) $(free_port) $(free_port) $(free_port) $(free_port) $(free_port) $(free_port)" >"$RUN/ports"
  read -r MASTER VOLUME FILER G1 G2 G3 G4 <"$RUN/ports"
  cat >"$RUN/s3.json" <<JSON
{"identities": [{"name": "assay", "credentials": [{"accessKey": "$ACCESS", "secretKey": "$SECRET"}],
                 "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON
  chmod 600 "$RUN/s3.json"
  setsid "$WEED" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$RUN/data" \
      -master.port="$MASTER" -master.port.grpc="$G1" -master.volumeSizeLimitMB=512 \
      -volume.port="$VOLUME" -volume.port.grpc="$G2" -volume.max=0 \
      -filer -filer.port="$FILER" -filer.port.grpc="$G3" \
      -s3 -s3.port="$PORT" -s3.port.grpc="$G4" -s3.config="$RUN/s3.json" \
      >"$LOG" 2>&1 </dev/null &
  local started=$!
  echo "$started" >"$PIDFILE"
  if [[ -n "${SEAWEEDFS_WATCH_PID:-}" ]]; then
    (while kill -0 "$SEAWEEDFS_WATCH_PID" 2>/dev/null; do sleep 2; done; "$0" stop "$PORT" >/dev/null 2>&1) \
      >/dev/null 2>&1 </dev/null &
  fi
  for _ in $(seq 1 600); do
    if port_open "$PORT" && port_open "$FILER"; then echo "http://127.0.0.1:$PORT"; return 0; fi
    kill -0 "$started" 2>/dev/null || { tail -n 30 "$LOG" >&2; die "weed exited while starting"; }
    sleep 0.1
  done
  tail -n 30 "$LOG" >&2
  die "the S3 gateway did not open port $PORT in 60 s"
}

cmd_bucket() {
  local name="${2:-}"
  [[ "$name" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "bad bucket name '$name'"
  server_pid >/dev/null || die "not running on port $PORT"
  read -r MASTER VOLUME FILER G1 G2 G3 G4 <"$RUN/ports"
  local out
  for _ in $(seq 1 50); do
    out="$(echo "s3.bucket.create -name $name" | timeout 60 "$WEED" shell -master="127.0.0.1:$MASTER.$G1" -filer="127.0.0.1:$FILER.$G3" 2>&1 || true)"
    if echo "s3.bucket.list" | timeout 60 "$WEED" shell -master="127.0.0.1:$MASTER.$G1" -filer="127.0.0.1:$FILER.$G3" 2>/dev/null \
         | grep -qw -- "$name"; then return 0; fi
    sleep 0.3
  done
  echo "$out" >&2
  die "could not create bucket $name"
}

cmd_stop() {
  local pid
  local grace="${SEAWEEDFS_STOP_TIMEOUT:-15}"
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
  bucket) cmd_bucket "$@" ;;
  stop) cmd_stop ;;
  status) pid="$(server_pid)" || exit 3; echo "running pid=$pid http://127.0.0.1:$PORT" ;;
  log) tail -n 60 "$LOG" 2>/dev/null || echo "(no log at $LOG)" ;;
  *) die "usage: $0 fetch|start|bucket NAME|stop|status|log [PORT]" ;;
esac
