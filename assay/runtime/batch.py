"""One batch of one flow: query → expectations → deduplication → staged Parquet → Delta commits.

The engine runs the user's query and the runtime's rules in as few passes as possible and
stages the result as Parquet; the routed rows are then committed to each table through
delta-rs with the batch's application transaction, so a replayed batch never lands twice.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import quality, storage
from ..definitions import Dataset
from ..errors import ExpectationFailed
from . import dedupe as dd

QUARANTINE_SUFFIX = "_quarantine"
LATE_SUFFIX = "_late"


@dataclass
class RowCounts:
    """What happened to the rows of a batch (or of all a flow's batches)."""
    rows_read: int = 0
    rows_written: int = 0
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
class BatchResult(RowCounts):
    rules: list = field(default_factory=list)
    watermark_max: datetime | None = None
    metrics: dict = field(default_factory=dict)


def read_staged(folder: Path, df) -> pa.Table:
    """The Parquet an engine staged, all columns nullable (Delta columns must accept NULLs later)."""
    files = sorted(p for p in Path(folder).glob("*.parquet")) if Path(folder).exists() else []
    if files:
        table = pa.concat_tables([pq.read_table(p) for p in files], promote_options="permissive")
    else:  # engines write no file for an empty result: build the empty table from the schema
        from pyspark.sql.pandas.types import to_arrow_schema
        table = to_arrow_schema(df.schema, timezone="UTC").empty_table()
    schema = pa.schema([f.with_nullable(True) for f in table.schema])
    return table.cast(schema)


class BatchWriter:
    """Applies the rules of `dataset` to a flow's output and commits the routed rows."""

    def __init__(self, graph, dataset: Dataset, flow_name: str, generation: str, staging: Path):
        self.graph = graph
        self.engine = graph.engine
        self.dataset = dataset
        self.flow_name = flow_name
        self.generation = generation
        self.staging = staging

    def mark(self, role: str, batch: int) -> storage.BatchMark:
        return storage.BatchMark(f"assay:{self.generation}:{self.flow_name}:{role}", batch)

    def path(self, suffix: str = "") -> Path:
        return self.graph.table_path(self.dataset.name, suffix)

    def state_path(self) -> Path:
        return self.graph.spec.system_dir / "state" / self.flow_name

    def stage(self, df, name: str) -> pa.Table:
        folder = self.staging / name
        shutil.rmtree(folder, ignore_errors=True)
        self.engine.stage(df, folder)
        return read_staged(folder, df)

    def process(self, df, batch: int, *, mode: str, state_version: int | None = None,
                previous_max: datetime | None = None) -> BatchResult:
        """mode: 'append' (streaming table batch) or 'overwrite' (materialized view refresh)."""
        ds = self.dataset
        result = BatchResult()
        staged = self.stage(quality.with_verdicts(df, ds.expectations), "output")
        result.rows_read = staged.num_rows
        result.rules = quality.count_rules(staged, ds.expectations)
        kept, dropped, failed = quality.split(staged, ds.expectations)
        if failed.num_rows:
            raise ExpectationFailed(quality.describe_failure(self.flow_name, failed, ds.expectations))
        result.rows_dropped = dropped.num_rows

        replaced = None
        late = None
        if ds.dedupe is not None and mode == "append":
            kept, replaced, late, result = self._dedupe(kept, batch, result, state_version, previous_max)

        # Commits: side tables first, the target last; each is skipped if this batch already landed.
        if ds.quarantine and (dropped.num_rows or not storage.exists(self.path(QUARANTINE_SUFFIX))):
            storage.write(self.path(QUARANTINE_SUFFIX), dropped, mode=mode, mark=self.mark("quarantine", batch))
            result.rows_quarantined = dropped.num_rows
        if late is not None and (late.num_rows or not storage.exists(self.path(LATE_SUFFIX))):
            storage.write(self.path(LATE_SUFFIX), late, mark=self.mark("late", batch))
        # delta-rs accepts only Delta's own `delta.*` properties; the others live in the catalog file.
        props = {k: v for k, v in ds.table_properties.items() if str(k).startswith("delta.")}
        if replaced is not None and replaced.num_rows:
            upsert_rows = pa.concat_tables([kept, replaced])
            storage.upsert(self.path(), upsert_rows, ds.dedupe.keys, mark=self.mark("target", batch),
                           partition_by=ds.partition_cols)
        else:
            storage.write(self.path(), kept, mode=mode, mark=self.mark("target", batch),
                          partition_by=ds.partition_cols, properties=props, description=ds.comment)
        result.rows_written = kept.num_rows + (replaced.num_rows if replaced is not None else 0)
        return result

    def _dedupe(self, kept: pa.Table, batch: int, result: BatchResult, state_version, previous_max):
        ds = self.dataset
        plan = dd.resolve(ds.dedupe, kept.column_names, ds.name, ds.location)
        folder = self.staging / "dedupe_input"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        # The engine sees only the columns deduplication needs, and returns (row number, route):
        # the rows themselves stay here, in Arrow, and are picked by number.
        needed = list(dict.fromkeys([*plan.keys, *plan.order, *([plan.event_time] if plan.event_time else []),
                                     *plan.arrival]))
        narrow = kept.select(needed).append_column(dd.ROW, pa.array(range(kept.num_rows), pa.int64()))
        pq.write_table(narrow, folder / "part-0.parquet", compression="none")
        spark_input = self.engine.read_parquet([folder / "part-0.parquet"])
        state = None
        if state_version is not None and state_version >= 0:
            state = self.engine.read_delta(self.state_path(), version=state_version)
        routes = self.stage(dd.route(spark_input, plan, state, previous_max).select(dd.ROW, dd.ROUTE), "routed")
        routes = routes.sort_by(dd.ROW)
        data = kept.take(routes.column(dd.ROW))
        route = routes.column(dd.ROUTE)

        def rows(kind):
            return data.filter(pc.equal(route, kind))

        inserts, replaces, late = rows(dd.INSERT), rows(dd.REPLACE), rows(dd.LATE)
        if plan.delay_s is None:
            late = None   # no watermark, no late table
        result.rows_late = late.num_rows if late is not None else 0
        result.rows_duplicate = data.num_rows - inserts.num_rows - replaces.num_rows - result.rows_late
        if plan.event_time:
            on_time = data.filter(pc.not_equal(route, dd.LATE)).column(plan.event_time)
            batch_max = pc.max(on_time).as_py() if len(on_time) else None
            candidates = [t for t in (previous_max, batch_max) if t is not None]
            result.watermark_max = max(candidates) if candidates else None

        winners = pa.concat_tables([inserts, replaces])
        state_rows = winners.select(dd.state_columns(plan))
        state_rows = state_rows.append_column(dd.BATCH, pa.array([batch] * state_rows.num_rows, pa.int64()))
        if replaces.num_rows:
            storage.upsert(self.state_path(), state_rows, plan.keys, mark=self.mark("state", batch))
        elif state_rows.num_rows or not storage.exists(self.state_path()):
            storage.write(self.state_path(), state_rows, mark=self.mark("state", batch))
        return inserts, replaces, late, result
