#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on the loopback interface, for Assay's tests and benchmarks.
# Uses Debian's `postgresql` package; the cluster lives in one folder and is started and stopped
# here with initdb + pg_ctl (Debian's own `main` cluster is left alone).
#
#   bash scripts/postgres.sh install          apt-get install -y postgresql when it is missing (root; idempotent)
#   bash scripts/postgres.sh start [PORT]     initdb (first time) and start a cluster on 127.0.0.1:PORT
#   bash scripts/postgres.sh stop [PORT]      pg_ctl stop (mode POSTGRES_STOP_MODE, default fast)
#   bash scripts/postgres.sh status [PORT]    exit 0 and print the address when it is running
#   bash scripts/postgres.sh log [PORT]       the tail of the server's log
#
# PORT defaults to 5433. The cluster listens on 127.0.0.1 only (no Unix socket) and accepts
# password (SCRAM) logins only. Its superuser is `postgres`; the password is generated at initdb
# and kept in RUN/superuser.password (mode 600).
#
# Environment:
#   POSTGRES_RUN_DIR        run folder (data/, postgres.log, superuser.password); default
#                           .cache/postgres/run-PORT. Keep it across stop/start to keep the data.
#   POSTGRES_OS_USER        the OS user the server runs as when this script runs as root
#                           (PostgreSQL refuses root); default `postgres`, created when missing.
#   POSTGRES_BINDIR         where initdb/pg_ctl/postgres are (default: the newest
#                           /usr/lib/postgresql/*/bin, else the directory of `initdb` on PATH)
#   POSTGRES_START_TIMEOUT  seconds to wait for the server to accept connections (default 60)
#   POSTGRES_STOP_MODE      smart | fast | immediate (immediate = a crash; recovery runs on next start)
#   POSTGRES_WATCH_PID      if set, the cluster is stopped when that process ends (test sessions)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "postgres.sh: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------------- binaries
bindir() {
  if [[ -n "${POSTGRES_BINDIR:-}" ]]; then echo "$POSTGRES_BINDIR"; return 0; fi
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] || continue
    best="$d"                                   # the glob sorts; keep the newest major
  done
  if [[ -z "$best" ]] && command -v initdb >/dev/null 2>&1; then
    best="$(dirname "$(readlink -f "$(command -v initdb)")")"
  fi
  [[ -n "$best" ]] && echo "$best"
}

installed() { local d; d="$(bindir)" && [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; }

cmd_install() {
  if installed; then
    echo "postgres.sh: PostgreSQL $("$(bindir)/postgres" --version | awk '{print $3}') in $(bindir)" >&2
    return 0
  fi
  local -a sudo=()
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null \
      || die "PostgreSQL is not installed and installing it needs root: run 'sudo apt-get install -y postgresql'"
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and this is not a Debian/Ubuntu system (no apt-get)"
  echo "postgres.sh: installing Debian's postgresql package..." >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo[@]}" apt-get install -y -q postgresql >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -q >/dev/null 2>&1 || true        # a fresh machine has no package lists
    "${sudo[@]}" apt-get install -y -q postgresql >/dev/null || die "apt-get install -y postgresql failed"
  fi
  installed || die "postgresql is installed but initdb/pg_ctl/postgres were not found (set POSTGRES_BINDIR)"
  echo "postgres.sh: installed PostgreSQL $("$(bindir)/postgres" --version | awk '{print $3}') in $(bindir)" >&2
}

# -------------------------------------------------------------------------------------- helpers
PORT="${2:-5433}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$PORT'"
RUN="${POSTGRES_RUN_DIR:-$ROOT/.cache/postgres/run-$PORT}"
DATA="$RUN/data"
LOG="$RUN/postgres.log"
PWFILE="$RUN/superuser.password"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# PostgreSQL refuses to run as root: as root, run its programs as an unprivileged OS user.
OS_USER=""
as_server() {
  if [[ -n "$OS_USER" ]]; then runuser -u "$OS_USER" -- "$@"; else "$@"; fi
}

choose_os_user() {
  [[ $EUID -eq 0 ]] || return 0
  OS_USER="${POSTGRES_OS_USER:-postgres}"
  [[ "$OS_USER" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "POSTGRES_OS_USER '$OS_USER' is not a valid user name"
  if ! id -u "$OS_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$OS_USER" \
      || die "could not create the OS user $OS_USER"
  fi
  [[ "$(id -u "$OS_USER")" != 0 ]] || die "POSTGRES_OS_USER must not be root"
}

# the postmaster of this run folder, if alive (postmaster.pid's first line, checked against /proc)
server_pid() {
  [[ -f "$DATA/postmaster.pid" ]] || return 1
  local pid; pid="$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [[ "$(readlink -f "/proc/$pid/cwd" 2>/dev/null)" == "$(readlink -f "$DATA")" ]] || return 1
  echo "$pid"
}

init_cluster() {
  local bin="$1"
  mkdir -p "$RUN"
  if [[ -n "$OS_USER" ]]; then
    chown "$OS_USER" "$RUN"
    as_server test -x "$RUN" -a -w "$RUN" \
      || die "the OS user $OS_USER cannot reach $RUN (a parent folder is not traversable): set POSTGRES_RUN_DIR to a folder it can reach, e.g. under /tmp"
  fi
  chmod 700 "$RUN"
  # a random superuser password, readable by the owner of the run folder only
  (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$PWFILE.new")
  [[ -n "$OS_USER" ]] && chown "$OS_USER" "$PWFILE.new"
  if ! as_server "$bin/initdb" -D "$DATA" -U postgres --pwfile="$PWFILE.new" --auth=scram-sha-256 \
        -E UTF8 --no-locale --no-instructions --no-sync >"$RUN/initdb.log" 2>&1; then
    cat "$RUN/initdb.log" >&2
    rm -rf "$DATA" "$PWFILE.new"
    die "initdb failed in $DATA"
  fi
  mv "$PWFILE.new" "$PWFILE"
  # loopback only, passwords only: no Unix socket, no trust, no IPv6
  cat >"$DATA/pg_hba.conf" <<'EOF'
# written by scripts/postgres.sh: password (SCRAM) logins over 127.0.0.1 only
# TYPE  DATABASE  USER  ADDRESS        METHOD
host    all       all   127.0.0.1/32   scram-sha-256
EOF
  echo "include_if_exists = 'assay.conf'" >>"$DATA/postgresql.conf"
  [[ -n "$OS_USER" ]] && chown "$OS_USER" "$DATA/pg_hba.conf" "$DATA/postgresql.conf"
  return 0
}

write_conf() {
  cat >"$DATA/assay.conf" <<EOF
# written by scripts/postgres.sh on every start
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = ''
password_encryption = 'scram-sha-256'
max_connections = 60
shared_buffers = 128MB
max_wal_size = 1GB
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
log_connections = off
EOF
  [[ -n "$OS_USER" ]] && chown "$OS_USER" "$DATA/assay.conf"
  return 0
}

# ---------------------------------------------------------------------------------------- start
cmd_start() {
  installed || die "PostgreSQL is not installed: run 'bash scripts/postgres.sh install' (or 'make test')"
  local bin; bin="$(bindir)"
  choose_os_user
  local pid
  if pid="$(server_pid)"; then
    echo "127.0.0.1:$PORT"
    return 0
  fi
  port_open "$PORT" && die "127.0.0.1:$PORT is already in use by another process"
  [[ -f "$DATA/PG_VERSION" ]] || init_cluster "$bin"
  [[ -f "$PWFILE" ]] || die "$PWFILE is missing: the superuser password of this cluster is lost (remove $RUN to start afresh)"
  write_conf
  touch "$LOG"
  [[ -n "$OS_USER" ]] && chown "$OS_USER" "$LOG"
  echo "==== $(date -u +%FT%TZ) postgres.sh start 127.0.0.1:$PORT" >>"$LOG"
  local timeout="${POSTGRES_START_TIMEOUT:-60}"
  if ! as_server "$bin/pg_ctl" start -D "$DATA" -l "$LOG" -w -t "$timeout" -s >/dev/null 2>>"$RUN/pg_ctl.err"; then
    tail -n 40 "$LOG" >&2; tail -n 5 "$RUN/pg_ctl.err" >&2
    die "the server did not start on 127.0.0.1:$PORT within ${timeout}s (log: $LOG)"
  fi
  pid="$(server_pid)" || { tail -n 40 "$LOG" >&2; die "the server exited during startup (log: $LOG)"; }

  if [[ -n "${POSTGRES_WATCH_PID:-}" ]]; then
    # stop the cluster when the process that asked for it is gone (a killed test session)
    nohup setsid bash -c '
      while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 2; done
      if kill -0 "$2" 2>/dev/null; then
        kill -INT "$2"   # fast shutdown
        for i in $(seq 1 60); do kill -0 "$2" 2>/dev/null || exit 0; sleep 0.5; done
        kill -QUIT "$2"  # immediate shutdown
      fi' _ "$POSTGRES_WATCH_PID" "$pid" </dev/null >/dev/null 2>&1 &
  fi
  echo "127.0.0.1:$PORT"
}

# ----------------------------------------------------------------------------------------- stop
cmd_stop() {
  local pid mode="${POSTGRES_STOP_MODE:-fast}"
  [[ "$mode" =~ ^(smart|fast|immediate)$ ]] || die "POSTGRES_STOP_MODE must be smart, fast or immediate, got '$mode'"
  if ! pid="$(server_pid)"; then
    echo "postgres.sh: no server running for $RUN" >&2
    return 0
  fi
  choose_os_user
  local bin; bin="$(bindir)"
  if ! as_server "$bin/pg_ctl" stop -D "$DATA" -m "$mode" -w -t "${POSTGRES_STOP_TIMEOUT:-60}" -s 2>>"$RUN/pg_ctl.err"; then
    echo "postgres.sh: pg_ctl stop -m $mode did not finish, stopping $pid immediately" >&2
    kill -QUIT "$pid" 2>/dev/null || true
    local i=0; while kill -0 "$pid" 2>/dev/null && (( i < 100 )); do sleep 0.1; i=$(( i + 1 )); done
  fi
  echo "stopped 127.0.0.1:$PORT ($mode)"
}

cmd_status() {
  local pid
  if pid="$(server_pid)"; then
    echo "running pid=$pid address=127.0.0.1:$PORT data=$RUN"
  else
    echo "stopped address=127.0.0.1:$PORT data=$RUN"
    return 3
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start)   cmd_start ;;
  stop)    cmd_stop ;;
  status)  cmd_status ;;
  log)     tail -n "${POSTGRES_LOG_LINES:-80}" "$LOG" ;;
  *)       awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
