"""Kafka fetch throughput of assay.sources.kafka.KafkaSource: records/s from a real broker into parquet.

Starts its own single-node broker with scripts/kafka.sh (fetching the jars first if needed),
produces N small JSON messages (~200 bytes) to a 3-partition topic, then times
`plan` + `fetch_to_parquet` of the whole backlog (best of --repeat runs), and stops the broker.

    .venv/bin/python bench/bench_kafka_source.py [--messages 200000] [--partitions 3] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assay.sources.base import BatchLimits  # noqa: E402
from assay.generator.kafka_producer import produce  # noqa: E402
from assay.sources.kafka import KafkaSource  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script(*args: str, env: dict, timeout: float = 900) -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "kafka.sh"), *args], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"kafka.sh {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def messages(n: int, seed: int = 7):
    rnd = random.Random(seed)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    for i in range(n):
        doc = {"id": i, "ts": 1_700_000_000_000 + i, "user": f"u{rnd.randrange(10_000):05d}",
               "event": rnd.choice(words), "amount": round(rnd.random() * 1000, 2),
               "tags": rnd.sample(words, 3), "note": "x" * rnd.randrange(40, 70)}
        yield (f"u{i % 1000}".encode(), json.dumps(doc).encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    port = free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="assay-kafka-bench-"))
    env = dict(os.environ, KAFKA_DATA_DIR=str(run_dir), KAFKA_WATCH_PID=str(os.getpid()))
    script("fetch", env=env)
    t0 = time.perf_counter()
    bootstrap = script("start", str(port), env=env, timeout=120).splitlines()[-1]
    print(f"broker {bootstrap} started in {time.perf_counter() - t0:.1f}s")
    try:
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = "bench-events"
        admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(timeout=30)
        time.sleep(0.5)

        msgs = list(messages(args.messages))
        size = sum(len(k) + len(v) for k, v in msgs) / len(msgs)
        t0 = time.perf_counter()
        produce(bootstrap, topic, msgs, options={"linger.ms": 20, "batch.size": 1_000_000,
                                                   "compression.type": "lz4"}, timeout_s=300)
        produce_s = time.perf_counter() - t0
        print(f"produced {len(msgs):,} messages (avg {size:.0f} B key+value) in {produce_s:.2f}s "
              f"({len(msgs) / produce_s:,.0f} msg/s)")
        del msgs

        src = KafkaSource(topic, bootstrap)
        rates: list[float] = []
        out_dir = Path(tempfile.mkdtemp(prefix="assay-kafka-bench-out-"))
        for i in range(args.repeat):
            path = out_dir / f"run{i}.parquet"
            t0 = time.perf_counter()
            plan = src.plan(None, BatchLimits())
            t1 = time.perf_counter()
            rows = src.fetch_to_parquet(plan, str(path))
            t2 = time.perf_counter()
            assert rows == args.messages, (rows, args.messages)
            mb = path.stat().st_size / 1e6
            print(f"run {i + 1}: plan {1000 * (t1 - t0):.0f} ms, fetch+parquet {t2 - t1:.2f}s "
                  f"= {rows / (t2 - t0):,.0f} rows/s ({mb:.1f} MB parquet)")
            rates.append(rows / (t2 - t0))
            path.unlink()
        shutil.rmtree(out_dir, ignore_errors=True)
        del admin                  # no client left to reconnect while the broker stops
        rates.sort()
        print(f"kafka fetch throughput: {rates[-1]:,.0f} rows/s best, {rates[len(rates) // 2]:,.0f} median "
              f"of {args.repeat} (plan + fetch into parquet, {args.messages:,} x ~{size:.0f} B, "
              f"{args.partitions} partitions)")
    finally:
        script("stop", str(port), env=env, timeout=60)
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
