"""Delta tables mirrored into PostgreSQL: `publish=dp.postgres(keys=[...])`, after each commit.

A published table is brought to its current Delta version, never to a batch: PostgreSQL's
bookkeeping (`<state_schema>.loaded_batches`) holds the last Delta version loaded, recorded in
the same transaction as the rows, and each publish applies what changed between that version and
the current one. So exactly once and catch-up are one mechanism: a load killed before its commit
left nothing and is recomputed; a run that found PostgreSQL down leaves it behind, and the next
publish covers every version since.

- A streaming table (appends, dedupe replacements, AUTO CDC merges and deletes): the files
  present now but not at the loaded version hold the new rows; when the versions in between
  removed files too, the engine compares the rows of the added and the removed files and writes
  the rows that changed (upserted by key) and the keys that left the table (deleted), as Parquet
  in the pipeline's staging folder; only those files pass through this process, streamed into
  `COPY` one record batch at a time. Appends alone need no engine job: their files are loaded.
- A materialized view: replaced whole at the current version, in one transaction
  (`replace`: "swap" or "in_place").
- The first publish of a table (or one whose loaded version's files were vacuumed) replaces the
  PostgreSQL table whole, in one transaction, so rows of an earlier life never linger.

A PostgreSQL failure never touches the Delta side: it is recorded in the event log
(`publish_failed`), printed, and the run fails at its end naming the table, the version and
PostgreSQL's own message; the other flows run meanwhile. A later run that loads versions an
earlier run committed says so ("mirror gold.x caught up from Delta version 3 to 7").
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from .. import fs, secrets
from ..definitions import MATERIALIZED_VIEW
from ..delta.table import add_actions, arrow_schema, open_table
from ..errors import ConfigError, FlowError, GraphError
from ..sinks.declaration import Mirror, mirror_of
from . import keyed
from .eventlog import Event
from .reporting import RunEvents
from .staging import staging_dir

PUBLISHED, PUBLISH_FAILED = "publish", "publish_failed"


@dataclass
class Published:
    """What one publish did."""
    dataset: str
    table: str                 # schema.table in PostgreSQL
    version: int               # the Delta version PostgreSQL holds now
    previous: int | None       # the one it held before
    how: str                   # upsert | append | replace | full | current
    rows: int = 0              # rows loaded (upserted or copied)
    deleted: int = 0
    seconds: float = 0.0


class PublishFailed(FlowError):
    """A publish that failed, with the Delta version it was bringing PostgreSQL to."""

    def __init__(self, version: int | None, cause: Exception):
        super().__init__(str(cause))
        self.version, self.cause = version, cause


def publish_table(sink, engine, path, mirror: Mirror, app_prefix: str, staging) -> Published | None:
    """Bring the PostgreSQL mirror of the Delta table at `path` to the table's current version.
    None when the Delta table does not exist yet. Raises PublishFailed (naming the version) on a
    failure of PostgreSQL, the files or the engine; ConfigError and GraphError as they are."""
    started = time.monotonic()
    version = None
    try:
        table = open_table(path)
        if table is None:
            return None
        version = table.version()
        return _publish(sink, engine, path, table, version, mirror, app_prefix, staging, started)
    except (ConfigError, GraphError):
        raise
    except Exception as exc:
        raise PublishFailed(version, exc) from exc


def _publish(sink, engine, path, table, version: int, mirror: Mirror, app_prefix: str, staging,
             started: float) -> Published:
    schema = arrow_schema(table)
    app_id = f"{app_prefix}:{mirror.dataset}:{table.metadata().id}"
    sink.ensure_table(mirror.table, schema, mirror.keys)
    qualified = f"{sink.config.schema}.{mirror.table}"
    previous = sink.last_batch(mirror.table, app_id)

    def done(how: str, result=None) -> Published:
        return Published(mirror.dataset, qualified, version, previous, how,
                         rows=result.rows if result is not None else 0,
                         deleted=getattr(result, "deleted", 0) if result is not None else 0,
                         seconds=time.monotonic() - started)

    if previous == version:
        return done("current")
    now = add_actions(table)
    if mirror.kind == MATERIALIZED_VIEW:
        return done("replace", sink.replace_table(mirror.table, keyed.data_files(path, table, now), mirror.keys,
                                                  schema=schema, app_id=app_id, batch_id=version,
                                                  method=mirror.replace))

    def whole() -> Published:
        return done("full", sink.replace_table(mirror.table, keyed.data_files(path, table, now), mirror.keys,
                                               schema=schema, app_id=app_id, batch_id=version, method="in_place"))

    if previous is None or previous > version:
        return whole()
    try:
        before = open_table(path, version=previous)
    except Exception:                 # the log of that version was cleaned up
        before = None
    if before is None:
        return whole()
    then = add_actions(before)
    kept = {a["path"] for a in then}
    present = {a["path"] for a in now}
    added = [a for a in now if a["path"] not in kept]
    removed = [a for a in then if a["path"] not in present]
    if not removed:                   # appends only: their files are the change
        return done("append", sink.upsert_batch(mirror.table, keyed.data_files(path, table, added), mirror.keys,
                                                app_id, version, previous_batch=previous))
    old_files = keyed.data_files(path, before, removed)
    if not all(_exists(f.path) for f in old_files):     # vacuumed: compare with nothing, replace whole
        return whole()
    fs.delete_tree(staging)
    parts = table.metadata().partition_columns
    new_rows = engine.read_delta_files(keyed.data_files(path, table, added), schema, parts)
    old_rows = engine.read_delta_files(old_files, schema, parts)
    keys = list(mirror.keys)
    engine.write_files(new_rows.subtract(old_rows), staging / "upserts")
    engine.write_files(old_rows.select(*keys).subtract(new_rows.select(*keys)), staging / "deletes")
    result = sink.upsert_batch(mirror.table, _parquet(staging / "upserts"), mirror.keys, app_id, version,
                               delete_files=_parquet(staging / "deletes"), previous_batch=previous)
    fs.delete_tree(staging)
    return done("upsert", result)


def _exists(path: str) -> bool:
    if "://" in path:
        return True                   # an object store: a vacuumed file fails the load, which retries whole
    return os.path.exists(path)


def _parquet(folder) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*.parquet")) if folder.exists() else []


def _committed_before(path, version: int, moment: float) -> bool:
    """Whether Delta `version` of the table at `path` was committed before `moment` (epoch seconds).
    A version whose log entry was cleaned up is older than any run."""
    try:
        text = fs.read_bytes(fs.as_path(path) / "_delta_log" / f"{version:020d}.json").decode("utf-8")
    except FileNotFoundError:
        return True
    for line in text.splitlines():
        info = json.loads(line).get("commitInfo") if line.strip() else None
        if info and "timestamp" in info:
            return info["timestamp"] / 1000 < moment
    return False


class Publisher:
    """The runtime's side: after a flow's commit, its target's mirror is brought up to date."""

    def __init__(self, engine, events: RunEvents):
        self.engine = engine
        self.events = events
        self.sink = None
        self.failed: dict[str, str] = {}          # dataset → message, this run
        self._last_call = time.time()
        self.run_started = self._last_call        # versions committed before it are earlier runs'

    def start_run(self) -> None:
        """A new run (or the next round of --continuous, even after a failed one): forget the last
        run's failures, and date its start from the last run's last publish."""
        self.failed, self.run_started = {}, self._last_call

    def mirror(self, graph, dataset: str) -> Mirror | None:
        ds = graph.dataset(dataset)
        return mirror_of(ds.name, ds.kind, ds.table_properties, str(ds.location))

    def after_commit(self, services, flow_name: str, batch: int | None) -> None:
        """Publish the flow's target if it is mirrored (a no-op when PostgreSQL is up to date);
        `batch` is the flow's last batch, named in the event log."""
        self._last_call = time.time()
        graph = services.graph
        flow = graph.registry.flows[flow_name]
        mirror = self.mirror(graph, flow.target)
        if mirror is None or flow.target in self.failed:
            return
        if self.sink is None:
            from ..sinks.postgres.sink import sink_for
            self.sink = sink_for(graph.spec)
        spec = graph.spec
        staging = staging_dir(spec, "publish") / flow.target
        path = services.table_path(flow.target)
        try:
            done = publish_table(self.sink, self.engine, path, mirror, f"assay:{spec.name}", staging)
        except PublishFailed as exc:              # PostgreSQL, the files, the engine: Delta stays as committed
            where = ", ".join(w for w in (f"Delta version {exc.version}" if exc.version is not None else "",
                                          f"flow batch {batch}" if batch is not None else "") if w)
            cause = exc.cause
            first = (str(cause).strip().splitlines() or [""])[0][:500]
            reason = str(cause) if isinstance(cause, FlowError) else f"{type(cause).__name__}: {first}"
            where = f" ({where})" if where else ""
            message = secrets.redact(f"publishing '{flow.target}'{where} to PostgreSQL failed: {reason}. The Delta "
                                     "table keeps its commits; the next run catches PostgreSQL up.")
            self.failed[flow.target] = message
            self.events.warning(message, Event(PUBLISH_FAILED, flow=flow_name, target=flow.target, batch_id=batch,
                                               status="failed", message=message))
            return
        if done is None or done.how == "current":
            return
        first = 0 if done.previous is None or done.previous > done.version else done.previous + 1
        caught_up = _committed_before(path, first, self.run_started)
        if caught_up:                             # versions an earlier run committed but could not mirror
            held = f"from Delta version {done.previous}" if done.previous is not None else "from nothing"
            self.events.on_notice(f"mirror {done.table} caught up {held} to {done.version} "
                                  f"({done.rows:,} rows loaded, {done.deleted:,} deleted)")
        self.events.record(Event(PUBLISHED, flow=flow_name, target=flow.target, batch_id=batch,
                                 rows_written=done.rows, duration_s=done.seconds, status="ok",
                                 outputs=[f"postgres:{done.table}"],
                                 metrics={"delta_version": done.version, "previous_version": done.previous,
                                          "how": done.how, "rows_upserted": done.rows, "rows_deleted": done.deleted,
                                          "caught_up": caught_up}))

    def finish(self) -> None:
        """End of a run: fail it, naming every table that could not be published."""
        failed, self.failed = self.failed, {}
        if failed:
            raise FlowError("\n".join(failed.values()))
