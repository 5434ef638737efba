"""What the reference pipelines' end-to-end tests share: running a pipeline (in process or as a
killable subprocess), landing fixture trees, reading and comparing its tables."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

from assay.delta import table as storage
from assay.runtime.runner import RunOptions, Runner
from assay.spec import load_spec
from assay.truth import table_reader
from assay.verify import verify
from tests.conftest import ROOT, cli


def run_in_process(pipeline: Path, engine, landing: Path, store: Path, **options) -> dict:
    spec = load_spec(pipeline, landing=str(landing), storage=str(store))
    return {s.flow: s for s in Runner(spec, RunOptions(**options), engine=engine).run()}


def verify_cli(pipeline: Path, truth: Path, store: Path, timeout: float = 180) -> None:
    """`assay verify` as a user runs it: the verdict, and exit code 0 (any other exit fails)."""
    result = cli("verify", pipeline.name, "--truth", str(truth), "-p", str(pipeline), "--storage", str(store),
                 cwd=ROOT, timeout=timeout)
    assert "every table matches the truth" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr


def verify_storage(pipeline: Path, truth: Path, store: Path):
    spec = load_spec(pipeline, storage=str(store))
    return verify(truth, table_reader(spec))


# Landed files get increasing modification times (arrival order), an hour in the past.
_mtime = [time.time() - 3600.0]


def land_tree(src: Path, landing: Path) -> list[Path]:
    """Copy every file under src into landing (same relative paths), in path order, each with a later
    modification time than anything landed before: arrival order is landing order."""
    landed = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        dst = landing / path.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.landing")
        shutil.copyfile(path, tmp)
        _mtime[0] += 1.0
        os.utime(tmp, (_mtime[0], _mtime[0]))
        os.replace(tmp, dst)
        landed.append(dst)
    return landed


def read(store: Path, schema: str, name: str) -> pa.Table:
    data = storage.read_arrow(store / schema / name)
    assert data is not None, f"no table {schema}.{name} under {store}"
    return data


def comparable(data: pa.Table, volatile: set[str]) -> pa.Table:
    """Without the volatile columns (they differ between two correct runs), _source_file as a base name."""
    data = data.drop_columns([c for c in data.column_names if c in volatile])
    if "_source_file" in data.column_names:
        names = pa.array([None if v is None else os.path.basename(v) for v in data["_source_file"].to_pylist()],
                         pa.string())
        data = data.set_column(data.column_names.index("_source_file"), "_source_file", names)
    return data


def tables_under(store: Path, layers: tuple[str, ...], volatile: set[str]) -> dict[str, pa.Table]:
    return {f"{layer}.{p.name}": comparable(storage.read_arrow(p), volatile)
            for layer in layers for p in sorted((store / layer).iterdir()) if (p / "_delta_log").is_dir()}


def start_run(pipeline: Path, landing: Path, store: Path, log: Path, extra: tuple = ()) -> subprocess.Popen:
    """`assay run` as a subprocess, one file per batch; `extra` arguments such as --remote sc://..."""
    return subprocess.Popen(
        [sys.executable, "-m", "assay.cli", "run", "-p", str(pipeline), "--landing", str(landing),
         "--storage", str(store), "--max-files-per-batch", "1", *extra],
        cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": "error", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})


def kill_when(proc: subprocess.Popen, log: Path, pattern: str, delay: float, timeout: float = 120) -> bool:
    """SIGKILL `proc` `delay` seconds after its progress output matches `pattern`.
    False when the run ended before (no kill happened)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if re.search(pattern, log.read_text()):
            time.sleep(delay)
            if proc.poll() is not None:
                return False
            proc.kill()
            proc.wait()
            return True
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    raise AssertionError(f"'{pattern}' never showed in {log}:\n{log.read_text()}")


def finish_run(pipeline: Path, landing: Path, store: Path, extra: tuple = ()) -> None:
    result = cli("run", "-p", str(pipeline), "--landing", str(landing), "--storage", str(store), *extra, cwd=ROOT,
                 timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def kill_through_drops(pipeline: Path, out: Path, landing: Path, store: Path, logs: Path, plan: list,
                       rng, max_delay: float, extra: tuple = ()) -> list[str]:
    """Run the pipeline once per step of `plan` = [(drop to land first or None, progress pattern,
    where)], killing each run -9 shortly after its output matches the pattern; the kills that landed."""
    from assay.generator import land_drop
    kills = []
    for i, (drop, pattern, where) in enumerate(plan):
        if drop is not None:
            land_drop(out, landing, drop)
        log = logs / f"run-{i}.log"
        if kill_when(start_run(pipeline, landing, store, log, extra), log, pattern, rng.uniform(0.0, max_delay)):
            kills.append(where)
    return kills


def assert_same_tables(expected: dict[str, pa.Table], actual: dict[str, pa.Table]) -> None:
    """The same tables, the same columns, the same rows (verify's comparison)."""
    from assay.verify import compare
    assert set(expected) == set(actual)
    for name, table in expected.items():
        assert table.column_names == actual[name].column_names, name
        result = compare(name, table, actual[name])
        assert result.ok, f"{name}: {result}"


def kills_then_truth(pipeline: Path, out: Path, tmp_path: Path, plan: list, seed: int, max_delay: float) -> Path:
    """Drop 0 run to the end, then `plan`'s runs each killed -9 (kill_through_drops), then one run to
    the end: the storage must equal the generator's truth. Returns the storage."""
    import random
    from assay.generator import land_drop
    landing, store = tmp_path / "landing", tmp_path / "storage"
    land_drop(out, landing, 0)
    finish_run(pipeline, landing, store)
    kills = kill_through_drops(pipeline, out, landing, store, tmp_path, plan, random.Random(seed), max_delay)
    print(f"kill -9 landed in: {kills}")
    assert len(kills) >= 3, f"only {len(kills)} kills landed: {kills}"
    finish_run(pipeline, landing, store)
    report = verify_storage(pipeline, out / "truth", store)
    assert report.ok, f"after kills at {kills}:\n{report.render()}"
    return store
