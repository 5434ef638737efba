"""The JSON documents of the UI, each a function of the lake at the moment it is asked.

`Lake` holds what is worth keeping between requests: the event log read so far, table
summaries, the declared graph (rebuilt when a library file changes) and, once the SQL box or the
graph needs it, one engine session. Every document passes through `redact` before it leaves.
"""
from __future__ import annotations

import re
import threading
from datetime import datetime, timezone
from typing import Callable

from .. import catalog, secrets
from ..errors import AssayError
from ..spec import PipelineSpec
from .declared import declared_datasets
from .events import EventLogReader, Run, iso, lock_holder_alive, zero_counts
from .graph import assemble, declared_graph, graph_from_events
from .sqlbox import SqlBox
from .tables import LATE_SUFFIX, QUARANTINE_SUFFIX, Tables, layer_of

LOCATION = re.compile(r"([\w./\\-]+\.(?:py|sql)):(\d+)")
MAX_PAGE = 500
TIMELINE_RUNS = 500
RECENT_S = 600          # without a readable lock file, a run silent for longer is interrupted


class NotFound(AssayError):
    pass


def redact(value):
    """Every string of a document with resolved secrets masked (`***NAME***`)."""
    if isinstance(value, str):
        return secrets.redact(value)
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


class Lake:
    def __init__(self, spec: PipelineSpec, engine_factory: Callable | None = None):
        self.spec = spec
        self.events = EventLogReader(spec.system_dir / catalog.EVENT_LOG)
        self.tables = Tables(spec)
        self.engine_lock = threading.RLock()
        self._engine = None
        self._engine_factory = engine_factory
        self.sql_box = SqlBox(spec, self.engine, self.engine_lock)
        self._declared = None
        self._declared_stamp = None
        self._declared_error: str | None = None

    # --- the engine, started on first use --------------------------------------------------

    def engine(self):
        with self.engine_lock:
            if self._engine is None:
                if self._engine_factory is not None:
                    self._engine = self._engine_factory()
                else:
                    from ..engines import create_engine
                    self._engine = create_engine(self.spec.engine, self.spec.engine_conf)
            return self._engine

    def close(self) -> None:
        with self.engine_lock:
            if self._engine is not None and self._engine_factory is None:
                self._engine.stop()
            self._engine = None

    # --- the declared graph ----------------------------------------------------------------

    def _library_stamp(self):
        from ..loader import library_files
        stamp = []
        for path, _ in library_files(self.spec):
            try:
                stamp.append((str(path), path.stat().st_mtime_ns))
            except OSError:
                pass
        return tuple(stamp)

    def declared(self) -> tuple[dict | None, str | None]:
        """The graph the code declares, rebuilt when a library file changes; or the error."""
        with self.engine_lock:
            try:
                stamp = self._library_stamp()
            except Exception as exc:  # an unreadable project folder
                return None, f"{type(exc).__name__}: {exc}"
            if stamp != self._declared_stamp:
                try:
                    self._declared, self._declared_error = declared_graph(self.spec, self.engine()), None
                except AssayError as exc:
                    self._declared, self._declared_error = None, str(exc)
                except Exception as exc:
                    self._declared, self._declared_error = None, f"{type(exc).__name__}: {exc}"
                self._declared_stamp = stamp
            return self._declared, self._declared_error

    def model(self, runs: list[Run]) -> tuple[dict, str, str | None]:
        """(graph model, where it came from: code or event_log, the error loading the code)."""
        decl, error = self.declared()
        if decl is not None:
            return decl, "code", None
        return graph_from_events(self.spec, runs, declared_datasets(self.spec)), "event_log", error

    # --- helpers ---------------------------------------------------------------------------

    def _alive(self) -> bool:
        alive = lock_holder_alive(self.spec.system_dir)
        if alive is not None:
            return alive
        # the lock file does not name its process: a run that wrote lately is taken as going
        latest = self.events.snapshot().latest()
        return bool(latest and latest.open and latest.last_at and
                    (datetime.now(timezone.utc) - latest.last_at).total_seconds() < RECENT_S)

    def _open_alive(self, snap, run: Run) -> bool:
        """A run without an end is running only if it is the latest and its process is alive."""
        return run.open and run is snap.latest() and self._alive()

    # --- documents -------------------------------------------------------------------------

    def overview(self) -> dict:
        snap = self.events.snapshot()
        latest = snap.latest()
        return {"pipeline": self.spec.name, "catalog": self.spec.catalog, "target": self.spec.target,
                "engine": self.spec.engine, "storage": str(self.spec.storage), "landing": str(self.spec.landing),
                "schemas": dict(self.spec.schemas),
                "configuration": {str(k): str(v) for k, v in (self.spec.configuration or {}).items()},
                "event_log": {"exists": self.events.exists(), "version": snap.version, "events": snap.events,
                              "runs": len(snap.runs)},
                "latest": latest.summary(self._open_alive(snap, latest)) if latest else None}

    def state(self) -> dict:
        """What the page polls: the event log's version and the latest run."""
        snap = self.events.snapshot()
        latest = snap.latest()
        alive = bool(latest and self._open_alive(snap, latest))
        return {"version": snap.version, "events": snap.events, "runs": len(snap.runs), "running": alive,
                "latest": latest.summary(alive) if latest else None}

    def graph(self, run_id: str | None = None) -> dict:
        self.declared()
        with self.events.lock:
            snap = self.events.snapshot()
            runs = snap.ordered()
            decl, source, error = self.model(runs)
            if run_id:
                run = snap.runs.get(run_id)
                if run is None:
                    raise NotFound(f"no run {run_id} in the event log")
            else:
                run = runs[-1] if runs else None
            run_open = bool(run and self._open_alive(snap, run))
            doc = assemble(self.spec, decl, run, run_open)
            recent = [r.summary(self._open_alive(snap, r)) for r in reversed(runs[-50:])]
            return {**doc, "run": run.summary(run_open) if run else None, "recent_runs": recent,
                    "version": snap.version, "graph_source": source, "graph_error": error}

    def runs(self, offset: int = 0, limit: int = 50) -> dict:
        limit = max(1, min(int(limit), MAX_PAGE))
        offset = max(0, int(offset))
        with self.events.lock:
            snap = self.events.snapshot()
            ordered = snap.ordered()
            newest_first = ordered[::-1]
            page = newest_first[offset:offset + limit]
            alive = self._alive()
            latest = snap.latest()

            def summary(run):
                return run.summary(alive and run is latest and run.open)
            timeline = [[r.run_id, iso(r.start), r.seconds(alive and r is latest and r.open),
                         r.state(alive and r is latest), r.counts["rows_written"]]
                        for r in ordered[-TIMELINE_RUNS:]]
            return {"total": len(ordered), "offset": offset, "limit": limit, "version": snap.version,
                    "runs": [summary(r) for r in page], "timeline": timeline}

    def run(self, run_id: str) -> dict:
        self.declared()
        with self.events.lock:
            snap = self.events.snapshot()
            decl, _, _ = self.model(snap.ordered())
            defined = {f["flow"]: f.get("defined_at") for f in decl.get("flows", [])}
            targets = {f["flow"]: f.get("target") for f in decl.get("flows", [])}
            run = snap.runs.get(run_id)
            if run is None:
                raise NotFound(f"no run {run_id} in the event log")
            run_open = self._open_alive(snap, run)
            flows = []
            for fr in sorted(run.flows.values(), key=lambda f: (f.started or f.first_at, f.flow)):
                batches = []
                for b in sorted(fr.batches, key=lambda b: (b.get("batch_id") is None, b.get("batch_id") or 0,
                                                             b["timestamp"])):
                    batches.append({"batch_id": b.get("batch_id"), "timestamp": iso(b.get("timestamp")),
                                    "duration_s": b.get("duration_s"), "status": b.get("status"),
                                    **{k: b.get(k) for k in ("rows_read", "rows_written", "rows_dropped",
                                                             "rows_quarantined", "rows_late", "rows_duplicate")},
                                    "sources": b.get("sources"), "expectations": b.get("expectations"),
                                    "metrics": b.get("metrics"), "message": b.get("message")})
                state = fr.state(run_open)
                location = None
                if fr.message:
                    found = LOCATION.search(fr.message)
                    location = f"{found.group(1)}:{found.group(2)}" if found else defined.get(fr.flow)
                started = fr.started
                flows.append({"flow": fr.flow, "target": fr.target, "state": state, "started": iso(started),
                              "ended": iso(fr.last_at) if fr.end_state else None, "duration_s": fr.duration_s,
                              **fr.counts, "batches": batches, "message": fr.message,
                              "error_location": location, "defined_at": defined.get(fr.flow),
                              "inputs": fr.inputs, "outputs": fr.outputs})
            # flows the run had queued but never started, because a flow before them failed
            for name in run.end_metrics.get("flows_not_run") or []:
                if name not in run.flows:
                    flows.append({"flow": name, "target": targets.get(name), "state": "skipped", "started": None,
                                  "ended": None, "duration_s": None, **zero_counts(), "batches": [],
                                  "message": None, "error_location": None, "defined_at": defined.get(name),
                                  "inputs": [], "outputs": []})
            run_location = None
            if run.message:
                found = LOCATION.search(run.message)
                run_location = f"{found.group(1)}:{found.group(2)}" if found else None
            return {"run": run.summary(run_open), "flows": flows, "error_location": run_location,
                    "start_metrics": run.start_metrics, "end_metrics": run.end_metrics, "events": run.events,
                    "version": snap.version}

    def quality(self, last: int = 20) -> dict:
        last = max(1, min(int(last), 500))
        self.declared()
        table_names = {ref.name for ref in self.tables.refs()}
        with self.events.lock:
            snap = self.events.snapshot()
            decl, _, _ = self.model(snap.ordered())
            window = snap.ordered()[-last:]
            tables: dict[str, dict] = {}

            def table_entry(name: str) -> dict:
                if name not in tables:
                    ds = (decl or {}).get("datasets", {}).get(name, {})
                    schema = ds.get("schema")
                    tables[name] = {"table": name, "schema": schema,
                                    "layer": layer_of(self.spec, schema) if schema else None,
                                    "defined_at": ds.get("defined_at"),
                                    "quarantine_table": (name + QUARANTINE_SUFFIX
                                                         if name + QUARANTINE_SUFFIX in table_names else None),
                                    "late_table": name + LATE_SUFFIX if name + LATE_SUFFIX in table_names else None,
                                    "rules": {}, "quarantined": [0] * len(window), "late": [0] * len(window),
                                    "written": [0] * len(window)}
                    for e in ds.get("expectations") or []:
                        tables[name]["rules"][e["name"]] = {"name": e["name"], "action": e["action"],
                                                            "sql": e.get("sql"), "series": [None] * len(window)}
                return tables[name]

            for name, ds in ((decl or {}).get("datasets") or {}).items():
                if ds.get("expectations"):
                    table_entry(name)
            for index, run in enumerate(window):
                for fr in run.flows.values():
                    target = fr.target or fr.flow
                    for batch in fr.batches:
                        rules = batch.get("expectations") or []
                        if not rules and target not in tables and not (batch.get("rows_quarantined")
                                                                       or batch.get("rows_late")):
                            continue
                        entry = table_entry(target)
                        entry["quarantined"][index] += int(batch.get("rows_quarantined") or 0)
                        entry["late"][index] += int(batch.get("rows_late") or 0)
                        entry["written"][index] += int(batch.get("rows_written") or 0)
                        for rule in rules if isinstance(rules, list) else []:
                            if not isinstance(rule, dict) or "name" not in rule:
                                continue
                            r = entry["rules"].setdefault(rule["name"], {"name": rule["name"],
                                                                          "action": rule.get("action"),
                                                                          "sql": None, "series": [None] * len(window)})
                            r["action"] = r["action"] or rule.get("action")
                            cell = r["series"][index] or {"passed": 0, "failed": 0}
                            cell["passed"] += int(rule.get("passed") or 0)
                            cell["failed"] += int(rule.get("failed") or 0)
                            r["series"][index] = cell
            out = []
            for entry in tables.values():
                rules = list(entry["rules"].values())
                for r in rules:
                    cells = [c for c in r["series"] if c]
                    r["last"] = cells[-1] if cells else None
                    r["total_failed"] = sum(c["failed"] for c in cells)
                    r["total_passed"] = sum(c["passed"] for c in cells)
                out.append({**entry, "rules": rules})
            order = {layer: i for i, layer in enumerate(("landing", "bronze", "silver", "gold"))}
            out.sort(key=lambda t: (order.get(t["layer"], 9), t["table"]))
            return {"runs": [{"run_id": r.run_id, "started": iso(r.start), "outcome": r.state(False)}
                             for r in window], "last": last, "tables": out, "version": snap.version}

    def tables_list(self) -> dict:
        declared = declared_datasets(self.spec)
        refs = self.tables.refs()
        return {"tables": [self.tables.summary(ref, declared) for ref in refs]}

    def table(self, name: str, preview: int = 20) -> dict:
        ref = self._ref(name)
        return self.tables.detail(ref, preview=max(1, min(int(preview), 200)))

    def table_rows(self, name: str, limit: int = 100, rule: str | None = None) -> dict:
        ref = self._ref(name)
        return {"table": name, **self.tables.rows(ref, limit=max(1, min(int(limit), 1000)), rule=rule or None)}

    def sql(self, text: str, limit: int = 200) -> dict:
        return self.sql_box.run(text, limit)

    def _ref(self, name: str):
        ref = self.tables.find(name)
        if ref is None:
            raise NotFound(f"no table named {name}")
        return ref
