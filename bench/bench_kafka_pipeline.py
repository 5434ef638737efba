"""Kafka end to end: rows/s from a real broker into bronze and silver, on both engines.

Starts its own single-node broker (scripts/kafka.sh, jars from Maven Central), produces the
customers_stream pipeline's generated messages beforehand (`assay generate customers_stream
--kafka`), then runs `assay run -p pipelines/customers_stream --refresh <bronze and silver>` on a
fresh storage root per run, alternating the engines: the embedded engine (its Python consumer
stages each offset range as Parquet for the engine) and Apache Spark (its own Kafka reader, on a
freshly started local Spark Connect server whose start is not timed). Each run is a whole process
measured by bench/measure.py (wall time, peak RSS of the tree, the Spark server included).
Gold is left out: it publishes to PostgreSQL, which bench_postgres_load.py measures.

    python bench/bench_kafka_pipeline.py [--messages 1000000] [--partitions 3] [--reps 3]
                                         [--engines sail,spark]

Prints messages/s end to end and per flow (event log), writes bench/results/kafka-pipeline.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
from compare import Spark, flow_seconds, load, machine  # noqa: E402
from measure import run as measured  # noqa: E402

PIPELINE = REPO / "pipelines" / "customers_stream"
FLOWS = "bronze_customers,silver_customers_quarantine,silver_customers"
TOPIC = "bench-customers"
# assay.yml resolves every ${env:...} of every target when it is read; none of these is used by
# bronze and silver (PostgreSQL is gold's, Event Hubs the azure target's).
UNUSED_SECRETS = {"CUSTOMERS_PG_PASSWORD": "unused-by-bronze-and-silver",
                  "EVENTHUBS_CONNECTION_STRING": "unused-by-the-dev-target"}


def kafka(*args: str, env: dict, timeout: float = 900) -> str:
    proc = subprocess.run(["bash", str(REPO / "scripts" / "kafka.sh"), *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"kafka.sh {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--engines", default="sail,spark")
    ap.add_argument("--remote", default=None, help="use this Spark Connect server instead of fresh local ones")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]

    from assay.engines.spark_server import free_port
    work = Path(tempfile.mkdtemp(prefix="assay-bench-kafka-"))
    port = free_port()
    env = dict(os.environ, KAFKA_DATA_DIR=str(work / "kafka"), KAFKA_WATCH_PID=str(os.getpid()))
    kafka("fetch", env=env)
    bootstrap = kafka("start", str(port), env=env, timeout=180).splitlines()[-1]
    runs = []
    try:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "assay.cli", "generate", "customers_stream", "--out", str(work / "gen"),
                        "--rows", str(args.messages), "--kafka", bootstrap, "--topic", TOPIC, "--partitions",
                        str(args.partitions)], cwd=REPO, check=True, capture_output=True, timeout=3600)
        manifest = json.loads((work / "gen" / "truth" / "manifest.json").read_text())
        messages, size = manifest["event_lines"], manifest["event_bytes"]
        shutil.rmtree(work / "gen" / "drops", ignore_errors=True)
        print(f"produced {messages:,} messages ({size / 1e6:,.0f} MB, {args.partitions} partitions) to {bootstrap} "
              f"in {time.perf_counter() - started:.0f}s", flush=True)
        spark = Spark(work, args.remote)
        for rep in range(1, args.reps + 1):
            for engine in engines:
                storage = work / "storage" / engine
                shutil.rmtree(storage, ignore_errors=True)
                cmd = [sys.executable, "-m", "assay.cli", "run", "-p", str(PIPELINE), "--storage", str(storage),
                       "--conf", f"kafka.bootstrap_servers={bootstrap}", "--conf", f"kafka.topic={TOPIC}",
                       "--refresh", FLOWS]
                before = load()
                if engine == "spark":
                    with spark.server() as (remote, pids):
                        m = measured(cmd + ["--remote", remote], cwd=REPO, env=UNUSED_SECRETS, extra_pids=pids)
                else:
                    m = measured(cmd, cwd=REPO, env=UNUSED_SECRETS)
                record = {"engine": engine, "rep": rep, "seconds": round(m.seconds, 2),
                          "peak_rss_mb": round(m.peak_rss_mb), "load_before": before, "ok": m.returncode == 0}
                if m.returncode:
                    record["error"] = m.output[-2000:]
                    print(f"  {engine} rep {rep} FAILED:\n{m.output[-1500:]}", flush=True)
                else:
                    record["flows_s"] = flow_seconds(storage)
                    print(f"  {engine:<6} rep {rep}: {m.seconds:6.1f} s = {messages / m.seconds:9,.0f} msg/s end to "
                          f"end, peak {m.peak_rss_mb:,.0f} MB, load {before:.1f}  (per flow: "
                          + ", ".join(f"{k} {v:.1f}s" for k, v in record["flows_s"].items()) + ")", flush=True)
                runs.append(record)
                shutil.rmtree(storage, ignore_errors=True)
    finally:
        kafka("stop", str(port), env=env, timeout=120)
        shutil.rmtree(work, ignore_errors=True)

    summary = {}
    print(f"\nKafka → bronze + silver (customers_stream), {messages:,} messages of ~{size / messages:.0f} B, "
          f"median of {args.reps}:")
    print(f"{'engine':<8}{'wall s':>8}{'[min-max]':>16}{'msg/s':>10}{'MB/s':>7}{'bronze msg/s':>14}"
          f"{'silver msg/s':>14}{'peak MB':>9}")
    for engine in engines:
        ok = [r for r in runs if r["engine"] == engine and r["ok"]]
        if not ok:
            print(f"{engine:<8} (no successful run)")
            continue
        secs = [r["seconds"] for r in ok]
        med = statistics.median(secs)
        flows = {f: statistics.median(r["flows_s"].get(f, 0) for r in ok) for f in ok[0]["flows_s"]}
        silver = flows.get("silver_customers", 0) + flows.get("silver_customers_quarantine", 0)
        entry = {"seconds": med, "seconds_min": min(secs), "seconds_max": max(secs),
                 "messages_per_s": round(messages / med), "mb_per_s": round(size / 1e6 / med, 2),
                 "bronze_messages_per_s": round(messages / flows["bronze_customers"]) if flows.get(
                     "bronze_customers") else None,
                 "silver_messages_per_s": round(messages / silver) if silver else None,
                 "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in ok), "flows_s": flows}
        summary[engine] = entry
        print(f"{engine:<8}{med:>8.1f}{'[%.1f-%.1f]' % (min(secs), max(secs)):>16}{entry['messages_per_s']:>10,}"
              f"{entry['mb_per_s']:>7.1f}{entry['bronze_messages_per_s'] or 0:>14,}"
              f"{entry['silver_messages_per_s'] or 0:>14,}{entry['peak_rss_mb']:>9,.0f}")
    if spark.starts:
        print(f"(Spark Connect server start, not timed: median {statistics.median(spark.starts):.1f} s)")
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / "kafka-pipeline.json"
    out.write_text(json.dumps({"messages": messages, "bytes": size, "partitions": args.partitions,
                               "machine": machine(), "summary": summary, "runs": runs,
                               "spark_server_start_s": spark.starts}, indent=1) + "\n")
    print(f"results: {out}")
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
