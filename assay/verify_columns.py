"""The columns `assay verify` compares, as engine expressions: the rules of assay.verify (its module
docstring) written as Spark SQL over both sides, so that equal normalised values mean equal values.

Each truth column (struct fields flattened to `parent.field`) becomes, on both sides, one of:
- exact: a value equal on both sides exactly when assay.verify's Python comparison calls them equal
  (timestamps as UTC microseconds, dates as days, integers and booleans as 64-bit integers, lists as
  their elements joined by a separator no value contains, anything else as text, `source_file` by
  base name); NULL stays NULL and equals NULL;
- loose: a double (floats, and the manifest's approximate distinct counts), NULL read as NaN as in
  the Python comparison.
The kind comes from the truth's type, never the table's, so both sides are converted alike.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

SEPARATOR = "\x1f"        # joins a list's elements: no generated value contains it
NAN = float("nan")


@dataclass(frozen=True)
class Compared:
    name: str             # as reported: `parent.field` for a struct's field
    kind: str             # micros | days | integer | list | text | loose
    approx: bool = False  # loose, within the approximate-distinct bound rather than the float one


def flat_columns(schema: T.StructType) -> dict[str, tuple[Column, T.DataType]]:
    """Every leaf column by its flattened name (`a.b` for field b of struct a), with the expression
    that reads it and its type; a NULL struct's fields read as NULL."""
    out: dict[str, tuple[Column, T.DataType]] = {}

    def walk(prefix: str, column: Column, dtype: T.DataType) -> None:
        if isinstance(dtype, T.StructType):
            for f in dtype.fields:
                walk(f"{prefix}.{f.name}", column.getField(f.name), f.dataType)
        else:
            out[prefix] = (column, dtype)

    for f in schema.fields:
        walk(f.name, F.col(f"`{f.name}`"), f.dataType)
    return out


def kind_of(name: str, dtype: T.DataType, approx) -> Compared:
    if isinstance(dtype, (T.FloatType, T.DoubleType)) or name in approx:
        return Compared(name, "loose", approx=name in approx)
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
        return Compared(name, "micros")
    if isinstance(dtype, T.DateType):
        return Compared(name, "days")
    if isinstance(dtype, (T.IntegralType, T.BooleanType)):
        return Compared(name, "integer")
    if isinstance(dtype, T.ArrayType):
        return Compared(name, "list")
    return Compared(name, "text")


def normalised(c: Compared, column: Column, dtype: T.DataType) -> Column:
    """The comparable value of `column` (of type `dtype`, on either side) for a truth column `c`."""
    if c.kind == "loose":
        return F.coalesce(column.cast("double"), F.lit(NAN))
    if c.kind == "micros":
        # Naive values are taken as UTC: the session's time zone is UTC (engines/base.py).
        return F.unix_micros(column.cast("timestamp"))
    if c.kind == "days":
        return F.unix_date(column.cast("date"))
    if c.kind == "integer":
        return column.cast("bigint")
    if c.kind == "list":
        items = column.cast("array<string>")
        joined = F.concat_ws(SEPARATOR, items)
        # A NULL list, or one holding a NULL, is NULL (concat_ws would give '' or skip the NULL).
        holes = F.size(items) != F.size(F.array_compact(items))
        return F.when(items.isNull() | holes, F.lit(None).cast("string")).otherwise(joined)
    text = column.cast("string")
    if c.name == "source_file":
        text = F.regexp_replace(text, r"^.*/", "")
    return text


def fractional(column: Column, dtype: T.DataType) -> Column | None:
    """For an integer truth column read from a floating column: 1 where a value is not whole."""
    if not isinstance(dtype, (T.FloatType, T.DoubleType)):
        return None
    return F.when(F.abs(column) < F.lit(float("inf")), (column != F.floor(column)).cast("int")).otherwise(0)


def hash_inputs(exact: list[tuple[Compared, Column]]) -> list[Column]:
    """Each exact value with its NULL flag, so that (a, NULL) and (NULL, a) hash apart. The value
    goes through coalesce: the embedded engine's xxhash64 panics when every input is a column its
    Parquet reader found constant in a file (min = max, no NULL) unless it is computed."""
    out = []
    for c, e in exact:
        out += [F.coalesce(e, F.lit("" if c.kind in ("text", "list") else 0)), e.isNull()]
    return out


def within_tolerance(c: Compared, x: Column, y: Column, rel: float, abs_: float, approx_tol: float,
                     approx_min: float) -> Column:
    """assay.verify's rule for a paired loose value: equal (infinities, NaN with NaN), or both
    finite and close (relative/absolute for floats, 25 %/3 for approximate distinct counts)."""
    inf = F.lit(float("inf"))
    finite = (F.abs(x) < inf) & (F.abs(y) < inf)
    diff = F.abs(x - y)
    if c.approx:
        close = diff <= F.greatest(F.lit(approx_min), F.lit(approx_tol) * F.abs(x))
    else:
        close = diff <= F.greatest(F.lit(abs_), F.lit(rel) * F.greatest(F.abs(x), F.abs(y)))
    return (finite & close) | (x == y) | (F.isnan(x) & F.isnan(y))
