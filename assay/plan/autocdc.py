"""AUTO CDC flows: change rows applied to a target by key, in sequence order, whatever order they arrive in.

Semantics (Databricks' AUTO CDC, made exact under out-of-order arrival):
- Every change of a key has a sequence value (`sequence_by`, a struct compares field by field);
  the target is what applying a key's changes in sequence order would have built, so a batch
  run per drop of input gives exactly the table of one batch over all of them.
- SCD type 1: the latest upsert of each key, unless a delete (or a truncate) has a greater
  sequence value; with `ignore_null_updates` a NULL leaves the column as the earlier upserts
  (since the last delete) set it.
- SCD type 2: a version per change of the tracked columns, `__START_AT` its first change's
  sequence value and `__END_AT` the sequence value of the change that ended it (NULL while it is
  current); a change of untracked columns only updates its version in place; a delete closes the
  current version; a repeated change is a no-op.
- Two different changes of one key with the same sequence value, a NULL sequence value or a
  NULL key stop the flow with a message naming the key: no change is ever picked silently.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..definitions import AutoCdc, Flow
from ..errors import GraphError

SEQ, OP = "__assay_seq", "__assay_op"
UPSERT, DELETE, TRUNCATE = "U", "D", "T"
START_AT, END_AT = "__START_AT", "__END_AT"
PART = "assay_part"                   # the batch's folders of kept / recomputed target rows
RESERVED = (SEQ, OP, START_AT, END_AT, PART)  # AUTO CDC's own columns: a source may not have them


def col(name: str) -> Column:
    """The column named `name`, whatever characters the name holds."""
    return F.col("`" + name.replace("`", "``") + "`")


@dataclass(frozen=True)
class Columns:
    """An AUTO CDC flow's columns, resolved against its source's."""
    keys: tuple[str, ...]
    data: tuple[str, ...]          # the target's other columns (history columns aside)
    columns: tuple[str, ...]       # the target's columns before __START_AT / __END_AT, in order
    tracked: tuple[str, ...]       # type 2: the columns whose change opens a version


def resolve(cdc: AutoCdc, source_columns: list[str], where: str) -> Columns:
    """Check every column the flow names against its source's columns; GraphError naming the flow."""
    problems = []

    def unknown(what: str, names) -> list[str]:
        missing = [n for n in (names or ()) if n not in source_columns]
        if missing:
            problems.append(f"{what} {', '.join(repr(n) for n in missing)} not in the source's columns")
        return [n for n in (names or ()) if n in source_columns]

    unknown("key(s)", cdc.keys)
    if cdc.column_list is not None:
        columns = unknown("column_list", cdc.column_list)
    else:
        unknown("except_column_list", cdc.except_column_list)
        columns = [c for c in source_columns if c not in (cdc.except_column_list or ())]
    lost = [k for k in cdc.keys if k in source_columns and k not in columns]
    if lost:
        problems.append(f"key(s) {', '.join(repr(k) for k in lost)} left out by column_list / except_column_list")
    clash = [c for c in columns if c in RESERVED]
    if clash:
        problems.append(f"column(s) {', '.join(clash)} are reserved for AUTO CDC's own use")
    data = [c for c in columns if c not in cdc.keys]
    if cdc.track_history_column_list is not None:
        tracked = [c for c in cdc.track_history_column_list if c in data]
        bad = [c for c in cdc.track_history_column_list if c not in data]
        if bad:
            problems.append(f"track_history_column_list {', '.join(repr(c) for c in bad)} not among the target's "
                            "non-key columns")
    else:
        bad = [c for c in (cdc.track_history_except_column_list or ()) if c not in columns]
        if bad:
            problems.append(f"track_history_except_column_list {', '.join(repr(c) for c in bad)} not among the "
                            "target's columns")
        tracked = [c for c in data if c not in (cdc.track_history_except_column_list or ())]
    if problems:
        raise GraphError(f"{where}: " + "; ".join(problems) + f" (source columns: {', '.join(source_columns)})")
    return Columns(tuple(cdc.keys), tuple(data), tuple(columns), tuple(tracked))


def sequence_column(cdc: AutoCdc, columns: list[str]) -> Column:
    s = cdc.sequence_by
    if isinstance(s, tuple):
        return F.struct(*[col(c) for c in s])
    if isinstance(s, str):
        return col(s) if s in columns else F.expr(s)
    return s


def _condition(value) -> Column:
    expr = F.expr(value) if isinstance(value, str) else value
    return F.coalesce(expr.cast("boolean"), F.lit(False))


def changes(df: DataFrame, cdc: AutoCdc, cols: Columns) -> DataFrame:
    """The source rows as change rows: keys, target columns, SEQ, OP. A delete keeps only its keys,
    a truncate nothing but its sequence value (so that repeated ones are equal)."""
    op = F.lit(UPSERT)
    if cdc.apply_as_truncates is not None:
        op = F.when(_condition(cdc.apply_as_truncates), F.lit(TRUNCATE)).otherwise(op)
    if cdc.apply_as_deletes is not None:
        op = F.when(_condition(cdc.apply_as_deletes), F.lit(DELETE)).otherwise(op)
    raw = df.select(*[col(c) for c in (*cols.keys, *cols.data)],
                    sequence_column(cdc, list(df.columns)).alias(SEQ), op.alias(OP))
    return raw.select(*[F.when(F.col(OP) != TRUNCATE, col(k)).alias(k) for k in cols.keys],
                      *[F.when(F.col(OP) == UPSERT, col(c)).alias(c) for c in cols.data], SEQ, OP)


def _order(data_type, column: Column) -> list[Column]:
    """A value's leaves in comparison order: windows cannot order by a struct on the embedded
    engine (DataFusion: 'Cannot run range queries on datatype: Struct'), its fields in order can."""
    if isinstance(data_type, T.StructType):
        return [leaf for f in data_type.fields for leaf in _order(f.dataType, column.getField(f.name))]
    return [column]


def row_of(names) -> Column:
    return F.struct(*[col(c) for c in names]) if names else F.lit(True)


def scd1_rows(events: DataFrame, cdc: AutoCdc, cols: Columns) -> DataFrame:
    """One row per key still present: its latest upsert after its latest delete and truncate."""
    keys = list(cols.keys)
    upserts = events.filter(F.col(OP) == UPSERT)
    deleted = events.filter(F.col(OP) == DELETE).groupBy(*keys).agg(F.max(SEQ).alias("_deleted_at"))
    live = upserts.join(deleted, keys, "left").filter(F.col("_deleted_at").isNull()
                                                      | (F.col(SEQ) > F.col("_deleted_at")))
    if cdc.apply_as_truncates is not None:
        truncated = events.filter(F.col(OP) == TRUNCATE).agg(F.max(SEQ).alias("_truncated_at"))
        live = live.crossJoin(truncated).filter(F.col("_truncated_at").isNull()
                                                | (F.col(SEQ) > F.col("_truncated_at")))
    if not cols.data:
        return live.select(*[col(k) for k in keys]).distinct()
    if cdc.ignore_null_updates:
        values = [F.max_by(col(c), F.when(col(c).isNotNull(), F.col(SEQ))).alias(c) for c in cols.data]
        rows = live.groupBy(*keys).agg(*values)
    else:
        rows = live.groupBy(*keys).agg(F.max_by(row_of(cols.data), SEQ).alias("_row")) \
            .select(*[col(k) for k in keys], *[F.col("_row").getField(c).alias(c) for c in cols.data])
    return rows.select(*[col(c) for c in cols.columns])


def scd2_rows(events: DataFrame, cdc: AutoCdc, cols: Columns, seq_type) -> DataFrame:
    """Every version of every key, as processing its changes in sequence order builds them."""
    keys = [col(k) for k in cols.keys]
    order = _order(seq_type, F.col(SEQ))
    by_key = Window.partitionBy(*keys).orderBy(*order)
    so_far = by_key.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    e = events.filter(F.col(OP) != TRUNCATE)
    # a delete opens a new segment: the key's life until it is deleted again
    e = e.withColumn("_segment", F.sum((F.col(OP) == DELETE).cast("int")).over(so_far))
    if cdc.ignore_null_updates:   # a NULL keeps the value the segment's earlier upserts gave
        in_segment = Window.partitionBy(*keys, F.col("_segment")).orderBy(*order) \
            .rowsBetween(Window.unboundedPreceding, Window.currentRow)
        e = e.select(*keys, SEQ, OP, "_segment",
                     *[F.last(col(c), ignorenulls=True).over(in_segment).alias(c) for c in cols.data])
    tracked = row_of(cols.tracked)
    e = e.select("*", F.lag(OP).over(by_key).alias("_previous_op"),
                 F.lag(tracked).over(by_key).alias("_previous_tracked"),
                 F.lead(SEQ).over(by_key).alias("_next_seq"))
    opens = (F.col(OP) == UPSERT) & (F.col("_previous_op").isNull() | (F.col("_previous_op") == DELETE)
                                     | ~tracked.eqNullSafe(F.col("_previous_tracked")))
    e = e.withColumn("_version", F.sum(opens.cast("int")).over(so_far))
    # a version ends at the change after its last one: the next version's first, or a delete
    versions = e.filter(F.col(OP) == UPSERT).groupBy(*keys, F.col("_version")).agg(
        F.min(SEQ).alias(START_AT), F.max_by(F.col("_next_seq"), F.col(SEQ)).alias(END_AT),
        F.max_by(row_of(cols.data), F.col(SEQ)).alias("_row"))
    return versions.select(*[col(k) for k in cols.keys],
                           *[F.col("_row").getField(c).alias(c) for c in cols.data], START_AT, END_AT) \
        .select(*[col(c) for c in (*cols.columns, START_AT, END_AT)])


def target_rows(events: DataFrame, cdc: AutoCdc, cols: Columns) -> DataFrame:
    if cdc.scd_type == 2:
        return scd2_rows(events, cdc, cols, events.schema[SEQ].dataType)
    return scd1_rows(events, cdc, cols)


def target_schema(df: DataFrame, cdc: AutoCdc, where: str) -> T.StructType:
    """The target's schema, from the flow's source schema (what graph analysis records); checks
    every column the flow names and its expressions (engine analysis errors name the flow)."""
    cols = resolve(cdc, list(df.columns), where)
    if cdc.snapshot:
        out = df.select(*[col(c) for c in cols.columns])
        if cdc.scd_type == 2:
            out = out.select("*", F.lit(0).cast("bigint").alias(START_AT), F.lit(0).cast("bigint").alias(END_AT))
        return out.schema
    try:
        return target_rows(changes(df, cdc, cols), cdc, cols).schema
    except GraphError:
        raise
    except Exception as exc:
        from ..engine_errors import explain
        raise GraphError(f"{where}: sequence_by / apply_as_deletes / apply_as_truncates cannot be evaluated "
                         f"over the source's columns ({', '.join(df.columns)}): {explain(str(exc))}") from None


def flow_label(flow: Flow) -> str:
    return f"AUTO CDC flow '{flow.name}' into '{flow.target}' (at {flow.location})"
