"""End-to-end latency of the customers_stream pipeline under `assay run --continuous`: from a message
produced to Kafka to its customer's row visible in PostgreSQL (gold.customer_features).

Starts its own Kafka broker (scripts/kafka.sh) and PostgreSQL cluster (scripts/postgres.sh), copies
pipelines/customers_stream with their addresses, applies its roles, loads a backlog of generated
customers, then runs `assay run --continuous --interval <interval>` as a user would, while a producer
sends generated messages at a steady rate. At random moments it produces a probe: a new version of a
customer with a unique marker (tenure), and a watcher polls PostgreSQL every 50 ms, as the analyst
role, until the marker is visible. Latency = visible − produced, both on this machine's clock.

    .venv/bin/python bench/bench_customers_latency.py [--interval 60s] [--probes 8] [--rate 1000] [--backlog 100000]

With the seed's 60-second trigger the latency is the wait for the next round plus the round's
work up to customer_features' publish; a short interval shows that floor.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assay.generator import generate  # noqa: E402
from assay.generator.kafka_producer import ensure_topic, produce  # noqa: E402
from assay.generator.to_kafka import _key  # noqa: E402
from assay.sinks.postgres import apply_roles  # noqa: E402
from assay.units import parse_seconds  # noqa: E402

LOADER, ANALYST = "loader-pw-latency-01", "analyst-pw-latency-01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script(name: str, *args: str, env: dict, timeout: float = 900) -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / name), *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"{name} {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def lines_of(out: Path) -> list[bytes]:
    manifest = json.loads((out / "truth" / "manifest.json").read_text())
    return [line.rstrip(b"\n") for drop in range(manifest["drops"]) for rel in sorted(manifest["files"][str(drop)])
            for line in open(out / "drops" / str(drop) / rel, "rb") if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", default="60s", help="assay run --continuous --interval (the seed: 60s)")
    ap.add_argument("--probes", type=int, default=8)
    ap.add_argument("--rate", type=float, default=1000.0, help="background messages per second")
    ap.add_argument("--backlog", type=int, default=100_000, help="messages loaded before measuring")
    args = ap.parse_args()
    interval = parse_seconds(args.interval)

    work = Path(tempfile.mkdtemp(prefix="assay-latency-"))
    work.chmod(0o755)
    pg_port, kafka_port = free_port(), free_port()
    pg_env = dict(os.environ, POSTGRES_RUN_DIR=str(work / "pg"), POSTGRES_WATCH_PID=str(os.getpid()))
    kafka_env = dict(os.environ, KAFKA_DATA_DIR=str(work / "kafka"), KAFKA_WATCH_PID=str(os.getpid()))
    run = None
    try:
        script("postgres.sh", "install", env=pg_env)
        script("postgres.sh", "start", str(pg_port), env=pg_env)
        script("kafka.sh", "fetch", env=kafka_env)
        script("kafka.sh", "start", str(kafka_port), env=kafka_env)
        bootstrap = f"127.0.0.1:{kafka_port}"
        superuser = {"host": "127.0.0.1", "port": pg_port, "user": "postgres",
                     "password": (work / "pg" / "superuser.password").read_text().strip()}
        import psycopg
        with psycopg.connect(**superuser, dbname="postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE analytics")

        project = work / "customers_stream"
        shutil.copytree(ROOT / "pipelines" / "customers_stream" / "transformations", project / "transformations")
        spec = yaml.safe_load((ROOT / "pipelines" / "customers_stream" / "assay.yml").read_text())
        for key in ("targets", "default_target"):
            spec.pop(key)
        spec["storage"] = "./storage"
        spec["configuration"]["kafka.bootstrap_servers"] = bootstrap
        spec["postgres"].update(host="127.0.0.1", port=pg_port)
        (project / "assay.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
        pg = {**spec["postgres"], "password": LOADER}
        apply_roles(pg, admin={**superuser, "dbname": "analytics"}, passwords={"analyst": ANALYST}, create_login=True)

        started = time.monotonic()
        out = work / "gen"
        total = args.backlog + int(args.rate * (interval * (args.probes + 2) + 120))
        generate("customers_stream", out, rows=total, seed=5, drops=1, files_per_drop=8, truth=False)
        lines = lines_of(out)
        ensure_topic(bootstrap, "customers", 3)
        produce(bootstrap, "customers", [(_key(line), line) for line in lines[:args.backlog]], timeout_s=600)
        print(f"backlog: {args.backlog:,} messages produced ({time.monotonic() - started:.1f}s)", flush=True)

        env = dict(os.environ, CUSTOMERS_PG_PASSWORD=LOADER, RUST_LOG="error", PYTHONPATH=str(ROOT))
        log = open(work / "run.log", "w")
        run = subprocess.Popen([sys.executable, "-m", "assay.cli", "run", "--continuous", "--interval", args.interval,
                                "-p", str(project)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        analyst = {**superuser, "dbname": "analytics", "user": spec["postgres"]["roles"]["analyst"],
                   "password": ANALYST}
        watcher = psycopg.connect(**analyst, autocommit=True)

        def visible(ids: list[str]) -> set[str]:
            try:
                rows = watcher.execute("SELECT customer_id FROM gold.customer_features WHERE customer_id = ANY(%s)",
                                       (ids,)).fetchall()
            except psycopg.errors.UndefinedTable:
                return set()
            return {r[0] for r in rows}

        first = json.loads(lines[0])
        warm = time.monotonic()
        while not visible([first["customer_id"]]):
            if run.poll() is not None:
                raise SystemExit(f"assay run ended:\n{(work / 'run.log').read_text()}")
            time.sleep(0.5)
        print(f"backlog visible in PostgreSQL after {time.monotonic() - warm:.1f}s of the first round", flush=True)

        # background traffic at a steady rate
        stop = threading.Event()
        rest = lines[args.backlog:]

        def background():
            i, t0 = 0, time.monotonic()
            while not stop.is_set() and i < len(rest):
                due = int((time.monotonic() - t0) * args.rate)
                if due > i:
                    produce(bootstrap, "customers", [(_key(line), line) for line in rest[i:due]])
                    i = due
                time.sleep(0.1)
        feeder = threading.Thread(target=background, daemon=True)
        feeder.start()

        rng = random.Random(3)
        latencies = []
        template = dict(first)
        for probe in range(args.probes):
            time.sleep(rng.uniform(0.0, interval))
            customer = f"probe-{probe:04d}"
            message = dict(template, customer_id=customer, tenure=probe + 1000,
                           updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            produce(bootstrap, "customers", [(customer.encode(), json.dumps(message).encode())])
            t0 = time.monotonic()
            while customer not in visible([customer]):
                if run.poll() is not None:
                    raise SystemExit(f"assay run ended:\n{(work / 'run.log').read_text()}")
                if time.monotonic() - t0 > interval * 3 + 300:
                    raise SystemExit(f"probe {customer} not visible after {time.monotonic() - t0:.0f}s")
                time.sleep(0.05)
            latencies.append(time.monotonic() - t0)
            print(f"probe {probe}: {latencies[-1]:.1f}s", flush=True)
        stop.set()
        feeder.join(timeout=30)

        latencies.sort()
        p90 = latencies[min(len(latencies) - 1, int(round(0.9 * (len(latencies) - 1))))]
        print(f"\nend-to-end latency, produced → visible in PostgreSQL, --interval {args.interval}, "
              f"{args.rate:,.0f} msg/s background, {len(latencies)} probes: min {latencies[0]:.1f}s, "
              f"median {statistics.median(latencies):.1f}s, p90 {p90:.1f}s, max {latencies[-1]:.1f}s")
        rounds = [line for line in (work / "run.log").read_text().splitlines() if " completed: " in line]
        print(f"{len(rounds)} continuous rounds; last: {rounds[-1] if rounds else '-'}")
    finally:
        if run is not None and run.poll() is None:
            run.terminate()
            try:
                run.wait(timeout=120)
            except subprocess.TimeoutExpired:
                run.kill()
        for name, env, port in (("kafka.sh", kafka_env, kafka_port), ("postgres.sh", pg_env, pg_port)):
            try:
                script(name, "stop", str(port), env=env, timeout=120)
            except SystemExit as exc:
                print(exc, file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
