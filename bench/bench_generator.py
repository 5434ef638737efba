"""Generator throughput on one core: events/s and MB/s of landed event files.

    python bench/bench_generator.py [--rows 1000000] [--repeats 3] [--pipelines zenith activity_logs]

"data" runs write the source files only (truth=False): that is the generator's own speed.
"with truth" adds computing and writing the truth tables. Times are the best of --repeats
(the machine is shared); CPU time is shown too since it is what one core actually spent.
"""
from __future__ import annotations

import os

# One core: pin every thread pool before numpy / pyarrow start theirs.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import pyarrow as pa  # noqa: E402

from assay.generator import generate  # noqa: E402


def _timed(pipeline: str, out: str, rows: int, truth: bool) -> tuple[float, float, dict]:
    shutil.rmtree(out, ignore_errors=True)           # deleting the previous run is not part of the timing
    wall, cpu = time.perf_counter(), time.process_time()
    manifest = generate(pipeline, out, rows=rows, seed=0, truth=truth)
    return time.perf_counter() - wall, time.process_time() - cpu, manifest


def bench(pipeline: str, rows: int, repeats: int, workdir: str) -> dict:
    out = os.path.join(workdir, pipeline)
    runs = [_timed(pipeline, out, rows, truth=False) for _ in range(repeats)]
    wall, cpu, manifest = min(runs, key=lambda r: r[0])
    twall, tcpu, _ = _timed(pipeline, out, rows, truth=True)
    lines, size = manifest["event_lines"], manifest["event_bytes"]
    return {"pipeline": pipeline, "events": lines, "bytes": size, "wall_s": wall, "cpu_s": cpu,
            "events_per_s": lines / wall, "mb_per_s": size / wall / 1e6, "events_per_cpu_s": lines / cpu,
            "with_truth_wall_s": twall, "with_truth_cpu_s": tcpu}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pipelines", nargs="+", default=["zenith", "activity_logs"])
    args = ap.parse_args(argv)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    results = []
    with tempfile.TemporaryDirectory(prefix="assay-bench-gen-") as tmp:
        generate("zenith", os.path.join(tmp, "warmup"), rows=20_000, truth=False)   # imports, lookup tables
        for p in args.pipelines:
            r = bench(p, args.rows, args.repeats, tmp)
            results.append(r)
            print(f"{p:<16} {r['events']:>10,} events {r['bytes'] / 1e6:8.1f} MB | data: {r['wall_s']:5.2f} s "
                  f"{r['events_per_s']:>12,.0f} events/s {r['mb_per_s']:7.1f} MB/s "
                  f"(cpu {r['cpu_s']:.2f} s, {r['events_per_cpu_s']:,.0f} events/cpu-s) | "
                  f"with truth: {r['with_truth_wall_s']:5.2f} s", flush=True)
    return results


if __name__ == "__main__":
    main()
