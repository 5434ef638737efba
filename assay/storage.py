"""Delta table operations, committed through delta-rs.

Every write that belongs to a batch carries an application transaction (app id, batch id) in
the same Delta commit as the data. A rerun after a crash asks the table whether that batch
already landed (`landed`), so a batch is written once whatever instant the crash hit. This
works the same whichever engine computed the rows, because the engines only stage Parquet.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from .errors import FlowError

# zstd everywhere: smaller than snappy for the same speed class, and what the activity-log seeds ask for.
WRITER = WriterProperties(compression="ZSTD", compression_level=3)
APPEND_OPERATIONS = {"WRITE", "STREAMING UPDATE", "CREATE TABLE", "CREATE OR REPLACE TABLE"}
MAX_RETRIES = 5


@dataclass(frozen=True)
class BatchMark:
    """Which batch of which writer a commit belongs to."""
    app_id: str
    version: int

    def commit_properties(self, metadata: dict | None = None) -> CommitProperties:
        return CommitProperties(app_transactions=[Transaction(app_id=self.app_id, version=self.version)],
                                custom_metadata={k: str(v) for k, v in (metadata or {}).items()})


def open_table(path: str | Path, version: int | None = None) -> DeltaTable | None:
    try:
        return DeltaTable(str(path), version=version)
    except TableNotFoundError:
        return None


def exists(path: str | Path) -> bool:
    return (Path(path) / "_delta_log").is_dir() and open_table(path) is not None


def current_version(path: str | Path) -> int:
    """The table's latest version, -1 when it does not exist."""
    table = open_table(path)
    return -1 if table is None else table.version()


def landed(path: str | Path, mark: BatchMark) -> bool:
    """True when the batch `mark` (or a later one of the same writer) is already in the table."""
    table = open_table(path)
    if table is None:
        return False
    done = table.transaction_version(mark.app_id)
    return done is not None and done >= mark.version


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


def write(path: str | Path, data: pa.Table, *, mode: str = "append", mark: BatchMark | None = None,
          partition_by: tuple[str, ...] = (), properties: dict | None = None, metadata: dict | None = None,
          description: str | None = None) -> None:
    """Append or overwrite `data` as one Delta commit, skipping it if `mark` already landed."""
    if mark is not None and landed(path, mark):
        return
    data = to_delta_types(data)
    commit = mark.commit_properties(metadata) if mark else CommitProperties(
        custom_metadata={k: str(v) for k, v in (metadata or {}).items()})
    is_new = not exists(path)
    _retry(lambda: write_deltalake(
        str(path), data, mode=mode, partition_by=list(partition_by) or None,
        schema_mode="overwrite" if mode == "overwrite" else "merge",
        configuration={k: str(v) for k, v in (properties or {}).items()} if is_new or mode == "overwrite" else None,
        description=description if is_new else None,
        writer_properties=WRITER, commit_properties=commit), path)


def upsert(path: str | Path, data: pa.Table, keys: tuple[str, ...], *, mark: BatchMark,
           partition_by: tuple[str, ...] = ()) -> None:
    """Replace rows with the same keys and insert the others, as one commit (MERGE)."""
    if landed(path, mark):
        return
    data = to_delta_types(data)
    if not exists(path):
        write(path, data, mark=mark, partition_by=partition_by)
        return
    predicate = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)

    def merge():
        (DeltaTable(str(path)).merge(data, predicate=predicate, source_alias="s", target_alias="t",
                                     writer_properties=WRITER, commit_properties=mark.commit_properties())
         .when_matched_update_all().when_not_matched_insert_all().execute())
    _retry(merge, path)


def _retry(operation, path) -> None:
    """Appends never conflict; a merge racing another writer may, and is retried whole."""
    for attempt in range(MAX_RETRIES):
        try:
            operation()
            return
        except CommitFailedError as exc:
            if attempt == MAX_RETRIES - 1:
                raise FlowError(f"could not commit to Delta table {path} after {MAX_RETRIES} attempts: {exc}") from exc
            time.sleep(0.1 * 2 ** attempt)


def read_arrow(path: str | Path, columns: list[str] | None = None) -> pa.Table | None:
    table = open_table(path)
    return None if table is None else table.to_pyarrow_table(columns=columns)


@dataclass(frozen=True)
class AddedFile:
    path: str
    partition_values: dict
    size: int
    records: int | None = None


@dataclass(frozen=True)
class Commit:
    """What one version of a Delta table's log did to its data files."""
    version: int
    added: list[AddedFile]
    removes: bool
    operation: str | None
    mode: str | None

    @property
    def changes_rows(self) -> bool:
        """True for an overwrite, merge, delete...: anything but appends and data-neutral compaction."""
        if self.operation == "OPTIMIZE":
            return False
        return self.removes or self.mode == "Overwrite" or (
            self.operation is not None and self.operation not in APPEND_OPERATIONS)


def read_commit(path: str | Path, version: int) -> Commit:
    root = Path(path)
    log_file = root / "_delta_log" / f"{version:020d}.json"
    if not log_file.exists():
        raise FlowError(f"the Delta log of {root} no longer has version {version} (log cleaned up?): "
                        "run with --full-refresh for the tables reading it as a stream")
    added, removes, operation, mode = [], False, None, None
    for line in log_file.read_text().splitlines():
        if not line.strip():
            continue
        action = json.loads(line)
        if "add" in action and action["add"].get("dataChange", True):
            add = action["add"]
            stats = json.loads(add["stats"]) if add.get("stats") else {}
            added.append(AddedFile(str(root / unquote(add["path"])), add.get("partitionValues") or {},
                                   int(add.get("size", 0)), stats.get("numRecords")))
        elif "remove" in action and action["remove"].get("dataChange", True):
            removes = True
        elif "commitInfo" in action:
            info = action["commitInfo"]
            operation = info.get("operation")
            mode = (info.get("operationParameters") or {}).get("mode")
    return Commit(version, added, removes, operation, mode)


def last_reset(path: str | Path, up_to_version: int) -> int:
    """The latest version ≤ up_to_version that replaced the table's rows (-1: it never did)."""
    for version in range(up_to_version, -1, -1):
        if read_commit(path, version).changes_rows:
            return version
    return -1


def appended_files(path: str | Path, after_version: int, up_to_version: int,
                   reset_at: int | None = None) -> list[AddedFile]:
    """The data files added by commits (after_version, up_to_version] of an append-only table.

    Raises when one of those commits changed existing rows (overwrite, merge, delete): a
    streaming read of such a table would otherwise silently miss or repeat rows. The commit
    `reset_at` may be an overwrite: a reader starting afresh takes what it wrote as a start.
    """
    files: list[AddedFile] = []
    for version in range(after_version + 1, up_to_version + 1):
        commit = read_commit(path, version)
        if commit.changes_rows and version != reset_at:
            raise FlowError(f"Delta table {path} was changed by {commit.operation or 'a non-append commit'}"
                            f"{' (' + commit.mode + ')' if commit.mode else ''} at version {version}; a streaming "
                            "read needs append-only input: run the reading tables with --full-refresh")
        files.extend(commit.added)
    return files
