"""Does day N cost what day 1 costs? One generated stream split into daily drops, one `assay run` per
day on the embedded engine, the wall time of each run and of its slowest flows; the tables are
verified against the truth at the end.

Usage: python bench/days.py [--pipeline activity_logs] [--size 1GB] [--drops 4] [--work DIR]
                            [--source DIR]   (another checkout to time, e.g. an older commit)
Prints one line per day.
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
    args = parser.parse_args()
    gen = args.work / f"gen-{args.pipeline}-{args.size}-{args.drops}"
    if not (gen / "truth").exists():
        shutil.rmtree(gen, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "assay.cli", "generate", args.pipeline, "--out", str(gen),
                        "--size", args.size, "--drops", str(args.drops)], check=True, cwd=REPO)
    run_dir = args.work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    landing, storage = run_dir / "landing", run_dir / "storage"
    env = {**os.environ, "RUST_LOG": "error", "PYTHONPATH": str(args.source)}
    pipeline = args.source / "pipelines" / args.pipeline
    from assay.generator import land_drop
    print(f"{args.pipeline} {args.size} in {args.drops} days, code at {args.source}")
    for day in range(args.drops):
        land_drop(gen, landing, day)
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "assay.cli", "run", "-p", str(pipeline), "--landing",
                              str(landing), "--storage", str(storage)], cwd=args.source, env=env,
                             capture_output=True, text=True, check=True).stdout
        wall = time.monotonic() - started
        flows = {m[0]: float(m[1]) for m in re.findall(r"done\s+(\S+)\s.*?([\d.]+)s$", out, re.M)}
        slowest = ", ".join(f"{name} {s:.1f}" for name, s in sorted(flows.items(), key=lambda f: -f[1])[:3])
        print(f"day {day}: {wall:6.1f} s   ({slowest})", flush=True)
    verdict = subprocess.run([sys.executable, "-m", "assay.cli", "verify", args.pipeline, "--truth", str(gen / "truth"),
                              "-p", str(pipeline), "--storage", str(storage)], cwd=args.source, env=env,
                             capture_output=True, text=True)
    print(verdict.stdout.strip().splitlines()[-1] if verdict.stdout.strip() else verdict.stderr[-500:])


if __name__ == "__main__":
    main()
