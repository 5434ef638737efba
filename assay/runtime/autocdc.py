"""AUTO CDC batches: the change rows of a batch applied to the target by key (the semantics they
implement, and the target's schema, are planned in assay/plan/autocdc.py).

Why a change log beside the target. In-order history depends on changes that left no row of
their own: an untracked-only change, or a change equal to the current version, is absorbed into
a version, yet a later-arriving change sequenced before it makes it start a version (1:A,
3:A arrive, then 2:B: in order that is [1,2) A, [2,3) B, [3,-) A, which the target [1,-) A plus
2:B cannot rebuild). Type 1 needs the deletes' sequence values to refuse older upserts arriving
later. So each flow keeps its distinct changes (keys, target columns, sequence value, kind) in a
Delta table in its checkpoint folder (`changes`; reset by a full refresh with the checkpoint).

A batch, with the rows in the engine throughout:
1. the source's new rows become change rows, written straight into the change log's folder;
2. the keys they touch (all keys, for a truncate) select the change log's rows of those keys
   (files pruned by key statistics), and their union is checked (equal sequence values, NULLs);
3. the target rows of those keys are recomputed from all their changes: a winner per key
   (type 1) or a window over each key's changes in sequence order (type 2);
4. the target files holding those keys are found (statistics, then one probing job), their
   other rows kept, and kept + recomputed rows written into the target's folder as one job;
5. one Delta commit per table (change log: appends; target: removes + adds), each carrying the
   batch's application transaction. The change log's version before the batch is recorded ahead
   of any commit, so a rerun after a crash recomputes exactly the same rows; the target is read
   as it is now, unless the batch already landed there: nothing else changes its rows (it has
   one flow), and a compaction between a crash and its rerun leaves nothing stale to remove.
Only the key column's lowest and highest values, a few counts, and (in an error) up to three
offending keys reach this process.
"""
from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .. import fs
from ..atomic import read_json, write_json_atomic
from ..definitions import Flow
from ..delta import stats
from ..delta.commit import TableCommit, no_fence, remove_action
from ..delta.table import add_actions, current_version, open_table
from ..errors import FlowError
from ..plan.autocdc import (DELETE, END_AT, OP, PART, SEQ, START_AT, TRUNCATE, UPSERT, Columns, changes, col,
                            flow_label, resolve, row_of, target_rows)
from ..registry import flow_query
from . import keyed
from .batch_plan import BatchPlan
from .execute import BatchResult, BatchRun
from .reads import RunReads, run_context

KEPT, NEW = "kept", "new"             # the PART folders: rows kept from rewritten files, recomputed rows
CHANGES = "changes"                   # the change log, in the flow's checkpoint folder
MAX_SHOWN = 3                         # offending keys named in an error


def _arrow_schema(df: DataFrame):
    from pyspark.sql.pandas.types import to_arrow_schema
    return to_arrow_schema(df.schema, timezone="UTC")


# --- one batch ---------------------------------------------------------------------------------

class AutoCdcRun(BatchRun):
    """One batch of an AUTO CDC flow: the source's new rows applied to the target by key."""

    def __init__(self, services, dataset, flow: Flow, generation: str, batch: int, fence=no_fence):
        super().__init__(services, dataset, flow.name, generation, batch, "append", fence)
        self.flow = flow
        self.cdc = flow.auto_cdc

    def changes_path(self) -> Path:
        return self.services.checkpoint_dir(self.flow_name) / CHANGES

    def _tables(self) -> dict[str, Path]:
        return {"target": self.path(), "changes": self.changes_path()}

    def _versions(self) -> dict[str, int]:
        """The versions of the tables before this batch, recorded before it commits anything (a
        rerun after a crash reads the change log as the first attempt did)."""
        folder = self.services.checkpoint_dir(self.flow_name) / "cdc_versions"
        path = folder / f"{self.batch}.json"
        if path.exists():
            return read_json(path)
        versions = {role: current_version(p) for role, p in self._tables().items()}
        write_json_atomic(path, versions)
        for old in folder.glob("*.json"):
            if old.stem.isdigit() and int(old.stem) < self.batch:
                old.unlink(missing_ok=True)
        return versions

    def execute(self, df, plan: BatchPlan | None = None) -> BatchResult:
        self.read_states()
        self.clean_earlier_attempts()
        versions = self._versions()
        where = flow_label(self.flow)
        cols = resolve(self.cdc, list(df.columns), where)
        log_folder = self.changes_path() / self.attempt
        self.engine.write_files(changes(df, self.cdc, cols), log_folder)
        try:
            return self._apply(cols, versions, log_folder, where)
        finally:
            fs.delete_tree(self._staging())

    def _apply(self, cols: Columns, versions: dict, log_folder: Path, where: str) -> BatchResult:
        keys = list(cols.keys)
        files = sorted(log_folder.rglob("*.parquet")) if log_folder.exists() else []
        if not files:
            fs.delete_tree(log_folder)
            self._create_empty_target()
            return BatchResult()
        batch = self.engine.read_parquet([log_folder])
        summary = batch.agg(F.count(F.lit(1)).alias("n"),
                            F.sum((F.col(OP) == UPSERT).cast("int")).alias("upserts"),
                            F.sum((F.col(OP) == DELETE).cast("int")).alias("deletes"),
                            F.sum((F.col(OP) == TRUNCATE).cast("int")).alias("truncates"),
                            F.min(col(keys[0])).alias("low"), F.max(col(keys[0])).alias("high")).collect()[0]
        everything = bool(summary["truncates"])        # a truncate touches every key
        key_bounds = None if everything or len(keys) != 1 or summary["low"] is None \
            else (summary["low"], summary["high"])
        touched = batch.filter(F.col(OP) != TRUNCATE).select(*[col(k) for k in keys]).distinct()

        log = open_table(self.changes_path(), version=versions["changes"]) if versions["changes"] >= 0 else None
        earlier = self._earlier_changes(log, keys, touched, key_bounds, everything)
        events = (batch.unionByName(earlier, allowMissingColumns=True) if earlier is not None else batch).distinct()
        self._check(events, keys, where)
        metrics = self._metrics(batch, earlier, keys, summary)

        target_commit, counts = self._target_commit(cols, events, touched, key_bounds, everything)
        log_commit = TableCommit(self.changes_path(), self.mark("changes"), _arrow_schema(batch))
        if self.states["changes"].landed:
            fs.delete_tree(log_folder)
        else:
            columns = set(log_commit.schema.names)
            for path in files:
                relative = f"{self.attempt}/{path.relative_to(log_folder).as_posix()}"
                log_commit.adds.append(stats.add_action(self.changes_path(), relative, (), columns)[0])
        log_commit.execute(self.fence, self.states["changes"])
        if target_commit is not None and not target_commit.execute(self.fence, self.states["target"]):
            fs.delete_tree(self.path() / self.attempt)

        written, kept, removed = counts
        before = removed - kept
        metrics.update({"target_rows_before": before, "target_rows_after": written})
        if self.cdc.scd_type == 2:
            metrics["history_rows_added"] = written - before
        return BatchResult(rows_read=summary["n"], rows_written=written, rows_inserted=written,
                           rows_replaced=before, rows_duplicate=metrics["repeated"], metrics=metrics)

    def _earlier_changes(self, log, keys, touched, key_bounds, everything) -> DataFrame | None:
        """The change log's rows for the touched keys (every row after a truncate), plus its
        truncates when the flow has them (their rows have NULL keys: files with NULL key counts)."""
        if log is None:
            return None
        root = self.changes_path()
        if everything:
            return keyed.read_files(self.engine, root, log, add_actions(log))
        rows = keyed.read_files(self.engine, root, log, keyed.candidate_files(log, keys, key_bounds)) \
            .join(touched, keys, "left_semi")
        if self.cdc.apply_as_truncates is not None:
            with_nulls = [a for a in add_actions(log) if (a.get(f"null_count.{keys[0]}") or 0) > 0
                          or a.get(f"null_count.{keys[0]}") is None]
            if with_nulls:
                rows = rows.unionByName(keyed.read_files(self.engine, root, log, with_nulls)
                                        .filter(F.col(OP) == TRUNCATE))
        return rows

    def _check(self, events: DataFrame, keys: list[str], where: str) -> None:
        """Stop before writing when a key has two different changes with one sequence value, or a
        change has a NULL key or sequence value: naming up to three keys."""
        kinds = events.filter(F.col(OP) != TRUNCATE)
        null_key = F.lit(False)
        for k in keys:
            null_key = null_key | col(k).isNull()
        conflicts = kinds.groupBy(*[col(k) for k in keys], F.col(SEQ)).agg(F.count(F.lit(1)).alias("_n")) \
            .filter(F.col("_n") > 1).select(F.lit("conflict").alias("_why"), *[col(k) for k in keys], SEQ)
        nulls = events.filter((F.col(SEQ).isNull()) | ((F.col(OP) != TRUNCATE) & null_key)) \
            .select(F.lit("null").alias("_why"), *[col(k) for k in keys], SEQ)
        found = conflicts.unionByName(nulls).limit(MAX_SHOWN).collect()
        if not found:
            return
        shown = "; ".join(", ".join(f"{k}={row[k]!r}" for k in keys) + f" (sequence {row[SEQ]!r})" for row in found)
        if any(row["_why"] == "conflict" for row in found):
            raise FlowError(f"{where}: two different changes of one key have the same sequence value, so their "
                            f"order is unknown: {shown}. Make sequence_by order every change of a key, e.g. with a "
                            "tie-breaker: sequence_by=struct(<time>, <id>). Nothing of this batch was written; the "
                            "next run retries it.")
        raise FlowError(f"{where}: change(s) with a NULL key or a NULL sequence value: {shown}. Filter them out "
                        "upstream (e.g. an expectation that drops them). Nothing of this batch was written; the "
                        "next run retries it.")

    def _metrics(self, batch: DataFrame, earlier: DataFrame | None, keys: list[str], summary) -> dict:
        """Counts of the batch's changes: upserts, deletes, truncates, those sequenced before the
        newest change already applied to their key (out of order), those already applied (repeated)."""
        metrics = {"rows_upserted": summary["upserts"] or 0, "rows_deleted": summary["deletes"] or 0,
                   "truncates": summary["truncates"] or 0, "out_of_order": 0, "repeated": 0}
        per_change = batch.groupBy(*[col(k) for k in keys], F.col(SEQ), F.col(OP)).agg(F.count(F.lit(1)).alias("_n"))
        if earlier is None:
            row = per_change.agg(F.sum(F.col("_n") - 1).alias("repeated")).collect()[0]
            metrics["repeated"] = row["repeated"] or 0
            return metrics
        prior = earlier.filter(F.col(OP) != TRUNCATE)
        newest = prior.groupBy(*[col(k) for k in keys]).agg(F.max(SEQ).alias("_newest"))
        known = prior.select(*[col(k) for k in keys], SEQ).distinct().withColumn("_known", F.lit(1))
        row = (per_change.join(newest, keys, "left").join(known, [*keys, SEQ], "left")
               .agg(F.sum(F.when(F.col(SEQ) < F.col("_newest"), F.col("_n")).otherwise(0)).alias("late"),
                    F.sum(F.col("_n") - 1 + F.coalesce(F.col("_known"), F.lit(0))).alias("repeated"))
               .collect()[0])
        metrics["out_of_order"] = row["late"] or 0
        metrics["repeated"] = row["repeated"] or 0
        return metrics

    def _target_commit(self, cols: Columns, events: DataFrame, touched: DataFrame, key_bounds, everything: bool):
        """The target's commit (None when this batch already landed there) and (rows written for
        the touched keys, rows kept from the rewritten files, rows of the removed files)."""
        ds = self.dataset
        if self.states["target"].landed:
            return None, (0, 0, 0)
        keys = list(cols.keys)
        rows = target_rows(events, self.cdc, cols)
        table = self.states["target"].table      # not landed: its rows are those before the batch
        affected = []
        if table is not None:
            affected = add_actions(table) if everything else \
                keyed.files_holding(self.engine, self.path(), table, keys, touched, key_bounds)
        out = rows.withColumn(PART, F.lit(NEW))
        if affected and not everything:
            kept = keyed.read_files(self.engine, self.path(), table, affected).join(touched, keys, "left_anti")
            kept = kept.select(*[col(f.name) if f.name in kept.columns else F.lit(None).cast(f.dataType).alias(f.name)
                                 for f in rows.schema.fields])      # columns added since: NULL in older rows
            out = out.unionByName(kept.withColumn(PART, F.lit(KEPT)))
        folder = self.path() / self.attempt
        self.engine.write_files(out, folder, partition_by=(PART, *ds.partition_cols))
        commit = TableCommit(self.path(), self.mark("target"), _arrow_schema(rows), partition_by=ds.partition_cols,
                             description=ds.comment,
                             properties={k: v for k, v in ds.table_properties.items() if str(k).startswith("delta.")})
        written = kept_rows = 0
        names = set(commit.schema.names)
        for path in sorted(folder.rglob("*.parquet")) if folder.exists() else []:
            relative = f"{self.attempt}/{path.relative_to(folder).as_posix()}"
            action, records = stats.add_action(self.path(), relative, ds.partition_cols, names)
            commit.adds.append(action)
            if relative.split("/")[1] == f"{PART}={KEPT}":
                kept_rows += records
            else:
                written += records
        removed = 0
        for a in affected:
            commit.removes.append(remove_action(a["path"], a.get("size_bytes")))
            removed += int(a.get("num_records") or 0)
        return commit, (written, kept_rows, removed)

    def _create_empty_target(self) -> None:
        """A batch without changes still leaves the target existing (readers downstream need it)."""
        if self.states["target"].table is not None:
            return
        schema = self.graph.schema_of(self.dataset.name)
        from pyspark.sql.pandas.types import to_arrow_schema
        TableCommit(self.path(), self.mark("target"), to_arrow_schema(schema, timezone="UTC"),
                    partition_by=self.dataset.partition_cols,
                    description=self.dataset.comment).execute(self.fence, self.states["target"])


# --- snapshots -----------------------------------------------------------------------------------

def snapshot_rows(services, flow: Flow, snapshot: DataFrame, version: int, where: str) -> DataFrame:
    """The target after one more snapshot: type 1 is the snapshot itself; type 2 keeps history,
    closes (at `version`) the current rows of keys that changed or vanished, opens rows for keys
    that changed or appeared, and updates untracked columns of the others in place."""
    cdc = flow.auto_cdc
    cols = resolve(cdc, list(snapshot.columns), where)
    keys = list(cols.keys)
    dupes = snapshot.groupBy(*[col(k) for k in keys]).agg(F.count(F.lit(1)).alias("_n")) \
        .filter(F.col("_n") > 1).limit(MAX_SHOWN).collect()
    if dupes:
        shown = "; ".join(", ".join(f"{k}={row[k]!r}" for k in keys) + f" ({row['_n']} rows)" for row in dupes)
        raise FlowError(f"{where}: snapshot {version!r} has several rows for one key: {shown}. A snapshot holds "
                        "one row per key; nothing of it was applied, the next run retries it.")
    snap = snapshot.select(*[col(c) for c in cols.columns])
    if cdc.scd_type == 1:
        return snap
    at = F.lit(version).cast("bigint")
    target = RunReads(services).table(flow.target)
    history = target.filter(F.col(END_AT).isNotNull())
    current = target.filter(F.col(END_AT).isNull())
    renamed = snap.select(*[col(k) for k in keys], *[col(c).alias(f"_s_{c}") for c in cols.data],
                          F.lit(True).alias("_in_snapshot"))
    both = current.join(renamed, keys, "full_outer")
    was, now = F.col(START_AT).isNotNull(), F.col("_in_snapshot").isNotNull()
    same = was & now & row_of(cols.tracked).eqNullSafe(
        F.struct(*[F.col(f"_s_{c}").alias(c) for c in cols.tracked]) if cols.tracked else F.lit(True))
    fresh = [*[col(k) for k in keys], *[F.col(f"_s_{c}").alias(c) for c in cols.data]]
    kept = both.filter(same).select(*fresh, F.col(START_AT), F.lit(None).cast("bigint").alias(END_AT))
    closed = both.filter(was & ~same).select(*[col(c) for c in cols.columns], F.col(START_AT), at.alias(END_AT))
    opened = both.filter(now & ~same).select(*fresh, at.alias(START_AT), F.lit(None).cast("bigint").alias(END_AT))
    order = [col(c) for c in (*cols.columns, START_AT, END_AT)]
    return history.select(*order).unionByName(kept.select(*order)).unionByName(closed.select(*order)) \
        .unionByName(opened.select(*order))


class SnapshotSource:
    """An AUTO CDC FROM SNAPSHOT flow's input, as the runner's batch loop drives it: each new
    snapshot is one batch (planned with its version ahead of processing, committed under the
    batch's application transaction). A dataset source gives a snapshot whenever its table has a
    new version (the version is the Delta version); a function source is asked for the snapshot
    after the last one applied until it returns None."""

    def __init__(self, services, flow: Flow, fence=no_fence):
        self.services, self.flow, self.cdc, self.fence = services, flow, flow.auto_cdc, fence
        self.where = flow_label(flow)
        self.snapshot = None              # the current batch's (DataFrame, FlowContext)

    def plan(self, batch: int, committed: dict | None) -> BatchPlan | None:
        """The snapshot after the last one applied; None when there is none (or a once flow has one)."""
        last = committed["version"] if committed else None
        if self.flow.once and committed:
            return None
        if self.cdc.snapshot_function is not None:
            df, version, ctx = self.next_snapshot(last)
            if df is None:
                return None
        else:
            version = current_version(self.services.table_path(self.cdc.source))
            if version < 0 or version == last:
                return None
            df, ctx = self._read_source(version)
        self.snapshot = df, ctx
        return self._batch(batch, {"batch": batch, "version": version})

    def replay(self, batch: int, record: dict, committed: dict | None) -> BatchPlan:
        """The snapshot a crash interrupted: a function source must give the same version again."""
        last = committed["version"] if committed else None
        planned = record["version"]
        if self.cdc.snapshot_function is not None:
            df, version, ctx = self.next_snapshot(last)
            if df is None:
                raise FlowError(f"{self.where}: the source function returned no snapshot after version {last}, "
                                f"but snapshot {planned} was planned before a crash")
            if version != planned:
                raise FlowError(f"{self.where}: the source function now returns version {version} after version "
                                f"{last}, but snapshot {planned} was planned before a crash")
        else:
            df, ctx = self._read_source(planned)
        self.snapshot = df, ctx
        return self._batch(batch, record)

    def _batch(self, batch: int, record: dict) -> BatchPlan:
        return BatchPlan(batch, record, offsets={"snapshot": {"version": record["version"]}}, last=self.flow.once)

    def run(self, plan: BatchPlan, generation: str):
        """The snapshot applied: the target becomes the rows the snapshot implies."""
        df, ctx = self.snapshot
        version = plan.record["version"]
        rows = snapshot_rows(self.services, self.flow, df, version, self.where)
        dataset = self.services.graph.dataset(self.flow.target)
        result = BatchRun(self.services, dataset, self.flow.name, generation, plan.batch, "overwrite",
                          self.fence).execute(rows)
        result.metrics["snapshot_version"] = version
        return result, ctx

    def commit_record(self, plan: BatchPlan, result: BatchResult) -> dict:
        return {"batch": plan.batch, "version": plan.record["version"], "rows": result.rows_written}

    def _read_source(self, version: int):
        ctx = run_context(self.services, self.flow, static_reads={self.cdc.source})
        path = self.services.table_path(self.cdc.source)
        table = open_table(path, version=version)
        return keyed.read_files(self.services.engine, path, table, add_actions(table)), ctx

    def next_snapshot(self, last):
        flow, cdc, where = self.flow, self.cdc, self.where
        ctx = run_context(self.services, flow)
        with flow_query(ctx):
            found = cdc.snapshot_function(last)
        if found is None:
            return None, None, ctx
        if not (isinstance(found, tuple) and len(found) == 2 and hasattr(found[0], "schema")):
            raise FlowError(f"{where}: the source function must return (DataFrame, version) or None, got "
                            f"{type(found).__name__}")
        df, version = found
        if isinstance(version, bool) or not isinstance(version, int):
            raise FlowError(f"{where}: snapshot versions are integers, got {version!r}")
        if last is not None and version <= last:
            raise FlowError(f"{where}: the source function returned version {version} after version {last}; "
                            "versions must increase")
        return df, version, ctx
