"""PostgreSQL load throughput of assay.sinks.postgres: customer_features rows/s through COPY + upsert.

Starts its own throwaway cluster with scripts/postgres.sh (installing Debian's package first if
needed), writes N customer_features rows (the columns of the customers_stream gold table) as
Parquet files the way a Delta batch commits them, then times, loading as the writer role:
  1. upsert_batch into an empty table (every row inserted),
  2. upsert_batch of the same customers changed (every row updated through ON CONFLICT),
  3. replace_table, both methods (the materialized-view path: swap, and in_place),
and, for the record, the COPY step alone in the sink's CSV text format against psycopg's
binary COPY fed row by row. Prints rows/s and the peak memory of this process.

    .venv/bin/python bench/bench_postgres_load.py [--rows 1000000] [--files 8]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assay.sinks.postgres import PostgresSink, apply_roles  # noqa: E402
from assay.sinks.postgres.rows import stream_csv  # noqa: E402

KEYS = ["customer_id"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script(*args: str, env: dict, timeout: float = 900) -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), *args], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"postgres.sh {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def customer_features(n: int, version: int, start: int = 0, seed: int = 7) -> pa.Table:
    """n rows (customers start…start+n-1) shaped like gold customer_features, vectorised."""
    rng = np.random.default_rng([seed, version, start])
    idx = np.arange(start, start + n)
    tenure = rng.integers(0, 73, n)
    monthly = rng.integers(1800, 11900, n)                          # cents
    total = monthly * np.maximum(tenure, 1) + rng.integers(0, 5000, n)
    contract = np.array(["Month-to-month", "One year", "Two year"], dtype=object)[rng.integers(0, 3, n)]
    band = np.select([tenure <= 12, tenure <= 24, tenure <= 48], ["0-12", "13-24", "25-48"], "49+").astype(object)
    avg = np.round(total / np.maximum(tenure, 1)).astype(np.int64)
    updated = 1_793_491_200_000_000 + idx * 1_000 + version * 86_400_000_000
    dec = pa.decimal128(10, 2)

    def money(cents: np.ndarray) -> pa.Array:        # exact: the unscaled 128-bit value is the cents
        words = np.zeros((len(cents), 2), dtype=np.int64)
        words[:, 0] = cents                            # little-endian low word; cents are ≥ 0
        return pa.Array.from_buffers(dec, len(cents), [None, pa.py_buffer(words)])

    return pa.table({
        "customer_id": pc.binary_join_element_wise("C", pa.array(np.char.zfill(idx.astype(str), 9)), ""),
        "gender": pa.array(np.array(["Male", "Female", "Unknown"], dtype=object)[rng.integers(0, 3, n)], pa.string()),
        "senior_citizen": pa.array(rng.random(n) < 0.16),
        "partner": pa.array(rng.random(n) < 0.5),
        "dependents": pa.array(rng.random(n) < 0.3),
        "tenure": pa.array(tenure, pa.int32()),
        "tenure_band": pa.array(band, pa.string()),
        "phone_service": pa.array(rng.random(n) < 0.9),
        "internet_service": pa.array(np.array(["DSL", "Fiber optic", "No"], dtype=object)[rng.integers(0, 3, n)], pa.string()),
        "contract": pa.array(contract, pa.string()),
        "monthly_charges": money(monthly),
        "total_charges": money(total),
        "avg_monthly_spend": money(avg),
        "is_month_to_month": pa.array(contract == "Month-to-month"),
        "updated_at": pa.array(updated, pa.timestamp("us", tz="UTC")),
    })


def write_batch(rows: int, version: int, folder: Path, files: int) -> tuple[list[Path], pa.Schema]:
    """One Delta-like batch: `files` Parquet files, generated one at a time (bounded memory)."""
    folder.mkdir(parents=True)
    paths, step = [], -(-rows // files)
    for i in range(files):
        part = customer_features(min(step, rows - i * step), version, start=i * step)
        path = folder / f"part-{i:05d}.zstd.parquet"
        pq.write_table(part, path, compression="zstd")
        paths.append(path)
    return paths, part.schema


def binary_copy_only(server: dict, tables_dir: Path, files: list[Path]) -> float:
    """COPY alone, psycopg's binary format fed with Python rows (what the sink does not use)."""
    import psycopg
    with psycopg.connect(**server, autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE TEMP TABLE s (LIKE gold.customer_features) ON COMMIT DROP")
        types = [r[0] for r in conn.execute(
            "SELECT atttypid::int FROM pg_attribute WHERE attrelid = 'gold.customer_features'::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum").fetchall()]
        started = time.perf_counter()
        with conn.cursor().copy("COPY s FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
                    for row in zip(*(col.to_pylist() for col in batch.columns)):
                        copy.write_row(row)
        return time.perf_counter() - started


def csv_copy_only(sink: PostgresSink, files: list[Path]) -> float:
    conn = sink.db.connection()
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE s (LIKE gold.customer_features) ON COMMIT DROP")
        names = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'gold.customer_features'::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum").fetchall()]
        started = time.perf_counter()
        with conn.cursor().copy("COPY s FROM STDIN (FORMAT csv)") as copy:
            stream_csv(copy, files, names, "gold.customer_features", sink.config.batch_rows)
        return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=8, help="Parquet files in the batch")
    ap.add_argument("--binary-rows", type=int, default=200_000, help="rows for the binary COPY comparison")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="assay-pg-bench-"))
    work.chmod(0o755)
    port = free_port()
    env = dict(os.environ, POSTGRES_RUN_DIR=str(work / "pg"), POSTGRES_WATCH_PID=str(os.getpid()))
    script("install", env=env)
    script("start", str(port), env=env)
    try:
        password = (work / "pg" / "superuser.password").read_text().strip()
        admin = {"host": "127.0.0.1", "port": port, "dbname": "postgres", "user": "postgres", "password": password}
        import psycopg
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
            conn.execute("CREATE ROLE bench_loader LOGIN PASSWORD 'bench-loader-password'")
        admin["dbname"] = "bench"
        config = {"host": "127.0.0.1", "port": port, "dbname": "bench", "user": "bench_loader",
                  "password": "bench-loader-password",
                  "roles": {"owner": "gold_owner", "writer": "gold_writer", "analyst": "analyst"}}
        apply_roles(config, admin=admin)

        t0 = time.perf_counter()
        files1, schema = write_batch(args.rows, 0, work / "batch1", args.files)
        files2, _ = write_batch(args.rows, 1, work / "batch2", args.files)
        print(f"data: {args.rows:,} customer_features rows in {args.files} Parquet files per batch "
              f"({sum(p.stat().st_size for p in files1) / 1e6:.1f} MB), generated in {time.perf_counter() - t0:.1f}s")

        with PostgresSink(config) as sink:
            sink.ensure_table("customer_features", schema, KEYS)
            r1 = sink.upsert_batch("customer_features", files1, KEYS, app_id="bench", batch_id=1)
            r2 = sink.upsert_batch("customer_features", files2, KEYS, app_id="bench", batch_id=2)
            r3 = sink.upsert_batch("customer_features", files2, KEYS, app_id="bench", batch_id=2)
            r4 = sink.replace_table("customer_features_mv", files2, KEYS, schema=schema)
            r5 = sink.replace_table("customer_features_mv", files1, KEYS, schema=schema, method="in_place")
            csv_s = csv_copy_only(sink, files2)
        assert not r1.skipped and not r2.skipped and r3.skipped and r1.rows == r2.rows == r4.rows == r5.rows == args.rows

        for label, r in (("upsert, all new rows (COPY + INSERT … ON CONFLICT)", r1),
                         ("upsert, all rows changed (COPY + ON CONFLICT DO UPDATE)", r2),
                         ("replace_table, swap (COPY into a new table + rename)", r4),
                         ("replace_table, in_place (DELETE + COPY, one transaction)", r5)):
            print(f"{label:58s} {r.rows:>10,} rows {r.seconds:7.2f}s {r.rows / r.seconds:>12,.0f} rows/s")
        print(f"{'replayed batch (already recorded: no-op)':58s} {'':>15s} {r3.seconds:7.3f}s")

        # COPY alone: the sink's CSV text route against psycopg's binary COPY fed row by row
        n_bin = min(args.binary_rows, args.rows)
        small, _ = write_batch(n_bin, 3, work / "batch3", 1)
        bin_s = binary_copy_only(admin, work, small)
        print(f"{'COPY only, CSV written by Arrow (the sink)':58s} {args.rows:>10,} rows {csv_s:7.2f}s "
              f"{args.rows / csv_s:>12,.0f} rows/s")
        print(f"{'COPY only, binary via psycopg write_row':58s} {n_bin:>10,} rows {bin_s:7.2f}s "
              f"{n_bin / bin_s:>12,.0f} rows/s")
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        script("stop", str(port), env=env)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
