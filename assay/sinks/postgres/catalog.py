"""What already exists in PostgreSQL, read from its catalog: a table's columns and primary key,
whether a schema exists (and creating it when it does not)."""
from __future__ import annotations

import psycopg
from psycopg import sql

from ...errors import FlowError


def columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str]] | None:
    """(name, type) of an existing table, None when there is no such table."""
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
           ORDER BY a.attnum""", (schema, table)).fetchall()
    if rows:
        return [(r[0], r[1]) for r in rows]
    exists = conn.execute("""SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                             WHERE n.nspname = %s AND c.relname = %s""", (schema, table)).fetchone()
    if exists:
        raise FlowError(f"{schema}.{table} exists in PostgreSQL but is not a table (a view?): Assay will not replace it")
    return None

def primary_key(conn: psycopg.Connection, schema: str, table: str) -> tuple[str, ...]:
    rows = conn.execute(
        """SELECT a.attname FROM pg_index i
           JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
           WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary
           ORDER BY array_position(i.indkey::int2[], a.attnum)""", (schema, table)).fetchall()
    return tuple(r[0] for r in rows)

def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


def create_schema(conn: psycopg.Connection, schema: str) -> None:
    """CREATE SCHEMA only when missing: an existing schema needs no CREATE privilege on the database."""
    if not schema_exists(conn, schema):
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
