"""Declared deduplication with a watermark, enforced across batches and runs against state kept in Delta.

Semantics (identical on every engine, and independent of how files were grouped into batches):
- Arrival order is the order of source files by (`_source_modified`, `_source_file`); without
  those columns, the whole batch is one arrival unit.
- Watermark of a file = (largest event time of every earlier-arrived row) − delay. A row whose
  event time is below its file's watermark is late: it goes to `<table>_late`, counted, not lost.
- Among the other rows, one survives per key: the smallest by the order columns (event time,
  then `_source_file`, `_source_position` by default). A later batch whose row beats the one kept
  earlier replaces it (the target is then merged, not appended).

The state table holds, per key, the order columns of the row kept and the batch that kept it.
Planning reads the state as of the version recorded before the batch, so a batch recomputed
after a crash decides exactly as the first attempt did.

Formulation chosen by measurement (ARCHITECTURE §6): `row_number()` over the key (9.9 s on 7 M
rows on Sail) instead of `dropDuplicates` on a key subset (36.9 s).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..definitions import Dedupe
from ..errors import GraphError
from ..units import parse_seconds

# The arrival-order window has no partition on purpose: it runs over one row per file.
warnings.filterwarnings("ignore", message=".*No Partition Defined for Window.*")

ROUTE = "_assay_route"
ROW = "_assay_row"
BATCH = "_assay_batch"
ARRIVAL = ("_source_modified", "_source_file")
DEFAULT_TIEBREAK = ("_source_file", "_source_position")
INSERT, REPLACE, DUPLICATE, LATE = "insert", "replace", "duplicate", "late"


@dataclass(frozen=True)
class DedupePlan:
    keys: tuple[str, ...]
    order: tuple[str, ...]
    event_time: str | None
    delay_s: float | None
    arrival: tuple[str, ...]


def resolve(spec: Dedupe, columns: list[str], dataset: str, location) -> DedupePlan:
    """Check the declaration against the flow's output columns and fill in the defaults."""
    missing = [c for c in (*spec.keys, *( [spec.event_time] if spec.event_time else [] ), *(spec.order_by or ()))
               if c not in columns]
    if missing:
        raise GraphError(f"dedupe of '{dataset}' (at {location}) names column(s) {', '.join(missing)} that the "
                         f"query does not produce (it has: {', '.join(columns)})")
    if spec.order_by:
        order = tuple(spec.order_by)
    else:
        order = tuple(([spec.event_time] if spec.event_time else [])
                      + [c for c in DEFAULT_TIEBREAK if c in columns])
    if not order:
        raise GraphError(f"dedupe of '{dataset}' (at {location}) needs an order to choose the surviving row "
                         "deterministically: give event_time, order_by, or keep _source_file/_source_position")
    delay = None
    if spec.watermark is not None:
        try:
            delay = parse_seconds(spec.watermark)
        except ValueError as exc:
            raise GraphError(f"dedupe of '{dataset}' (at {location}): watermark {exc}") from None
    arrival = ARRIVAL if all(c in columns for c in ARRIVAL) else ()
    return DedupePlan(tuple(spec.keys), order, spec.event_time, delay, arrival)


def state_columns(plan: DedupePlan) -> list[str]:
    return list(dict.fromkeys([*plan.keys, *plan.order]))


def route(df, plan: DedupePlan, state, previous_max: datetime | None):
    """`df` with a ROUTE column: insert, replace, duplicate or late (one engine query)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    columns = df.columns
    if plan.delay_s is not None:
        delay = timedelta(seconds=plan.delay_s)
        floor = F.lit(previous_max - delay) if previous_max is not None else F.lit(None).cast("timestamp")
        et = F.col(plan.event_time)
        if plan.arrival:
            earlier = Window.orderBy(*[F.col(c).asc() for c in plan.arrival]).rowsBetween(
                Window.unboundedPreceding, -1)
            files = (df.groupBy(*plan.arrival).agg(F.max(et).alias("_assay_file_max"))
                     .withColumn("_assay_prev_max", F.max("_assay_file_max").over(earlier))
                     .withColumn("_assay_wm", F.greatest(
                         F.col("_assay_prev_max") - F.expr(f"INTERVAL {int(plan.delay_s)} SECONDS"), floor))
                     .select(*plan.arrival, "_assay_wm"))
            df = df.join(files, list(plan.arrival), "left")
        else:
            df = df.withColumn("_assay_wm", floor)
        is_late = F.coalesce(et < F.col("_assay_wm"), F.lit(False))
        df = df.withColumn("_assay_late", is_late).drop("_assay_wm")
    else:
        df = df.withColumn("_assay_late", F.lit(False))

    # Late rows never compete for survival; the others are ranked within the key.
    in_key = Window.partitionBy(*plan.keys).orderBy(
        F.col("_assay_late").asc(), *[F.col(c).asc_nulls_last() for c in plan.order])
    df = df.withColumn("_assay_rank", F.row_number().over(in_key))

    if state is not None:
        kept = state.select(*plan.keys, *[F.col(c).alias(f"_state_{c}") for c in plan.order],
                            F.lit(True).alias("_state_present"))
        df = df.join(kept, list(plan.keys), "left")
        beats = _lexicographic_less([F.col(c) for c in plan.order], [F.col(f"_state_{c}") for c in plan.order])
        decision = (F.when(F.col("_assay_late"), F.lit(LATE))
                    .when(F.col("_assay_rank") > 1, F.lit(DUPLICATE))
                    .when(F.col("_state_present").isNull(), F.lit(INSERT))
                    .when(beats, F.lit(REPLACE))
                    .otherwise(F.lit(DUPLICATE)))
        df = df.withColumn(ROUTE, decision).drop("_state_present", *[f"_state_{c}" for c in plan.order])
    else:
        df = df.withColumn(ROUTE, F.when(F.col("_assay_late"), F.lit(LATE))
                           .when(F.col("_assay_rank") > 1, F.lit(DUPLICATE)).otherwise(F.lit(INSERT)))
    return df.select(*columns, ROUTE)


def _lexicographic_less(left, right):
    """(l1, l2, ...) < (r1, r2, ...), with NULL never winning."""
    from pyspark.sql import functions as F

    result = F.lit(False)
    for lhs, rhs in reversed(list(zip(left, right))):
        result = F.coalesce((lhs < rhs) | ((lhs == rhs) & result), F.lit(False))
    return result
