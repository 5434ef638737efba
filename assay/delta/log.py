"""Reading a Delta table's log: what each commit added or removed, for incremental reads.

Streaming reads of an upstream table take the data files added by the commits of a planned
version range and read them directly, so the age of a version never matters (an engine may
refuse to time-travel behind the latest checkpoint).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import unquote

from .. import fs
from ..errors import FlowError

@dataclass(frozen=True)
class DataFile:
    """One data file of a table: absolute path, partition values, size and record count."""
    path: str
    partition_values: dict = field(default_factory=dict)
    size: int = 0
    records: int | None = None


@dataclass(frozen=True)
class Commit:
    """What one version of a Delta table's log did to its data files."""
    version: int
    added: list[DataFile]
    removes: bool
    operation: str | None
    mode: str | None
    removed: int = 0                 # data files removed (dataChange)
    new_schema: bool = False         # a metaData action: the schema or properties changed
    removed_files: list[DataFile] = field(default_factory=list)
    replaced_rows: str | None = None  # a dedupe replacement's folder of the rows it replaced (relative)

    @property
    def changes_rows(self) -> bool:
        """True when the commit replaced or removed rows (overwrite, merge, delete, replacement);
        appends and commits that touch no data (compaction, ADD COLUMN, properties) are neutral."""
        return self.removes or self.mode == "Overwrite"


def read_commit(path, version: int) -> Commit:
    root = fs.as_path(path)
    log_file = root / "_delta_log" / f"{version:020d}.json"
    try:
        text = fs.read_bytes(log_file).decode("utf-8")
    except FileNotFoundError:
        raise FlowError(f"the Delta log of {root} no longer has version {version} (its log was cleaned up): "
                        "a retry cannot help; run the tables reading it as a stream with --full-refresh") from None
    added, removed, new_schema, operation, mode, replaced_rows = [], [], False, None, None, None
    for line in text.splitlines():
        if not line.strip():
            continue
        action = json.loads(line)
        if "add" in action and action["add"].get("dataChange", True):
            add = action["add"]
            stats = json.loads(add["stats"]) if add.get("stats") else {}
            added.append(DataFile(str(root / unquote(add["path"])), add.get("partitionValues") or {},
                                  int(add.get("size", 0)), stats.get("numRecords")))
        elif "remove" in action and action["remove"].get("dataChange", True):
            remove = action["remove"]
            removed.append(DataFile(str(root / unquote(remove["path"])), remove.get("partitionValues") or {},
                                    int(remove.get("size") or 0)))
        elif "metaData" in action:
            new_schema = True
        elif "commitInfo" in action:
            info = action["commitInfo"]
            operation = info.get("assay.operation") or info.get("operation")
            mode = (info.get("operationParameters") or {}).get("mode")
            replaced_rows = info.get("assay.replaced_rows")
    return Commit(version, added, bool(removed), operation, mode, len(removed), new_schema, removed, replaced_rows)


def last_reset(path, up_to_version: int) -> int:
    """The latest version ≤ up_to_version that replaced the table's rows (-1: it never did)."""
    for version in range(up_to_version, -1, -1):
        if read_commit(path, version).changes_rows:
            return version
    return -1


def appended_files(path, after_version: int, up_to_version: int, *, table: str,
                   reset_at: int | None = None) -> list[DataFile]:
    """The data files added by commits (after_version, up_to_version] of an append-only table.

    Raises when one of those commits changed existing rows (overwrite, merge, delete): a
    streaming read of such a table would otherwise silently miss or repeat rows. The commit
    `reset_at` may be an overwrite: a reader starting afresh takes what it wrote as a start.
    """
    files: list[DataFile] = []
    for version in range(after_version + 1, up_to_version + 1):
        commit = read_commit(path, version)
        if commit.changes_rows and version != reset_at:
            what = commit.operation or "a non-append commit"
            raise FlowError(f"table '{table}' was changed by {what}{' (' + commit.mode + ')' if commit.mode else ''} "
                            f"at version {version} (rows replaced or removed); a streaming read needs append-only "
                            "input, so a retry cannot help: read it with dp.read() in a materialized view, or run "
                            "the reading tables with --full-refresh")
        files.extend(commit.added)
    return files
