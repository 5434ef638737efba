"""Tables shaped by the Delta schema: the columns and primary key a mirrored table gets, created
when missing, new columns added; a retyped column or a changed key is refused, never rebuilt
behind the user's back."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
import pyarrow as pa
from psycopg import sql

from ...errors import FlowError
from . import catalog
from .bookkeeping import Bookkeeping
from .config import check_name
from .connection import Database
from .typemap import postgres_type


@dataclass(frozen=True)
class TableChange:
    """What ensure_table did."""
    table: str
    created: bool
    added_columns: tuple[str, ...] = ()


def aux_name(name: str, suffix: str) -> str:
    """name + suffix, shortened with a hash when it would pass PostgreSQL's 63-byte limit."""
    if len(name) + len(suffix) <= 63:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:63 - len(suffix) - 9]}_{digest}{suffix}"


def planned_columns(arrow_schema: pa.Schema, keys: Iterable[str], table: str) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    """(name, PostgreSQL type) of each column of a Delta schema, and the checked key columns."""
    if not isinstance(arrow_schema, pa.Schema):
        raise FlowError(f"ensure_table({table}) needs a pyarrow.Schema, got {type(arrow_schema).__name__}")
    columns = [(check_name(f.name, f"column name of {table}", FlowError), postgres_type(f, table)) for f in arrow_schema]
    names = [c for c, _ in columns]
    if len(set(n.lower() for n in names)) != len(names):
        raise FlowError(f"{table} has columns whose names differ only by case: {names}")
    keys = tuple(check_name(k, f"key column of {table}", FlowError) for k in keys)
    missing = [k for k in keys if k not in names]
    if missing:
        raise FlowError(f"key column(s) {', '.join(missing)} of {table} are not in its schema ({', '.join(names)})")
    return columns, keys


def create_table_sql(schema: str, table: str, columns: list[tuple[str, str]],
                     keys: tuple[str, ...], constraint: str) -> sql.Composed:
    parts = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns]
    if keys:
        parts.append(sql.SQL("CONSTRAINT {} PRIMARY KEY ({})").format(
            sql.Identifier(constraint), sql.SQL(", ").join(map(sql.Identifier, keys))))
    return sql.SQL("CREATE TABLE {}.{} ({})").format(
        sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(parts))


def ensure_table(db: Database, bookkeeping: Bookkeeping, name: str, arrow_schema: pa.Schema,
                 keys: Iterable[str] = ()) -> TableChange:
    """Create `<schema>.<name>` with a primary key on `keys`, or add the columns it lacks.

    Idempotent and cheap when nothing changed (one catalog read, no role switch). A column
    whose type differs from the mapped type, or a different primary key, is an error: both
    need a full refresh of the mirror, which Assay does not do behind your back. Columns the
    Delta schema no longer has are left in place (NULL for new rows).
    """
    schema, table, qualified = db.qualified(name)
    columns, keys = planned_columns(arrow_schema, keys, qualified)
    with db.failures("DDL", qualified):
        conn = db.connection()
        if plan_ddl(conn, schema, table, columns, keys) is None and bookkeeping.exists(conn):
            return TableChange(qualified, created=False)
        with conn.transaction():
            db.begin(conn, db.config.roles.owner, schema, table)
            bookkeeping.create(conn)
            plan = plan_ddl(conn, schema, table, columns, keys)   # again, under the lock
            if plan is None:
                return TableChange(qualified, created=False)
            if plan == "create":
                catalog.create_schema(conn, schema)
                conn.execute(create_table_sql(schema, table, columns, keys, aux_name(table, "_pkey")))
                return TableChange(qualified, created=True, added_columns=tuple(c for c, _ in columns))
            for column, pg in plan:
                conn.execute(sql.SQL("ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS {} {}").format(
                    sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column), sql.SQL(pg)))
            return TableChange(qualified, created=False, added_columns=tuple(c for c, _ in plan))


def plan_ddl(conn: psycopg.Connection, schema: str, table: str, columns: list[tuple[str, str]],
             keys: tuple[str, ...]):
    """None: nothing to do; "create"; or the list of (column, type) to add."""
    existing = catalog.columns(conn, schema, table)
    if existing is None:
        return "create"
    have = dict(existing)
    wrong = [f"{c} is {have[c]} in PostgreSQL but {t} in Delta" for c, t in columns if c in have and have[c] != t]
    if wrong:
        raise FlowError(f"{schema}.{table}: column type changed ({'; '.join(wrong)}); PostgreSQL columns "
                        "are never retyped by Assay: drop the PostgreSQL table to rebuild it")
    pk = catalog.primary_key(conn, schema, table)
    if keys and pk != keys:
        raise FlowError(f"{schema}.{table} has primary key ({', '.join(pk) or 'none'}) in PostgreSQL, "
                        f"but the dataset's keys are ({', '.join(keys)}): drop the PostgreSQL table to rebuild it")
    added = [(c, t) for c, t in columns if c not in have]
    return added or None
