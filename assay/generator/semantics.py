"""Stream semantics shared by the truths: watermark lateness and first-survivor deduplication.

All inputs are arrays over landed rows in arrival order (files in path order, rows by
position), which is how the stream was built.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa


def late_rows(dt_ms: np.ndarray, slot: np.ndarray, eligible: np.ndarray, delay_ms: int) -> np.ndarray:
    """Rows behind the watermark of their file.

    wm(f) = max event time of the eligible, non-late rows of all earlier files - delay;
    the first file (and any file before the first eligible row) has no watermark.
    """
    late = np.zeros(len(dt_ms), dtype=bool)
    rows = np.flatnonzero(eligible)
    if len(rows) == 0:
        return late
    r_slot = slot[rows]
    cuts = np.flatnonzero(np.diff(r_slot)) + 1
    high = None
    for part in np.split(rows, cuts):
        t = dt_ms[part]
        if high is not None:
            is_late = t < high - delay_ms
            late[part[is_late]] = True
            t = t[~is_late]
        if len(t):
            m = int(t.max())
            high = m if high is None else max(high, m)
    return late


def first_survivors(keys: list[np.ndarray], order: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """Among `rows`, the one per key with the smallest `order` tuple (lexicographic)."""
    if len(rows) == 0:
        return rows
    cols = [o[rows] for o in reversed(order)] + [k[rows] for k in reversed(keys)]
    idx = rows[np.lexsort(cols)]
    ks = [k[idx] for k in keys]
    new = np.ones(len(idx), dtype=bool)
    new[1:] = np.any([k[1:] != k[:-1] for k in ks], axis=0)
    return np.sort(idx[new])


def ts_us(ms: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """UTC instants at microsecond precision (the truth's timestamp type)."""
    mask = None if valid is None else ~valid
    return pa.array(np.asarray(ms, dtype=np.int64) * 1000, pa.timestamp("us", tz="UTC"), mask=mask)


def dates(ms: np.ndarray) -> pa.Array:
    return pa.array((np.asarray(ms, dtype=np.int64) // 86_400_000).astype(np.int32), pa.date32())


def rule_lists(fails: np.ndarray, rules: tuple[str, ...]) -> pa.Array:
    """Sorted failed-rule names per row, from a boolean (rows x rules) matrix in sorted rule order."""
    code = fails.astype(np.int64) @ (1 << np.arange(len(rules)))
    combos = pa.array([[r for i, r in enumerate(rules) if c >> i & 1] for c in range(1 << len(rules))],
                      pa.list_(pa.string()))
    return combos.take(pa.array(code))
