"""Add actions for data files an engine wrote: size, partition values and statistics from the
Parquet footer alone (no data is read)."""
from __future__ import annotations

import json
import posixpath
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import PurePosixPath
from urllib.parse import unquote

from deltalake.transaction import AddAction

from .. import fs


def partition_values(relative: str, partition_by: tuple[str, ...]) -> dict[str, str | None]:
    """`a=1/b=x/part.parquet` → {a: '1', b: 'x'}; an empty or Hive-default value is NULL."""
    values: dict[str, str | None] = {}
    for segment in PurePosixPath(relative).parent.parts:
        key, sep, value = segment.partition("=")
        if sep and key in partition_by:
            value = unquote(value)
            values[key] = None if value in ("", "__HIVE_DEFAULT_PARTITION__") else value
    return {key: values.get(key) for key in partition_by}


def footer_stats(path, columns: set[str], meta=None) -> dict:
    """Delta statistics (numRecords, minValues, maxValues, nullCount) of top-level columns."""
    meta = meta if meta is not None else fs.parquet_metadata(path)
    stats: dict = {"numRecords": meta.num_rows, "minValues": {}, "maxValues": {}, "nullCount": {}}
    for index in range(meta.num_columns):
        name = meta.schema.column(index).path
        if "." in name or name not in columns:     # nested leaves carry no per-column statistics here
            continue
        lows, highs, nulls, complete = [], [], 0, True
        for group in range(meta.num_row_groups):
            st = meta.row_group(group).column(index).statistics
            if st is None:
                complete = False
                break
            nulls += st.null_count or 0
            if st.has_min_max:
                lows.append(st.min)
                highs.append(st.max)
        if not complete:
            continue
        stats["nullCount"][name] = nulls
        if lows and not isinstance(lows[0], bytes):
            stats["minValues"][name] = _json_value(min(lows))
            stats["maxValues"][name] = _json_value(max(highs))
    return stats


def _json_value(value):
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def add_action(root, relative: str, partition_by: tuple[str, ...], columns: set[str]) -> tuple[AddAction, int]:
    """The add action of `root/relative` and its record count (local or object store: assay.fs)."""
    full = posixpath.join(str(root), relative)
    st = fs.head(full)
    if st is None:
        raise FileNotFoundError(full)
    stats = footer_stats(full, columns)
    return (AddAction(relative, st.size, partition_values(relative, partition_by), st.mtime_ns // 1_000_000,
                      True, json.dumps(stats, default=str)), stats["numRecords"])


def column_max(path, column: str, meta=None):
    """The largest value of a top-level column from a Parquet footer (None: unknown or all NULL)."""
    meta = meta if meta is not None else fs.parquet_metadata(path)
    best = None
    for index in range(meta.num_columns):
        if meta.schema.column(index).path != column:
            continue
        for group in range(meta.num_row_groups):
            st = meta.row_group(group).column(index).statistics
            if st is not None and st.has_min_max and (best is None or st.max > best):
                best = st.max
    return best
