"""A materialized view's refresh, done one of four ways and logged with why (plan/refresh.py):
`noop` (nothing it reads changed), `append` (one input changed only by appends and the query is a
decomposable aggregate of it: the query over the appended rows, merged into the view's rows by
group key), `partitions` (one input changed, and each partition of the view is computed from its
own rows only: the touched partitions recomputed, the others kept) or `full` (recomputed, as
always before).

The rows stay in the engine: the appended rows are the data files the input's commits added
(named by its Delta log, read by the engine), the view's rows are read by the engine, and the
merge is one GROUP BY over both; the touched partitions are the distinct partition values of the
files the commits added and removed, joined in the engine. The Python process reads only Delta
logs.

Crash safety: the refresh's plan (`offsets/N.json`) records the input versions it reflects; the
record of the refresh (`commits/N.json`) repeats them. The next refresh merges only the rows
appended after those versions, and only into a view that holds refresh N (its Delta application
transaction), so a crash at any instant neither leaves the view stale nor counts a row twice.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from pyspark.sql import functions as F

from .. import fs
from ..delta import stats
from ..definitions import FAIL, WARN
from ..delta.log import DataFile, read_commit
from ..delta.pruning import files_holding
from ..delta.table import add_actions, arrow_schema, data_files, open_table
from ..errors import AssayError, FlowError
from ..plan.context import run_query
from ..plan.refresh import (APPEND, FULL, INCREMENTAL, NOOP, PARTITIONS, Technique, aggregate_shape,
                            partition_blockers, refresh_mode)
from .execute import batch_mark
from .fingerprint import digest
from .reads import RunReads


MAX_TOUCHED = 10_000            # partition values collected to prune the input's files by statistics


def noop(last: tuple[int, dict]) -> Technique:
    return Technique(NOOP, f"nothing it reads changed since refresh {last[0]}")


@dataclass
class Increment:
    """What changed in one input since the view's last refresh: versions (after, upto]. `removed`:
    the data files its commits removed (then only the partitions technique can take it, and
    `not_appends` says why the append technique cannot)."""
    table: str
    after: int
    upto: int
    files: list[DataFile]
    removed: list[DataFile] = field(default_factory=list)
    not_appends: str | None = None
    touching: list[DataFile] = field(default_factory=list)    # files whose rows name the touched partitions

    @property
    def rows(self) -> int | None:
        counts = [f.records for f in self.files]
        return None if any(c is None for c in counts) else sum(counts)


class ViewRefresh:
    """Chooses and prepares one refresh of the view written by flow `name`. Built before the plan
    is written (`record` goes into it), asked for the DataFrame to write once the query ran."""

    def __init__(self, services, name: str, ckpt, last: tuple[int, dict] | None, parts: dict,
                 asked: bool, unchanged: bool):
        self.services, self.graph = services, services.graph
        self.name = name
        self.engine = services.engine
        graph = services.graph
        self.flow = graph.registry.flows[name]
        self.dataset = graph.dataset(self.flow.target)
        self.mode = refresh_mode(self.dataset)
        self.tables = {read: services.table_path(read) for read in graph.analyses[name].static_reads
                       if read in graph.registry.datasets and graph.dataset(read).is_table}
        self.versions = {read: parts[read] for read in self.tables if isinstance(parts.get(read), int)}
        definition = digest({"configuration": parts.get("configuration"), "code": parts.get("code"),
                             "nonce": parts.get("nonce")})
        self.record = {"versions": self.versions, "definition": definition}
        self.increment: Increment | None = None
        self.full: Technique | None = self._before_query(ckpt, last, definition, asked, unchanged)

    # --- what the logs decide, before the query -----------------------------------------------

    def _before_query(self, ckpt, last, definition, asked, unchanged) -> Technique | None:
        """A full refresh and its reason, when the logs already decide it; None: append if the
        query's shape allows."""
        view_path = self.services.table_path(self.flow.target)
        table = open_table(view_path)
        if last is None:
            return Technique(FULL, "first refresh", required=True)
        if table is None:
            return Technique(FULL, "its table does not exist", required=True)
        if asked and unchanged:
            return Technique(FULL, "asked for with --refresh (nothing it reads changed)", required=True)
        before = last[1]
        if not isinstance(before.get("versions"), dict):
            return Technique(FULL, f"refresh {last[0]} recorded no input versions (made before incremental "
                             "refreshes)", required=True)
        if before.get("definition") != definition:
            return Technique(FULL, "its code or the pipeline's configuration changed", required=True)
        folders = sorted(r.removeprefix("files:") for r in self.graph.analyses[self.name].static_reads
                         if r.startswith("files:"))
        if folders:
            return Technique(FULL, f"reads a folder whole ({', '.join(folders)}): a folder does not say which "
                             "rows are new")
        dropping = [e.name for e in self.dataset.expectations if e.action not in (WARN, FAIL)]
        if dropping or self.dataset.quarantine:
            return Technique(FULL, f"expectations that drop rows ({', '.join(dropping) or 'quarantine'}): a "
                             "group left out could come back with more rows")
        old = before["versions"]
        changed = sorted(t for t in self.versions if self.versions[t] != old.get(t))
        if not changed:
            return Technique(FULL, "what it reads changed, but no input table did (a temporary view's code?)")
        if len(changed) > 1:
            return Technique(FULL, f"{' and '.join(changed)} changed since refresh {last[0]} (the rows appended "
                             "to one input are merged, not those of several)")
        name = changed[0]
        after, upto = old.get(name), self.versions[name]
        if not isinstance(after, int) or after < 0:
            return Technique(FULL, f"{name} had no table at refresh {last[0]}")
        if upto < after:
            return Technique(FULL, f"{name} is older (version {upto}) than at refresh {last[0]} (version {after})")
        changes = _changes(self.tables[name], after, upto, self._partition_columns(name, upto))
        if changes.blocker and not (changes.removed and self.dataset.partition_cols):
            return Technique(FULL, f"{name} {changes.blocker}")
        mark = batch_mark(ckpt.generation, self.name, "target", last[0])
        if table.transaction_version(mark.app_id) != last[0]:
            return Technique(FULL, f"its table does not hold refresh {last[0]} (written outside this pipeline?)")
        self.increment = Increment(name, after, upto, changes.added, changes.removed,
                                   f"{name} {changes.blocker}" if changes.blocker else None, changes.touching)
        return None

    def _partition_columns(self, name: str, version: int) -> list[str]:
        table = open_table(self.tables[name], version=version) if version >= 0 else None
        return [] if table is None else list(table.metadata().partition_columns)

    # --- what the query's shape decides ----------------------------------------------------------

    def dataframe(self, df, ctx) -> tuple[object, Technique]:
        """The DataFrame to write (the query's, or the merge of its increment into the view) and
        the technique; raises when the view requires an incremental refresh and this one is full."""
        technique = self.full
        merged = None
        if technique is None:
            merged, technique = self._incremental(df)
        if technique.kind == FULL and self.mode == INCREMENTAL and not technique.required:
            raise AssayError(f"materialized view '{self.flow.target}' (at {self.dataset.location}) requires an "
                             f"incremental refresh (refresh=\"incremental\"), but this one would be full: "
                             f"{technique.reason}. Nothing was written; declare refresh=\"auto\" to let it "
                             f"recompute, or run with --full-refresh {self.flow.target}.")
        return (merged if merged is not None else df), technique

    def _incremental(self, df):
        """Append when the increment is only appends and the shape merges; else the touched
        partitions when the shape keeps them apart; else full, with the reasons of both."""
        try:
            shaped = run_query(self.flow, self.services.context(self.flow, ShapeReads(self.services)))
            root = shaped._plan.to_proto(shaped.sparkSession.client).root
        except Exception as exc:            # not a Spark Connect DataFrame: nothing to read its shape from
            return None, Technique(FULL, f"its plan could not be read ({type(exc).__name__})")
        columns = list(df.columns)
        if len(set(columns)) != len(columns):
            return None, Technique(FULL, "two of its columns have the same name")
        view = self.engine.read_table(self.services.table_path(self.flow.target))
        if set(view.columns) != set(columns):
            return None, Technique(FULL, "its table's columns are not the query's")
        merged, technique = self._append(root, view, columns)
        if technique.kind != FULL or not self.dataset.partition_cols:
            return merged, technique
        return self._partitions(root, view, columns, technique.reason)

    def _append(self, root, view, columns):
        inc = self.increment
        if inc.not_appends:
            return None, Technique(FULL, inc.not_appends)
        shape = aggregate_shape(root, columns, inc.table, {n: str(p) for n, p in self.tables.items()})
        if not shape.mergeable:
            return None, Technique(FULL, "; ".join(dict.fromkeys(shape.blockers)))
        partial = run_query(self.flow, self.services.context(self.flow, IncrementReads(self.services, inc)))
        if list(partial.columns) != columns:
            return None, Technique(FULL, "its query over the appended rows has other columns")
        rows = inc.rows
        said = f"{rows:,} row(s)" if rows is not None else "the rows"
        # No file count in the reason: engines split the same rows into different numbers of files.
        reason = (f"{inc.table} had only appends since version {inc.after} (up to version {inc.upto}): "
                  f"{said} aggregated and merged by "
                  f"{', '.join(c for c, r in zip(columns, shape.roles) if r == 'key') or 'its single group'}")
        return merge(view, partial, columns, shape.roles), Technique(APPEND, reason)

    def _partitions(self, root, view, columns, not_append: str):
        """The view's partitions that the changed input's added or removed rows fall in, recomputed
        by the query over the input's rows of those partitions; the other partitions kept."""
        inc, parts = self.increment, list(self.dataset.partition_cols)
        blockers = partition_blockers(root, parts, inc.table, {n: str(p) for n, p in self.tables.items()})
        gone = [f.path for f in inc.touching if not fs.exists(f.path)]
        if gone:
            blockers.append(f"{len(gone)} file(s) of rows {inc.table} removed are gone (vacuumed): their "
                            "partitions are unknown")
        if blockers:
            return None, Technique(FULL, f"{not_append}; not by partition: {'; '.join(blockers)}")
        table = open_table(self.services.table_path(inc.table), version=inc.upto)
        changed = self.engine.read_delta_files(inc.touching, arrow_schema(table),
                                               table.metadata().partition_columns)
        touched = changed.select(*[F.col(f"`{p}`").alias(f"_assay_part_{i}") for i, p in enumerate(parts)]).distinct()
        # The touched partition values themselves (metadata, as a partitioned table's log lists them;
        # bounded) prune the input's files by their statistics; above the bound, or when most of the
        # view's partitions are touched, a full recompute reads no more.
        values = [tuple(row) for row in touched.limit(MAX_TOUCHED + 1).collect()]
        held = {tuple(a.get(f"partition.{p}") for p in parts)
                for a in add_actions(open_table(self.services.table_path(self.flow.target)))}
        again = sum(1 for v in values if v in held)
        counted = f"{again} of its {len(held)} partition(s)" if len(values) <= MAX_TOUCHED else "too many partitions"
        if len(values) > MAX_TOUCHED or again * 2 > len(held) > 0:
            return None, Technique(FULL, f"{not_append}; by partition it would recompute {counted}: recomputed "
                                         "whole, which reads no less")
        now = open_table(self.services.table_path(inc.table))
        files = data_files(self.services.table_path(inc.table), now, files_holding(now, parts, values))
        reads = PartitionReads(self.services, inc.table, touched, parts, files)
        recomputed = _in_partitions(run_query(self.flow, self.services.context(self.flow, reads)), touched, parts,
                                    "left_semi")
        types = {f.name: f.dataType for f in recomputed.schema.fields}
        kept = _in_partitions(view, touched, parts, "left_anti")
        rows = kept.select(*[F.col(f"`{c}`").cast(types[c]).alias(c) for c in columns]).unionByName(
            recomputed.select(*[F.col(f"`{c}`") for c in columns]))
        what = "added and removed" if inc.removed else "added"
        reason = (f"{inc.table} changed since version {inc.after} (up to version {inc.upto}): the partitions of "
                  f"{', '.join(parts)} its {what} rows fall in are recomputed ({counted}, and "
                  f"{len(values) - again} new), the others kept (not appended: {not_append})")
        return rows, Technique(PARTITIONS, reason)


def merge(view, partial, columns: list[str], roles: list[str]):
    """The view's rows and the partial aggregate of the new rows, merged by group key: count and
    sum add, min keeps the least, max the greatest (each ignoring NULLs, as SQL's aggregates do);
    every column cast back to the query's type."""
    from pyspark.sql import functions as F

    types = {f.name: f.dataType for f in partial.schema.fields}

    def col(c):
        return F.col(f"`{c}`")

    both = view.select(*[col(c).cast(types[c]).alias(c) for c in columns]).unionByName(
        partial.select(*[col(c) for c in columns]))
    keys = [col(c) for c, r in zip(columns, roles) if r == "key"]
    values = [getattr(F, r)(col(c)).alias(c) for c, r in zip(columns, roles) if r != "key"]
    merged = both.groupBy(*keys).agg(*values) if values else both.dropDuplicates()
    return merged.select(*[col(c).cast(types[c]).alias(c) for c in columns])


class ShapeReads(RunReads):
    """dp.read of a table answers a Delta read of its folder, whatever the engine: the query's plan
    then names its inputs alike on every engine (Spark's own reads list the table's Parquet files),
    so the shape and the reason logged are the same. Its rows are not what gets written."""

    def table(self, name: str):
        path = self.services.table_path(name)
        if not (path / "_delta_log").exists():
            return super().table(name)
        return self.engine.spark.read.format("delta").load(str(path))


class IncrementReads(RunReads):
    """dp.read of the changed input answers its appended rows; every other read, the table now."""

    def __init__(self, services, increment: Increment):
        super().__init__(services)
        self.increment = increment

    def table(self, name: str):
        if name != self.increment.table:
            return super().table(name)
        table = open_table(self.services.table_path(name), version=self.increment.upto)
        return self.engine.read_delta_files(self.increment.files, arrow_schema(table),
                                            table.metadata().partition_columns)


def _in_partitions(df, touched, parts: list[str], how: str):
    """The rows of `df` in (left_semi) or out of (left_anti) the touched partitions; NULL is a
    partition value like any other."""
    condition = None
    for i, p in enumerate(parts):
        same = F.col(f"`{p}`").eqNullSafe(F.col(f"_assay_part_{i}"))
        condition = same if condition is None else condition & same
    return df.join(touched, condition, how)


class PartitionReads(RunReads):
    """dp.read of the changed input answers its rows in the touched partitions, read from the files
    whose statistics may hold them; every other read, the table now."""

    def __init__(self, services, name: str, touched, parts: list[str], files: list[DataFile]):
        super().__init__(services)
        self.name, self.touched, self.parts, self.files = name, touched, parts, files

    def table(self, name: str):
        if name != self.name:
            return super().table(name)
        table = open_table(self.services.table_path(name))
        rows = self.engine.read_delta_files(self.files, arrow_schema(table), table.metadata().partition_columns)
        return _in_partitions(rows, self.touched, self.parts, "left_semi")


@dataclass
class Changes:
    added: list[DataFile]
    blocker: str | None
    removed: list[DataFile] = field(default_factory=list)
    touching: list[DataFile] = field(default_factory=list)


def _changes(path, after: int, upto: int, partition_columns: list[str]) -> Changes:
    """What commits (after, upto] of a table did: the files they added, or why they were not
    only appends (files removed: a dedupe replacement, an AUTO CDC update or delete, an overwrite,
    a full refresh; a schema change; a log cleaned up). `touching`: the files whose rows changed,
    new or gone: a replacement's rows replaced (not every row of the files it rewrote) when its
    commit names them, else the files a commit removed."""
    added: list[DataFile] = []
    removed: list[DataFile] = []
    touching: list[DataFile] = []
    operations, schema_at, overwritten = [], None, False
    for version in range(after + 1, upto + 1):
        try:
            commit = read_commit(path, version)
        except FlowError:
            return Changes([], f"no longer has version {version} in its log (cleaned up), so what was appended "
                               f"since version {after} is unknown")
        added.extend(commit.added)
        touching.extend(_touching(path, commit, partition_columns))
        if commit.new_schema and schema_at is None:
            schema_at = version
        if commit.removed or commit.mode == "Overwrite":
            removed.extend(commit.removed_files)
            overwritten = overwritten or commit.mode == "Overwrite"
            if commit.operation:
                operations.append(f"{commit.operation.lower()} at version {version}")
    if schema_at is not None:
        return Changes([], f"changed its schema at version {schema_at} (since version {after})")
    if removed or operations:
        what = f"; {', '.join(dict.fromkeys(operations))}" if operations else ""
        blocker = (f"had {len(removed)} removed file(s) since version {after} (rows replaced or deleted: "
                   f"dedupe replacements, AUTO CDC updates or deletes, an overwrite or a full refresh{what})")
        # An overwrite (a full refresh upstream) replaces everything: recomputing is the cheaper way.
        return Changes([], blocker) if overwritten else Changes(added, blocker, removed, touching)
    return Changes(added, None, [], touching)


def _touching(path, commit, partition_columns: list[str]) -> list[DataFile]:
    """A commit's files whose rows are new or gone. A dedupe replacement rewrites whole files to
    drop a few rows: its commit names the folder of those rows, and the rewritten copies of the
    others (beside it, under the attempt's rewrite/) changed nothing."""
    if not commit.removed:
        return list(commit.added)
    root = fs.as_path(path)
    folder = root / commit.replaced_rows if commit.replaced_rows else None
    if folder is None or not fs.exists(folder):
        return [*commit.added, *commit.removed_files]
    rewrite = str(root / posixpath.dirname(commit.replaced_rows)) + "/"
    marker = "/" + commit.replaced_rows.strip("/") + "/"       # a listing's paths may spell the root otherwise
    replaced = [DataFile(f.path, stats.partition_values(f.path.split(marker, 1)[-1], tuple(partition_columns)))
                for f in fs.walk_files(folder) if f.path.endswith(".parquet")]
    return [*(f for f in commit.added if not f.path.startswith(rewrite)), *replaced]
