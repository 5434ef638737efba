#!/usr/bin/env bash
# A real, single-node Apache Kafka broker (KRaft, 4.x) on the loopback interface, for Assay's
# tests and benchmarks. Needs only Java 17+ and Maven: the jars come from Maven Central.
#
#   bash scripts/kafka.sh fetch           resolve the broker jars into .cache/kafka/libs (idempotent)
#   bash scripts/kafka.sh start [PORT]    format (first time) and start a broker on 127.0.0.1:PORT
#   bash scripts/kafka.sh stop [PORT]     SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT seconds
#   bash scripts/kafka.sh status [PORT]   exit 0 and print the address when it is running
#   bash scripts/kafka.sh log [PORT]      the tail of the broker's log
#
# PORT defaults to 9092. Environment:
#   KAFKA_DATA_DIR         run folder (data, config, log, pid); default .cache/kafka/run-PORT.
#                          Keep it across stop/start to restart the same broker with its data.
#   KAFKA_CONTROLLER_PORT  the KRaft controller's port (default: a free one, kept in the run folder)
#   KAFKA_HEAP_OPTS        default -Xms128m -Xmx512m
#   KAFKA_START_TIMEOUT    seconds to wait until the broker answers metadata (default 60)
#   KAFKA_STOP_TIMEOUT     seconds between SIGTERM and SIGKILL (default 20)
#   KAFKA_WATCH_PID        if set, the broker is stopped when that process ends (test sessions)
#   KAFKA_CACHE_DIR        where libs/ live (default .cache/kafka in the repository)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$ROOT/scripts/kafka/pom.xml"
CACHE="${KAFKA_CACHE_DIR:-$ROOT/.cache/kafka}"
LIBS="$CACHE/libs"
STAMP="$LIBS/.fetched"

die() { echo "kafka.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"; }

# ---------------------------------------------------------------------------------------- fetch
pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

fetched() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(pom_sum)" ]] && compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null; }

cmd_fetch() {
  fetched && return 0
  need mvn "Maven resolves the Kafka jars from Maven Central"
  need java "the broker is a Java program"
  mkdir -p "$CACHE"
  # one fetch at a time (parallel test sessions); the lock is released when this shell exits
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.fetch.lock"
    flock -w 600 9 || die "timed out waiting for another fetch"
    fetched && return 0
  fi
  local tmp="$CACHE/libs.tmp.$$"
  rm -rf "$tmp"
  echo "kafka.sh: resolving Kafka jars from Maven Central (scripts/kafka/pom.xml)..." >&2
  if ! mvn -B -q -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$CACHE/fetch.log" 2>&1; then
    tail -n 40 "$CACHE/fetch.log" >&2
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed (full log: $CACHE/fetch.log)"
  fi
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "no kafka_2.13 jar was resolved"
  pom_sum >"$tmp/.fetched"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  echo "kafka.sh: $(ls "$LIBS"/*.jar | wc -l) jars in $LIBS ($(basename "$(ls "$LIBS"/kafka_2.13-*.jar)"))" >&2
}

# -------------------------------------------------------------------------------------- helpers
PORT="${2:-9092}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$PORT'"
RUN="${KAFKA_DATA_DIR:-$CACHE/run-$PORT}"
PIDFILE="$RUN/kafka.pid"
LOG="$RUN/broker.log"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# the pid of our broker for this run folder, if it is alive (guards against a recycled pid)
broker_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "kafka.Kafka $RUN/server.properties" || return 1
  echo "$pid"
}

free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    [[ "$p" == "$PORT" ]] && continue
    port_open "$p" || { echo "$p"; return 0; }
  done
  die "found no free port for the controller"
}

cluster_id() {  # 16 random bytes, base64url without padding (Kafka's Uuid text form)
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* ]] && { echo "$id"; return; }
  done
}

write_config() {
  local cport="$1"
  cat >"$RUN/server.properties" <<EOF
# written by scripts/kafka.sh: single node, KRaft, loopback only
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$RUN/data

# one replica of everything
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false

# a small machine: few threads, small segments, retention checked often (tests use it)
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
log.segment.bytes=16777216
log.retention.hours=24
log.retention.check.interval.ms=1000
log.initial.task.delay.ms=0
message.max.bytes=8388608
replica.fetch.max.bytes=8388608
EOF
  cat >"$RUN/log4j2.properties" <<EOF
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.storage.name = org.apache.kafka.storage
logger.storage.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
EOF
}

# a tiny Java client that waits until the broker answers metadata (only the JDK is assumed)
probe() {
  local src="$CACHE/probe/KafkaProbe.java"
  mkdir -p "$CACHE/probe"
  cat >"$src.new" <<'EOF'
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

public class KafkaProbe {
  public static void main(String[] args) throws Exception {
    long deadline = System.currentTimeMillis() + Long.parseLong(args[1]) * 1000L;
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
    p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
    String last = "no answer";
    try (Admin admin = Admin.create(p)) {
      while (System.currentTimeMillis() < deadline) {
        try {
          var nodes = admin.describeCluster().nodes().get();
          admin.listTopics().names().get();
          if (!nodes.isEmpty()) { System.out.println("ok " + nodes.size() + " node(s)"); return; }
          last = "no nodes in metadata";
        } catch (Exception e) {
          last = String.valueOf(e.getCause() != null ? e.getCause() : e);
        }
        Thread.sleep(300);
      }
    }
    System.err.println("broker did not answer metadata: " + last);
    System.exit(2);
  }
}
EOF
  cmp -s "$src.new" "$src" && rm -f "$src.new" || { mv "$src.new" "$src"; rm -rf "$CACHE/probe/classes"; }
  local -a run=(java -Xmx128m -XX:TieredStopAtLevel=1 -Dlog4j2.level=ERROR)
  if [[ -f "$CACHE/probe/classes/KafkaProbe.class" ]] ||
     { command -v javac >/dev/null 2>&1 && javac -nowarn -d "$CACHE/probe/classes" -cp "$LIBS/*" "$src" 2>/dev/null; }; then
    "${run[@]}" -cp "$CACHE/probe/classes:$LIBS/*" KafkaProbe "$1" "$2"
  else
    "${run[@]}" -cp "$LIBS/*" "$src" "$1" "$2"   # the JDK's single-file source launcher
  fi
}

# ---------------------------------------------------------------------------------------- start
java_major() {
  local v; v="$(java -version 2>&1 | sed -n 's/.*version "\([0-9][0-9]*\)[."].*/\1/p' | head -n 1)"
  echo "${v:-0}"
}

cmd_start() {
  need java "the broker is a Java program"
  (( $(java_major) >= 17 )) || die "Kafka 4.x needs Java 17 or newer; java -version says: $(java -version 2>&1 | head -n 1)"
  cmd_fetch
  mkdir -p "$RUN"
  local pid
  if pid="$(broker_pid)"; then
    echo "127.0.0.1:$PORT"
    return 0
  fi
  port_open "$PORT" && die "127.0.0.1:$PORT is already in use by another process"

  local cport
  if [[ -f "$RUN/controller.port" ]]; then
    cport="$(cat "$RUN/controller.port")"       # the quorum was formatted with this endpoint
  else
    cport="${KAFKA_CONTROLLER_PORT:-$(free_port)}"
    echo "$cport" >"$RUN/controller.port"
  fi
  port_open "$cport" && die "controller port 127.0.0.1:$cport is already in use"
  write_config "$cport"

  local -a jvm=(java ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20
                -Djava.awt.headless=true -Dlog4j2.configurationFile="$RUN/log4j2.properties"
                -cp "$LIBS/*")
  if [[ ! -f "$RUN/data/meta.properties" ]]; then
    if ! "${jvm[@]}" kafka.tools.StorageTool format --standalone --ignore-formatted \
          -t "$(cluster_id)" -c "$RUN/server.properties" >"$RUN/format.log" 2>&1; then
      cat "$RUN/format.log" >&2
      die "formatting the storage in $RUN/data failed"
    fi
  fi

  echo "==== $(date -u +%FT%TZ) kafka.sh start 127.0.0.1:$PORT" >>"$LOG"
  nohup setsid "${jvm[@]}" kafka.Kafka "$RUN/server.properties" </dev/null >>"$LOG" 2>&1 &
  pid=$!
  echo "$pid" >"$PIDFILE"

  if [[ -n "${KAFKA_WATCH_PID:-}" ]]; then
    # stop the broker when the process that asked for it is gone (a killed test session)
    nohup setsid bash -c '
      while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 2; done
      if kill -0 "$2" 2>/dev/null; then
        kill -TERM "$2"; for i in $(seq 1 40); do kill -0 "$2" 2>/dev/null || exit 0; sleep 0.5; done
        kill -KILL "$2"
      fi' _ "$KAFKA_WATCH_PID" "$pid" </dev/null >/dev/null 2>&1 &
  fi

  local timeout="${KAFKA_START_TIMEOUT:-60}" t0=$SECONDS
  until port_open "$PORT"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 60 "$LOG" >&2; rm -f "$PIDFILE"; die "the broker exited during startup (log: $LOG)"
    fi
    if (( SECONDS - t0 >= timeout )); then
      tail -n 60 "$LOG" >&2; cmd_stop >/dev/null 2>&1 || true
      die "the broker did not listen on 127.0.0.1:$PORT within ${timeout}s (log: $LOG)"
    fi
    sleep 0.2
  done
  local left=$(( timeout - (SECONDS - t0) )); (( left < 5 )) && left=5
  if ! probe "127.0.0.1:$PORT" "$left" >/dev/null 2>>"$RUN/probe.log"; then
    tail -n 60 "$LOG" >&2; tail -n 5 "$RUN/probe.log" >&2; cmd_stop >/dev/null 2>&1 || true
    die "the broker on 127.0.0.1:$PORT did not answer metadata within ${timeout}s (log: $LOG)"
  fi
  echo "127.0.0.1:$PORT"
}

# ----------------------------------------------------------------------------------------- stop
cmd_stop() {
  local pid
  if ! pid="$(broker_pid)"; then
    rm -f "$PIDFILE"
    echo "kafka.sh: no broker running for $RUN" >&2
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local limit=$(( ${KAFKA_STOP_TIMEOUT:-20} * 5 )) i=0
  while kill -0 "$pid" 2>/dev/null && (( i < limit )); do sleep 0.2; i=$(( i + 1 )); done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka.sh: broker $pid ignored SIGTERM for ${KAFKA_STOP_TIMEOUT:-20}s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    i=0; while kill -0 "$pid" 2>/dev/null && (( i < 50 )); do sleep 0.1; i=$(( i + 1 )); done
  fi
  rm -f "$PIDFILE"
  echo "stopped 127.0.0.1:$PORT"
}

cmd_status() {
  local pid
  if pid="$(broker_pid)"; then
    echo "running pid=$pid bootstrap=127.0.0.1:$PORT data=$RUN"
  else
    echo "stopped bootstrap=127.0.0.1:$PORT data=$RUN"
    return 3
  fi
}

case "${1:-}" in
  fetch)  cmd_fetch ;;
  start)  cmd_start ;;
  stop)   cmd_stop ;;
  status) cmd_status ;;
  log)    tail -n "${KAFKA_LOG_LINES:-80}" "$LOG" ;;
  *)      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
