"""What runs leave behind, kept from growing with their number: the event log's small files and
log, the flows' checkpoint records, and the AUTO CDC change logs' small files.

Every event of a run is its own Delta commit (one data file, one log entry): the event log must
hold each event the moment it happens, so that `kill -9` loses none, and a `run_failed` is written
even when the run dies. Left alone, 10 000 runs make some 100 000 small files, which every
`assay status`, `assay history`, the UI and each later event's own commit read or list. So at
the end of a run, once the log has taken COMPACT_EVERY commits since its last compaction (a
version number kept in `<system>/history.json`: reading it and listing the Delta log is the
whole check), the run, still holding the pipeline lock:

1. compacts the log's small files (delta-rs `optimize.compact`: one commit that adds the merged
   files and removes the small ones, `dataChange=false`, rows in their order). A crash before
   that commit leaves an unreferenced file and the log as it was; after it, the merged one;
2. writes a Delta checkpoint of that version, so that readers start from it instead of
   replaying commits (a crash midway leaves the previous checkpoint in charge), and removes the
   log entries older than the log retention (`delta.logRetentionDuration`, 30 days by default)
   that a checkpoint covers;
3. once a day, vacuums the log: deletes the replaced small files older than 7 days (readers of
   an older version keep theirs);
4. deletes checkpoint records older than the newest `checkpoint.KEEP` of each flow (those a crash
   or an older version left; each commit deletes its predecessor's by itself);
5. merges the AUTO CDC flows' change logs the same way once they hold CHANGE_LOG_SMALL_FILES small
   files, and vacuums them with the event log.

Each step only ever removes what a committed later state made unnecessary, so a kill at any
instant leaves a readable log holding every event and correct checkpoints; the next run's check
finds the work still due and does it. Merged files are at most TARGET_BYTES, and a file that
size is not rewritten again, so a compaction rewrites a bounded amount whatever the history.
Every step first checks the pipeline lock's fence. `assay optimize` runs the same upkeep on demand.
"""
from __future__ import annotations

import time
from typing import Callable

from .. import fs
from ..atomic import read_json, write_json_atomic
from ..delta.commit import no_fence
from ..delta.table import WRITER, add_actions, open_table
from . import faults
from .checkpoint import Checkpoint

EVENT_LOG = "event_log"                 # catalog.EVENT_LOG
STATE_FILE = "history.json"             # in the system schema: the event log's last compaction and vacuum
COMPACT_EVERY = 40                      # event-log commits (≈ small files) since the last compaction
TARGET_BYTES = 4 * 1000 ** 2            # merged event-log files: ~80 000 events of a small pipeline
CHANGE_LOG_SMALL_FILES = 16            # small files in an AUTO CDC change log before it is merged
VACUUM_EVERY_S = 24 * 3600.0
VACUUM_RETENTION_HOURS = 168            # as `assay vacuum`: readers of week-old versions keep their files


def due(system_dir, every: int | None = None) -> bool:
    """The cheap check at the end of a run: has the event log taken `every` (COMPACT_EVERY)
    commits since its last compaction? One small JSON read and one listing of its Delta log."""
    # The log's version from the names of its commits: a listing, less than opening the table takes
    # (an open lists the same folder, then reads the checkpoint and the commits after it).
    versions = [int(p.stem) for p in fs.list_dir(fs.as_path(system_dir) / EVENT_LOG / "_delta_log")
                if p.suffix == ".json" and p.stem.isdigit()]
    every = COMPACT_EVERY if every is None else every
    return bool(versions) and _since_compaction(system_dir, max(versions)) >= every


def after_run(spec, events, fence: Callable[[], None] = no_fence) -> None:
    """At the end of a run, under its lock: the upkeep when due. A failure here never fails the
    run that completed; it is said, and the next run tries again."""
    try:
        if due(spec.system_dir):
            upkeep(spec.system_dir, events, fence)
    except Exception as exc:
        from .. import secrets
        warn = getattr(events, "on_warning", None)
        if warn is not None:
            warn(secrets.redact(f"history upkeep (event-log compaction, checkpoint pruning) skipped: "
                                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
                                "the next run tries again"))


def upkeep(system_dir, events=None, fence: Callable[[], None] = no_fence, *, now: float | None = None) -> list:
    """Compact the event log, checkpoint and clean its Delta log, vacuum it when a day has passed,
    prune the checkpoints' records. The caller holds the pipeline lock. Returns what was done
    (maintenance.Done items, recorded in the event log when `events` is given)."""
    from ..maintenance import Done, _record
    system_dir = fs.as_path(system_dir)
    now = time.time() if now is None else now
    done: list = []
    path = system_dir / EVENT_LOG
    state = _state(system_dir)
    table = open_table(path)
    if table is not None:
        started = time.monotonic()
        small = sum(1 for size in _sizes(table) if size < TARGET_BYTES)
        added, removed = compact_event_log(table, fence)
        version = table.version()
        state["compacted_version"] = version
        write_json_atomic(system_dir / STATE_FILE, state)
        done.append(Done(EVENT_LOG, "compact", files_added=added, files_removed=removed, small_files=small,
                         seconds=time.monotonic() - started))
        last = state.get("vacuumed_at")
        if last is None or now - last >= VACUUM_EVERY_S:
            started = time.monotonic()
            fence()
            deleted = len(table.vacuum(retention_hours=VACUUM_RETENTION_HOURS, dry_run=False,
                                       enforce_retention_duration=True))
            state["vacuumed_at"] = now
            write_json_atomic(system_dir / STATE_FILE, state)
            done.append(Done(EVENT_LOG, "vacuum", files_removed=deleted, retention_hours=VACUUM_RETENTION_HOURS,
                             seconds=time.monotonic() - started))
    prune_checkpoints(system_dir, fence)
    done += compact_change_logs(system_dir, fence, vacuum=any(d.operation == "vacuum" for d in done))
    if events is not None and done:
        _record(events, done)
    return done


def compact_event_log(table, fence: Callable[[], None] = no_fence) -> tuple[int, int]:
    """Merge the log's small files, checkpoint the result, drop expired log entries. Returns
    (files added, files removed)."""
    fence()
    metrics = table.optimize.compact(target_size=TARGET_BYTES, writer_properties=WRITER)
    faults.crash_point(faults.HISTORY_COMPACTED)
    fence()
    table.create_checkpoint()
    faults.crash_point(faults.HISTORY_CHECKPOINTED)
    table.cleanup_metadata()
    return int(metrics.get("numFilesAdded", 0)), int(metrics.get("numFilesRemoved", 0))


def compact_change_logs(system_dir, fence: Callable[[], None] = no_fence, *, vacuum: bool = False) -> list:
    """AUTO CDC flows' change logs (`checkpoints/<flow>/changes`, one small file per batch) merged
    like the event log once CHANGE_LOG_SMALL_FILES of them are small; vacuumed on the event log's
    daily schedule. A batch reads its change log at the version its plan recorded, so a rerun after
    a compaction still reads the same rows."""
    from ..maintenance import Done
    from .autocdc import CHANGES
    root = fs.as_path(system_dir) / "checkpoints"
    done = []
    for folder in fs.list_dir(root) if root.exists() else []:
        table = open_table(folder / CHANGES) if (folder / CHANGES / "_delta_log").exists() else None
        if table is None:
            continue
        small = sum(1 for size in _sizes(table) if size < TARGET_BYTES)
        name = f"{folder.name} (change log)"
        if small >= CHANGE_LOG_SMALL_FILES:
            started = time.monotonic()
            added, removed = compact_event_log(table, fence)
            done.append(Done(name, "compact", files_added=added, files_removed=removed, small_files=small,
                             seconds=time.monotonic() - started))
        if vacuum:
            fence()
            deleted = len(table.vacuum(retention_hours=VACUUM_RETENTION_HOURS, dry_run=False,
                                       enforce_retention_duration=True))
            done.append(Done(name, "vacuum", files_removed=deleted, retention_hours=VACUUM_RETENTION_HOURS))
    return done


def prune_checkpoints(system_dir, fence: Callable[[], None] = no_fence) -> int:
    """Each flow's checkpoint down to its newest records; how many files were deleted."""
    root = fs.as_path(system_dir) / "checkpoints"
    if not root.exists():
        return 0
    return sum(Checkpoint(folder, fence).prune() for folder in fs.list_dir(root))


def _sizes(table) -> list[int]:
    return [int(a.get("size_bytes") or 0) for a in add_actions(table)]


def _state(system_dir) -> dict:
    try:
        state = read_json(fs.as_path(system_dir) / STATE_FILE)
    except FileNotFoundError:
        return {}
    except ValueError:                          # unreadable: the upkeep is simply done again
        return {}
    return state if isinstance(state, dict) else {}


def _since_compaction(system_dir, version: int) -> int:
    last = _state(system_dir).get("compacted_version")
    if not isinstance(last, int) or last > version:      # never compacted, or the log was recreated
        last = -1
    return version - last
