"""The definitions a pipeline declares: frozen records, with where in the user's code each was made.

Decorators in `assay.pipelines` only build these and put them in the `Registry` of the enclosing
`assay.registry.registration`; planning them is the job of `assay.graph` and `assay.plan`, running
them that of `assay.runtime`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import GraphError

STREAMING_TABLE = "streaming_table"
MATERIALIZED_VIEW = "materialized_view"
TEMPORARY_VIEW = "temporary_view"

WARN, DROP, FAIL = "warn", "drop", "fail"

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True)
class SourceLocation:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Expectation:
    name: str
    sql: str
    action: str  # warn | drop | fail


@dataclass(frozen=True)
class Dedupe:
    """Deduplication the runtime enforces across batches and runs.

    keys: the columns that identify a row. event_time + watermark: rows older than the
    watermark go to `<table>_late`. order_by: how the surviving row of a duplicate group is
    chosen (smallest first); by default the event time, then `_source_file`; remaining ties by the row's other columns.
    """
    keys: tuple[str, ...]
    event_time: str | None = None
    watermark: str | None = None
    order_by: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AutoCdc:
    """How an AUTO CDC flow applies changes to its target (Databricks' `create_auto_cdc_flow`).

    keys identify a row; sequence_by (a column name, a SQL expression, a list of columns taken as
    a struct, or a Column) orders the changes of one key; apply_as_deletes / apply_as_truncates
    are SQL conditions (or Columns) marking deletes / truncates; column_list / except_column_list
    choose the target's columns; type 2 keeps history, new versions opening only on changes of the
    tracked columns (track_history_column_list / track_history_except_column_list; default all).
    A snapshot flow (`create_auto_cdc_from_snapshot_flow`) derives the changes by comparing each
    snapshot with the previous one; `snapshot_function` is its function source, if any.
    """
    source: str | None
    keys: tuple[str, ...]
    sequence_by: Any = None
    scd_type: int = 1
    ignore_null_updates: bool = False
    apply_as_deletes: Any = None
    apply_as_truncates: Any = None
    column_list: tuple[str, ...] | None = None
    except_column_list: tuple[str, ...] | None = None
    track_history_column_list: tuple[str, ...] | None = None
    track_history_except_column_list: tuple[str, ...] | None = None
    snapshot: bool = False
    snapshot_function: Callable | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str
    location: SourceLocation
    schema_name: str | None = None      # the storage schema (e.g. "01_bronze"); None: the default
    comment: str | None = None
    schema: Any = None                  # DDL string or StructType the output must have
    partition_cols: tuple[str, ...] = ()
    cluster_by: tuple[str, ...] = ()
    table_properties: dict = field(default_factory=dict)
    private: bool = False
    quarantine: bool = False
    expectations: tuple[Expectation, ...] = ()
    dedupe: Dedupe | None = None

    @property
    def is_table(self) -> bool:
        return self.kind in (STREAMING_TABLE, MATERIALIZED_VIEW)


@dataclass(frozen=True)
class Flow:
    """A query writing into a dataset. A streaming table may have several (append flows)."""
    name: str
    target: str
    func: Callable[[], Any] | None
    location: SourceLocation
    sql: str | None = None              # for flows defined in SQL files
    auto_cdc: AutoCdc | None = None     # an AUTO CDC flow: changes applied by key, not appended
    once: bool = False                  # runs in its first run only (again after a full refresh)

    @property
    def label(self) -> str:
        return self.name if self.name == self.target else f"{self.target} ← {self.name}"


class Registry:
    """Every definition of one pipeline, in the order they were declared."""

    def __init__(self) -> None:
        self.datasets: dict[str, Dataset] = {}
        self.flows: dict[str, Flow] = {}
        self.errors: list[str] = []

    def add_dataset(self, ds: Dataset) -> None:
        check_name(ds.name, ds.location)
        if ds.name in self.datasets:
            first = self.datasets[ds.name].location
            self.errors.append(f"dataset '{ds.name}' is defined twice: at {first} and at {ds.location}")
            return
        self.datasets[ds.name] = ds

    def replace_dataset(self, ds: Dataset) -> None:
        self.datasets[ds.name] = ds

    def add_flow(self, flow: Flow) -> None:
        check_name(flow.name, flow.location)
        if flow.name in self.flows:
            first = self.flows[flow.name].location
            self.errors.append(f"flow '{flow.name}' is defined twice: at {first} and at {flow.location}")
            return
        self.flows[flow.name] = flow

    def flows_into(self, target: str) -> list[Flow]:
        return [f for f in self.flows.values() if f.target == target]


def check_name(name: str, where: SourceLocation | None = None) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        at = f" (at {where})" if where else ""
        raise GraphError(
            f"'{name}' is not a valid dataset name{at}: use letters, digits and underscores, "
            "starting with a letter or underscore")


def _column_names(value, what: str, location: SourceLocation) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else tuple(value)
    for n in names:
        if not isinstance(n, str) or not n:
            raise GraphError(f"AUTO CDC flow (at {location}): {what} must be column names, got {n!r}")
    return names


def auto_cdc_definition(location: SourceLocation, *, source, keys, sequence_by, scd_type, ignore_null_updates=False,
              apply_as_deletes=None, apply_as_truncates=None, column_list=None, except_column_list=None,
              track_history_column_list=None, track_history_except_column_list=None, snapshot=False,
              snapshot_function=None) -> AutoCdc:
    """Check an AUTO CDC declaration, from Python or SQL, and build its record (GraphError naming the line)."""
    def fail(message: str):
        raise GraphError(f"AUTO CDC flow (at {location}): {message}")
    if str(scd_type) not in ("1", "2"):
        fail(f"stored_as_scd_type must be 1 or 2, got {scd_type!r}")
    scd = int(str(scd_type))
    if not snapshot and not isinstance(source, str):
        fail(f"source must be the name of a streaming dataset, got {type(source).__name__}")
    keys = _column_names(keys, "keys", location)
    if not keys:
        fail("keys must name at least one column")
    if not snapshot and (sequence_by is None or (isinstance(sequence_by, (list, tuple)) and not sequence_by)):
        fail("sequence_by is required (a column, a SQL expression or a list of columns)")
    if isinstance(sequence_by, (list, tuple)):
        sequence_by = _column_names(sequence_by, "sequence_by", location)
    if column_list is not None and except_column_list is not None:
        fail("give column_list or except_column_list, not both")
    if track_history_column_list is not None and track_history_except_column_list is not None:
        fail("give track_history_column_list or track_history_except_column_list, not both")
    if scd == 1 and (track_history_column_list is not None or track_history_except_column_list is not None):
        fail("track_history_column_list / track_history_except_column_list need stored_as_scd_type=2")
    if scd == 2 and apply_as_truncates is not None:
        fail("apply_as_truncates is only supported with stored_as_scd_type=1")
    for what, cond in (("apply_as_deletes", apply_as_deletes), ("apply_as_truncates", apply_as_truncates)):
        if isinstance(cond, str) and not cond.strip():
            fail(f"{what} is an empty condition")
    return AutoCdc(source=source, keys=keys, sequence_by=sequence_by, scd_type=scd,
                   ignore_null_updates=bool(ignore_null_updates), apply_as_deletes=apply_as_deletes,
                   apply_as_truncates=apply_as_truncates,
                   column_list=_column_names(column_list, "column_list", location),
                   except_column_list=_column_names(except_column_list, "except_column_list", location),
                   track_history_column_list=_column_names(track_history_column_list, "track_history_column_list",
                                                           location),
                   track_history_except_column_list=_column_names(track_history_except_column_list,
                                                                  "track_history_except_column_list", location),
                   snapshot=snapshot, snapshot_function=snapshot_function)
