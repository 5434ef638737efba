"""`assay verify` computed by the engine: the comparison of assay.verify (same rules, same report)
over DataFrames, so that no table is read into Python.

Two passes per table, each memory-bounded whatever the table's size:
1. Fingerprints. Every row's exact values (verify_columns) hash to two 64-bit values; per bucket
   of the first (BUCKETS of them), each side's row count and the sums of both hashes' 32-bit
   halves: a few numbers per bucket, one streaming aggregation per side, and only the buckets
   that differ come back to Python. A table without loose columns whose buckets all agree equals
   its truth as a multiset (a difference that kept every count and all four sums unchanged would
   need over 100 bits of hash to cancel out).
2. Pairing (verify_pairing), only for the buckets that differ (with loose columns, every bucket:
   their values must be paired), a bounded number of rows per engine query: without loose
   columns, counts per distinct row (its 128-bit hash) on each side; with them, as in
   assay.verify, the k-th truth row of an exact-value group meets the k-th table row of that
   group, both ordered by the loose columns. A handful of example rows of each kind are
   collected, nothing more.
"""
from __future__ import annotations

from functools import reduce
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import functions as F

from . import verify_columns as V
from . import verify_pairing as P
from .verify import Report, TableResult, truth_tables

BUCKETS = 1 << 20          # a few numbers each per side: 1 M buckets aggregate in ~100 MB
CHUNK_ROWS = 4_000_000     # truth + table rows paired row by row in one engine query (loose columns)
CHUNK_ROWS_EXACT = 16_000_000   # truth + table rows counted by hash in one engine query (exact only)
MAX_LITERALS = 1000        # beyond, a chunk's buckets are a semi-join rather than IN (...)
MASK32 = 0xFFFFFFFF
SUMS = ("s1", "s2", "s3", "s4")


def verify_in_engine(truth_dir, engine, read_frame: Callable, *, tables: list[str] | None = None,
                     examples: int = 5) -> Report:
    """assay.verify.verify with `read_frame(name)` giving the pipeline's table as an engine
    DataFrame (None when there is no such table), the truth read by the engine from its Parquet."""
    from .engine_errors import first_line
    results = []
    for name, info, path in truth_tables(truth_dir, tables):
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
        return _compare(name, cols, _prepared(truth, cols, want), truth_rows, _prepared(actual, cols, have, True),
                        examples)
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
            exact.append((c, value))
        if table_side and c.kind == "integer":
            frac += [f for f in [V.fractional(column, dtype)] if f is not None]
    inputs = V.hash_inputs(exact)
    # Two different hashes: the same inputs in opposite orders.
    h1, h2 = (F.xxhash64(*inputs), F.xxhash64(*reversed(inputs))) if inputs else (F.lit(0), F.lit(1))
    exprs += [h1.alias("h1"), h2.alias("h2"),
              (reduce(lambda a, b: a + b, frac) if frac else F.lit(0)).alias("frac")]
    return df.select(*exprs).withColumn("b", F.pmod("h1", F.lit(BUCKETS)))


def _compare(name: str, cols: list[V.Compared], truth, truth_rows: int, actual, k: int) -> TableResult:
    loose = any(c.kind == "loose" for c in cols)
    buckets, tn, an = _fingerprints(truth, actual, loose)
    res = TableResult(name, "ok", truth_rows, truth_rows + int(an.sum()) - int(tn.sum()))
    pair = P.pair_loose if loose else P.pair_exact
    limit = CHUNK_ROWS if loose else CHUNK_ROWS_EXACT
    for chunk in _chunks(buckets, tn + an, limit):
        keep = _in_buckets(truth.sparkSession, chunk)
        pair(cols, keep(truth), keep(actual), res, k)
    res.status = "ok" if res.missing == res.unexpected == res.mismatched == 0 else "mismatch"
    return res


def _fingerprints(truth, actual, everything: bool):
    """The buckets to pair, sorted (those whose fingerprints differ; with loose columns, every
    non-empty one), with their truth and table row counts (numpy arrays); raises _Fractional when
    the table's integer columns hold fractional values."""
    def fingerprint(df, side: str):
        aggs = [F.count(F.lit(1)).alias(f"{side}n")]
        for h, (low, high) in (("h1", SUMS[:2]), ("h2", SUMS[2:])):
            aggs += [F.sum(F.col(h).bitwiseAND(F.lit(MASK32))).alias(f"{side}{low}"),
                     F.sum(F.shiftright(h, 32)).alias(f"{side}{high}")]
        if side == "a":
            aggs.append(F.sum("frac").alias("frac"))
        return df.groupBy("b").agg(*aggs)

    both = fingerprint(truth, "t").join(fingerprint(actual, "a"), "b", "full_outer")
    frac = F.coalesce(F.col("frac"), F.lit(0)) > 0
    if not everything:
        differ = [F.coalesce(F.col(f"t{s}"), F.lit(0)) != F.coalesce(F.col(f"a{s}"), F.lit(0))
                  for s in ("n",) + SUMS]
        both = both.filter(reduce(lambda x, y: x | y, differ) | frac)
    got = both.select("b", F.coalesce("tn", F.lit(0)).alias("tn"), F.coalesce("an", F.lit(0)).alias("an"),
                      frac.alias("frac")).toArrow()
    if pc.any(got["frac"]).as_py():
        raise _Fractional()
    got = got.sort_by("b")
    return (got["b"].to_numpy(), got["tn"].to_numpy().astype(np.int64), got["an"].to_numpy().astype(np.int64))


def _in_buckets(spark, chunk: np.ndarray):
    """A filter keeping the rows of these buckets: a list of literals, or for many, a semi-join."""
    if len(chunk) <= MAX_LITERALS:
        values = [int(b) for b in chunk]
        return lambda df: df.filter(F.col("b").isin(values))
    ids = spark.createDataFrame(pa.table({"b": pa.array(chunk, pa.int64())}).to_pandas())
    return lambda df: df.join(ids, "b", "left_semi")


def _chunks(buckets: np.ndarray, rows: np.ndarray, limit: int):
    """The buckets in groups of at most `limit` rows (a bucket larger than that alone)."""
    start, size = 0, 0
    for i, n in enumerate(rows.tolist()):
        if i > start and size + n > limit:
            yield buckets[start:i]
            start, size = i, 0
        size += n
    if start < len(buckets):
        yield buckets[start:]
