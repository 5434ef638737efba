"""What a new user hit with landing folders (issue 18, points 2 and 4): a missing or moved landing
folder, and a bad file fixed in place after expect_or_fail."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from assay.errors import ExpectationFailed, FlowError
from tests.conftest import table, write_project

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
        runner.on_warning = warnings.append
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
