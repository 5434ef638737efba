"""The data plane at scale: a reference pipeline end to end, its engine floor, a run with nothing
new, and the next 1 % drop, each as a whole process with its peak memory.

Usage: python bench/bench_dataplane.py [--pipeline zenith|activity_logs] [--size 1GB] [--sizes 0.25GB,1GB,4GB]
                                       [--engine sail|spark] [--work DIR]
The stream is generated as 100 drops of one file each; the full run gets 99 of them, the
incremental run the 100th. Prints a table and writes bench/results/dataplane-<pipeline>-<engine>.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from measure import run  # noqa: E402

FORMATS = {"zenith": "json", "activity_logs": "csv"}
EVENTS = {"zenith": "streaming/user_events", "activity_logs": "activity_logs"}


def assay(*args: str) -> list[str]:
    return [sys.executable, "-m", "assay.cli", *args]


def flow_seconds(storage: Path, pipeline: str) -> dict[str, float]:
    """Seconds per flow of the latest run, from the event log."""
    from assay.delta.table import read_arrow
    log = read_arrow(storage / "_system" / "event_log")
    rows = [r for r in log.to_pylist() if r["event_type"] == "flow_completed"]
    latest = max(r["run_id"] for r in rows)
    return {r["flow"]: round(r["duration_s"], 2) for r in rows if r["run_id"] == latest}


def one_size(pipeline: str, size: str, engine: str, work: Path, verify: bool) -> dict:
    gen, landing, storage = work / "gen", work / "landing", work / "storage"
    for folder in (gen, landing, storage):
        shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    from assay.generator import generate, land_drop
    manifest = generate(pipeline, gen, size=size, seed=7, drops=100, files_per_drop=1, truth=verify)
    for drop in range(99):
        land_drop(gen, landing, drop)
    print(f"{pipeline} {size}: generated {manifest['rows']:,} rows in {time.perf_counter() - started:.0f}s",
          flush=True)
    common = ["-p", str(REPO / "pipelines" / pipeline), "--landing", str(landing), "--storage", str(storage)]
    engine_args = ["--engine", engine] if engine != "sail" else []
    floor = run([sys.executable, str(HERE / "floor.py"), FORMATS[pipeline], str(landing / EVENTS[pipeline]),
                 str(work / "floor"), "--engine", engine], cwd=REPO)
    full = run(assay("run", *common, *engine_args), cwd=REPO)
    if full.returncode:
        raise SystemExit(f"assay run failed:\n{full.output[-3000:]}")
    flows = flow_seconds(storage, pipeline)
    noop = run(assay("run", *common, *engine_args), cwd=REPO)
    land_drop(gen, landing, 99)
    increment = run(assay("run", *common, *engine_args), cwd=REPO)
    result = {"pipeline": pipeline, "size": size, "engine": engine, "rows": manifest["rows"],
              "bytes": manifest["event_bytes"], "floor_s": round(floor.seconds, 2),
              "floor_rss_mb": round(floor.peak_rss_mb), "full_s": round(full.seconds, 2),
              "full_rss_mb": round(full.peak_rss_mb), "noop_s": round(noop.seconds, 2),
              "increment_s": round(increment.seconds, 2), "flows_s": flows}
    if verify:
        checked = run(assay("verify", pipeline, "--truth", str(gen / "truth"), "--storage", str(storage),
                            "-p", str(REPO / "pipelines" / pipeline)), cwd=REPO)
        result["verify"] = "OK" if checked.returncode == 0 else "FAILED"
    return result


def print_table(results: list[dict]) -> None:
    print(f"{'pipeline':<14}{'size':>7}{'rows':>12}{'full s':>9}{'floor s':>9}{'×floor':>8}{'no-op s':>9}"
          f"{'+1% s':>8}{'bar +1%':>9}{'peak MB':>9}  verify")
    for r in results:
        bar = r["noop_s"] + 0.03 * r["full_s"]
        print(f"{r['pipeline']:<14}{r['size']:>7}{r['rows']:>12,}{r['full_s']:>9.1f}{r['floor_s']:>9.1f}"
              f"{r['full_s'] / r['floor_s']:>8.1f}{r['noop_s']:>9.1f}{r['increment_s']:>8.1f}{bar:>9.1f}"
              f"{r['full_rss_mb']:>9,}  {r.get('verify', '-')}")
        print(f"{'':<14}per flow: " + ", ".join(f"{k} {v:.1f}s" for k, v in r["flows_s"].items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline", default="zenith", choices=sorted(FORMATS))
    parser.add_argument("--size", default="1GB")
    parser.add_argument("--sizes", help="several sizes for the memory and scaling figures, e.g. 0.25GB,1GB,4GB")
    parser.add_argument("--engine", default="sail")
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path("/tmp") / f"assay-bench-{args.pipeline}"
    sizes = args.sizes.split(",") if args.sizes else [args.size]
    results = [one_size(args.pipeline, size, args.engine, work, verify=size == sizes[0]) for size in sizes]
    print_table(results)
    out = HERE / "results" / f"dataplane-{args.pipeline}-{args.engine}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
