"""The public API pipelines are written with: `from assay import pipelines as dp`.

Shaped like Spark Declarative Pipelines. Decorators only register definitions; nothing runs at
import time. Inside a query function, `dp.read`, `dp.read_stream`, `dp.read_files` and
`dp.read_kafka` return DataFrames of the current run (or, while the graph is analysed,
empty DataFrames with the right schema).
"""
from __future__ import annotations

import inspect
import os
from dataclasses import replace
from typing import Any, Callable

from .definitions import (DROP, FAIL, MATERIALIZED_VIEW, STREAMING_TABLE, TEMPORARY_VIEW, WARN, AutoCdc, Dataset,
                          Dedupe, Expectation, Flow, Registry, SourceLocation, auto_cdc_definition)
from .errors import GraphError
from .pii import pseudonymize
from .quality import rule_problem
from .registry import current_flow_context, current_registry
from .sinks.declaration import postgres_properties, with_publish

_EXPECTATIONS_ATTR = "__assay_expectations__"
_DEDUPE_ATTR = "__assay_dedupe__"
_DATASET_ATTR = "__assay_dataset__"


# --- registration -------------------------------------------------------------------------

def _caller_location(depth: int = 2) -> SourceLocation:
    frame = inspect.stack()[depth]
    return SourceLocation(os.path.relpath(frame.filename), frame.lineno)


def _func_location(func: Callable) -> SourceLocation:
    try:
        return SourceLocation(os.path.relpath(inspect.getsourcefile(func) or "?"),
                              inspect.getsourcelines(func)[1])
    except (OSError, TypeError):
        return _caller_location(3)


def _split_name(name: str) -> tuple[str | None, str]:
    """'silver.orders' → ('silver', 'orders'); the schema part may be a layer key from assay.yml."""
    if "." in name:
        schema, _, table = name.rpartition(".")
        return schema, table
    return None, name


def _as_tuple(cols) -> tuple[str, ...]:
    if cols is None:
        return ()
    if isinstance(cols, str):
        return (cols,)
    return tuple(cols)


def _dataset_decorator(kind: str, query_function=None, **options):
    def register(func: Callable) -> Callable:
        reg = current_registry()
        schema_name, name = _split_name(options.pop("name", None) or func.__name__)
        location = _func_location(func)
        expectations = tuple(getattr(func, _EXPECTATIONS_ATTR, ()))
        dedupe = getattr(func, _DEDUPE_ATTR, None)
        if kind == TEMPORARY_VIEW and (options.get("quarantine") or dedupe):
            raise GraphError(f"temporary view '{name}' (at {location}) cannot have quarantine or dedupe: "
                             "it is not stored")
        reg.add_dataset(Dataset(
            name=name, kind=kind, location=location, schema_name=schema_name,
            comment=options.get("comment"), schema=options.get("schema"),
            partition_cols=_as_tuple(options.get("partition_cols")),
            cluster_by=_as_tuple(options.get("cluster_by")),
            table_properties=dict(options.get("table_properties") or {}),
            private=bool(options.get("private", False)), quarantine=bool(options.get("quarantine", False)),
            expectations=expectations, dedupe=dedupe))
        reg.add_flow(Flow(name=name, target=name, func=func, location=location))
        setattr(func, _DATASET_ATTR, name)
        return func

    if query_function is not None:
        return register(query_function)
    return register


def table(query_function=None, *, name: str | None = None, comment: str | None = None, schema=None,
          partition_cols=None, cluster_by=None, table_properties: dict | None = None,
          private: bool = False, quarantine: bool = False, publish: dict | None = None):
    """A streaming table: each run processes only the input not seen by an earlier run.
    `publish=dp.postgres(keys=[...])` mirrors it into PostgreSQL after each commit."""
    return _dataset_decorator(STREAMING_TABLE, query_function, name=name, comment=comment, schema=schema,
                              partition_cols=partition_cols, cluster_by=cluster_by,
                              table_properties=with_publish(table_properties, publish),
                              private=private, quarantine=quarantine)


def materialized_view(query_function=None, *, name: str | None = None, comment: str | None = None, schema=None,
                      partition_cols=None, cluster_by=None, table_properties: dict | None = None,
                      private: bool = False, quarantine: bool = False, publish: dict | None = None,
                      refresh: str = "auto"):
    """A table recomputed from its inputs when they changed: not at all when nothing it reads
    changed, by merging the rows appended to its input when its query is a decomposable aggregate,
    else whole (each refresh logs which, and why). `refresh="incremental"` makes a refresh that
    would be whole fail with the reason instead (SQL: TBLPROPERTIES ('assay.refresh' = 'incremental')).
    `publish=dp.postgres(keys=[...])` replaces its PostgreSQL mirror after each refresh."""
    if refresh not in ("auto", "incremental"):
        raise GraphError(f"materialized_view(refresh={refresh!r}): refresh is 'auto' or 'incremental'")
    properties = with_publish(table_properties, publish)
    if refresh != "auto":
        properties["assay.refresh"] = refresh
    return _dataset_decorator(MATERIALIZED_VIEW, query_function, name=name, comment=comment, schema=schema,
                              partition_cols=partition_cols, cluster_by=cluster_by,
                              table_properties=properties, private=private, quarantine=quarantine)


def postgres(keys=(), *, table: str | None = None, replace: str | None = None) -> dict:
    """Mirror a table into the PostgreSQL database of assay.yml's `postgres:` section.

    keys: its primary key there (required for a streaming table, whose batches are upserted by
    key, rows whose key left the table deleted); table: the PostgreSQL name (default: the
    dataset's, in `postgres.schema`); replace: how a materialized view's refresh replaces it,
    "swap" (default) or "in_place" (docs/postgres.md). Returns table properties (the same keys
    work in SQL: TBLPROPERTIES ('assay.publish' = 'postgres', 'assay.publish.keys' = 'id')).
    """
    return postgres_properties(_as_tuple(keys), table, replace)


def temporary_view(query_function=None, *, name: str | None = None, comment: str | None = None):
    """A named query, not stored, that other datasets of the pipeline can read."""
    return _dataset_decorator(TEMPORARY_VIEW, query_function, name=name, comment=comment)


def create_streaming_table(name: str, *, comment: str | None = None, schema=None, partition_cols=None,
                           cluster_by=None, table_properties: dict | None = None, private: bool = False,
                           expect_all: dict | None = None, expect_all_or_drop: dict | None = None,
                           expect_all_or_fail: dict | None = None, quarantine: bool = False,
                           dedupe: Dedupe | None = None, publish: dict | None = None) -> None:
    """A streaming table whose rows come from one or more `@append_flow`s (or an AUTO CDC flow);
    `publish=dp.postgres(keys=[...])` mirrors it into PostgreSQL after each commit."""
    reg = current_registry()
    schema_name, table_name = _split_name(name)
    expectations = (_expectations(expect_all, WARN) + _expectations(expect_all_or_drop, DROP)
                    + _expectations(expect_all_or_fail, FAIL))
    location = _caller_location()
    reg.errors.extend(f"{location}: {p}" for p in map(rule_problem, expectations) if p)
    reg.add_dataset(Dataset(
        name=table_name, kind=STREAMING_TABLE, location=location, schema_name=schema_name,
        comment=comment, schema=schema, partition_cols=_as_tuple(partition_cols), cluster_by=_as_tuple(cluster_by),
        table_properties=with_publish(table_properties, publish), private=private,
        quarantine=quarantine, expectations=tuple(expectations), dedupe=dedupe))


def append_flow(query_function=None, *, target: str, name: str | None = None, comment: str | None = None):
    """A flow appending its query's new rows to the streaming table `target`."""
    def register(func: Callable) -> Callable:
        reg = current_registry()
        reg.add_flow(Flow(name=name or func.__name__, target=_split_name(target)[1], func=func,
                          location=_func_location(func)))
        return func
    if query_function is not None:
        return register(query_function)
    return register


# --- AUTO CDC ---------------------------------------------------------------------------

def create_auto_cdc_flow(target: str, source: str, keys, sequence_by, *, ignore_null_updates: bool = False,
                         apply_as_deletes=None, apply_as_truncates=None, column_list=None, except_column_list=None,
                         stored_as_scd_type=1, track_history_column_list=None,
                         track_history_except_column_list=None, name: str | None = None, once: bool = False) -> None:
    """Apply the change rows of streaming dataset `source` to `target` (made with
    `create_streaming_table`) by `keys`, in the order of `sequence_by`, whatever order they arrive in.

    SCD type 1 keeps the latest row of each key; type 2 keeps its history with `__START_AT` /
    `__END_AT`. `apply_as_deletes` / `apply_as_truncates` (type 1 only) are SQL conditions or
    Columns; `sequence_by` is a column name, a SQL expression, a list of columns (compared as a
    struct, left to right) or a Column.
    """
    location = _caller_location()
    cdc = auto_cdc_definition(location, source=_split_name(source)[1] if isinstance(source, str) else source,
                              keys=keys, sequence_by=sequence_by, scd_type=stored_as_scd_type,
                              ignore_null_updates=ignore_null_updates, apply_as_deletes=apply_as_deletes,
                              apply_as_truncates=apply_as_truncates, column_list=column_list,
                              except_column_list=except_column_list,
                              track_history_column_list=track_history_column_list,
                              track_history_except_column_list=track_history_except_column_list)
    register_auto_cdc_flow(current_registry(), target, cdc, name, location, once)


def create_auto_cdc_from_snapshot_flow(target: str, source, keys, *, stored_as_scd_type=1,
                                       track_history_column_list=None, track_history_except_column_list=None,
                                       name: str | None = None, once: bool = False) -> None:
    """Keep `target` in step with full snapshots: keys new in a snapshot are inserted, changed rows
    updated (type 2: a new version), keys missing from it deleted (type 2: closed).

    `source` is a dataset of this pipeline (a snapshot each time its table has a new version;
    `__START_AT` / `__END_AT` are that version) or a function `f(latest_version)` returning
    `(DataFrame, version)` for the next snapshot after `latest_version` (None at first), or None
    when there is none yet; versions must increase.
    """
    location = _caller_location()
    if isinstance(source, str):
        snap_source, function = _split_name(source)[1], None
    elif callable(source):
        snap_source, function = None, source
    else:
        raise GraphError(f"create_auto_cdc_from_snapshot_flow (at {location}): source must be a dataset name or a "
                         f"function returning (DataFrame, version), got {type(source).__name__}")
    cdc = auto_cdc_definition(location, source=snap_source, keys=keys, sequence_by=None,
                              scd_type=stored_as_scd_type, track_history_column_list=track_history_column_list,
                              track_history_except_column_list=track_history_except_column_list, snapshot=True,
                              snapshot_function=function)
    register_auto_cdc_flow(current_registry(), target, cdc, name, location, once)


def register_auto_cdc_flow(reg: Registry, target: str, cdc: AutoCdc, name: str | None, location: SourceLocation,
                           once: bool) -> None:
    """Register an AUTO CDC flow (from Python or SQL). Its query is the source's new rows (or, for a
    snapshot flow, the source's whole content); the runtime applies them by key."""
    target = _split_name(target)[1]
    if cdc.snapshot and cdc.snapshot_function is not None:
        function = cdc.snapshot_function

        def query():
            found = function(None)
            if found is None:
                raise GraphError(f"AUTO CDC snapshot flow into '{target}' (at {location}): its source function "
                                 "returned None for the first snapshot; it must return (DataFrame, version)")
            return found[0] if isinstance(found, tuple) else found
    elif cdc.snapshot:
        source = cdc.source
        query = lambda: read(source)    # noqa: E731
    else:
        source = cdc.source
        query = lambda: read_stream(source)    # noqa: E731
    reg.add_flow(Flow(name=name or target, target=target, func=query, location=location, auto_cdc=cdc,
                      once=bool(once)))


# --- expectations and deduplication ------------------------------------------------------

def _expectations(rules: dict | None, action: str) -> list[Expectation]:
    return [Expectation(name, sql, action) for name, sql in (rules or {}).items()]


def _attach(func: Callable, attr: str, value, merge: bool) -> Callable:
    registered = getattr(func, _DATASET_ATTR, None)
    if registered is not None:  # decorator written above @dp.table: update the registered dataset
        reg = current_registry()
        ds = reg.datasets[registered]
        if attr == _EXPECTATIONS_ATTR:
            reg.replace_dataset(replace(ds, expectations=tuple(value) + ds.expectations))
        else:
            reg.replace_dataset(replace(ds, dedupe=value))
        return func
    if merge:
        setattr(func, attr, list(value) + list(getattr(func, attr, [])))
    else:
        setattr(func, attr, value)
    return func


def _expect_decorator(rules: list[Expectation]):
    # Parsed when declared, so that dry-run stops on a rule that would run otherwise than written.
    problems = [p for p in map(rule_problem, rules) if p]
    if problems:
        where = _caller_location(3)                      # the user's @dp.expect… line
        current_registry().errors.extend(f"{where}: {p}" for p in problems)
    return lambda func: _attach(func, _EXPECTATIONS_ATTR, rules, merge=True)


def expect(name: str, constraint: str):
    """Count rows that violate `constraint` (a SQL boolean expression); keep them."""
    return _expect_decorator([Expectation(name, constraint, WARN)])


def expect_or_drop(name: str, constraint: str):
    """Drop rows that violate `constraint` (to `<table>_quarantine` when the table has quarantine=True)."""
    return _expect_decorator([Expectation(name, constraint, DROP)])


def expect_or_fail(name: str, constraint: str):
    """Stop the flow, writing nothing of the batch, when a row violates `constraint`."""
    return _expect_decorator([Expectation(name, constraint, FAIL)])


def expect_all(expectations: dict[str, str]):
    return _expect_decorator(_expectations(expectations, WARN))


def expect_all_or_drop(expectations: dict[str, str]):
    return _expect_decorator(_expectations(expectations, DROP))


def expect_all_or_fail(expectations: dict[str, str]):
    return _expect_decorator(_expectations(expectations, FAIL))


def dedupe(keys, *, event_time: str | None = None, watermark: str | None = None, order_by=None):
    """Keep one row per `keys` across all batches and runs.

    With `event_time` and `watermark` (e.g. "3 minutes"), rows older than the watermark are
    kept apart in `<table>_late` and counted. The surviving row of a duplicate group is the
    smallest by `order_by` (default: event time, then `_source_file`; remaining ties by the row's other columns).
    """
    if (event_time is None) != (watermark is None) and watermark is not None:
        raise GraphError("dedupe: a watermark needs an event_time column")
    spec = Dedupe(keys=_as_tuple(keys), event_time=event_time, watermark=watermark,
                  order_by=_as_tuple(order_by) or None)
    if not spec.keys:
        raise GraphError("dedupe needs at least one key column")
    return lambda func: _attach(func, _DEDUPE_ATTR, spec, merge=False)


# --- reading inside query functions -------------------------------------------------------

def read(name: str):
    """The whole current content of a dataset of this pipeline (a batch DataFrame)."""
    return current_flow_context().read(_split_name(name)[1])


def read_stream(name: str):
    """The rows appended to streaming table `name` since this flow last read it."""
    return current_flow_context().read_stream(_split_name(name)[1])


def read_files(path: str, format: str = "json", *, schema=None, **options):
    """New files of a landing folder (Auto Loader semantics): each file is read once.

    `path` is relative to the pipeline's landing root unless absolute. Options: header,
    delimiter, max_files_per_batch, max_bytes_per_batch, allow_overwrites, include_metadata,
    rescued_data_column, min_file_age, glob; `batch=True` reads every file of the folder on
    each run instead (for reference data read by materialized views).
    """
    return current_flow_context().read_files(path, format, schema, options)


def read_kafka(topics, *, bootstrap_servers: str | None = None, starting_offsets="earliest",
               options: dict | None = None, max_records_per_batch: int | None = None,
               format: str | None = None, schema=None):
    """New messages of Kafka (or Azure Event Hubs) topics, as offset ranges tracked by Assay.

    Without `format`: Spark's Kafka columns (key, value, topic, partition, offset, timestamp,
    timestampType). With format="json" and a schema: the declared columns parsed from the
    value, `_rescued_data` (unknown fields, values that do not fit, a value that is not a JSON
    object, not UTF-8, or a tombstone), then key, topic, partition, offset, timestamp.
    """
    return current_flow_context().read_kafka(topics, bootstrap_servers, starting_offsets, dict(options or {}),
                                      max_records_per_batch, format, schema)


def record_metric(name: str, value) -> None:
    """Record a data-quality metric of this flow in the event log (a number, or a DataFrame to count)."""
    current_flow_context().record_metric(name, value)


def spark():
    """The engine's SparkSession, for createDataFrame, SQL or functions needing a session."""
    return current_flow_context().spark


def config(key: str, default: Any = None) -> Any:
    """A value from the `configuration` section of assay.yml (after the target's overrides)."""
    return current_flow_context().config(key, default)


__all__ = ["table", "materialized_view", "temporary_view", "create_streaming_table", "append_flow",
           "create_auto_cdc_flow", "create_auto_cdc_from_snapshot_flow",
           "expect", "expect_or_drop", "expect_or_fail", "expect_all", "expect_all_or_drop",
           "expect_all_or_fail", "dedupe", "read", "read_stream", "read_files", "read_kafka", "record_metric", "spark",
           "config", "Dedupe", "pseudonymize", "postgres"]
