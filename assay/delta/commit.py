"""Committing files an engine wrote as one Delta commit per table and batch.

Every commit of a batch carries an application transaction (app id, batch id). A rerun after a
crash asks each table whether that batch already landed (`landed`) and skips it, so a batch is
committed once whatever instant the crash hit. delta-rs accepts a repeated transaction without
complaint: the check here is what makes a replay a no-op.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Field, Schema, Transaction
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from .. import fs
from ..errors import FlowError
from .table import arrow_schema, open_table, retry


def no_fence() -> None:
    """The fence of a writer that holds its lock for sure (a local flock): nothing to check."""


@dataclass(frozen=True)
class BatchMark:
    """Which batch of which writer a commit belongs to."""
    app_id: str
    version: int

    def commit_properties(self, metadata: dict | None = None) -> CommitProperties:
        return CommitProperties(app_transactions=[Transaction(app_id=self.app_id, version=self.version)],
                                custom_metadata={k: str(v) for k, v in (metadata or {}).items()})


@dataclass(frozen=True)
class TableState:
    """A table as a batch finds it, its log read once: the table (None when there is none yet)
    and whether the batch already landed there. A batch's tables have one writer under the
    pipeline lock, so the state holds until the batch commits."""
    table: DeltaTable | None
    landed: bool

    @classmethod
    def read(cls, path: str | Path, mark: BatchMark) -> "TableState":
        table = open_table(path)
        done = None if table is None else table.transaction_version(mark.app_id)
        return cls(table, done is not None and done >= mark.version)


def landed(path: str | Path, mark: BatchMark) -> bool:
    """True when the batch `mark` (or a later one of the same writer) is already in the table."""
    return TableState.read(path, mark).landed


def nullable(schema: pa.Schema) -> pa.Schema:
    """Delta columns must accept NULLs from later batches, whatever one batch held."""
    return pa.schema([f.with_nullable(True) for f in schema])


@dataclass
class TableCommit:
    """One table's share of a batch: the files the engine wrote into it, the files it replaces."""
    path: Path
    mark: BatchMark
    schema: pa.Schema                       # the batch's columns (partition columns included)
    adds: list[AddAction] = field(default_factory=list)
    removes: list[RemoveAction] = field(default_factory=list)
    mode: str = "append"                    # append | overwrite
    partition_by: tuple[str, ...] = ()
    properties: dict = field(default_factory=dict)
    description: str | None = None
    metadata: dict = field(default_factory=dict)

    def execute(self, fence: Callable[[], None] = no_fence, state: TableState | None = None) -> bool:
        """Commit, unless this batch already landed; True when a commit was made. `state`: the
        table as the batch read it (read here when not given); `fence` raises when the writer
        may have lost its lock."""
        state = state or TableState.read(self.path, self.mark)
        if state.landed:
            return False
        fence()
        table = state.table
        props = self.mark.commit_properties(self.metadata)
        if table is None:
            create_table_with_add_actions(
                str(self.path), Schema.from_arrow(nullable(self.schema)), self.adds, mode="error",
                partition_by=list(self.partition_by) or None, description=self.description,
                configuration={k: str(v) for k, v in self.properties.items()} or None, commit_properties=props,
                storage_options=fs.delta_options(self.path))
            return True
        table = self._evolve(table)
        retry(lambda: table.create_write_transaction(
            [*self.adds, *self.removes], mode=self.mode, schema=table.schema(),
            partition_by=list(self.partition_by) or None, commit_properties=props), self.path)
        return True

    def _evolve(self, table: DeltaTable) -> DeltaTable:
        """Add the batch's new columns to the table (a metadata commit of its own); a materialized
        view whose columns changed otherwise is reset to the new schema first."""
        current = {f.name: f for f in arrow_schema(table)}
        wanted = nullable(self.schema)
        new = [f for f in wanted if f.name not in current]
        changed = [f.name for f in wanted if f.name in current and not f.type.equals(current[f.name].type)]
        dropped = [name for name in current if name not in wanted.names]
        if self.mode == "overwrite" and (changed or dropped or list(self.partition_by) != table.metadata().partition_columns):
            from deltalake import write_deltalake
            write_deltalake(str(self.path), wanted.empty_table(), mode="overwrite", schema_mode="overwrite",
                            partition_by=list(self.partition_by) or None, storage_options=fs.delta_options(self.path))
            return open_table(self.path)
        if changed:
            raise FlowError(f"table {self.path}: column(s) {', '.join(changed)} changed type "
                            f"({', '.join(f'{n}: {current[n].type} → {wanted.field(n).type}' for n in changed)}); "
                            "Delta cannot widen them in place: cast them in the query, or --full-refresh the table")
        if new:
            table.alter.add_columns([Field.from_arrow(f) for f in new])
            table = open_table(self.path)
        return table


def remove_action(path: str, size: int | None) -> RemoveAction:
    """A data file leaving the table (its partition values are optional in the protocol)."""
    return RemoveAction(path, True, int(time.time() * 1000), size, None)
