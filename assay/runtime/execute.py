"""One batch of one flow, with the rows in the engine: query → verdicts → routes → one write → commits.

The engine evaluates the expectations, deduplicates against the target, routes every row and
writes the data files straight into the target's folder (a folder per attempt, `b<batch>-<id>`).
The Assay process then reads only the files' footers (counts, statistics), moves the few
quarantine and late files into their tables, and commits each table's files with the batch's
application transaction. Nothing of the batch's rows is read here, except the first failing row
quoted in an expectation error and the keys of rows that replace earlier survivors (bounded by
the batch's replacements).

A crash at any instant is repaired by the next run: it recomputes the planned batch, skips the
tables where the batch already landed, and deletes the files that earlier, uncommitted attempts
of the batch left in the other tables.
"""
from __future__ import annotations

import math
import posixpath
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import functions as F

from .. import fs
from ..definitions import Dataset
from ..delta import stats
from ..delta.commit import BatchMark, TableCommit, TableState, no_fence, remove_action
from ..delta.log import DataFile
from ..delta.table import arrow_schema, data_files, open_table
from ..errors import ExpectationFailed
from . import faults, keyed, routing
from ..plan.dedupe import resolve as resolve_dedupe
from .batch_plan import BatchPlan
from .key_index import HASH, REWRITE, KeyIndex, key_hash
from .staging import staging_dir

# A replacement's rewrite folder: the rows kept and the rows replaced, apart; the commit names the
# folder of the replaced rows (outside the table's files: a later vacuum removes it).
REPLACED, KEPT_ROWS, REPLACED_ROWS = "assay_rows", "kept", "replaced"   # no "_": engines hide such folders
REPLACED_METADATA = "assay.replaced_rows"

QUARANTINE_SUFFIX = "_quarantine"
LATE_SUFFIX = "_late"
# Rows of a deduplicated batch per engine job: a larger backlog is sliced by key hash (one pass).
# 8 M rows of activity logs stayed under 3 GB of engine memory; the 1 GB benchmarks run as one slice.
DEDUPE_SUBJOB_ROWS = 8_000_000
SLICE = "_assay_slice"


@dataclass
class RowCounts:
    """What happened to the rows of a batch (or of all a flow's batches)."""
    rows_read: int = 0
    rows_written: int = 0
    rows_inserted: int = 0
    rows_replaced: int = 0
    rows_dropped: int = 0
    rows_quarantined: int = 0
    rows_late: int = 0
    rows_duplicate: int = 0

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(RowCounts)}

    def add(self, other: "RowCounts") -> None:
        for name, value in other.counts().items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class RuleCount:
    name: str
    action: str
    passed: int
    failed: int


@dataclass
class BatchResult(RowCounts):
    rules: list = field(default_factory=list)
    watermark_max: datetime | None = None
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Written:
    """A data file the engine wrote for this attempt, by route."""
    relative: str          # path under the attempt folder
    kind: str
    mask: int
    records: int


def batch_mark(generation: str, flow_name: str, role: str, batch: int) -> BatchMark:
    """The application transaction a batch's commit to one of its tables (role) carries."""
    return BatchMark(f"assay:{generation}:{flow_name}:{role}", batch)


class BatchRun:
    """Runs one batch of `flow_name` into `dataset` (mode append: a streaming batch; overwrite:
    a materialized view's refresh)."""

    def __init__(self, services, dataset: Dataset, flow_name: str, generation: str, batch: int, mode: str,
                 fence=no_fence):
        self.services, self.graph = services, services.graph
        self.fence = fence          # the pipeline lock's check, before each commit
        self.engine = services.engine
        self.dataset = dataset
        self.flow_name = flow_name
        self.generation = generation
        self.batch = batch
        self.mode = mode
        # One folder per attempt, named by batch and flow (several flows may append to one table).
        self.attempt = f"{self._attempt_prefix()}{uuid.uuid4().hex[:6]}"
        self.dedupe = dataset.dedupe if mode == "append" else None
        self.states: dict[str, TableState] = {}
        self.key_index: KeyIndex | None = None     # set when a deduplicated batch compares with the target

    # --- tables and marks --------------------------------------------------------------

    def path(self, suffix: str = "") -> Path:
        return self.services.table_path(self.dataset.name, suffix)

    def mark(self, role: str) -> BatchMark:
        return batch_mark(self.generation, self.flow_name, role, self.batch)

    def _tables(self) -> dict[str, Path]:
        tables = {"target": self.path()}
        if self.dataset.quarantine:
            tables["quarantine"] = self.path(QUARANTINE_SUFFIX)
        if self.dedupe is not None and self.dedupe.watermark:
            tables["late"] = self.path(LATE_SUFFIX)
        return tables

    def _attempt_prefix(self) -> str:
        # The generation too: after a full refresh batch numbers restart, and the folders of the
        # old generation's batches belong to older table versions (time travel, vacuum's job).
        return f"b{self.batch:08d}-{self.flow_name}-{self.generation}-"

    def _staging(self) -> Path:
        return staging_dir(self.graph.spec, self.flow_name) / self.attempt

    def read_states(self) -> None:
        """Each table's log read once per batch: what it holds and whether this batch landed there
        (a rerun after a crash skips those tables)."""
        self.states = {role: TableState.read(path, self.mark(role)) for role, path in self._tables().items()}

    def clean_earlier_attempts(self) -> None:
        """Files of earlier attempts of this batch that never committed are nobody's: remove them."""
        prefix = self._attempt_prefix()
        for role, path in self._tables().items():
            if self.states[role].landed or not path.exists():
                continue
            for child in path.iterdir():
                if child.name.startswith(prefix):
                    fs.delete_tree(child)
        staging = staging_dir(self.graph.spec, self.flow_name)
        if staging.exists():
            for child in staging.iterdir():
                if child.name.startswith(prefix):
                    fs.delete_tree(child)

    # --- the batch ----------------------------------------------------------------------

    def execute(self, df, plan: BatchPlan | None = None) -> BatchResult:
        """The batch's rows written and committed; `plan` is the checkpoint's record of a streaming batch."""
        ds = self.dataset
        self.read_states()
        self.clean_earlier_attempts()
        columns = list(df.columns)
        verdicted = routing.with_verdicts(df, ds.expectations, f"'{ds.name}' (at {ds.location})")
        if self.dedupe is not None:
            jobs = self._dedupe_routes(verdicted, columns, plan)
        else:
            jobs = [routing.simple_routes(verdicted, columns, ds.expectations, ds.quarantine)]
        folder = self.path() / self.attempt
        for routed in jobs:
            self.engine.write_files(routed, folder, partition_by=(routing.ROUTE, *ds.partition_cols))
        routed = jobs[0]
        faults.crash_point(faults.WRITTEN)
        try:
            written = self._written(folder)
            result = self._counts(written, folder)
            self._fail_if_needed(written, folder, result)
            self._commit(routed, written, folder, result)
        except BaseException:
            fs.delete_tree(self._staging())
            raise
        fs.delete_tree(self._staging())
        return result

    def _dedupe_routes(self, verdicted, columns, plan: BatchPlan) -> list:
        """The routes of a deduplicated batch, as one engine job per slice of its keys: a backlog
        larger than DEDUPE_SUBJOB_ROWS is staged by key hash into slices that share no key, each
        deduplicated on its own (exact: duplicates and survivors never cross slices), so one pass
        takes it whatever its size and the engine's memory follows the slice, not the backlog."""
        resolved = resolve_dedupe(self.dedupe, columns, self.dataset.name, self.dataset.location)
        slices = max(1, math.ceil((plan.rows_hint or 0) / DEDUPE_SUBJOB_ROWS))
        staging = self._staging()
        if slices > 1:
            sliced = verdicted.withColumn(SLICE, F.pmod(key_hash(resolved.keys), F.lit(slices)))
            self.engine.write_files(sliced, staging, partition_by=(SLICE,))
        else:
            self.engine.write_files(verdicted, staging)
        staged = self._read_staged([staging], verdicted)
        state, known = None, None
        state_version = plan.state_version
        if state_version is not None and state_version >= 0:
            table = self.states["target"].table
            if table is None or table.version() != state_version:     # the target moved since the plan
                table = open_table(self.path(), version=state_version)
            if table is not None:
                state = self.engine.read_delta_files(data_files(self.path(), table), arrow_schema(table),
                                                     table.metadata().partition_columns)
                state = state.select(*resolved.keys, *[c for c in resolved.order if c not in resolved.keys])
                self.key_index = KeyIndex(self._key_index_folder(), self.engine, resolved.keys)
                known = self.key_index.hashes(self.path(), table)
                self.key_index_version = table.version()
        inputs = routing.dedupe_inputs(staged, resolved, None, plan.previous_max)   # per-file watermarks: whole batch
        jobs = []
        for part in ([staged] if slices == 1 else
                     [self._read_staged([staging / f"{SLICE}={i}"], verdicted) for i in range(slices)
                      if fs.exists(staging / f"{SLICE}={i}")]):
            seen = None if state is None else _survivors_of_seen_keys(part, state, resolved.keys, known)
            jobs.append(routing.dedupe_routes(part, columns, self.dataset.expectations, self.dataset.quarantine,
                                              replace(inputs, state=seen)))
        return jobs

    def _read_staged(self, folders, verdicted):
        if any(f for folder in folders for f in fs.walk_files(folder) if f.path.endswith(".parquet")):
            return self.engine.read_parquet(folders).select(*verdicted.columns)
        return self.engine.spark.createDataFrame([], verdicted.schema)    # engines write no file for nothing

    # --- what the engine wrote ------------------------------------------------------------

    def _written(self, folder: Path) -> list[Written]:
        found = []
        files = [f.path for f in fs.walk_files(folder) if f.path.endswith(".parquet")]
        self._footers = dict(zip(files, fs.parquet_metadata_many(files)))   # read once, in parallel on object stores
        for path, meta in self._footers.items():
            relative = fs.as_path(path).relative_to(folder).as_posix()
            route = relative.split("/", 1)[0].partition("=")[2]
            kind, mask = routing.parse_route(route)
            found.append(Written(relative, kind, mask, meta.num_rows))
        return sorted(found, key=lambda w: w.relative)

    def _counts(self, written: list[Written], folder: Path) -> BatchResult:
        by_kind: dict[str, int] = defaultdict(int)
        for w in written:
            by_kind[w.kind] += w.records
        result = BatchResult(rows_read=sum(by_kind.values()), rows_inserted=by_kind[routing.TARGET],
                             rows_replaced=by_kind[routing.REPLACE],
                             rows_quarantined=by_kind[routing.QUARANTINE],
                             rows_dropped=by_kind[routing.QUARANTINE] + by_kind[routing.DROPPED],
                             rows_late=by_kind[routing.LATE], rows_duplicate=by_kind[routing.DUPLICATE])
        result.rows_written = result.rows_inserted + result.rows_replaced
        for i, rule in enumerate(self.dataset.expectations):
            failed = sum(w.records for w in written if w.mask & (1 << i))
            result.rules.append(RuleCount(rule.name, rule.action, result.rows_read - failed, failed))
        if self.dedupe is not None and self.dedupe.event_time:
            on_time = [folder / w.relative for w in written if w.kind in (routing.TARGET, routing.REPLACE,
                                                                          routing.DUPLICATE)]
            footers = getattr(self, "_footers", {})
            highest = [v for v in (stats.column_max(p, self.dedupe.event_time, footers.get(str(p))) for p in on_time)
                       if v is not None]
            result.watermark_max = max(highest) if highest else None
        return result

    def _fail_if_needed(self, written: list[Written], folder: Path, result: BatchResult) -> None:
        failing = [w for w in written if w.kind == routing.FAILED]
        if not failing:
            return
        with fs.open_input(folder / failing[0].relative) as handle:
            first = pq.ParquetFile(handle).read_row_group(0).slice(0, 1).to_pylist()[0]
        fs.delete_tree(folder)
        fail_rules = [(i, e) for i, e in enumerate(self.dataset.expectations) if e.action == "fail"]
        index, rule = next(((i, e) for i, e in fail_rules if failing[0].mask & (1 << i)), fail_rules[0])
        shown = {k: v for k, v in first.items() if not k.startswith("_assay") and k != routing.FAILED_RULES}
        sample = ", ".join(f"{k}={_quoted(v)}" for k, v in list(shown.items())[:12])
        count = sum(w.records for w in failing)
        raise ExpectationFailed(
            f"expectation '{rule.name}' ({rule.sql}) failed on {count} row(s) of flow '{self.flow_name}'; its "
            f"action is FAIL, so nothing of this batch was written and the next run retries it. "
            f"First failing row: {sample}", batch=result)

    # --- commits --------------------------------------------------------------------------

    def _commit(self, routed, written: list[Written], folder: Path, result: BatchResult) -> None:
        ds = self.dataset
        schema = _arrow_schema(routed)
        target_schema = pa.schema([f for f in schema if f.name not in (routing.ROUTE, routing.FAILED_RULES)])
        tables = self._tables()
        commits: list[tuple[TableCommit, TableState]] = []
        if "quarantine" in tables:
            q_schema = target_schema.append(pa.field(routing.FAILED_RULES, pa.list_(pa.string())))
            commits.append((self._side_commit("quarantine", tables["quarantine"], q_schema, written, folder,
                                              (routing.QUARANTINE,)), self.states["quarantine"]))
        if "late" in tables:
            commits.append((self._side_commit("late", tables["late"], target_schema, written, folder,
                                              (routing.LATE,)), self.states["late"]))
        for w in written:
            if w.kind in (routing.DROPPED, routing.DUPLICATE):
                fs.delete(folder / w.relative)
        target = TableCommit(self.path(), self.mark("target"), target_schema, mode=self.mode,
                             partition_by=ds.partition_cols, description=ds.comment,
                             properties={k: v for k, v in ds.table_properties.items() if str(k).startswith("delta.")})
        columns = set(target_schema.names)
        for w in written:
            if w.kind in routing.INTO_TARGET:
                relative = f"{self.attempt}/{w.relative}"
                target.adds.append(stats.add_action(self.path(), relative, ds.partition_cols, columns)[0])
        if result.rows_replaced and not self.states["target"].landed:
            self._replace(written, folder, target)
        commits.append((target, self.states["target"]))
        target_made = False
        for commit, state in commits:
            if commit.mode == "append" and not commit.adds and not commit.removes and state.table is not None:
                continue        # nothing to add to an existing table
            if commit is target:
                faults.crash_point(faults.BETWEEN_COMMITS)
            done = commit.execute(self.fence, state)
            target_made = done if commit is target else target_made
        current = self.states["target"].table
        if target_made and self.key_index is not None and target.removes and current is not None \
                and current.version() == self.key_index_version:     # the rewrite read only covered files
            self.key_index.cover([a.path for a in target.adds])
        if target_made and self.dedupe is not None:
            self._index_new_files(target)
        if not target_made:
            fs.delete_tree(folder)   # empty, or recomputed a batch that had landed

    def _index_new_files(self, target: TableCommit) -> None:
        """The files this batch added, hashed into the key index now (KeyIndex.add), when the index
        covered every other file: it was caught up with the version this commit built on, or there
        was no table before. Otherwise the next batch catches it up from the table."""
        before = self.states["target"].table
        if before is not None and (self.key_index is None or before.version() != self.key_index_version):
            return
        keys = resolve_dedupe(self.dedupe, target.schema.names, self.dataset.name, self.dataset.location).keys
        index = self.key_index or KeyIndex(self._key_index_folder(), self.engine, keys)
        files = [DataFile(posixpath.join(str(self.path()), a.path), a.partition_values or {}, a.size)
                 for a in target.adds if REWRITE not in "/" + a.path]
        index.add(self.path(), files, target.schema, list(target.partition_by))

    def _key_index_folder(self) -> Path:
        return self.services.checkpoint_dir(self.flow_name) / "keyindex"

    def _side_commit(self, role: str, path: Path, schema: pa.Schema, written: list[Written], folder: Path,
                     kinds: tuple[str, ...]) -> TableCommit:
        """Move this attempt's files of `kinds` into the side table's folder and describe its commit."""
        commit = TableCommit(path, self.mark(role), schema, partition_by=self.dataset.partition_cols)
        if self.states[role].landed:
            for w in written:
                if w.kind in kinds:
                    fs.delete(folder / w.relative)
            return commit
        for w in written:
            if w.kind not in kinds:
                continue
            relative = f"{self.attempt}/{w.relative}"     # the route folder keeps equal file names apart
            destination = path / relative
            fs.move(folder / w.relative, destination)
            commit.adds.append(stats.add_action(path, relative, self.dataset.partition_cols, set(schema.names))[0])
        return commit

    def _replace(self, written: list[Written], folder: Path, target: TableCommit) -> None:
        """Rows routed `x` beat the rows kept for their keys earlier: rewrite the target files that
        hold those keys without them (the engine reads and writes; only the keys come here)."""
        keys = list(self.dedupe.keys)
        files = [folder / w.relative for w in written if w.kind == routing.REPLACE]
        replaced = pa.concat_tables([fs.read_parquet(p, columns=keys) for p in files])
        table = self.states["target"].table
        if table is None:
            return
        keys_df = self.engine.spark.createDataFrame(replaced)
        key_bounds = keyed.bounds(replaced.column(keys[0]).to_pylist()) if len(keys) == 1 else None
        affected = keyed.files_holding(self.engine, self.path(), table, keys, keys_df, key_bounds)
        if not affected:
            return
        parts = table.metadata().partition_columns
        # One pass over the affected files writes the rows kept (the rewrite) and, beside them, the
        # rows replaced: the views downstream learn from those which partitions the replacement
        # touched (view_refresh), instead of taking every partition of every rewritten file.
        gone = keys_df.select(*keys).distinct().withColumn(REPLACED, F.lit(REPLACED_ROWS))
        rows = keyed.read_files(self.engine, self.path(), table, affected).join(gone, keys, "left")
        rewrite = folder / "rewrite"
        self.engine.write_files(rows.withColumn(REPLACED, F.coalesce(F.col(REPLACED), F.lit(KEPT_ROWS))), rewrite,
                                partition_by=(REPLACED, *parts))
        columns = set(target.schema.names)
        for path in sorted((rewrite / f"{REPLACED}={KEPT_ROWS}").rglob("*.parquet")):
            relative = f"{self.attempt}/rewrite/{path.relative_to(rewrite).as_posix()}"
            target.adds.append(stats.add_action(self.path(), relative, tuple(parts), columns)[0])
        for c in affected:
            target.removes.append(remove_action(c["path"], c.get("size_bytes")))
        target.metadata[REPLACED_METADATA] = f"{self.attempt}/rewrite/{REPLACED}={REPLACED_ROWS}"


def _survivors_of_seen_keys(staged, state, keys, known):
    """The target's rows of the keys a batch shares with it: the batch's key hashes probed in the key
    index (one int64 column), then the hits confirmed on the real keys."""
    hits = staged.select(*keys, key_hash(keys).alias(HASH)).join(known, HASH, "left_semi").select(*keys)
    return state.join(hits, list(keys), "left_semi")


def _arrow_schema(df) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema
    return to_arrow_schema(df.schema, timezone="UTC")


def _quoted(value) -> str:
    """A value as a user reads it in an error: text quoted, NULL, timestamps and numbers as SQL prints them."""
    if value is None:
        return "NULL"
    return repr(value) if isinstance(value, (str, bytes)) else str(value)
