"""How long discovering new files takes with 100 000 files in a landing folder.

Measures: the first plan (nothing seen yet, 1 000 files taken), a plan after 99 000 files are
recorded in the checkpoint (reading the seen-set back included), and a plan finding nothing new.
Usage: python bench/bench_listing.py [FILES]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from assay.sources.base import BatchLimits
from assay.sources.files import FileSource


def main(count: int = 100_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "landing"
        for d in range(count // 1000 + 1):
            (root / f"d{d:03d}").mkdir(parents=True)
        started = time.perf_counter()
        for i in range(count):
            (root / f"d{i // 1000:03d}" / f"part-{i:06d}.json").write_text('{"id": 1}\n')
        print(f"created {count:,} files in {time.perf_counter() - started:.1f}s")
        checkpoint = Path(tmp) / "ckpt"

        def source():
            return FileSource(root, "json", "id INT", {}, checkpoint)

        limits = BatchLimits(max_files=1000)
        src = source()
        t = time.perf_counter()
        plan = src.plan(None, limits)
        print(f"first plan (list {count:,}, take 1,000): {time.perf_counter() - t:.3f}s")
        position = plan.end
        t = time.perf_counter()
        while (plan := src.plan(position, BatchLimits(max_files=10_000))) is not None and position < 10:
            position = plan.end
        print(f"planning 9 more batches of 10,000: {time.perf_counter() - t:.3f}s")
        fresh = source()   # a new run: reads the seen-set back from the checkpoint
        t = time.perf_counter()
        plan = fresh.plan(position, limits)
        print(f"new run, {count - 1000:,}+ files seen, plan: {time.perf_counter() - t:.3f}s")
        while plan is not None:
            position = plan.end
            plan = fresh.plan(position, BatchLimits(max_files=100_000))
        t = time.perf_counter()
        assert fresh.plan(position, limits) is None
        print(f"nothing new among {count:,} files: {time.perf_counter() - t:.3f}s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
