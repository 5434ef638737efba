"""Opening Delta tables and the small writes of the control plane (event log, empty tables)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from .. import fs
from ..errors import FlowError
from .log import DataFile

# zstd everywhere: smaller than snappy for the same speed class, and what the activity-log seeds ask for.
WRITER = WriterProperties(compression="ZSTD", compression_level=3)
MAX_RETRIES = 5


def open_table(path, version: int | None = None) -> DeltaTable | None:
    """The Delta table at a local path or an object-store URI (None when there is none)."""
    try:
        return DeltaTable(str(path), version=version, storage_options=fs.delta_options(path))
    except TableNotFoundError:
        return None


def exists(path: str | Path) -> bool:
    return open_table(path) is not None


def current_version(path: str | Path) -> int:
    """The table's latest version, -1 when it does not exist."""
    table = open_table(path)
    return -1 if table is None else table.version()


def read_arrow(path: str | Path, columns: list[str] | None = None) -> pa.Table | None:
    """A whole table in memory: for small control-plane tables, tests and verification only."""
    table = open_table(path)
    return None if table is None else table.to_pyarrow_table(columns=columns)


def write_small(path: str | Path, data: pa.Table, *, mode: str = "append", metadata: dict | None = None) -> None:
    """Append (or overwrite) a small Arrow table, e.g. event-log rows; not for batch data."""
    commit = CommitProperties(custom_metadata={k: str(v) for k, v in (metadata or {}).items()})
    retry(lambda: write_deltalake(str(path), to_delta_types(data), mode=mode,
                                  schema_mode="overwrite" if mode == "overwrite" else "merge",
                                  writer_properties=WRITER, commit_properties=commit,
                                  storage_options=fs.delta_options(path)), path)


def to_delta_types(data: pa.Table) -> pa.Table:
    """Delta stores timestamps as microseconds in UTC; engines may stage nanoseconds or naive values."""
    fields, changed = [], False
    for f in data.schema:
        if pa.types.is_timestamp(f.type) and (f.type.unit != "us" or f.type.tz is None):
            fields.append(pa.field(f.name, pa.timestamp("us", tz="UTC"), f.nullable))
            changed = True
        else:
            fields.append(f)
    return data.cast(pa.schema(fields)) if changed else data


def retry(operation, path) -> None:
    """Appends never conflict; a commit racing another writer may, and is retried whole."""
    for attempt in range(MAX_RETRIES):
        try:
            operation()
            return
        except CommitFailedError as exc:
            if attempt == MAX_RETRIES - 1:
                raise FlowError(f"could not commit to Delta table {path} after {MAX_RETRIES} attempts: {exc}") from exc
            time.sleep(0.1 * 2 ** attempt)


def arrow_schema(table: DeltaTable) -> pa.Schema:
    """A table's schema as a pyarrow schema (delta-rs hands out arro3 objects)."""
    return pa.schema(table.schema().to_arrow())


def add_actions(table: DeltaTable) -> list[dict]:
    """The table's current data files (path, size_bytes, num_records, partition.*, min.*, max.*)."""
    return pa.table(table.get_add_actions(flatten=True)).to_pylist()


def data_files(root, table: DeltaTable, actions: list[dict] | None = None) -> list[DataFile]:
    """The table's data files (or those of some of its add actions) as an engine reads them:
    absolute paths under `root`, partition values from the log."""
    parts = table.metadata().partition_columns
    return [DataFile(os.path.join(str(root), a["path"]), {p: a.get(f"partition.{p}") for p in parts},
                     int(a.get("size_bytes") or 0), a.get("num_records"))
            for a in (add_actions(table) if actions is None else actions)]
