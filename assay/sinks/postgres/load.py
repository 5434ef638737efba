"""A committed Delta batch upserted into its mirror, exactly once: one transaction as the writer
role, rows COPied into a temporary staging table and merged by key, keys that left the Delta
table deleted, and the batch recorded in the bookkeeping with them."""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from ...errors import FlowError
from . import catalog
from .bookkeeping import BOOKKEEPING_TABLE, Bookkeeping
from .config import check_name
from .connection import Database
from .rows import stream_csv

STAGE = "_assay_stage"


@dataclass(frozen=True)
class LoadResult:
    """What a load did: rows read from the files and written, or skipped (batch already recorded)."""
    table: str
    rows: int
    skipped: bool
    seconds: float
    app_id: str | None = None
    batch_id: int | None = None
    deleted: int = 0                  # rows deleted by key (upsert_batch's delete_files)


def upsert_batch(db: Database, bookkeeping: Bookkeeping, name: str, files: Iterable[Any], keys: Iterable[str],
                 app_id: str, batch_id: int, *, delete_files: Iterable[Any] = (),
                 previous_batch: Any = ...) -> LoadResult:
    """Upsert the rows of one committed Delta batch into `<schema>.<name>`, exactly once.

    `files` are the batch's Parquet files (paths, or objects with `.path` and
    `.partition_values`, like the runtime's Delta data files), read lazily one after the other.
    One transaction, as the writer role: COPY into a temporary staging table, `INSERT …
    ON CONFLICT (keys) DO UPDATE` every column (a column the files lack becomes NULL, as in
    the Delta row), and a row (table, app_id, batch_id) in the bookkeeping table. A batch
    already recorded is skipped without reading its files. Rows with the same key twice in one
    batch are refused by PostgreSQL ("cannot affect row a second time").

    `delete_files`: Parquet files of key columns whose rows are deleted in the same
    transaction, before the upsert (keys that left the Delta table). `previous_batch`: the
    batch this one follows (None: the first); when given, the load refuses to apply on top of
    anything else (another loader moved the table meanwhile), with a FlowError.
    """
    schema, table, qualified = db.qualified(name)
    keys = tuple(check_name(k, f"key column of {qualified}", FlowError) for k in keys)
    if not keys:
        raise FlowError(f"upsert into {qualified} needs key columns")
    if not isinstance(app_id, str) or not app_id or len(app_id) > 512:
        raise FlowError(f"upsert into {qualified}: app_id must be a non-empty string, got {app_id!r}")
    if not isinstance(batch_id, int) or isinstance(batch_id, bool) or batch_id < 0:
        raise FlowError(f"upsert into {qualified}: batch_id must be an integer ≥ 0, got {batch_id!r}")
    where = f" (batch {batch_id} of {app_id})"
    started = time.monotonic()
    with db.failures("upsert", qualified, where):
        conn = db.connection()
        with conn.transaction():
            db.begin(conn, db.config.roles.writer, schema, table)
            if not bookkeeping.exists(conn):
                raise FlowError(f"upsert into {qualified}{where}: the bookkeeping table "
                                f"{db.config.state_schema}.{BOOKKEEPING_TABLE} is missing: call ensure_table first")
            if bookkeeping.recorded(conn, schema, table, app_id, batch_id):
                return LoadResult(qualified, 0, True, time.monotonic() - started, app_id, batch_id)
            if previous_batch is not ...:
                last = bookkeeping.last(conn, schema, table, app_id)
                if last != previous_batch:
                    raise FlowError(f"upsert into {qualified}{where}: it follows batch {previous_batch}, but "
                                    f"PostgreSQL holds batch {last} of {app_id}: another loader moved the "
                                    "table meanwhile; nothing was applied, the next run starts from there")
            existing = catalog.columns(conn, schema, table)
            if existing is None:
                raise FlowError(f"upsert into {qualified}{where}: the table does not exist: call ensure_table first")
            pk = catalog.primary_key(conn, schema, table)
            if pk != keys:
                raise FlowError(f"upsert into {qualified}{where}: its primary key is ({', '.join(pk) or 'none'}), "
                                f"not ({', '.join(keys)})")
            columns = [c for c, _ in existing]
            ids = [sql.Identifier(c) for c in columns]
            target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            stage = sql.Identifier(STAGE)
            deleted = _delete_keys(conn, target, keys, delete_files, qualified, db.config.batch_rows)
            conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(stage, target))
            with conn.cursor() as cur:
                with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                        stage, sql.SQL(", ").join(ids))) as copy:
                    rows = stream_csv(copy, files, columns, qualified, db.config.batch_rows)
            updates = [c for c in columns if c not in keys]
            action = (sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates))
                if updates else sql.SQL("DO NOTHING"))
            conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                target, sql.SQL(", ").join(ids), sql.SQL(", ").join(ids), stage,
                sql.SQL(", ").join(map(sql.Identifier, keys)), action))
            bookkeeping.record(conn, schema, table, app_id, batch_id, rows)
    return LoadResult(qualified, rows, False, time.monotonic() - started, app_id, batch_id, deleted)


def _delete_keys(conn, target, keys: tuple[str, ...], files: Iterable[Any], qualified: str, batch_rows: int) -> int:
    """Delete the rows whose keys are in `files` (COPY into a temporary table, one DELETE … USING)."""
    files = list(files)
    if not files:
        return 0
    stage = sql.Identifier(STAGE + "_delete")
    ids = [sql.Identifier(k) for k in keys]
    conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        stage, sql.SQL(", ").join(ids), target))
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                stage, sql.SQL(", ").join(ids))) as copy:
            stream_csv(copy, files, list(keys), qualified, batch_rows)
    match = sql.SQL(" AND ").join(sql.SQL("t.{0} = d.{0}").format(k) for k in ids)
    return conn.execute(sql.SQL("DELETE FROM {} t USING (SELECT DISTINCT * FROM {}) d WHERE {}").format(
        target, stage, match)).rowcount
