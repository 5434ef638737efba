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
import pytest

from assay.delta import table as storage
from assay.runtime.runner import RunOptions, Runner
from assay.spec import load_spec
from assay.truth import table_reader
from assay.verify import verify
from tests.conftest import ROOT, cli


def run_in_process(pipeline: Path, engine, landing: Path, store: Path, **options) -> dict:
    spec = load_spec(pipeline, landing=str(landing), storage=str(store))
    return {s.flow: s for s in Runner(spec, RunOptions(**options), engine=engine).run()}


def verify_cli(pipeline: Path, truth: Path, store: Path, timeout: float = 180, run=cli) -> None:
    """`assay verify` as a user runs it: the verdict, and exit code 0 (any other exit fails). `run`:
    cli (a process of its own) or the assay_cli fixture (in this one, on the session's engine)."""
    result = run("verify", pipeline.name, "--truth", str(truth), "-p", str(pipeline), "--storage", str(store),
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


def finish_run(pipeline: Path, landing: Path, store: Path, extra: tuple = (), run=cli) -> None:
    """`assay run` to the end. `run`: cli (a process of its own) or the assay_cli fixture (in this one,
    on the session's engine), as for verify_cli."""
    result = run("run", "-p", str(pipeline), "--landing", str(landing), "--storage", str(store), *extra, cwd=ROOT,
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


def kills_then_truth(pipeline: Path, out: Path, tmp_path: Path, plan: list, seed: int, max_delay: float,
                     run=cli) -> Path:
    """Drop 0 run to the end, then `plan`'s runs each killed -9 (kill_through_drops), then one run to
    the end: the storage must equal the generator's truth. Returns the storage. `run` runs the two
    runs to the end (finish_run); the killed ones are always processes of their own."""
    import random
    from assay.generator import land_drop
    landing, store = tmp_path / "landing", tmp_path / "storage"
    land_drop(out, landing, 0)
    finish_run(pipeline, landing, store, run=run)
    kills = kill_through_drops(pipeline, out, landing, store, tmp_path, plan, random.Random(seed), max_delay)
    print(f"kill -9 landed in: {kills}")
    assert len(kills) >= 3, f"only {len(kills)} kills landed: {kills}"
    finish_run(pipeline, landing, store, run=run)
    report = verify_storage(pipeline, out / "truth", store)
    assert report.ok, f"after kills at {kills}:\n{report.render()}"
    return store


# --- the contract every reference pipeline keeps -----------------------------------------------

def generated_fixture(pipeline: Path, rows: int, drops: int, seed: int):
    """A module fixture: the pipeline's generated drops and truth, as (folder, manifest)."""
    from assay.generator import generate

    @pytest.fixture(scope="module")
    def generated(tmp_path_factory):
        out = tmp_path_factory.mktemp(f"{pipeline.name}_gen")
        return out, generate(pipeline.name, out, rows=rows, seed=seed, drops=drops)
    return generated


def one_run_fixture(pipeline: Path, drops: int):
    """A module fixture: every drop landed, then a single in-process run; the storage root."""
    from assay.generator import land_drop

    @pytest.fixture(scope="module")
    def one_run(engine, generated, tmp_path_factory):
        out, _ = generated
        base = tmp_path_factory.mktemp(f"{pipeline.name}_one_run")
        for k in range(drops):
            land_drop(out, base / "landing", k)
        run_in_process(pipeline, engine, base / "landing", base / "storage")
        return base / "storage"
    return one_run


class ReferenceContract:
    """What every reference pipeline must give on its generated data: the truth after one run over
    every drop (in process and through `assay verify`), the same tables row for row when each drop
    (or file) is run on its own, and the truth after kill -9 at several instants. A pipeline's test
    module subclasses it as `TestReferenceContract`, fills in the class attributes and may add its
    own checks of the single run in `check_one_run`."""
    pipeline: Path
    drops: int
    layers: tuple[str, ...]
    volatile: set[str]
    bronze: str                             # the flow that reads the landing files
    tables: set[str]                        # layer.table names the run must create (at least)
    per_drop_options: dict = {}             # run options of the per-drop runs, e.g. max_files=1
    kill_plan: list                         # [(drop landed first or None, progress pattern, where)]
    kill_seed: int
    kill_max_delay: float

    def records_in_drop(self, drop: Path) -> int:
        """How many records the bronze flow reads from one drop's files."""
        raise NotImplementedError

    def check_one_run(self, store: Path, manifest: dict) -> None:
        """The pipeline's own checks of the single run (its metrics, its event log)."""

    def assert_truth(self, out: Path, store: Path):
        """Every table equals the truth, and the metrics the latest run recorded are the manifest's."""
        from assay.truth import check_metrics
        report = verify_storage(self.pipeline, out / "truth", store)
        assert report.ok, report.render()
        assert check_metrics(load_spec(self.pipeline, storage=str(store)), out / "truth") == []
        return report

    def test_one_run_over_every_drop_matches_the_truth(self, generated, one_run, assay_cli):
        out, manifest = generated
        report = self.assert_truth(out, one_run)
        assert {t.name for t in report.tables} == set(manifest["tables"])
        self.check_one_run(one_run, manifest)
        verify_cli(self.pipeline, out / "truth", one_run, run=assay_cli)   # the same through the command a user runs

    @pytest.mark.slow
    def test_one_run_per_drop_gives_the_same_tables(self, engine, generated, one_run, tmp_path):
        from assay.generator import land_drop
        out, _ = generated
        landing, store = tmp_path / "landing", tmp_path / "storage"
        for k in range(self.drops):
            land_drop(out, landing, k)
            summaries = run_in_process(self.pipeline, engine, landing, store, **self.per_drop_options)
            drop = out / "drops" / str(k)
            assert summaries[self.bronze].rows_read == self.records_in_drop(drop)     # only the new drop is read
            if self.per_drop_options.get("max_files") == 1:
                assert summaries[self.bronze].batches == sum(1 for f in drop.rglob("*") if f.is_file())
        self.assert_truth(out, store)
        # Row for row (floats within verify's tolerance: sums may add in another order).
        once = tables_under(one_run, self.layers, self.volatile)
        assert self.tables <= set(once)
        assert_same_tables(once, tables_under(store, self.layers, self.volatile))

    @pytest.mark.slow
    def test_kill_9_in_the_middle_of_a_drop_then_rerun_matches_the_truth(self, generated, tmp_path, assay_cli):
        out, _ = generated
        # The killed runs are processes of their own; the first run and the rerun are tested by the
        # storage they leave, so they run in process.
        store = kills_then_truth(self.pipeline, out, tmp_path, self.kill_plan, seed=self.kill_seed,
                                 max_delay=self.kill_max_delay, run=assay_cli)
        self.assert_truth(out, store)
