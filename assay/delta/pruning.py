"""Which data files of a Delta table may hold rows with some given values of some columns, from the
statistics of its log (each file's partition values, or its min and max). A view refreshed by
partition reads only those files of its input: when the input's files follow the view's partition
column (drops that arrive in time order and a date partition, the common case), the refresh reads
what the new days touch, not the history.

Only what the statistics decide for sure prunes a file: dates, integers and strings (a string max of
MAX_STRING_STAT characters or more may be a cut prefix, so it bounds nothing); timestamps (stored
at millisecond precision), floats, decimals, NULLs and missing statistics keep the file.
"""
from __future__ import annotations

from datetime import date, datetime

from .table import add_actions

MAX_STRING_STAT = 32


def files_holding(table, columns: list[str], values: list[tuple]) -> list[dict]:
    """The add actions of the files of `table` that may hold a row whose `columns` equal one of
    `values` in each column (an over-approximation: each column is checked on its own)."""
    partitioned = set(table.metadata().partition_columns)
    wanted = [{row[i] for row in values} for i in range(len(columns))]
    return [action for action in add_actions(table)
            if all(_may_hold(action, c, wanted[i], c in partitioned) for i, c in enumerate(columns))]


def _may_hold(action: dict, column: str, wanted: set, partitioned: bool) -> bool:
    if None in wanted:
        return True                           # NULL rows: only a null count could rule them out
    if partitioned:
        value = action.get(f"partition.{column}")
        if value is None:
            return False                      # a file of the NULL partition
        return value in wanted if all(type(w) is type(value) for w in wanted) else True
    low, high = action.get(f"min.{column}"), action.get(f"max.{column}")
    if low is None or high is None:
        return True
    return any(_between(v, low, high) for v in wanted)


def _between(value, low, high) -> bool:
    exact = isinstance(value, (int, str, date)) and not isinstance(value, (bool, datetime))
    if not exact or type(low) is not type(value) or type(high) is not type(value):
        return True
    if isinstance(value, str) and len(high) >= MAX_STRING_STAT:
        return low <= value
    return low <= value <= high
