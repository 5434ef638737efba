"""The PostgreSQL sink the runtime and the commands use: one database, one schema of mirrored
tables. Each of its jobs lives in its own module; this class holds the connection they share."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from ...errors import ConfigError
from . import load, replace, rows, schema
from .bookkeeping import Bookkeeping
from .config import PostgresConfig
from .connection import Database
from .load import LoadResult
from .schema import TableChange


class PostgresSink:
    """One PostgreSQL database mirroring Delta tables into one schema. Not thread-safe: one per thread."""

    def __init__(self, config: PostgresConfig | Mapping[str, Any]):
        self.db = Database(config)
        self.config = self.db.config
        self.bookkeeping = Bookkeeping(self.config)

    def __enter__(self) -> "PostgresSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def ensure_table(self, name: str, arrow_schema: pa.Schema, keys: Iterable[str] = ()) -> TableChange:
        """Create `<schema>.<name>` with a primary key on `keys`, or add the columns it lacks (schema.py)."""
        return schema.ensure_table(self.db, self.bookkeeping, name, arrow_schema, keys)

    def upsert_batch(self, name: str, files: Iterable[Any], keys: Iterable[str], app_id: str, batch_id: int, *,
                     delete_files: Iterable[Any] = (), previous_batch: Any = ...) -> LoadResult:
        """Upsert the rows of one committed Delta batch into `<schema>.<name>`, exactly once (load.py)."""
        return load.upsert_batch(self.db, self.bookkeeping, name, files, keys, app_id, batch_id,
                                 delete_files=delete_files, previous_batch=previous_batch)

    def replace_table(self, name: str, files: Iterable[Any], keys: Iterable[str] = (), *,
                      schema: pa.Schema | None = None, app_id: str | None = None,
                      batch_id: int | None = None, method: str = "swap") -> LoadResult:
        """Replace `<schema>.<name>` with the rows of `files`, atomically (replace.py)."""
        return replace.replace_table(self.db, self.bookkeeping, name, files, keys, schema=schema, app_id=app_id,
                                     batch_id=batch_id, method=method)

    def read_table(self, name: str, order_by: Iterable[str] = ()) -> pa.Table:
        """The rows of `<schema>.<name>` as an Arrow table (rows.py)."""
        return rows.read_table(self.db, name, order_by)

    def loaded_batches(self, name: str, app_id: str) -> list[int]:
        """The batch ids of `app_id` already loaded into `name`, ascending (to catch PostgreSQL up)."""
        schema_name, table, qualified = self.db.qualified(name)
        with self.db.failures("bookkeeping read", qualified):
            conn = self.db.connection()
            if not self.bookkeeping.exists(conn):
                return []
            return self.bookkeeping.batches(conn, schema_name, table, app_id)

    def last_batch(self, name: str, app_id: str) -> int | None:
        """The greatest batch id of `app_id` loaded into `name` (None: none yet): where a catch-up starts."""
        schema_name, table, qualified = self.db.qualified(name)
        with self.db.failures("bookkeeping read", qualified):
            conn = self.db.connection()
            if not self.bookkeeping.exists(conn):
                return None
            return self.bookkeeping.last(conn, schema_name, table, app_id)


def sink_for(spec) -> PostgresSink:
    """The sink of assay.yml's `postgres:` section (its password resolved from the environment)."""
    if not spec.postgres:
        raise ConfigError(f"pipeline '{spec.name}' publishes tables to PostgreSQL, but assay.yml has no 'postgres:' "
                          "section (host, port, dbname, user, password: ${env:…}; docs/postgres.md)")
    try:
        return PostgresSink(dict(spec.postgres))
    except ConfigError as exc:
        raise ConfigError(f"assay.yml: {exc}") from None
