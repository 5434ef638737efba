"""The second pass of assay.verify_engine: the rows of some buckets paired in the engine, counted
into a TableResult, with a few example rows collected.

Both sides hold e<i> (exact values), l<i> (loose values), r<i> (values as read), h1 and h2 (the
exact values' hashes) for the truth columns `cols` (assay.verify_columns).
"""
from __future__ import annotations

from functools import reduce

from pyspark.sql import Window
from pyspark.sql import functions as F

from . import verify_columns as V
from .verify import ABS_TOL, APPROX_MIN, APPROX_TOL, REL_TOL, TableResult, _show


def pair_exact(cols: list[V.Compared], truth, actual, res: TableResult, k: int) -> None:
    """Without loose columns, the multiset difference of the exact values: per distinct row (its
    two 64-bit hashes, 128 bits, standing for its values) how many more the truth has (missing)
    or the table has (unexpected). A hash and a count per row: no row is kept whole."""
    def counted(df, side):
        return df.groupBy("h1", "h2").agg(F.count(F.lit(1)).alias(side))

    joined = counted(truth, "tn").join(counted(actual, "an"), ["h1", "h2"], "full_outer") \
        .select("h1", "h2", F.coalesce("tn", F.lit(0)).alias("tn"), F.coalesce("an", F.lit(0)).alias("an"))
    more_truth, more_table = F.greatest(F.col("tn") - F.col("an"), F.lit(0)), F.greatest(F.col("an") - F.col("tn"), F.lit(0))
    got = joined.agg(F.sum(more_truth).alias("m"), F.sum(more_table).alias("u")).collect()[0]
    res.missing += got["m"] or 0
    res.unexpected += got["u"] or 0
    for count, side, df, into in ((got["m"], "tn", truth, res.missing_examples),
                                  (got["u"], "an", actual, res.unexpected_examples)):
        need = k - len(into)
        if not count or need <= 0:
            continue
        other = "an" if side == "tn" else "tn"
        keys = [(r["h1"], r["h2"]) for r in joined.filter(F.col(side) > F.col(other)).orderBy("h1", "h2")
                .select("h1", "h2").limit(need).collect()]
        rows = df.filter(F.col("h1").isin([h for h, _ in keys])) \
            .groupBy("h1", "h2").agg(*[F.first(f"r{i}").alias(f"r{i}") for i in range(len(cols))])
        found = {(r["h1"], r["h2"]): r for r in rows.toArrow().to_pylist()}
        into += [{c.name: _show(found[key][f"r{i}"]) for i, c in enumerate(cols)} for key in keys if key in found]


def pair_loose(cols: list[V.Compared], truth, actual, res: TableResult, k: int) -> None:
    """As assay.verify pairs rows: within a group of equal exact values the k-th truth row meets
    the k-th table row, both ordered by the loose columns; unpaired rows are missing or
    unexpected, paired ones outside tolerance mismatched."""
    exact = [f"e{i}" for i, c in enumerate(cols) if c.kind != "loose"]
    loose = [(i, c) for i, c in enumerate(cols) if c.kind == "loose"]

    def ranked(df, side: str):
        w = Window.partitionBy("h1", *exact).orderBy(*[F.col(f"l{i}").asc() for i, _ in loose])
        df = df.withColumn("k", F.row_number().over(w))
        return df.select(*[F.col(c).alias(f"{side}{c}") for c in df.columns])

    t, a = ranked(truth, "t_"), ranked(actual, "a_")
    on = [t["t_h1"] == a["a_h1"], t["t_k"] == a["a_k"]] + [t[f"t_{e}"].eqNullSafe(a[f"a_{e}"]) for e in exact]
    joined = t.join(a, reduce(lambda x, y: x & y, on), "full_outer")
    missing, unexpected = F.col("a_k").isNull(), F.col("t_k").isNull()
    within = [V.within_tolerance(c, F.col(f"t_l{i}"), F.col(f"a_l{i}"), REL_TOL, ABS_TOL, APPROX_TOL, APPROX_MIN)
              for i, c in loose]
    bad = ~missing & ~unexpected & ~reduce(lambda x, y: x & y, within)
    got = joined.agg(*[F.sum(w.cast("long")).alias(n) for n, w in
                       (("m", missing), ("u", unexpected), ("b", bad))]).collect()[0]
    res.missing += got["m"] or 0
    res.unexpected += got["u"] or 0
    res.mismatched += got["b"] or 0
    order = [f"t_{e}" for e in exact] + [f"t_l{i}" for i, _ in loose]
    for count, where, side, into in ((got["m"], missing, "t_", res.missing_examples),
                                     (got["u"], unexpected, "a_", res.unexpected_examples)):
        need = k - len(into)
        if count and need > 0:
            rows = joined.filter(where).orderBy(*[o.replace("t_", side, 1) for o in order]) \
                .select(*[F.col(f"{side}r{i}").alias(f"r{i}") for i in range(len(cols))]).limit(need)
            into += [{c.name: _show(row[f"r{i}"]) for i, c in enumerate(cols)} for row in rows.toArrow().to_pylist()]
    need = k - len(res.mismatch_examples)
    if got["b"] and need > 0:
        picked = [F.col(f"t_r{i}").alias(f"t{i}") for i in range(len(cols))] + \
                 [F.col(f"a_r{i}").alias(f"a{i}") for i, _ in loose]
        rows = joined.filter(bad).orderBy(*order).select(*picked).limit(need)
        is_loose = {i for i, _ in loose}
        for row in rows.toArrow().to_pylist():
            res.mismatch_examples.append({
                c.name: (f"{_show(row[f't{i}'])!r} -> {_show(row[f'a{i}'])!r}" if i in is_loose
                         else _show(row[f"t{i}"])) for i, c in enumerate(cols)})
