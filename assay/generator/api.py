"""generate() and land_drop(): the public entry points of the data generator."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from .knobs import DEFAULT_ROWS, parse_size, resolve
from .pipelines import PIPELINES
from .sink import CountingSink, DirSink

MANIFEST_FORMAT = 1
_SAMPLE_ROWS = 20_000


def generate(pipeline: str, out_dir, *, rows: int | None = None, size: str | int | None = None,
             seed: int = 0, drops: int = 1, truth: bool = True, **knobs) -> dict:
    """Land `drops` drops of source files under out_dir/drops/<k>/ and the truth under out_dir/truth/.

    rows: landed event records (lines) over all drops; size: approximate bytes of the event
    files instead (e.g. "50MB"). truth=False skips the truth (benchmarks). Returns the manifest.
    """
    if pipeline not in PIPELINES:
        raise KeyError(f"unknown pipeline {pipeline!r}; known: {', '.join(PIPELINES)}")
    if drops < 1:
        raise ValueError("drops must be >= 1")
    if rows is not None and size is not None:
        raise TypeError("give rows or size, not both")
    spec = PIPELINES[pipeline]
    k = resolve(pipeline, knobs)
    if rows is None:
        rows = _rows_for_size(pipeline, parse_size(size), seed, drops, k) if size is not None else DEFAULT_ROWS
    rows = int(rows)

    out = Path(out_dir)
    for sub in ("drops", "truth"):
        shutil.rmtree(out / sub, ignore_errors=True)     # a previous dataset must not leak into this one
    sink = DirSink(out, drops)
    result = spec.run(seed, rows, k, drops, sink, truth)

    manifest = {
        "format": MANIFEST_FORMAT, "pipeline": pipeline, "seed": seed, "rows": rows, "size": size,
        "drops": drops, "knobs": k, "event_bytes": sink.event_bytes, "event_lines": sink.event_lines,
        "files": sink.listing(), "tables": {}, "metrics": result.metrics, "injected": result.injected,
    }
    truth_dir = out / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    for name, table in result.tables.items():
        pq.write_table(table, truth_dir / f"{name}.parquet")
        manifest["tables"][name] = {"rows": table.num_rows, "columns": table.column_names,
                                    "approx_distinct": spec.approx_distinct.get(name, [])}
    (truth_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_json) + "\n")
    return manifest


def _json(o):
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _rows_for_size(pipeline: str, size: int, seed: int, drops: int, knobs: dict) -> int:
    """Measure bytes per event on a small sample with the same knobs, then scale."""
    sink = CountingSink(drops)
    sample = max(_SAMPLE_ROWS, 20 * drops * knobs["files_per_drop"])
    PIPELINES[pipeline].run(seed, sample, knobs, drops, sink, False)
    per_line = sink.event_bytes / max(sink.event_lines, 1)
    return max(int(size / per_line), drops * knobs["files_per_drop"] * 2)


def land_drop(out_dir, landing_root, drop: int) -> list[str]:
    """Copy drop `drop`'s files into landing_root (same relative paths), in arrival order.

    Each file appears atomically: it is copied under a hidden temporary name (ignored by
    file sources) and renamed into place. Returns the landed paths.
    """
    manifest = json.loads((Path(out_dir) / "truth" / "manifest.json").read_text())
    rels = manifest["files"].get(str(drop))
    if rels is None:
        raise KeyError(f"no drop {drop} in {out_dir} (drops: 0..{manifest['drops'] - 1})")
    src_root = Path(out_dir) / "drops" / str(drop)
    landed = []
    for rel in sorted(rels):
        dst = Path(landing_root) / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.parent / f".{dst.name}.landing"
        shutil.copyfile(src_root / rel, tmp)
        os.replace(tmp, dst)
        landed.append(os.fspath(dst))
    return landed
