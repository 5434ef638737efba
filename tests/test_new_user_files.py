"""What a new user hit with landing folders, storage and the run's output (issue 18, points 2, 4, 12):
a missing or moved landing folder, a bad file fixed after expect_or_fail, new JSON fields under a
given schema, qualified names in `assay query`, a read-only or full storage root, killed runs in
history, and progress without a terminal."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assay.errors import ExpectationFailed, FlowError, SchemaChanged, StorageUnwritable
from tests.conftest import ROOT, cli, table, write_project

BRONZE_SILVER = """
from assay import pipelines as dp

@dp.table(name="bronze.events")
def events():
    return dp.read_files("events", "json", schema="id STRING, n INT"{options})

@dp.table(name="silver.copies")
def copies():
    return dp.read_stream("events").select("id", "n")
"""

FAILING = """
from assay import pipelines as dp

@dp.table(name="bronze.events")
@dp.expect_or_fail("positive_n", "n > 0")
def events():
    return dp.read_files("events", "json", schema="id STRING, n INT"{options})
"""


def pipeline(folder: Path, code: str = BRONZE_SILVER, options: str = "") -> Path:
    return write_project(folder, {"transformations/p.py": code.replace("{options}", options)})


def land(folder: Path, name: str, rows: list, age_s: float = 600) -> Path:
    """A landing file; each write gets its own modification time (a rewrite is seen as one)."""
    path = folder / "landing" / "events" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    mtime = time.time() - age_s
    os.utime(path, (mtime, mtime))
    return path


def run(engine, folder: Path, warnings: list | None = None, **spec_args):
    from assay.runtime.runner import RunOptions, Runner
    from assay.spec import load_spec
    runner = Runner(load_spec(folder, **spec_args), RunOptions(), engine=engine)
    if warnings is not None:
        runner.events.on_warning = warnings.append
    return {s.flow: s for s in runner.run()}


def events_of(folder: Path, kind: str, storage: str = "storage") -> list[dict]:
    from assay.delta.table import read_arrow
    return [e for e in read_arrow(folder / storage / "_system/event_log").to_pylist() if e["event_type"] == kind]


# --- point 2: a missing or moved landing folder --------------------------------------------------

def test_a_missing_landing_folder_is_warned_about_on_every_run(tmp_path, engine):
    folder = pipeline(tmp_path / "proj")
    expected = (f"the landing folder {folder}/landing/events does not exist: flow 'events' (table events) read "
                "nothing from it. Check `landing` in assay.yml, --landing, ASSAY_LANDING and the path given to "
                "read_files")
    for _ in range(2):
        warnings = []
        assert run(engine, folder, warnings)["events"].batches == 0
        assert warnings == [expected]
    assert [e["message"] for e in events_of(folder, "source_warning")] == [expected, expected]
    land(folder, "a.json", [{"id": "a", "n": 1}])
    warnings = []
    assert run(engine, folder, warnings)["events"].batches == 1 and warnings == []


def test_a_missing_folder_read_whole_by_a_view_is_warned_about_on_every_run(tmp_path, engine):
    folder = write_project(tmp_path / "proj", {"transformations/p.py": """
        from assay import pipelines as dp

        @dp.materialized_view(name="gold.prices")
        def prices():
            return dp.read_files("prices", "json", schema="sku STRING, price DOUBLE", batch=True)
    """})
    expected = (f"the landing folder {folder}/landing/prices does not exist: flow 'prices' (table prices) read "
                "nothing from it. Check `landing` in assay.yml, --landing, ASSAY_LANDING and the path given to "
                "read_files")
    for _ in range(2):              # the second run skips the refresh (nothing changed) and still says it
        warnings = []
        run(engine, folder, warnings)
        assert warnings == [expected]
    assert [e["message"] for e in events_of(folder, "source_warning")] == [expected, expected]


def test_a_copied_project_names_both_landing_folders_and_what_a_full_refresh_loses(tmp_path, engine):
    first = pipeline(tmp_path / "first")
    land(first, "a.json", [{"id": "a", "n": 1}])
    run(engine, first)
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    with pytest.raises(FlowError) as raised:
        run(engine, copy)
    assert str(raised.value) == (
        f"flow 'events' read its landing files from {first}/landing/events, and now reads {copy}/landing/events: "
        "its checkpoint lists the files read by path, so it cannot continue in another folder. If the landing "
        "folder moved (a copied project, --landing, ASSAY_LANDING), point landing back at the folder it read; to "
        f"read the new folder as a new source, `assay run --full-refresh events` (with the tables that stream from "
        f"it) starts over from the files now in {copy}/landing/events: it empties those tables, so rows read from "
        "landing files deleted since are lost.")
    with pytest.raises(FlowError, match=f"now reads {tmp_path}/nowhere/events, which does not exist: "):
        run(engine, copy, landing=str(tmp_path / "nowhere"))
    # The advice holds: pointed back at the folder it read, the copy goes on (nothing new to read).
    summaries = run(engine, copy, landing=str(first / "landing"))
    assert summaries["events"].batches == 0 and summaries["events"].status == "done"
    assert [r["id"] for r in table(copy, "02_silver", "copies")] == ["a"]


def test_an_edited_checkpoint_says_what_a_full_refresh_loses(tmp_path, engine):
    folder = pipeline(tmp_path / "proj")
    land(folder, "a.json", [{"id": "a", "n": 1}])
    run(engine, folder)
    state = next((folder / "storage/_system/checkpoints/events/sources").iterdir())
    (state / "files-00000001.parquet").unlink()
    land(folder, "b.json", [{"id": "b", "n": 2}])
    with pytest.raises(FlowError) as raised:
        run(engine, folder)
    assert str(raised.value) == (
        f"the checkpoint of flow 'events' (files:json:{folder}/landing/events) is missing files-00000001.parquet in "
        f"{state}: it was edited, so which landing files were read is unknown. `assay run --full-refresh events` "
        f"(with the tables that stream from it) starts over from the files now in {folder}/landing/events: it "
        "empties those tables, so rows read from landing files deleted since are lost.")


# --- point 4: a bad file fixed in place after expect_or_fail --------------------------------------

def test_a_file_fixed_after_expect_or_fail_is_read_fixed_and_not_reported(tmp_path, engine):
    folder = pipeline(tmp_path / "proj", FAILING)
    path = land(folder, "orders-06.json", [{"id": "a", "n": -1}], age_s=900)
    with pytest.raises(ExpectationFailed):
        run(engine, folder)
    land(folder, "orders-06.json", [{"id": "a", "n": 5}], age_s=600)          # fixed in place
    warnings = []
    assert run(engine, folder, warnings)["events"].batches == 1
    assert warnings == []                                                   # it was read: nothing to report
    assert [(r["id"], r["n"]) for r in table(folder, "01_bronze", "events")] == [("a", 5)]
    land(folder, "orders-06.json", [{"id": "a", "n": 7}], age_s=300)          # rewritten after its batch committed
    assert run(engine, folder, warnings)["events"].batches == 0
    assert len(warnings) == 1 and warnings[0].startswith(f"{path} was rewritten in place after flow 'events' read it")
    assert [(r["id"], r["n"]) for r in table(folder, "01_bronze", "events")] == [("a", 5)]


def test_with_allow_overwrites_a_fixed_file_is_read_once(tmp_path, engine):
    folder = pipeline(tmp_path / "proj", FAILING, options=", allow_overwrites=True")
    land(folder, "orders-06.json", [{"id": "a", "n": -1}], age_s=900)
    with pytest.raises(ExpectationFailed):
        run(engine, folder)
    land(folder, "orders-06.json", [{"id": "a", "n": 5}], age_s=600)
    assert run(engine, folder)["events"].batches == 1
    assert run(engine, folder)["events"].batches == 0                     # the fixed file is not new again
    assert [(r["id"], r["n"]) for r in table(folder, "01_bronze", "events")] == [("a", 5)]


# --- point 12 -----------------------------------------------------------------------------------

def test_new_json_fields_under_a_given_schema_stop_with_exit_7_as_the_readme_says(tmp_path, engine):
    folder = pipeline(tmp_path / "proj")
    land(folder, "a.json", [{"id": "a", "n": 1, "note": "new"}])
    with pytest.raises(SchemaChanged) as raised:
        run(engine, folder)
    assert raised.value.exit_code == 7
    run(engine, folder)
    assert table(folder, "01_bronze", "events")[0]["note"] == "new"          # addNewColumns, schema given or not
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "6 storage locked by another run, 7 new columns in a landing folder" in readme
    assert "8 storage not writable" in readme
    assert ("Schema evolution: `addNewColumns` is the default, with or without `schema=` (Auto Loader defaults "
            "to `none` when a schema is given)") in readme


def test_readme_verify_example_names_the_project():
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("assay verify ")]
    assert lines and all(" -p pipelines/" in line for line in lines)


def test_query_reads_tables_by_the_names_the_code_gives_them(tmp_path, engine, assay_cli):
    from assay import catalog
    from assay.spec import load_spec
    folder = pipeline(tmp_path / "proj")
    land(folder, "a.json", [{"id": "a", "n": 1}, {"id": "b", "n": 2}])
    run(engine, folder)
    spec = load_spec(folder)
    refs = catalog.register_views(engine.spark, spec)

    def query(sql: str) -> list[dict]:
        return engine.spark.sql(catalog.bind_qualified(engine.spark, spec, refs, sql)).toArrow().to_pylist()
    assert query("SELECT COUNT(*) AS n FROM silver.copies") == [{"n": 2}]
    assert query("SELECT silver.copies.id FROM t.silver.copies WHERE copies.n = 2") == [{"id": "b"}]
    assert query("SELECT c.id FROM silver.copies c JOIN `01_bronze`.events e ON c.id = e.id ORDER BY 1") == \
        [{"id": "a"}, {"id": "b"}]
    assert query("SELECT COUNT(*) AS n FROM _system.event_log WHERE event_type = 'run_started'") == [{"n": 1}]
    assert query("SELECT COUNT(*) AS n FROM copies") == [{"n": 2}]          # bare names as before
    result = assay_cli("query", "SELECT n FROM silver.copies WHERE id = 'b'", "-p", str(folder), "--format", "json",
                 cwd=ROOT)
    assert result.returncode == 0 and json.loads(result.stdout) == [{"n": 2}], result.stderr


@pytest.fixture
def mounted(tmp_path):
    """Mount a tmpfs (root only), unmounted at the end."""
    mounts = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                                               capture_output=True).returncode != 0:
            pytest.skip("mounting a tmpfs needs root")
        mounts.append(point)
        return point
    yield mount
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_read_only_storage_root_is_named_with_its_cause(tmp_path, engine, mounted):
    folder = pipeline(tmp_path / "proj")
    land(folder, "a.json", [{"id": "a", "n": 1}])
    storage = mounted("ro", "ro,size=1m") / "storage"
    with pytest.raises(StorageUnwritable) as raised:
        run(engine, folder, storage=str(storage))
    assert raised.value.exit_code == 8
    assert str(raised.value) == (
        f"the storage at {storage} is read-only: Read-only file system. Mount it writable, or "
        "point --storage / ASSAY_STORAGE at a writable folder, then run again: an interrupted batch is repaired by "
        "the next run.")


def test_a_full_storage_root_is_said_in_words_without_a_rust_panic(tmp_path, mounted):
    folder = pipeline(tmp_path / "proj")
    land(folder, "a.json", [{"id": f"e{i}", "n": i} for i in range(20_000)])
    storage = mounted("full", "size=1m")
    free = os.statvfs(storage)
    with open(storage / "filler", "wb") as handle:                         # leave no block free
        handle.write(b"\0" * (free.f_bavail * free.f_frsize))
    result = cli("run", "-p", str(folder), "--storage", str(storage / "storage"), cwd=ROOT,
                 env={"RUST_BACKTRACE": "1"})
    assert result.returncode == 8, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: the storage at {storage}/storage is full (no space left on device)")
    assert "panicked" not in result.stderr and "RUST_BACKTRACE" not in result.stderr, result.stderr


def test_native_panic_reports_are_kept_off_stderr(tmp_path):
    """The filter of descriptor 2, on the report object_store printed near a full disk."""
    code = """
import os, sys
from assay import native_stderr
native_stderr.hide_panics()
os.write(2, b"engine says hello\\n\\nthread 'tokio-rt-worker' (11567) panicked at /home/runner/.cargo/registry/src/"
            b"object_store-0.13.2/src/buffered.rs:369:41:\\nAlready shut down\\nstack backtrace:\\n   0: rust_begin\\n"
            b"             at /rustc/library/std/src/panicking.rs:697:5\\nnote: Some details are omitted, run with "
            b"`RUST_BACKTRACE=full` for a verbose backtrace.\\nengine says bye\\n")
print("error: the storage is full", file=sys.stderr)
native_stderr.flush()
os._exit(0)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={**os.environ, "ASSAY_DEBUG": ""})
    assert sorted(result.stderr.splitlines()) == ["engine says bye", "engine says hello", "error: the storage is full"]


def test_a_failed_run_is_in_history_whatever_failed(tmp_path, engine):
    folder = pipeline(tmp_path / "proj")
    land(folder, "a.json", [{"id": "a", "n": 1}])
    (folder / "storage/_system/catalog.json").mkdir(parents=True)           # not an AssayError: an OSError
    with pytest.raises(OSError):
        run(engine, folder)
    failed = events_of(folder, "run_failed")
    assert len(failed) == 1 and failed[0]["message"].startswith("IsADirectoryError: ")


SLOW = """
import time
import pandas as pd
from pyspark.sql import functions as F
from assay import pipelines as dp

@F.pandas_udf("int")
def slow_n(n: pd.Series) -> pd.Series:
    time.sleep(60)
    return n

@dp.table(name="bronze.events")
def events():
    return dp.read_files("events", "json", schema="id STRING, n INT").withColumn("n", slow_n("n"))
"""


def test_history_shows_a_killed_run_as_interrupted_and_a_live_one_as_running(tmp_path, assay_cli):
    folder = pipeline(tmp_path / "proj", SLOW)
    land(folder, "a.json", [{"id": "a", "n": 1}])
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "assay.cli", "run", "-p", str(folder)], stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while "batch=0" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from assay.runtime.eventlog import RUN_STARTED, Event, EventLog
    from assay.runtime.lock import PipelineLock
    with PipelineLock(folder / "storage/_system"):                            # a run in progress holds the lock
        EventLog(folder / "storage/_system/event_log", "t").record(Event(RUN_STARTED))
        result = assay_cli("history", "-p", str(folder), "--format", "json", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert [r["outcome"] for r in json.loads(result.stdout)] == ["running", "interrupted"]
    result = assay_cli("history", "-p", str(folder), "--format", "json", cwd=ROOT)
    assert [r["outcome"] for r in json.loads(result.stdout)] == ["interrupted", "interrupted"]


def test_progress_without_a_terminal_is_one_line_per_flow_event(tmp_path, engine):
    from rich.console import Console
    from assay.progress import RunDisplay
    from assay.runtime.runner import RunOptions, Runner
    from assay.spec import load_spec
    folder = pipeline(tmp_path / "proj", options=", max_files_per_batch=1")
    land(folder, "a.json", [{"id": "a", "n": 1}], age_s=600)
    land(folder, "b.json", [{"id": "b", "n": 2}], age_s=300)

    def lines() -> list[str]:
        out = io.StringIO()
        with RunDisplay(Console(file=out, width=200)) as display:
            Runner(load_spec(folder), RunOptions(), engine=engine, on_progress=display.update).run()
        return [re.sub(r" [\d.]+s$", "", line).split() for line in out.getvalue().splitlines()]
    assert lines() == [
        ["running", "events", "batches=0", "read=0", "inserted=0", "batch=0"],
        ["running", "events", "batches=1", "read=1", "inserted=1", "batch=1"],
        ["done", "events", "batches=2", "read=2", "inserted=2"],
        ["running", "copies", "batches=0", "read=0", "inserted=0", "batch=0"],
        ["done", "copies", "batches=1", "read=2", "inserted=2"]]
    assert lines() == [["done", "events", "nothing", "new"], ["done", "copies", "nothing", "new"]]
