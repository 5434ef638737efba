"""Table maintenance through delta-rs: compaction, z-ordering by `cluster_by`, vacuum, and the
policy `assay run --continuous` applies by itself between rounds.

The policy (assay.yml, every key optional):

    maintenance:
      compact_small_files: 16    # compact a table once it has this many small files (0: never)
      small_file_size: 32MB      # a data file below this size is small
      vacuum_every: 24h          # vacuum each table this often (0: never)
      vacuum_retention: 168h     # keep files no version needs any more this long
      force_retention: false     # allow vacuum_retention below 168h (7 days), with a warning each time

Compaction z-orders the tables declared with `cluster_by` on those columns and bin-packs the
others; it rewrites files without changing rows (`dataChange=false`), so streaming readers of the
table skip it. Vacuum deletes the data files that versions older than the retention replaced:
below 7 days a reader still on an older version (a streaming flow behind, a long query, time
travel) may lose its files, hence the guard. Each operation is recorded in the event log
(`event_type = 'maintenance'`, the table in `target`) and shown by `assay status`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from . import catalog
from .delta import table as storage
from .errors import ConfigError, PipelineLocked
from .spec import PipelineSpec

MAINTENANCE = "maintenance"                # event_type of the event log rows written here
MIN_RETENTION_HOURS = 168
STATE_FILE = "maintenance.json"            # in the system schema: when each table was last vacuumed


@dataclass
class MaintenanceResult:
    table: str
    operation: str
    files_added: int
    files_removed: int


def optimize(spec: PipelineSpec, names: list[str] | None = None, *,
             include_event_log: bool = False) -> list[MaintenanceResult]:
    """Z-order tables declared with cluster_by on those columns; compact the others."""
    results = []
    declared = catalog.declared(spec)
    for ref in _selected(spec, names, include_event_log):
        table = storage.open_table(ref.path)
        cluster = declared.get(ref.name, {}).get("cluster_by") if ref.schema == declared.get(ref.name, {}).get(
            "schema") else None
        if cluster:
            metrics = table.optimize.z_order(cluster, writer_properties=storage.WRITER)
            operation = f"z-order by {', '.join(cluster)}"
        else:
            metrics = table.optimize.compact(writer_properties=storage.WRITER)
            operation = "compact"
        results.append(MaintenanceResult(ref.name, operation, metrics.get("numFilesAdded", 0),
                                         metrics.get("numFilesRemoved", 0)))
    return results


def vacuum(spec: PipelineSpec, names: list[str] | None = None, retention_hours: float = MIN_RETENTION_HOURS, *,
           include_event_log: bool = False) -> dict[str, int]:
    """Delete files no longer referenced and older than the retention (default 7 days)."""
    removed = {}
    for ref in _selected(spec, names, include_event_log):
        table = storage.open_table(ref.path)
        removed[ref.name] = len(table.vacuum(retention_hours=int(retention_hours), dry_run=False,
                                             enforce_retention_duration=retention_hours >= MIN_RETENTION_HOURS))
    return removed


def _selected(spec: PipelineSpec, names: list[str] | None, include_event_log: bool = False) -> list[catalog.TableRef]:
    refs = [r for r in catalog.tables(spec)
            if r.name != catalog.EVENT_LOG or include_event_log or (names and r.name in names)]
    if names:
        known = {r.name for r in refs}
        missing = [n for n in names if n not in known]
        if missing:
            from .errors import AssayError
            raise AssayError(f"no table named {', '.join(missing)} in {spec.storage} "
                             f"(tables: {', '.join(sorted(known))})")
        refs = [r for r in refs if r.name in names]
    return refs


# --- the policy of continuous runs -----------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    compact_small_files: int = 16
    small_file_bytes: int = 32 * 1000 ** 2
    vacuum_every_s: float = 24 * 3600.0
    vacuum_retention_hours: float = float(MIN_RETENTION_HOURS)
    force_retention: bool = False

    KEYS = ("compact_small_files", "small_file_size", "vacuum_every", "vacuum_retention", "force_retention")

    @classmethod
    def from_spec(cls, spec: PipelineSpec) -> "Policy":
        """The `maintenance:` section of assay.yml, checked; ConfigError naming the key."""
        from .units import parse_bytes, parse_seconds
        raw = getattr(spec, "maintenance", None) or {}
        if not isinstance(raw, dict):
            raise ConfigError("assay.yml: 'maintenance' must be a mapping (" + ", ".join(cls.KEYS) + ")")
        unknown = sorted(set(raw) - set(cls.KEYS))
        if unknown:
            raise ConfigError(f"assay.yml: unknown key 'maintenance.{unknown[0]}' (allowed: {', '.join(cls.KEYS)})")

        def value(key, parse, default):
            if key not in raw:
                return default
            try:
                return parse(raw[key])
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"assay.yml: maintenance.{key}: {exc} (got {raw[key]!r})") from None

        def count(v):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError("must be a whole number >= 0")
            return v

        def flag(v):
            if not isinstance(v, bool):
                raise ValueError("must be true or false")
            return v

        policy = cls(compact_small_files=value("compact_small_files", count, cls.compact_small_files),
                     small_file_bytes=value("small_file_size", parse_bytes, cls.small_file_bytes),
                     vacuum_every_s=value("vacuum_every", parse_seconds, cls.vacuum_every_s),
                     vacuum_retention_hours=value("vacuum_retention", parse_seconds,
                                                  cls.vacuum_retention_hours * 3600) / 3600,
                     force_retention=value("force_retention", flag, cls.force_retention))
        if policy.vacuum_retention_hours < MIN_RETENTION_HOURS and not policy.force_retention:
            raise ConfigError(f"assay.yml: maintenance.vacuum_retention is {policy.vacuum_retention_hours:g}h, below "
                              f"{MIN_RETENTION_HOURS}h (7 days): a reader on an older version (a streaming flow "
                              "behind, a long query, time travel) could lose its files. Keep 168h or more, or set "
                              "maintenance.force_retention: true to accept it")
        return policy


@dataclass
class Done:
    """One maintenance operation on one table, as recorded in the event log."""
    table: str
    operation: str                 # compact | z-order by ... | vacuum
    status: str = "ok"             # ok | warning | failed
    files_added: int = 0
    files_removed: int = 0
    small_files: int | None = None
    retention_hours: float | None = None
    seconds: float = 0.0
    message: str = ""
    extra: dict = field(default_factory=dict)

    def line(self) -> str:
        if self.operation == "vacuum":
            what = f"vacuum (retention {self.retention_hours:g}h): {self.files_removed} files deleted"
        else:
            what = f"{self.operation} ({self.small_files} small files): {self.files_removed} files → {self.files_added}"
        return f"maintenance {self.table}: {what}" + (f" — {self.message}" if self.message else "")


def small_files(path, limit: int) -> int:
    table = storage.open_table(path)
    if table is None:
        return 0
    return sum(1 for a in storage.add_actions(table) if int(a.get("size_bytes") or 0) < limit)


def auto_maintain(spec: PipelineSpec, events, policy: Policy, *, now: float | None = None,
                  warn: Callable[[str], None] = lambda message: None) -> list[Done]:
    """What `assay run --continuous` does between rounds: compact every table (the event log too)
    whose small files reached the threshold, vacuum every table not vacuumed for `vacuum_every`,
    each under the pipeline's lock and recorded in the event log. A run of another process
    holding the storage postpones it to the next round."""
    from .atomic import read_json, write_json_atomic
    from .runtime.lock import PipelineLock
    now = time.time() if now is None else now
    done: list[Done] = []
    try:
        lock = PipelineLock(spec.system_dir)
        lock.acquire()
    except PipelineLocked:
        return done
    try:
        state_path = spec.system_dir / STATE_FILE
        state = read_json(state_path) if state_path.exists() else {}
        for ref in catalog.tables(spec):
            if policy.compact_small_files:
                small = small_files(ref.path, policy.small_file_bytes)
                if small >= policy.compact_small_files:
                    done.append(_run(lambda: _compact(spec, ref.name), ref.name, "compact", small_files=small))
            last = (state.get(ref.name) or {}).get("vacuumed_at")
            if policy.vacuum_every_s and (last is None or now - last >= policy.vacuum_every_s):
                item = _run(lambda: _vacuum(spec, ref.name, policy.vacuum_retention_hours), ref.name, "vacuum",
                            retention_hours=policy.vacuum_retention_hours)
                if item.status == "ok" and policy.vacuum_retention_hours < MIN_RETENTION_HOURS:
                    item.status = "warning"
                    item.message = (f"retention {policy.vacuum_retention_hours:g}h is below 7 days "
                                    "(force_retention): readers of older versions may have lost files")
                    warn(f"{ref.name}: vacuum with a retention of {policy.vacuum_retention_hours:g}h, below 7 days "
                         "(maintenance.force_retention): readers of older versions may have lost files")
                done.append(item)
                if item.status != "failed":
                    state[ref.name] = {"vacuumed_at": now}
        write_json_atomic(state_path, state)
        _record(events, done)
    finally:
        lock.release()
    return done


def history(spec: PipelineSpec) -> list[Done]:
    """`assay optimize`'s upkeep of what runs leave behind (assay/runtime/history.py): the event
    log compacted and checkpointed, its old files vacuumed once a day, the flows' old checkpoint
    records deleted. Under the pipeline lock: PipelineLocked while a run holds it (a run does the
    same at its end when due)."""
    from .runtime.eventlog import EventLog
    from .runtime.history import upkeep
    from .runtime.lock import PipelineLock
    if not spec.system_dir.exists():
        return []
    with PipelineLock(spec.system_dir) as lock:
        log = EventLog(spec.system_dir / catalog.EVENT_LOG, spec.name) \
            if (spec.system_dir / catalog.EVENT_LOG / "_delta_log").exists() else None
        return upkeep(spec.system_dir, log, lock.fence)


def _compact(spec: PipelineSpec, name: str) -> tuple[str, int, int]:
    [result] = optimize(spec, [name])
    return result.operation, result.files_added, result.files_removed


def _vacuum(spec: PipelineSpec, name: str, retention_hours: float) -> tuple[str, int, int]:
    removed = vacuum(spec, [name], retention_hours)[name]
    return "vacuum", 0, removed


def _run(operation, table: str, kind: str, **details) -> Done:
    started = time.monotonic()
    try:
        name, added, removed = operation()
        return Done(table, name, files_added=added, files_removed=removed, seconds=time.monotonic() - started,
                    **details)
    except Exception as exc:        # a table that cannot be maintained now is retried next round
        from . import secrets
        return Done(table, kind, status="failed", seconds=time.monotonic() - started,
                    message=secrets.redact(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"),
                    **details)


def _record(events, done: list[Done]) -> None:
    if not done:
        return
    from .runtime.eventlog import Event
    events.record(*[Event(MAINTENANCE, target=d.table, status=d.status, message=d.line(), duration_s=d.seconds,
                          metrics={"operation": d.operation, "files_added": d.files_added,
                                   "files_removed": d.files_removed, "small_files": d.small_files,
                                   "retention_hours": d.retention_hours}) for d in done])


def last_maintenance(spec: PipelineSpec) -> dict[str, dict[str, str]]:
    """Per table, the latest compaction and vacuum in the event log, as short texts for `assay status`."""
    log = storage.read_arrow(spec.system_dir / catalog.EVENT_LOG,
                             columns=["event_type", "target", "timestamp", "status", "metrics"])
    out: dict[str, dict[str, str]] = {}
    if log is None or "event_type" not in log.column_names:
        return out
    import json
    rows = [r for r in log.to_pylist() if r["event_type"] == MAINTENANCE and r["target"]]
    for r in sorted(rows, key=lambda r: r["timestamp"]):
        metrics = json.loads(r["metrics"] or "{}")
        operation = metrics.get("operation") or "?"
        kind = "vacuum" if operation == "vacuum" else "compaction"
        at = r["timestamp"].astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") \
            if isinstance(r["timestamp"], datetime) else str(r["timestamp"])
        if kind == "vacuum":
            text = f"{at} ({metrics.get('files_removed', 0)} deleted, {metrics.get('retention_hours', 0):g}h)"
        else:
            text = f"{at} ({operation}: {metrics.get('files_removed', 0)} → {metrics.get('files_added', 0)} files)"
        if r["status"] != "ok":
            text += f" {r['status']}"
        out.setdefault(r["target"], {})[kind] = text
    return out
