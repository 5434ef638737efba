"""One connection to PostgreSQL and what goes wrong on it: connecting (NoConnection naming the
server), PostgreSQL's own message for a failed statement, and the first statements of every
transaction (role, UTC, the table's advisory lock)."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from ... import secrets
from ...errors import FlowError
from .config import PostgresConfig, check_name


class _QuietCopyExit(logging.Filter):
    """psycopg logs `error ignored terminating <psycopg.Copy [BAD]>` when a COPY interrupted by an
    error (a lost server, an unreadable file) cannot be ended either. That first error is the one
    the sink reports, naming the table; the second is noise, which Python printed raw to stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error ignored terminating")


logging.getLogger("psycopg").addFilter(_QuietCopyExit())


def message(exc: BaseException) -> str:
    """PostgreSQL's own message with its SQLSTATE, detail and hint when it sent them."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if not primary:
        return str(exc).strip() or type(exc).__name__
    text = primary
    if diag.sqlstate:
        text += f" (SQLSTATE {diag.sqlstate})"
    if diag.message_detail:
        text += f"; detail: {diag.message_detail}"
    if diag.message_hint:
        text += f"; hint: {diag.message_hint}"
    return text


class NoConnection(FlowError):
    """PostgreSQL could not be reached: no statement ran, so none is said to have failed."""


def connect(config: PostgresConfig) -> psycopg.Connection:
    """A connection, or NoConnection saying which server did not take it and what to check."""
    try:
        return psycopg.connect(config.dsn or "", autocommit=True, **config.connect_kwargs())
    except psycopg.OperationalError as exc:
        reason = str(exc).strip()
        if "Connection refused" in reason:
            text = (f"PostgreSQL at {config.address()} refused the connection (nothing listens there): check that the "
                       "server is running, and postgres.host / postgres.port (assay.yml, or --conf postgres.host=… "
                       "--conf postgres.port=…)")
        else:       # libpq's reason: timeout, authentication, unknown host or database, TLS
            reason = reason.splitlines()[0].rsplit(" failed: ", 1)[-1]
            text = (f"cannot connect to PostgreSQL at {config.describe()}: {reason}; check postgres.host, "
                       "port, dbname, user and the password's ${env:…} variable")
        raise NoConnection(secrets.redact(text)) from exc


def lock_key(schema: str, table: str) -> int:
    """A stable signed 64-bit advisory lock key for one mirrored table."""
    digest = hashlib.sha256(f"assay.postgres:{schema}.{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Database:
    """The sink's connection: opened on first use, reopened after a lost server. Not thread-safe."""

    def __init__(self, config: PostgresConfig | Mapping[str, Any]):
        self.config = PostgresConfig.from_mapping(config)
        self._conn: psycopg.Connection | None = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def connection(self) -> psycopg.Connection:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self.close()
        if self._conn is None:
            self._conn = connect(self.config)
        return self._conn

    @contextmanager
    def failures(self, action: str, table: str, batch: str = "") -> Iterator[None]:
        """Any database or file error → FlowError naming the table, the batch and the cause."""
        try:
            yield
        except NoConnection as exc:
            raise NoConnection(f"{table}{batch}: {exc}") from exc.__cause__
        except FlowError:
            raise
        except psycopg.Error as exc:
            if self._conn is not None and (self._conn.closed or self._conn.broken
                                           or isinstance(exc, psycopg.OperationalError)):
                self.close()                  # a lost server: reconnect on the next call
            raise FlowError(secrets.redact(
                f"PostgreSQL {action} of {table}{batch} on {self.config.describe()} failed: {message(exc)}")) from exc
        except (OSError, pa.ArrowException) as exc:      # the transaction was rolled back
            raise FlowError(secrets.redact(f"PostgreSQL {action} of {table}{batch} failed reading its files: {exc}")) from exc

    def begin(self, conn: psycopg.Connection, role: str | None, schema: str, table: str) -> None:
        """The first statements of every transaction: role, UTC, and this table's lock."""
        if role and self.config.roles.configured:
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        conn.execute("SELECT set_config('TimeZone', 'UTC', true)")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema, table),))

    def qualified(self, name: str) -> tuple[str, str, str]:
        """(schema, table, "schema.table") of a mirrored table's name, checked before it reaches SQL."""
        table = check_name(name, "a PostgreSQL table name", FlowError)
        return self.config.schema, table, f"{self.config.schema}.{table}"
