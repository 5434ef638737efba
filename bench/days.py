"""Does day N cost what day 1 costs? One generated stream split into daily drops, one `assay run` per
day on the embedded engine, the wall time of each run and of its slowest flows; the tables are
verified against the truth at the end.

Usage: python bench/days.py [--pipeline activity_logs] [--size 1GB] [--drops 4] [--work DIR]
                            [--source DIR]   (the checkout to time; default this one)
                            [--against DIR]  (a second checkout, e.g. an older commit: both run
                                              day by day in turns, each into its own storage, so
                                              that a change of the machine's load hits both alike)
Prints one line per day (per checkout).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline", default="activity_logs")
    parser.add_argument("--size", default="1GB")
    parser.add_argument("--drops", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "assay-bench-days")
    parser.add_argument("--source", type=Path, default=REPO, help="the checkout whose assay is timed")
    parser.add_argument("--against", type=Path, default=None, help="a second checkout, run in turns")
    args = parser.parse_args()
    gen = args.work / f"gen-{args.pipeline}-{args.size}-{args.drops}"
    if not (gen / "truth").exists():
        shutil.rmtree(gen, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "assay.cli", "generate", args.pipeline, "--out", str(gen),
                        "--size", args.size, "--drops", str(args.drops)], check=True, cwd=REPO)
    sources = [args.source] + ([args.against] if args.against else [])
    runs = {source: args.work / f"run-{i}" for i, source in enumerate(sources)}
    for run_dir in runs.values():
        shutil.rmtree(run_dir, ignore_errors=True)
    from assay.generator import land_drop
    print(f"{args.pipeline} {args.size} in {args.drops} days; " +
          " against ".join(f"code at {s}" for s in sources))
    walls: dict[Path, list[float]] = {s: [] for s in sources}
    for day in range(args.drops):
        for source, run_dir in runs.items():
            land_drop(gen, run_dir / "landing", day)
            wall, slowest = run_day(source, args.pipeline, run_dir)
            walls[source].append(wall)
            label = f"[{source.name}] " if len(sources) > 1 else ""
            print(f"{label}day {day}: {wall:6.1f} s   ({slowest})", flush=True)
    for source, run_dir in runs.items():
        print(f"{source}: last day / first day = {walls[source][-1] / walls[source][0]:.2f}; "
              f"{verdict(source, args.pipeline, gen, run_dir)}")


def env_for(source: Path) -> dict:
    return {**os.environ, "RUST_LOG": "error", "PYTHONPATH": str(source)}


def run_day(source: Path, pipeline: str, run_dir: Path) -> tuple[float, str]:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "assay.cli", "run", "-p", str(source / "pipelines" / pipeline),
                          "--landing", str(run_dir / "landing"), "--storage", str(run_dir / "storage")],
                         cwd=source, env=env_for(source), capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - started
    flows = {m[0]: float(m[1]) for m in re.findall(r"done\s+(\S+)\s.*?([\d.]+)s$", out, re.M)}
    return wall, ", ".join(f"{name} {s:.1f}" for name, s in sorted(flows.items(), key=lambda f: -f[1])[:3])


def verdict(source: Path, pipeline: str, gen: Path, run_dir: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "assay.cli", "verify", pipeline, "--truth", str(gen / "truth"),
                             "-p", str(source / "pipelines" / pipeline), "--storage", str(run_dir / "storage")],
                            cwd=source, env=env_for(source), capture_output=True, text=True)
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-500:]


if __name__ == "__main__":
    main()
