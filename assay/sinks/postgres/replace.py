"""A materialized view's mirror replaced whole, atomically: swapped for a new table built beside
it (readers see the old rows until the commit, the new ones after), or emptied and refilled in
place (never waits for readers)."""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

import pyarrow as pa
from psycopg import sql

from ...errors import FlowError
from . import catalog
from .bookkeeping import Bookkeeping
from .config import check_name
from .connection import Database
from .load import LoadResult
from .roles import copy_grants
from .rows import file_path, open_parquet, stream_csv
from .schema import aux_name, create_table_sql, ensure_table, planned_columns


def replace_table(db: Database, bookkeeping: Bookkeeping, name: str, files: Iterable[Any], keys: Iterable[str] = (),
                  *, schema: pa.Schema | None = None, app_id: str | None = None, batch_id: int | None = None,
                  method: str = "swap") -> LoadResult:
    """Replace `<schema>.<name>` with the rows of `files`, atomically (a materialized view).

    method="swap" (default): one transaction as the owner role: create `<name>__assay_new`
    with the primary key, COPY the files into it, give it the old table's grants and comment,
    drop the old table and rename the new one into its place. Readers never see it empty or
    half-loaded: until the commit they read the old table, after it the new one; a reader
    mid-query holds the swap back until it finishes (at most config.lock_timeout, then the
    replacement fails and is rolled back). One PostgreSQL caveat (docs/postgres.md): a
    REPEATABLE READ or SERIALIZABLE transaction whose snapshot predates the swap and that
    first reads the table after it sees it empty, as with TRUNCATE.

    method="in_place": one transaction as the writer role: `DELETE` every row, then COPY the
    files into the same table. Safe at every isolation level and never waits for readers;
    the old rows are left to autovacuum. New columns are added first by ensure_table.

    `schema` defaults to the first file's Parquet schema (pass the Delta schema when files
    carry partition values or when there may be no file). With app_id/batch_id, the
    replacement is recorded like an upsert and skipped when already recorded.
    """
    if method not in ("swap", "in_place"):
        raise FlowError(f"replace of {name}: method must be 'swap' or 'in_place', got {method!r}")
    schema_name, table, qualified = db.qualified(name)
    keys = tuple(check_name(k, f"key column of {qualified}", FlowError) for k in keys)
    if (app_id is None) != (batch_id is None):
        raise FlowError(f"replace of {qualified}: give both app_id and batch_id, or neither")
    where = f" (batch {batch_id} of {app_id})" if app_id is not None else ""
    files = iter(files)
    first = next(files, None)
    started = time.monotonic()
    with db.failures("replace", qualified, where):
        if schema is None and first is not None:
            schema = open_parquet(file_path(first)[0]).schema_arrow
        if method == "in_place":
            return _replace_in_place(db, bookkeeping, schema_name, table, qualified, where, first, files, keys,
                                     schema, app_id, batch_id, started)
        conn = db.connection()
        with conn.transaction():
            db.begin(conn, db.config.roles.owner, schema_name, table)
            if app_id is not None:
                bookkeeping.create(conn)
                if bookkeeping.recorded(conn, schema_name, table, app_id, batch_id):
                    return LoadResult(qualified, 0, True, time.monotonic() - started, app_id, batch_id)
            old = catalog.columns(conn, schema_name, table)
            if schema is not None:
                columns, keys = planned_columns(schema, keys, qualified)
            elif old is not None:
                columns = old
            else:
                raise FlowError(f"replace of {qualified}: no file and no schema to create the table from")
            catalog.create_schema(conn, schema_name)
            new = aux_name(table, "__assay_new")
            ident_schema, ident_new = sql.Identifier(schema_name), sql.Identifier(new)
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(ident_schema, ident_new))
            conn.execute(create_table_sql(schema_name, new, columns, keys, aux_name(new, "_pkey")))
            names = [c for c, _ in columns]
            with conn.cursor() as cur:
                with cur.copy(sql.SQL("COPY {}.{} ({}) FROM STDIN (FORMAT csv)").format(
                        ident_schema, ident_new, sql.SQL(", ").join(map(sql.Identifier, names)))) as copy:
                    rows = stream_csv(copy, _with_first(first, files), names, qualified, db.config.batch_rows)
            ident_table = sql.Identifier(table)
            if old is not None:
                copy_grants(conn, schema_name, table, new)
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (db.config.lock_timeout,))
                conn.execute(sql.SQL("DROP TABLE {}.{}").format(ident_schema, ident_table))
            conn.execute(sql.SQL("ALTER TABLE {}.{} RENAME TO {}").format(ident_schema, ident_new, ident_table))
            if keys:
                conn.execute(sql.SQL("ALTER TABLE {}.{} RENAME CONSTRAINT {} TO {}").format(
                    ident_schema, ident_table, sql.Identifier(aux_name(new, "_pkey")),
                    sql.Identifier(aux_name(table, "_pkey"))))
            if app_id is not None:
                bookkeeping.record(conn, schema_name, table, app_id, batch_id, rows)
    return LoadResult(qualified, rows, False, time.monotonic() - started, app_id, batch_id)


def _replace_in_place(db: Database, bookkeeping: Bookkeeping, schema_name, table, qualified, where, first, files,
                      keys, schema, app_id, batch_id, started) -> LoadResult:
    if schema is not None:
        ensure_table(db, bookkeeping, table, schema, keys)
    conn = db.connection()
    with conn.transaction():
        db.begin(conn, db.config.roles.writer, schema_name, table)
        if app_id is not None and bookkeeping.recorded(conn, schema_name, table, app_id, batch_id):
            return LoadResult(qualified, 0, True, time.monotonic() - started, app_id, batch_id)
        existing = catalog.columns(conn, schema_name, table)
        if existing is None:
            raise FlowError(f"replace of {qualified}{where}: the table does not exist and there is no "
                            "file or schema to create it from")
        names = [c for c, _ in existing]
        target = sql.SQL("{}.{}").format(sql.Identifier(schema_name), sql.Identifier(table))
        conn.execute(sql.SQL("DELETE FROM {}").format(target))
        with conn.cursor() as cur:
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                    target, sql.SQL(", ").join(map(sql.Identifier, names)))) as copy:
                rows = stream_csv(copy, _with_first(first, files), names, qualified, db.config.batch_rows)
        if app_id is not None:
            bookkeeping.record(conn, schema_name, table, app_id, batch_id, rows)
    return LoadResult(qualified, rows, False, time.monotonic() - started, app_id, batch_id)


def _with_first(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    """The files again, the first one (read early for its schema) included, the rest still lazy."""
    return chain([first] if first is not None else [], rest)
