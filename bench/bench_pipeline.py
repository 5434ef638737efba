"""Run a reference pipeline end to end on generated data and print its time and peak memory.

Usage: python bench/bench_pipeline.py [zenith|activity_logs|clickstream] [SIZE, e.g. 200MB or 1GB]
Each phase runs in a fresh process so peak RSS is the pipeline's own.
"""
from __future__ import annotations

import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(pipeline: str = "zenith", size: str = "200MB") -> None:
    assay = [sys.executable, "-m", "assay.cli"]
    # clickstream's HMAC key (generator and pipeline alike): a throwaway one unless given.
    env = {**os.environ, "CLICKSTREAM_PII_KEY": os.environ.get("CLICKSTREAM_PII_KEY") or secrets.token_hex(32)}
    with tempfile.TemporaryDirectory() as tmp:
        gen, landing, storage = Path(tmp) / "gen", Path(tmp) / "landing", Path(tmp) / "storage"
        started = time.perf_counter()
        subprocess.run([*assay, "generate", pipeline, "--out", str(gen), "--size", size, "--landing", str(landing)],
                       check=True, cwd=REPO, capture_output=True, env=env)
        print(f"{pipeline}: generated {size} in {time.perf_counter() - started:.1f}s")
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        subprocess.run([*assay, "run", "-p", f"pipelines/{pipeline}", "--landing", str(landing), "--storage",
                        str(storage)], check=True, cwd=REPO, capture_output=True, env=env)
        seconds = time.perf_counter() - started
        peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
        print(f"{pipeline}: assay run {seconds:.1f}s, peak RSS {peak:,.0f} MB (embedded engine)")
        result = subprocess.run([*assay, "verify", pipeline, "--truth", str(gen / "truth"), "--storage", str(storage)],
                                cwd=REPO, capture_output=True, text=True, env=env)
        print(f"{pipeline}: verify {'OK' if result.returncode == 0 else 'FAILED'}")


if __name__ == "__main__":
    main(*sys.argv[1:])
