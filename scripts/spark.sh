#!/usr/bin/env bash
# A local Apache Spark 4.2 Spark Connect server (with Delta Lake) on the loopback interface, for
# Assay's Spark engine, its tests and benchmarks. Needs Java 17+ and Maven: the jars come from
# Maven Central. The logic lives in assay/engines/spark_server.py (an installed Assay can start a
# server without this script); this wrapper runs it with the repository's virtualenv. From a
# checkout the jars live in its .cache/spark, where `assay run --engine spark` looks too.
#
#   bash scripts/spark.sh fetch              resolve the jars into .cache/spark/jars (idempotent)
#   bash scripts/spark.sh start [PORT]       start a server on 127.0.0.1:PORT, print sc://127.0.0.1:PORT
#   bash scripts/spark.sh stop [PORT]        SIGTERM, then SIGKILL after ASSAY_SPARK_STOP_TIMEOUT seconds
#   bash scripts/spark.sh status [PORT]      exit 0 and print the address when it is running (3 if not)
#   bash scripts/spark.sh log [PORT]         the tail of the server's log
#
# PORT defaults to 15002 (ASSAY_SPARK_PORT; the Spark engine reuses a server running there).
# `start` also takes `--conf key=value` (repeatable). Environment:
#   ASSAY_SPARK_CACHE               jars and run folders (default .cache/spark in the repository, for the engine too)
#   ASSAY_SPARK_RUN_DIR             run folder: log, pid, settings (default <cache>/run-PORT)
#   ASSAY_SPARK_MEMORY              JVM heap (default 2g)
#   ASSAY_SPARK_CORES               local[N] threads (default *)
#   ASSAY_SPARK_SHUFFLE_PARTITIONS  spark.sql.shuffle.partitions (default 4)
#   ASSAY_SPARK_START_TIMEOUT       seconds to wait until the server listens (default 120)
#   ASSAY_SPARK_STOP_TIMEOUT        seconds between SIGTERM and SIGKILL (default 30)
#   ASSAY_SPARK_WATCH_PID           if set, the server is stopped when that process ends (test sessions)
#   PYTHON                          the interpreter to run (default .venv/bin/python); pandas UDFs run in it
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "spark.sh: $PY not found: run 'make install' first (or set PYTHON)" >&2; exit 1; }

case "${1:-}" in
  fetch|start|stop|status|log)
    cd "$ROOT"
    exec "$PY" -m assay.engines.spark_server "$@" ;;
  *)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
