"""Compare a pipeline's tables with a generator truth (assay.generator), row for row.

    report = verify("data/zenith/truth", read_table)   # read_table(name) -> pyarrow.Table | None
    print(report.render()); assert report.ok

Per truth table: only the truth's columns are compared (extra pipeline columns such as
ingestion timestamps are ignored), as multisets (order-insensitive, duplicates count).
Floats match within a relative 1e-9 (absolute 1e-6); columns the manifest marks as
approximate distinct counts within ±3 %; timestamps as UTC instants at microsecond
precision (naive timestamps are taken as UTC); `source_file` columns by base name (a
pipeline may keep the full path or URI). Metrics in manifest.json are the caller's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REL_TOL, ABS_TOL, APPROX_TOL = 1e-9, 1e-6, 0.03
_DUP = "__dup__"


@dataclass
class TableResult:
    name: str
    status: str                      # ok | missing | missing_columns | mismatch | error
    truth_rows: int
    actual_rows: int | None = None
    missing: int = 0                 # truth rows with no equal row in the pipeline table
    unexpected: int = 0              # pipeline rows with no equal row in the truth
    mismatched: int = 0              # rows equal on exact columns but not within tolerance
    missing_examples: list = field(default_factory=list)
    unexpected_examples: list = field(default_factory=list)
    mismatch_examples: list = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Report:
    tables: list[TableResult]

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    def table(self, name: str) -> TableResult:
        return next(t for t in self.tables if t.name == name)

    def render(self) -> str:
        bad = [t for t in self.tables if not t.ok]
        head = "verify: OK" if not bad else f"verify: FAILED ({len(bad)} of {len(self.tables)} tables differ)"
        lines = [head]
        width = max([len(t.name) for t in self.tables] + [10])
        for t in self.tables:
            lines.append(f"  {t.status.upper():<16} {t.name:<{width}}  {_summary(t)}")
            for title, rows in (("missing (in truth, not in the table)", t.missing_examples),
                                ("unexpected (in the table, not in truth)", t.unexpected_examples),
                                ("outside tolerance (truth -> table)", t.mismatch_examples)):
                if rows:
                    lines.append(f"      {title}:")
                    lines.extend(f"        {_fmt_row(r)}" for r in rows)
        return "\n".join(lines)


def _summary(t: TableResult) -> str:
    if t.status == "ok":
        return f"{t.truth_rows} rows" + (f" ({t.note})" if t.note else "")
    if t.status in ("missing", "missing_columns", "error"):
        return t.note
    return (f"truth {t.truth_rows} rows, table {t.actual_rows} rows: {t.missing} missing, "
            f"{t.unexpected} unexpected, {t.mismatched} outside tolerance")


def _fmt_row(r: dict) -> str:
    return "{" + ", ".join(f"{k}: {v!r}" for k, v in r.items()) + "}"


def verify(truth_dir, read_table: Callable[[str], pa.Table | None], *, tables: list[str] | None = None,
           examples: int = 5) -> Report:
    truth_dir = Path(truth_dir)
    manifest = json.loads((truth_dir / "manifest.json").read_text())
    results = []
    for name, info in manifest["tables"].items():
        if tables is not None and name not in tables:
            continue
        truth = pq.read_table(truth_dir / f"{name}.parquet")
        try:
            actual = read_table(name)
        except Exception as e:       # a broken table is a finding, not a crash of the comparison
            results.append(TableResult(name, "error", truth.num_rows, note=f"{type(e).__name__}: {e}"))
            continue
        results.append(compare(name, truth, actual, approx=info.get("approx_distinct", []), examples=examples))
    return Report(results)


def compare(name: str, truth: pa.Table, actual: pa.Table | None, *, approx: list[str] = (),
            examples: int = 5) -> TableResult:
    if actual is None:
        if truth.num_rows == 0:
            return TableResult(name, "ok", 0, note="absent, and the truth is empty")
        return TableResult(name, "missing", truth.num_rows, note="table not found")
    absent = [c for c in truth.column_names if c not in actual.column_names]
    if absent:
        return TableResult(name, "missing_columns", truth.num_rows, actual.num_rows,
                           note=f"columns missing: {', '.join(absent)} (table has: {', '.join(actual.column_names)})")
    try:
        t, a = _normalise(truth, truth, approx), _normalise(truth, actual.select(truth.column_names), approx)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, TypeError) as e:
        return TableResult(name, "error", truth.num_rows, actual.num_rows, note=f"cannot compare types: {e}")
    loose = [c for c in truth.column_names if pa.types.is_floating(truth.schema.field(c).type) or c in approx]
    exact = [c for c in truth.column_names if c not in loose]
    kinds = {f.name: _kind(f.type) for f in truth.schema}
    res = _match(t, a, exact, loose, set(approx), examples, kinds)
    res.name, res.truth_rows, res.actual_rows = name, truth.num_rows, actual.num_rows
    res.status = "ok" if res.missing == res.unexpected == res.mismatched == 0 else "mismatch"
    return res


# ---------------------------------------------------------------- normalisation

def _normalise(truth: pa.Table, table: pa.Table, approx=()) -> pd.DataFrame:
    """Both sides in one comparable representation, driven by the truth's column types
    (approximate counts as floats: they are compared within a tolerance)."""
    fields = [pa.field(f.name, pa.float64()) if f.name in approx else f for f in truth.schema]
    return pd.DataFrame({f.name: _column(f, table.column(f.name).combine_chunks()) for f in fields})


def _kind(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list"
    return "value"


def _int64(arr: pa.Array) -> pd.Series:
    return pa.chunked_array([pc.cast(arr, pa.int64())]).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _column(f: pa.Field, arr: pa.Array) -> pd.Series:
    t = f.type
    if pa.types.is_timestamp(t):
        return _int64(_micros(arr))
    if pa.types.is_date(t):
        return _int64(_days(arr))
    if pa.types.is_integer(t):
        return _int64(_integers(arr))
    if pa.types.is_floating(t):
        return pd.Series(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype="float64")
    if _kind(t) == "list":
        # Lists compare as their elements joined by a separator no value contains.
        joined = pc.binary_join(pc.cast(arr, pa.list_(pa.string())), "\x1f")
        return pa.chunked_array([joined]).to_pandas()
    values = arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())
    if f.name == "source_file":
        values = pc.replace_substring_regex(values, r"^.*/", "")
    return pa.chunked_array([values]).to_pandas()


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _micros(arr: pa.Array) -> pa.Array:
    """Microseconds since the epoch (UTC); ns values are floored, naive values taken as UTC."""
    if _is_text(arr.type):
        ts = pd.to_datetime(arr.to_pandas(), utc=True, format="ISO8601", errors="coerce")
        arr = pa.array(ts.astype("datetime64[us, UTC]"))
    if not pa.types.is_timestamp(arr.type):
        raise TypeError(f"expected a timestamp, got {arr.type}")
    unit = arr.type.unit
    raw = pc.cast(pc.cast(arr, pa.timestamp(unit)), pa.int64())     # the UTC instant, zone dropped
    if unit != "ns":
        return pc.multiply(raw, {"s": 1_000_000, "ms": 1000, "us": 1}[unit])
    floored = np.floor_divide(raw.fill_null(0).to_numpy(), 1000)
    return pa.array(floored, pa.int64(), mask=raw.is_null().to_numpy(zero_copy_only=False))


def _days(arr: pa.Array) -> pa.Array:
    if _is_text(arr.type):
        arr = pc.cast(arr, pa.date32())
    elif pa.types.is_timestamp(arr.type):
        arr = pc.cast(pc.cast(arr, pa.timestamp(arr.type.unit)), pa.date32())
    return pc.cast(pc.cast(arr, pa.date32()), pa.int32())


def _integers(arr: pa.Array) -> pa.Array:
    if pa.types.is_floating(arr.type):
        vals = arr.to_numpy(zero_copy_only=False)
        if np.any(np.isfinite(vals) & (vals != np.round(vals))):
            raise ValueError("an integer column holds fractional values")
        return pc.cast(arr, pa.int64(), safe=False)
    return pc.cast(arr, pa.int64())


# ---------------------------------------------------------------- matching

def _match(t: pd.DataFrame, a: pd.DataFrame, exact: list[str], loose: list[str], approx: set[str],
           examples: int, kinds: dict) -> TableResult:
    """Multiset join on the exact columns; the k-th truth row of a key meets the k-th table row
    of that key (both sorted by the loose columns), then loose columns are checked."""
    def keyed(df: pd.DataFrame) -> pd.DataFrame:
        df = df.sort_values(exact + loose, na_position="first", kind="stable") if len(df.columns) else df
        df[_DUP] = df.groupby(exact, dropna=False, sort=False).cumcount() if exact else np.arange(len(df))
        return df

    t, a = keyed(t.copy()), keyed(a.copy())
    on = exact + [_DUP]
    m = t.merge(a, on=on, how="outer", suffixes=("", "__actual"), indicator=True)
    res = TableResult("", "", 0)
    left, right = m[m["_merge"] == "left_only"], m[m["_merge"] == "right_only"]
    both = m[m["_merge"] == "both"]
    bad = np.zeros(len(both), dtype=bool)
    for c in loose:
        x, y = both[c].to_numpy(dtype="float64", na_value=np.nan), both[c + "__actual"].to_numpy(dtype="float64", na_value=np.nan)
        if c in approx:
            close = np.abs(x - y) <= APPROX_TOL * np.abs(x)
        else:
            close = np.abs(x - y) <= np.maximum(ABS_TOL, REL_TOL * np.maximum(np.abs(x), np.abs(y)))
        bad |= ~(close | (np.isnan(x) & np.isnan(y)))
    res.missing, res.unexpected, res.mismatched = len(left), len(right), int(bad.sum())
    cols = [c for c in kinds if c in exact or c in loose]      # truth column order

    def side(r: dict, c: str, actual: bool):
        return _show(r[c + "__actual"] if actual and c in loose else r[c], kinds[c])

    res.missing_examples = [{c: side(r, c, False) for c in cols} for r in left.head(examples).to_dict("records")]
    res.unexpected_examples = [{c: side(r, c, True) for c in cols} for r in right.head(examples).to_dict("records")]
    res.mismatch_examples = [
        {c: side(r, c, False) if c in exact else f"{side(r, c, False)!r} -> {side(r, c, True)!r}" for c in cols}
        for r in both[bad].head(examples).to_dict("records")]
    return res


def _show(v, kind: str):
    """A readable value for the report (timestamps as ISO instants, lists as lists)."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    if kind == "timestamp":
        return str(pd.Timestamp(int(v), unit="us", tz="UTC").isoformat())
    if kind == "date":
        return str((np.datetime64(0, "D") + np.timedelta64(int(v), "D")))
    if kind == "list":
        return [] if v == "" else v.split("\x1f")
    if isinstance(v, np.integer):
        return int(v)
    return v
