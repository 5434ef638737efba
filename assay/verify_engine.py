"""`assay verify` computed by the engine: the comparison of assay.verify (same rules, same report)
over DataFrames, so that no table is read into Python.

Two passes per table, each memory-bounded whatever the table's size:
1. Buckets. Every row's exact values (verify_columns) hash to two 64-bit values; per bucket of the
   first (BUCKETS of them), each side's row count and the sums of both hashes' 32-bit halves: a
   multiset fingerprint of a few numbers per bucket, one streaming aggregation per side. A table
   without loose columns whose buckets all agree equals its truth as a multiset (a difference that
   kept every count and all four sums would need 128 bits of hash to cancel out).
2. Pairing, only for the buckets that differ (every bucket when there are loose columns, whose
   values must be paired), CHUNK_ROWS rows at a time: as in assay.verify, the k-th truth row of an
   exact-value group meets the k-th table row of that group, both ordered by the loose columns
   (`row_number()`), through a full outer join on the exact values and k; unpaired truth rows are
   missing, unpaired table rows unexpected, paired rows outside tolerance mismatched. A handful of
   example rows of each kind are collected, nothing more.
"""
from __future__ import annotations

import json
from functools import reduce
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq
from pyspark.sql import Window
from pyspark.sql import functions as F

from . import verify_columns as V
from .verify import ABS_TOL, APPROX_MIN, APPROX_TOL, REL_TOL, Report, TableResult, _show

BUCKETS = 1 << 16
CHUNK_ROWS = 4_000_000     # truth + table rows paired by one engine query
MASK32 = 0xFFFFFFFF
SUMS = ("s1", "s2", "s3", "s4")


def verify_in_engine(truth_dir, engine, read_frame: Callable, *, tables: list[str] | None = None,
                     examples: int = 5) -> Report:
    """assay.verify.verify with `read_frame(name)` giving the pipeline's table as an engine
    DataFrame (None when there is no such table), the truth read by the engine from its Parquet."""
    from .engine_errors import first_line
    truth_dir = Path(truth_dir)
    manifest = json.loads((truth_dir / "manifest.json").read_text())
    results = []
    for name, info in manifest["tables"].items():
        if tables is not None and name not in tables:
            continue
        path = truth_dir / f"{name}.parquet"
        truth_rows = pq.ParquetFile(path).metadata.num_rows
        try:
            actual = read_frame(name)
            if actual is not None:
                actual.schema             # a broken table fails here, not in the comparison
        except Exception as e:            # a broken table is a finding, not a crash of the comparison
            results.append(TableResult(name, "error", truth_rows, note=f"{type(e).__name__}: {first_line(str(e))}"))
            continue
        results.append(compare_frames(name, engine.read_parquet([path]), truth_rows, actual,
                                      approx=info.get("approx_distinct", []), examples=examples))
    return Report(results)


def compare_frames(name: str, truth, truth_rows: int, actual, *, approx=(), examples: int = 5) -> TableResult:
    """One truth table (a DataFrame of `truth_rows` rows) against the pipeline's (a DataFrame or None)."""
    from .engine_errors import first_line
    if actual is None:
        if truth_rows == 0:
            return TableResult(name, "ok", 0, note="absent, and the truth is empty")
        return TableResult(name, "missing", truth_rows, note="table not found")
    want, have = V.flat_columns(truth.schema), V.flat_columns(actual.schema)
    absent = [c for c in want if c not in have]
    if absent:
        return TableResult(name, "missing_columns", truth_rows, actual.count(),
                           note=f"columns missing: {', '.join(absent)} (table has: {', '.join(have)})")
    cols = [V.kind_of(n, dtype, approx) for n, (_, dtype) in want.items()]
    try:
        return _Comparison(name, cols, _prepared(truth, cols, want), _prepared(actual, cols, have, True),
                           examples).run()
    except _Fractional:
        return TableResult(name, "error", truth_rows, note="cannot compare types: an integer column holds "
                                                           "fractional values")
    except Exception as e:               # types the engine cannot convert: a finding, as in assay.verify
        return TableResult(name, "error", truth_rows, note=f"cannot compare types: {first_line(str(e))}")


class _Fractional(Exception):
    pass


def _prepared(df, cols: list[V.Compared], columns: dict, table_side: bool = False):
    """A side's rows as e<i> (exact value), l<i> (loose value), r<i> (the value as read, for the
    examples), h1 and h2 (hashes of the exact values), b (bucket) and, on the table's side, frac
    (how many integer columns hold a fractional value)."""
    exprs, exact, frac = [], [], []
    for i, c in enumerate(cols):
        column, dtype = columns[c.name]
        value = V.normalised(c, column, dtype)
        exprs += [value.alias(f"{'l' if c.kind == 'loose' else 'e'}{i}"), column.alias(f"r{i}")]
        if c.kind != "loose":
            exact.append(value)
        if table_side and c.kind == "integer":
            frac += [f for f in [V.fractional(column, dtype)] if f is not None]
    inputs = V.hash_inputs(exact)
    exprs += [F.xxhash64(F.lit(1), *inputs).alias("h1"), F.xxhash64(F.lit(2), *inputs).alias("h2"),
              (reduce(lambda a, b: a + b, frac) if frac else F.lit(0)).alias("frac")]
    return df.select(*exprs).withColumn("b", F.pmod("h1", F.lit(BUCKETS)))


class _Comparison:
    def __init__(self, name: str, cols: list[V.Compared], truth, actual, examples: int):
        self.name, self.cols, self.k = name, cols, examples
        self.truth, self.actual = truth, actual
        self.exact = [f"e{i}" for i, c in enumerate(cols) if c.kind != "loose"]
        self.loose = [(f"l{i}", c) for i, c in enumerate(cols) if c.kind == "loose"]

    def run(self) -> TableResult:
        buckets = self._buckets()
        truth_rows = sum(t[0] for t, _ in buckets.values())
        actual_rows = sum(a[0] for _, a in buckets.values())
        check = sorted(b for b, (t, a) in buckets.items() if self.loose or t != a)
        res = TableResult(self.name, "ok", truth_rows, actual_rows)
        for chunk in _chunks(check, {b: t[0] + a[0] for b, (t, a) in buckets.items()}):
            self._pair(chunk, res)
        res.status = "ok" if res.missing == res.unexpected == res.mismatched == 0 else "mismatch"
        return res

    def _buckets(self) -> dict[int, tuple[tuple, tuple]]:
        """Per bucket: (truth's, table's) (rows, s1..s4); raises _Fractional when the table's
        integer columns hold fractional values."""
        def fingerprint(df, side: str, frac: bool):
            aggs = [F.count(F.lit(1)).alias(f"{side}n")]
            for h in ("h1", "h2"):
                aggs += [F.sum(F.col(h).bitwiseAND(F.lit(MASK32))), F.sum(F.shiftright(h, 32))]
            aggs = aggs[:1] + [a.alias(f"{side}{s}") for a, s in zip(aggs[1:], SUMS)]
            if frac:
                aggs.append(F.sum("frac").alias("frac"))
            return df.groupBy("b").agg(*aggs)

        both = fingerprint(self.truth, "t", False).join(fingerprint(self.actual, "a", True), "b", "full_outer")
        table = both.toArrow().to_pydict()
        if any(table["frac"][i] for i in range(len(table["b"]))):
            raise _Fractional()
        out = {}
        for i, b in enumerate(table["b"]):
            t = tuple(table[f"t{s}"][i] or 0 for s in ("n",) + SUMS)
            a = tuple(table[f"a{s}"][i] or 0 for s in ("n",) + SUMS)
            out[b] = (t, a)
        return out

    def _pair(self, chunk: list[int], res: TableResult) -> None:
        def ranked(df, side: str):
            order = [F.col(n).asc() for n, _ in self.loose] or [F.col("h1")]
            w = Window.partitionBy("h1", *self.exact).orderBy(*order)
            df = df.filter(F.col("b").isin(chunk)).withColumn("k", F.row_number().over(w))
            return df.select(*[F.col(c).alias(f"{side}{c}") for c in df.columns])

        t, a = ranked(self.truth, "t_"), ranked(self.actual, "a_")
        on = [t["t_h1"] == a["a_h1"], t["t_k"] == a["a_k"]] + [t[f"t_{e}"].eqNullSafe(a[f"a_{e}"]) for e in self.exact]
        joined = t.join(a, reduce(lambda x, y: x & y, on), "full_outer")
        missing, unexpected = F.col("a_k").isNull(), F.col("t_k").isNull()
        within = [V.within_tolerance(c, F.col(f"t_{n}"), F.col(f"a_{n}"), REL_TOL, ABS_TOL, APPROX_TOL, APPROX_MIN)
                  for n, c in self.loose]
        bad = ~missing & ~unexpected & ~reduce(lambda x, y: x & y, within) if within else F.lit(False)
        counts = joined.agg(*[F.sum(w.cast("long")).alias(n) for n, w in
                              (("missing", missing), ("unexpected", unexpected), ("bad", bad))]).collect()[0]
        found = {"missing": counts["missing"] or 0, "unexpected": counts["unexpected"] or 0,
                 "bad": counts["bad"] or 0}
        res.missing += found["missing"]
        res.unexpected += found["unexpected"]
        res.mismatched += found["bad"]
        for kind, where, side, into in (("missing", missing, "t_", res.missing_examples),
                                        ("unexpected", unexpected, "a_", res.unexpected_examples)):
            need = self.k - len(into)
            if found[kind] and need > 0:
                rows = joined.filter(where).orderBy(*[f"{side}{e}" for e in self.exact]) \
                    .select(*[F.col(f"{side}r{i}") for i in range(len(self.cols))]).limit(need)
                into += [{c.name: _show(v) for c, v in zip(self.cols, row.values())}
                         for row in rows.toArrow().to_pylist()]
        need = self.k - len(res.mismatch_examples)
        if found["bad"] and need > 0:
            loose = {n[1:] for n, _ in self.loose}
            picked = [F.col(f"t_r{i}").alias(f"t{i}") for i in range(len(self.cols))] + \
                     [F.col(f"a_r{i}").alias(f"a{i}") for i in map(int, loose)]
            rows = joined.filter(bad).orderBy(*[f"t_{e}" for e in self.exact]).select(*picked).limit(need)
            for row in rows.toArrow().to_pylist():
                res.mismatch_examples.append({
                    c.name: (f"{_show(row[f't{i}'])!r} -> {_show(row[f'a{i}'])!r}" if str(i) in loose
                             else _show(row[f"t{i}"])) for i, c in enumerate(self.cols)})


def _chunks(buckets: list[int], rows: dict[int, int]):
    """The buckets in groups of at most CHUNK_ROWS rows (a bucket larger than that alone)."""
    chunk, size = [], 0
    for b in buckets:
        if chunk and size + rows[b] > CHUNK_ROWS:
            yield chunk
            chunk, size = [], 0
        chunk.append(b)
        size += rows[b]
    if chunk:
        yield chunk
