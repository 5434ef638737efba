"""Compare a pipeline's tables with a generator truth (assay.generator), row for row.

    report = verify("data/zenith/truth", read_table)   # read_table(name) -> pyarrow.Table | None
    print(report.render()); assert report.ok

Per truth table: only the truth's columns are compared (extra pipeline columns such as
ingestion timestamps are ignored), as multisets (order-insensitive, duplicates count).
Struct columns compare field by field. Floats match within a relative 1e-9 (absolute 1e-6); columns the manifest marks as
approximate distinct counts within 25 %, at least 3 (what HyperLogLog++ at Spark's
default 5 % relative standard error stays within; below); timestamps as UTC instants at microsecond
precision (naive timestamps are taken as UTC); `source_file` columns by base name (a
pipeline may keep the full path or URI). Metrics in manifest.json are the caller's.

This module compares tables held in memory: the reference for these rules, used by tests and for
the PostgreSQL mirrors. `assay verify` computes the same comparison in the engine, over the truth's
Parquet and the Delta tables, with memory bounded whatever their size (verify_engine.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Approximate distinct counts: approx_count_distinct at its default 5 % relative standard error.
# Apache Spark's HyperLogLog++ (512 registers at 5 %), measured on 60 000 groups of 1-300 values:
# errors up to 23 % at 10-30 distinct values (6 off at 26) and 15 % above 120, so 0.2-1.2 % of
# groups broke the earlier bound (10 %, at least 1: two standard errors, set on the embedded
# engine, whose estimator stayed within 10 % and 1). 25 % and 3 held for every group.
REL_TOL, ABS_TOL, APPROX_TOL, APPROX_MIN = 1e-9, 1e-6, 0.25, 3.0


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
    missing_rows: np.ndarray = field(default=None, repr=False)      # row indices into the truth
    unexpected_rows: np.ndarray = field(default=None, repr=False)   # row indices into the table
    mismatch_pairs: np.ndarray = field(default=None, repr=False)    # (truth row, table row) pairs

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


def truth_tables(truth_dir, tables: list[str] | None = None):
    """(name, manifest entry, Parquet path) of each truth table, or of those named."""
    truth_dir = Path(truth_dir)
    manifest = json.loads((truth_dir / "manifest.json").read_text())
    for name, info in manifest["tables"].items():
        if tables is None or name in tables:
            yield name, info, truth_dir / f"{name}.parquet"


def verify(truth_dir, read_table: Callable[[str], pa.Table | None], *, tables: list[str] | None = None,
           examples: int = 5) -> Report:
    results = []
    for name, info, path in truth_tables(truth_dir, tables):
        truth = pq.read_table(path)
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
    truth, actual = _flat(truth), _flat(actual)
    absent = [c for c in truth.column_names if c not in actual.column_names]
    if absent:
        return TableResult(name, "missing_columns", truth.num_rows, actual.num_rows,
                           note=f"columns missing: {', '.join(absent)} (table has: {', '.join(actual.column_names)})")
    actual = actual.select(truth.column_names)
    loose = [c for c in truth.column_names if pa.types.is_floating(truth.schema.field(c).type) or c in approx]
    exact = [c for c in truth.column_names if c not in loose]
    try:
        group = _group_ids([_codes(truth.schema.field(c), truth.column(c), actual.column(c)) for c in exact],
                           truth.num_rows + actual.num_rows)
        values = {c: np.concatenate([_floats(truth.column(c)), _floats(actual.column(c))]) for c in loose}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, TypeError) as e:
        return TableResult(name, "error", truth.num_rows, actual.num_rows, note=f"cannot compare types: {e}")
    res = _match(group, values, truth.num_rows, set(approx))
    res.name, res.truth_rows, res.actual_rows = name, truth.num_rows, actual.num_rows
    res.status = "ok" if res.missing == res.unexpected == res.mismatched == 0 else "mismatch"
    _examples(res, truth, actual, loose, examples)
    return res


def _flat(table: pa.Table) -> pa.Table:
    """Struct columns as one column per field (`__START_AT.event_ts`); a NULL struct's fields are NULL."""
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table


# ---------------------------------------------------------------- normalisation
# Every exact column becomes int64 codes over truth + table rows: equal codes <=> equal
# values (NULL equals NULL). Strings are dictionary-encoded together; numbers, instants
# (microseconds) and dates (days) are their own codes.

_NULL = np.iinfo(np.int64).min


def _text(arr: pa.ChunkedArray) -> bool:
    return pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)


def _codes(f: pa.Field, truth: pa.ChunkedArray, actual: pa.ChunkedArray) -> np.ndarray:
    t = f.type
    if pa.types.is_timestamp(t):
        conv = _micros
    elif pa.types.is_date(t):
        conv = _days
    elif pa.types.is_integer(t) or pa.types.is_boolean(t):
        conv = _integers
    else:
        both = pa.chunked_array(_strings(f, truth).chunks + _strings(f, actual).chunks, pa.string())
        enc = pc.dictionary_encode(both).combine_chunks()
        return pc.cast(enc.indices, pa.int64()).fill_null(-1).to_numpy()
    parts = [pc.cast(conv(x), pa.int64()).fill_null(_NULL).to_numpy() for x in (truth, actual)]
    return np.concatenate(parts)


def _strings(f: pa.Field, arr: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
        # Lists compare as their elements joined by a separator no value contains.
        arr = pc.binary_join(pc.cast(arr, pa.list_(pa.string())), "\x1f")
    elif not _text(arr):
        arr = pc.cast(arr, pa.string())
    arr = pc.cast(arr, pa.string())
    if f.name == "source_file":
        arr = pc.replace_substring_regex(arr, r"^.*/", "")
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


def _micros(arr: pa.ChunkedArray) -> pa.Array:
    """Microseconds since the epoch (UTC); ns values are floored, naive values taken as UTC."""
    arr = arr.combine_chunks()
    if _text(arr):
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


def _days(arr: pa.ChunkedArray) -> pa.Array:
    arr = arr.combine_chunks()
    if _text(arr):
        arr = pc.cast(arr, pa.date32())
    elif pa.types.is_timestamp(arr.type):
        arr = pc.cast(pc.cast(arr, pa.timestamp(arr.type.unit)), pa.date32())
    return pc.cast(pc.cast(arr, pa.date32()), pa.int32())


def _integers(arr: pa.ChunkedArray) -> pa.Array:
    arr = arr.combine_chunks()
    if pa.types.is_floating(arr.type):
        vals = arr.to_numpy(zero_copy_only=False)
        if np.any(np.isfinite(vals) & (vals != np.round(vals))):
            raise ValueError("an integer column holds fractional values")
        return pc.cast(arr, pa.int64(), safe=False)
    return pc.cast(arr, pa.int64())


def _floats(arr: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(arr.combine_chunks(), pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _group_ids(codes: list[np.ndarray], n: int) -> np.ndarray:
    """One id per distinct combination of exact values."""
    if not codes:
        return np.zeros(n, dtype=np.int64)
    df = pd.DataFrame({i: c for i, c in enumerate(codes)})
    return df.groupby(list(df.columns), sort=False).ngroup().to_numpy()


# ---------------------------------------------------------------- matching

def _match(group: np.ndarray, values: dict, n_truth: int, approx: set[str]) -> TableResult:
    """Multiset join on the exact columns: the k-th truth row of a group meets the k-th table
    row of that group (both ordered by the loose columns), then loose columns are checked."""
    side = np.arange(len(group)) >= n_truth
    order = np.lexsort([values[c] for c in reversed(list(values))] + [group, side])
    g = group[order]
    start = np.r_[True, (g[1:] != g[:-1]) | (side[order][1:] != side[order][:-1])]
    run = np.flatnonzero(start)
    rank = np.arange(len(order)) - np.repeat(run, np.diff(np.r_[run, len(order)]))
    rows = pd.DataFrame({"g": g, "k": rank, "row": order})
    is_actual = side[order]
    m = rows[~is_actual].merge(rows[is_actual], on=["g", "k"], how="outer", suffixes=("_t", "_a"), indicator=True)
    res = TableResult("", "", 0)
    both = m[m["_merge"] == "both"]
    ti, ai = both["row_t"].to_numpy(dtype=np.int64), both["row_a"].to_numpy(dtype=np.int64)
    bad = np.zeros(len(both), dtype=bool)
    for c, v in values.items():
        x, y = v[ti], v[ai]
        finite = np.isfinite(x) & np.isfinite(y)      # an infinity is within no relative tolerance
        with np.errstate(invalid="ignore"):
            if c in approx:
                close = np.abs(x - y) <= np.maximum(APPROX_MIN, APPROX_TOL * np.abs(x))
            else:
                close = np.abs(x - y) <= np.maximum(ABS_TOL, REL_TOL * np.maximum(np.abs(x), np.abs(y)))
        bad |= ~((finite & close) | (x == y) | (np.isnan(x) & np.isnan(y)))
    res.missing_rows = np.sort(m.loc[m["_merge"] == "left_only", "row_t"].to_numpy(dtype=np.int64))
    res.unexpected_rows = np.sort(m.loc[m["_merge"] == "right_only", "row_a"].to_numpy(dtype=np.int64)) - n_truth
    res.mismatch_pairs = np.stack([ti[bad], ai[bad] - n_truth], axis=1)
    res.missing, res.unexpected, res.mismatched = len(res.missing_rows), len(res.unexpected_rows), int(bad.sum())
    return res


def _examples(res: TableResult, truth: pa.Table, actual: pa.Table, loose: list[str], k: int) -> None:
    def rows(table: pa.Table, idx) -> list[dict]:
        return [{c: _show(v) for c, v in r.items()} for r in table.take(pa.array(idx[:k], pa.int64())).to_pylist()]

    res.missing_examples = rows(truth, res.missing_rows)
    res.unexpected_examples = rows(actual, res.unexpected_rows)
    pairs = res.mismatch_pairs[:k]
    for t, a in zip(rows(truth, pairs[:, 0]), rows(actual, pairs[:, 1])):
        res.mismatch_examples.append({c: (f"{t[c]!r} -> {a[c]!r}" if c in loose else t[c]) for c in t})


def _show(v):
    """A readable value for the report (instants and dates in ISO form)."""
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v
