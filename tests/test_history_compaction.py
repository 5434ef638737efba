"""What runs leave behind stays bounded (assay/runtime/history.py): the event log is compacted and
checkpointed at the end of a run, checkpoint folders keep their newest records only, and neither
loses an event nor breaks the replay of a batch a crash interrupted."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from assay.delta import table as storage
from assay.runtime import checkpoint as checkpoint_module
from assay.runtime import faults, history
from assay.runtime.checkpoint import Checkpoint
from assay.runtime.eventlog import Event, EventLog
from assay.runtime.reporting import RunEvents

EVERY = 12


def _runs(system, count: int, start: int = 0, upkeep: bool = True) -> list[str]:
    """`count` runs of 3 events each, one commit per event as a run writes them, each run ending
    with the upkeep check; returns the events' messages in the order they were recorded."""
    spec = SimpleNamespace(system_dir=system)
    written = []
    for run in range(start, start + count):
        events = RunEvents(EventLog(system / "event_log", "p"))
        for kind, flow in (("run_started", None), ("flow_progress", "f"), ("run_completed", None)):
            message = f"run {run} {kind}"
            events.record(Event(kind, flow=flow, batch_id=run if flow else None, message=message))
            written.append(message)
        if upkeep:
            history.after_run(spec, events)
    return written


def _recorded(system) -> list[str]:
    log = storage.read_arrow(system / "event_log").to_pylist()
    ordered = sorted(log, key=lambda r: r["timestamp"])
    return [r["message"] for r in ordered if r["event_type"] != "maintenance"]


def test_event_log_stays_a_few_files_and_keeps_every_event_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "COMPACT_EVERY", EVERY)
    system = tmp_path / "_system"
    written = _runs(system, 24)
    table = storage.open_table(system / "event_log")
    # 72 event commits: without the upkeep 72 files; with it, the merged file(s), the maintenance
    # records and at most EVERY commits since the last compaction.
    assert len(table.file_uris()) <= EVERY + 3
    assert _recorded(system) == written
    assert any(name.endswith(".checkpoint.parquet") for name in os.listdir(system / "event_log/_delta_log"))
    operations = [h["operation"] for h in table.history()]
    assert "OPTIMIZE" in operations
    maintenance = [r for r in storage.read_arrow(system / "event_log").to_pylist() if r["event_type"] == "maintenance"]
    assert maintenance and all(r["target"] == "event_log" and r["status"] == "ok" for r in maintenance)


def test_the_check_is_cheap_and_only_due_every_so_many_commits(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "COMPACT_EVERY", EVERY)
    system = tmp_path / "_system"
    assert not history.due(system)                          # no event log yet
    _runs(system, 3, upkeep=False)                          # 9 commits
    assert not history.due(system)
    _runs(system, 1, start=3, upkeep=False)                 # 12
    assert history.due(system)
    history.upkeep(system)
    assert not history.due(system)
    assert history._state(system)["compacted_version"] == storage.open_table(system / "event_log").version()


def test_checkpoint_folders_hold_the_newest_records_and_a_replay_still_works(tmp_path):
    ckpt = Checkpoint(tmp_path / "flow", keep=3)
    for batch in range(20):
        ckpt.write_plan(batch, {"batch": batch, "position": batch + 1})
        ckpt.write_commit(batch, {"batch": batch, "position": batch + 1})
    for kind in ("offsets", "commits"):
        assert sorted(int(p.stem) for p in (tmp_path / "flow" / kind).iterdir()) == [17, 18, 19]
    # A crash after batch 20 was planned, before it was recorded: the runner replays the plan
    # from the record of the batch before it (runner._run_stream).
    ckpt.write_plan(20, {"batch": 20, "position": 21})
    again = Checkpoint(tmp_path / "flow", keep=3)
    planned, committed = again.last_planned(), again.last_committed()
    assert planned == (20, {"batch": 20, "position": 21}) and committed == (19, {"batch": 19, "position": 20})
    assert again.prune() == 2                                # batch 17's; the plan and its predecessor stay
    assert again.last_planned()[0] == 20 and again.last_committed()[0] == 19
    again.write_commit(20, {"batch": 20, "position": 21})
    assert again.last_planned()[0] == again.last_committed()[0] == 20
    assert len(list((tmp_path / "flow" / "commits").iterdir())) == 3
    with pytest.raises(ValueError):
        Checkpoint(tmp_path / "flow", keep=1)


def test_folders_written_before_pruning_are_pruned_by_the_upkeep(tmp_path):
    system = tmp_path / "_system"
    old = Checkpoint(system / "checkpoints" / "f", keep=0)             # an older version: every record kept
    for batch in range(30):
        old.write_plan(batch, {"batch": batch})
        old.write_commit(batch, {"batch": batch})
    old.write_plan(30, {"batch": 30})                                    # and one batch interrupted
    deleted = history.prune_checkpoints(system)
    assert deleted == 31 + 30 - (checkpoint_module.KEEP * 2 - 1)     # kept: plans 21..30, commits 21..29
    ckpt = Checkpoint(system / "checkpoints" / "f")
    assert ckpt.last_planned()[0] == 30 and ckpt.last_committed()[0] == 29
    assert len(list((system / "checkpoints/f/offsets").iterdir())) == checkpoint_module.KEEP


class Crash(BaseException):
    """Stands for kill -9 at a crash point: nothing after it runs."""


@pytest.mark.parametrize("point", [faults.HISTORY_COMPACTED, faults.HISTORY_CHECKPOINTED])
def test_a_compaction_cut_short_loses_no_event(tmp_path, monkeypatch, point):
    monkeypatch.setattr(history, "COMPACT_EVERY", EVERY)
    system = tmp_path / "_system"
    written = _runs(system, 5, upkeep=False)

    def crash(name):
        if name == point:
            raise Crash(name)
    monkeypatch.setattr(faults, "crash_point", crash)
    with pytest.raises(Crash):
        history.upkeep(system)
    # an unreferenced file a compaction killed before its commit would leave
    (system / "event_log" / "part-00000-orphan.zstd.parquet").write_bytes(b"not a finished file")
    assert _recorded(system) == written
    assert history.due(system)                              # the state was not recorded: done again
    monkeypatch.setattr(faults, "crash_point", lambda name: None)
    written += _runs(system, 1, start=5)                    # the next run's end finishes the upkeep
    assert _recorded(system) == written
    assert not history.due(system)


def test_kill_9_between_compaction_and_checkpoint_leaves_a_readable_log(tmp_path):
    system = tmp_path / "_system"
    written = _runs(system, 5, upkeep=False)
    script = textwrap.dedent(f"""
        from assay.runtime import history
        history.upkeep({str(system)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "ASSAY_CRASH_AT":
                                                                f"{faults.HISTORY_COMPACTED}:1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    table = storage.open_table(system / "event_log")
    assert table.history(1)[0]["operation"] == "OPTIMIZE" and len(table.file_uris()) == 1
    assert _recorded(system) == written
    history.upkeep(system)
    assert _recorded(system) == written


def test_a_run_ends_with_the_upkeep_and_replays_an_interrupted_batch(project, run_pipeline, monkeypatch):
    """A real pipeline: checkpoint folders bounded after many batches, and a batch whose tables
    committed but whose record a crash lost is replayed without writing its rows twice."""
    monkeypatch.setattr(history, "COMPACT_EVERY", 5)
    monkeypatch.setattr(checkpoint_module, "KEEP", 2)
    folder = project({"transformations/p.py": textwrap.dedent("""
        from assay import pipelines as dp

        @dp.table(name="bronze.events")
        def events():
            return dp.read_files("in", "json", schema="id STRING")
    """)})
    (folder / "landing/in").mkdir(parents=True)
    for i in range(5):
        (folder / f"landing/in/f{i}.json").write_text(f'{{"id": "{i}"}}\n')
    run_pipeline(folder, max_files=1)
    ckpt = folder / "storage/_system/checkpoints/events"
    assert sorted(int(p.stem) for p in (ckpt / "commits").iterdir()) == [3, 4]
    assert sorted(int(p.stem) for p in (ckpt / "offsets").iterdir()) == [3, 4]
    log = storage.open_table(folder / "storage/_system/event_log")
    assert "OPTIMIZE" in [h["operation"] for h in log.history()]
    (ckpt / "commits/4.json").unlink()                      # killed after its commit, before its record
    summaries = run_pipeline(folder)
    assert summaries["events"].batches == 1
    rows = sorted(r["id"] for r in storage.read_arrow(folder / "storage/01_bronze/events").to_pylist())
    assert rows == ["0", "1", "2", "3", "4"]
    assert sorted(int(p.stem) for p in (ckpt / "commits").iterdir()) == [3, 4]


def test_failing_runs_compact_the_event_log_too(project, run_pipeline, monkeypatch):
    """A schedule that fails every time (here: a query that raises) still ends each run with the
    upkeep, so its events do not pile up as one small file each."""
    monkeypatch.setattr(history, "COMPACT_EVERY", 5)
    folder = project({"transformations/p.py": textwrap.dedent("""
        from assay import pipelines as dp

        @dp.table(name="bronze.events")
        def events():
            df = dp.read_files("in", "json", schema="id STRING")
            return df.selectExpr("assert_true(id != 'bad') AS ok", "id")
    """)})
    (folder / "landing/in").mkdir(parents=True)
    for i in range(4):
        (folder / f"landing/in/f{i}.json").write_text('{"id": "bad"}\n')
        with pytest.raises(Exception):
            run_pipeline(folder, max_files=1)
    log = storage.open_table(folder / "storage/_system/event_log")
    assert "OPTIMIZE" in [h["operation"] for h in log.history()]
    kinds = [r["event_type"] for r in storage.read_arrow(folder / "storage/_system/event_log").to_pylist()]
    assert kinds.count("run_failed") == 4
