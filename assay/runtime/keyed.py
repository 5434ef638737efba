"""The files of a Delta table that hold some keys, and their rows: what a batch that replaces rows by
key (a dedupe replacement, an AUTO CDC merge) removes from the table and rewrites.

The engine reads and probes the files; this process sees only add actions (their statistics) and,
for pruning, the lowest and highest value of a single key column.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..delta.table import add_actions, arrow_schema, data_files


def bounds(values) -> tuple | None:
    """(lowest, highest) of some key values (None when there is none, or they do not compare)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    try:
        return min(present), max(present)
    except TypeError:
        return None


def candidate_files(table, keys: list[str], key_bounds: tuple | None) -> list[dict]:
    """The table's add actions that may hold one of the keys: pruned by each file's min/max of the
    key column when there is a single key and its bounds are known; every file otherwise."""
    actions = add_actions(table)
    if len(keys) != 1 or key_bounds is None:
        return actions
    key, (low, high) = keys[0], key_bounds
    out = []
    for a in actions:
        lo, hi = a.get(f"min.{key}"), a.get(f"max.{key}")
        if lo is None or hi is None:
            out.append(a)
            continue
        try:
            if hi < low or lo > high:
                continue
        except TypeError:
            pass
        out.append(a)
    return out


def read_files(engine, root: str | Path, table, actions: list[dict]):
    """The rows of some of the table's files, by the table's schema (partition values from the log)."""
    return engine.read_delta_files(data_files(root, table, actions), arrow_schema(table),
                                   table.metadata().partition_columns)


def files_holding(engine, root: str | Path, table, keys: list[str], keys_df, key_bounds: tuple | None) -> list[dict]:
    """The add actions of the files that hold at least one row whose `keys` are in `keys_df`: the
    candidates by statistics, then one engine job probing each candidate (a semi-join, limit 1)."""
    from pyspark.sql import functions as F
    candidates = candidate_files(table, keys, key_bounds)
    if not candidates:
        return []
    probes = [engine.read_parquet([os.path.join(str(root), c["path"])]).select(*keys)
              .join(keys_df, keys, "left_semi").select(F.lit(c["path"]).alias("path")).limit(1)
              for c in candidates]
    union = probes[0]
    for probe in probes[1:]:
        union = union.unionAll(probe)
    hit = {r["path"] for r in union.collect()}
    return [c for c in candidates if c["path"] in hit]
