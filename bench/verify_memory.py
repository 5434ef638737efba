"""What `assay verify` costs: peak RSS (of the whole process tree, the embedded engine included) and
wall time of verifying a generated pipeline's tables against their truth (issue 20: 15 GB and
4.5 minutes for 2 GB of activity_logs when the comparison read every table into Python).

Generates the data (once per size, kept under --work), runs the pipeline once, then times `assay
verify`; --source times another checkout's verify on the same tables (e.g. an older commit, for
the figure before a change).

Usage: python bench/verify_memory.py [--pipeline activity_logs] [--size 1GB] [--work DIR]
                                     [--source DIR] [--repeat 1]
Prints one line per verify: wall seconds, peak RSS, the verdict.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from measure import run as measured  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline", default="activity_logs")
    parser.add_argument("--size", default="1GB")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "assay-bench-verify")
    parser.add_argument("--source", type=Path, default=REPO, help="the checkout whose `assay verify` is timed")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    env = {"RUST_LOG": "error"}
    base = args.work / f"{args.pipeline}-{args.size}"
    gen, landing, storage = base / "gen", base / "landing", base / "storage"
    pipeline = REPO / "pipelines" / args.pipeline
    if not (gen / "truth" / "manifest.json").exists():
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "assay.cli", "generate", args.pipeline, "--out", str(gen), "--size",
                        args.size, "--landing", str(landing)], check=True, cwd=REPO, env={**os.environ, **env})
    if not (storage / "_ran").exists():
        shutil.rmtree(storage, ignore_errors=True)
        ran = measured([sys.executable, "-m", "assay.cli", "run", "-p", str(pipeline), "--landing", str(landing),
                        "--storage", str(storage)], cwd=REPO, env=env)
        if ran.returncode != 0:
            raise SystemExit(f"assay run failed:\n{ran.output[-2000:]}")
        print(f"run: {ran.seconds:.1f} s, peak RSS {ran.peak_rss_mb:,.0f} MB")
        (storage / "_ran").write_text("")
    print(f"verify {args.pipeline} {args.size}, code at {args.source}")
    for _ in range(args.repeat):
        m = measured([sys.executable, "-m", "assay.cli", "verify", args.pipeline, "--truth", str(gen / "truth"),
                      "-p", str(pipeline), "--storage", str(storage)], cwd=args.source,
                     env={**env, "PYTHONPATH": str(args.source)})
        verdict = m.output.strip().splitlines()[-1] if m.output.strip() else ""
        print(f"verify: {m.seconds:6.1f} s, peak RSS {m.peak_rss_mb:,.0f} MB, exit {m.returncode}: {verdict}",
              flush=True)


if __name__ == "__main__":
    main()
