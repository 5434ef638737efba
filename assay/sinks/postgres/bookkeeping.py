"""`<state_schema>.loaded_batches`: one row per batch loaded into a mirrored table, written in the
same transaction as the batch's rows, so a batch already recorded is never loaded twice."""
from __future__ import annotations

import psycopg
from psycopg import sql

from . import catalog
from .config import PostgresConfig

BOOKKEEPING_TABLE = "loaded_batches"
_WHERE = "table_schema = %s AND table_name = %s AND app_id = %s"


class Bookkeeping:
    """The loaded batches of the configured state schema, read and written inside the caller's transaction."""

    def __init__(self, config: PostgresConfig):
        self.config = config
        self.table = sql.SQL("{}.{}").format(sql.Identifier(config.state_schema), sql.Identifier(BOOKKEEPING_TABLE))

    def exists(self, conn: psycopg.Connection) -> bool:
        return catalog.columns(conn, self.config.state_schema, BOOKKEEPING_TABLE) is not None

    def create(self, conn: psycopg.Connection) -> None:
        """The table (and its schema) when missing; the writer role may read it and add rows."""
        if self.exists(conn):
            return
        state = sql.Identifier(self.config.state_schema)
        catalog.create_schema(conn, self.config.state_schema)
        conn.execute(sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
                table_schema text NOT NULL, table_name text NOT NULL, app_id text NOT NULL,
                batch_id bigint NOT NULL, rows bigint NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (table_schema, table_name, app_id, batch_id))""").format(self.table))
        comment = "Assay: the Delta batches loaded into each mirrored table (exactly-once bookkeeping)"
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(self.table, sql.Literal(comment)))
        writer = self.config.roles.writer
        if writer:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(state, sql.Identifier(writer)))
            conn.execute(sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(self.table, sql.Identifier(writer)))

    def recorded(self, conn, schema: str, table: str, app_id: str, batch_id: int) -> bool:
        return conn.execute(sql.SQL("SELECT 1 FROM {} WHERE " + _WHERE + " AND batch_id = %s").format(self.table),
                            (schema, table, app_id, batch_id)).fetchone() is not None

    def record(self, conn, schema: str, table: str, app_id: str, batch_id: int, rows: int) -> None:
        conn.execute(sql.SQL(
            "INSERT INTO {} (table_schema, table_name, app_id, batch_id, rows) VALUES (%s, %s, %s, %s, %s)"
        ).format(self.table), (schema, table, app_id, batch_id, rows))

    def last(self, conn, schema: str, table: str, app_id: str) -> int | None:
        """The greatest batch id of `app_id` recorded for the table (None: none yet)."""
        return conn.execute(sql.SQL("SELECT max(batch_id) FROM {} WHERE " + _WHERE).format(self.table),
                            (schema, table, app_id)).fetchone()[0]

    def batches(self, conn, schema: str, table: str, app_id: str) -> list[int]:
        """Every batch id of `app_id` recorded for the table, ascending."""
        query = sql.SQL("SELECT batch_id FROM {} WHERE " + _WHERE + " ORDER BY batch_id").format(self.table)
        rows = conn.execute(query, (schema, table, app_id)).fetchall()
        return [r[0] for r in rows]
