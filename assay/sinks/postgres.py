"""A PostgreSQL mirror of Delta tables: tables created and evolved by Assay, batches upserted
exactly once, materialized views replaced atomically, least-privilege roles.

    sink = PostgresSink({"host": "db", "dbname": "analytics", "user": "assay_loader",
                         "password": resolved, "roles": {"owner": "gold_owner", ...}})
    sink.ensure_table("customer_features", arrow_schema, keys=["customer_id"])
    sink.upsert_batch("customer_features", files, ["customer_id"], app_id="flow", batch_id=7)
    sink.replace_table("contract_summary", files, ["contract", "internet_service"])

Design (docs/postgres.md has the long form):
- Rows are streamed from the batch's Parquet files in bounded Arrow record batches, written as
  CSV by Arrow's C++ writer straight into `COPY … FROM STDIN`, into a temporary staging table,
  then merged with `INSERT … SELECT … ON CONFLICT (keys) DO UPDATE`.
- The batch id is recorded in `<state_schema>.loaded_batches` in the same transaction as the
  rows, under a per-table advisory lock: a batch already recorded is a no-op, so a rerun after a
  crash of this process or of PostgreSQL loads each batch exactly once.
- Every identifier is checked against `NAME` and quoted with `psycopg.sql.Identifier`; values
  travel as parameters. Secrets never appear in messages (`assay.secrets.redact`).
- DDL runs as the configured owner role (`SET LOCAL ROLE`), loads as the writer role.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from .. import secrets
from ..errors import ConfigError, FlowError

try:
    import psycopg
    from psycopg import sql
except ImportError as exc:  # pragma: no cover - psycopg is a declared dependency
    raise ImportError("the PostgreSQL sink needs psycopg 3: pip install 'psycopg[binary]'") from exc

# Names that reach SQL (schemas, tables, columns, roles): letters, digits, underscores, not
# starting with a digit, at most 63 bytes (PostgreSQL silently truncates longer names).
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
CONFIG_KEYS = {"dsn", "host", "port", "dbname", "user", "password", "schema", "state_schema", "sslmode",
               "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name", "roles",
               "lock_timeout", "batch_rows"}
ROLE_KINDS = ("owner", "writer", "analyst")
BOOKKEEPING_TABLE = "loaded_batches"
STAGE = "_assay_stage"
WRITER_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE"
TABLE_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"}
_CSV = pa_csv.WriteOptions(include_header=False, quoting_style="needed")   # strings always quoted: "" ≠ NULL


class _QuietCopyExit(logging.Filter):
    """psycopg logs `error ignored terminating <psycopg.Copy [BAD]>` when a COPY interrupted by an
    error (a lost server, an unreadable file) cannot be ended either. That first error is the one
    the sink reports, naming the table; the second is noise, which Python printed raw to stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error ignored terminating")


logging.getLogger("psycopg").addFilter(_QuietCopyExit())


# ------------------------------------------------------------------------------------ type map
def postgres_type(field_: pa.Field, table: str = "") -> str:
    """The PostgreSQL type of an Arrow (Delta) column, as `format_type()` spells it.

    | Arrow / Delta                                   | PostgreSQL                    |
    |-------------------------------------------------|-------------------------------|
    | int8, int16, uint8 (Delta byte, short)          | smallint                      |
    | int32, uint16 (Delta integer)                   | integer                       |
    | int64, uint32 (Delta long)                      | bigint                        |
    | uint64                                          | numeric(20,0)                 |
    | float16, float32 (Delta float)                  | real                          |
    | float64 (Delta double)                          | double precision              |
    | decimal(p, s)                                   | numeric(p,s)                  |
    | string, large_string, string_view               | text                          |
    | bool                                            | boolean                       |
    | date32, date64                                  | date                          |
    | timestamp with a time zone (Delta timestamp)    | timestamp with time zone      |
    | timestamp without time zone (Delta timestamp_ntz)| timestamp without time zone  |

    Anything else (binary, lists, structs, maps, intervals...) raises a FlowError naming the column.
    """
    t = field_.type
    if pa.types.is_dictionary(t):
        return postgres_type(pa.field(field_.name, t.value_type), table)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_uint64(t):
        return "numeric(20,0)"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "real"
    if pa.types.is_float64(t):
        return "double precision"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t):
        return "text"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp without time zone"
    where = f" of {table}" if table else ""
    raise FlowError(f"column '{field_.name}'{where} has type {t}, which has no PostgreSQL mapping "
                    "(supported: integers, floats, decimal(p,s), string, bool, date, timestamp)")


_ARROW_TYPES = {
    "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(), "real": pa.float32(),
    "double precision": pa.float64(), "text": pa.string(), "boolean": pa.bool_(), "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"), "timestamp without time zone": pa.timestamp("us"),
}


def arrow_type(pg_type: str, column: str = "", table: str = "") -> pa.DataType:
    """The Arrow type of a PostgreSQL column type (`format_type()` text): the map above, reversed."""
    if pg_type in _ARROW_TYPES:
        return _ARROW_TYPES[pg_type]
    m = re.fullmatch(r"numeric\((\d+),(\d+)\)", pg_type)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2))
        if precision <= 38:
            return pa.decimal128(precision, scale)
        if precision <= 76:
            return pa.decimal256(precision, scale)
    raise FlowError(f"column '{column}' of {table} has PostgreSQL type {pg_type}, which Assay does not read back")


# -------------------------------------------------------------------------------- configuration
def check_name(value: Any, what: str, error: type[Exception] = ConfigError) -> str:
    """A name that will be quoted into SQL: must match NAME (allow-list), else `error`
    (ConfigError for names from assay.yml, FlowError for table and column names of datasets)."""
    if not isinstance(value, str) or not NAME.match(value):
        raise error(f"{what} must be a name of letters, digits and underscores, not starting with a "
                          f"digit, at most 63 characters; got {value!r}")
    return value


@dataclass(frozen=True)
class PostgresRoles:
    """Role names: `owner` owns the schema and runs DDL, `writer` loads, `analyst` only reads."""
    owner: str | None = None
    writer: str | None = None
    analyst: str | None = None

    @property
    def configured(self) -> bool:
        return any((self.owner, self.writer, self.analyst))

    def items(self) -> list[tuple[str, str]]:
        return [(kind, getattr(self, kind)) for kind in ROLE_KINDS if getattr(self, kind)]


@dataclass(frozen=True)
class PostgresConfig:
    """Where and as whom to connect, built from the `postgres:` mapping of assay.yml.

    `password` must already be resolved from its `${env:…}` reference; it is masked in every
    message. `user` is the login the sink uses: with roles configured it must be (a member of)
    the owner to run DDL and (a member of) the writer to load (`apply_roles` grants both).
    """
    dsn: str | None = None
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str = "gold"
    state_schema: str = "assay"
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    connect_timeout: int = 10
    application_name: str = "assay"
    roles: PostgresRoles = PostgresRoles()
    lock_timeout: str = "60s"          # longest wait for readers before a view's swap gives up
    batch_rows: int = 65536            # rows per Arrow record batch streamed into COPY

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str = "postgres") -> "PostgresConfig":
        if isinstance(mapping, PostgresConfig):
            return mapping
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"'{where}' must be a mapping (dsn or host/port/dbname, user, password, ...)")
        unknown = sorted(set(mapping) - CONFIG_KEYS)
        if unknown:
            raise ConfigError(f"'{where}': unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(CONFIG_KEYS))}")
        m = dict(mapping)
        password = m.get("password")
        if password is not None and not isinstance(password, str):
            raise ConfigError(f"'{where}.password' must be a string (a ${{env:…}} reference)")
        if password and secrets.redact(password) == password:
            secrets.register(f"{where}.password", password)
        dsn = m.get("dsn")
        if dsn is not None:
            if not isinstance(dsn, str):
                raise ConfigError(f"'{where}.dsn' must be a string")
            try:
                parts = psycopg.conninfo.conninfo_to_dict(dsn)
            except psycopg.Error as exc:
                raise ConfigError(secrets.redact(f"'{where}.dsn' is not a valid connection string: {exc}")) from None
            if parts.get("password"):
                secrets.register(f"{where}.dsn password", str(parts["password"]))
            if parts.get("sslmode") and parts["sslmode"] not in SSLMODES:
                raise ConfigError(f"'{where}.dsn' has sslmode={parts['sslmode']!r}; expected one of {', '.join(SSLMODES)}")
        elif not m.get("host") and not m.get("dbname"):
            raise ConfigError(f"'{where}' needs either 'dsn' or 'host' (with 'port', 'dbname')")
        port = m.get("port")
        if port is not None:
            try:
                port = int(port)
            except (TypeError, ValueError):
                raise ConfigError(f"'{where}.port' must be a number, got {port!r}") from None
            if not 0 < port < 65536:
                raise ConfigError(f"'{where}.port' must be between 1 and 65535, got {port}")
        host = m.get("host")
        if host is not None and (not isinstance(host, str) or not re.match(r"^[A-Za-z0-9_.:\[\],/-]+$", host)):
            raise ConfigError(f"'{where}.host' must be a host name or address, got {host!r}")
        sslmode = m.get("sslmode")
        if sslmode is not None and sslmode not in SSLMODES:
            raise ConfigError(f"'{where}.sslmode' must be one of {', '.join(SSLMODES)}, got {sslmode!r}")
        for key in ("dbname", "sslrootcert", "sslcert", "sslkey", "application_name"):
            if m.get(key) is not None and not isinstance(m[key], str):
                raise ConfigError(f"'{where}.{key}' must be a string")
        user = m.get("user")
        if user is not None:
            check_name(user, f"'{where}.user'")
        roles_map = m.get("roles") or {}
        if not isinstance(roles_map, Mapping):
            raise ConfigError(f"'{where}.roles' must be a mapping with owner, writer, analyst")
        unknown = sorted(set(roles_map) - set(ROLE_KINDS))
        if unknown:
            raise ConfigError(f"'{where}.roles': unknown key(s) {', '.join(unknown)}; known: {', '.join(ROLE_KINDS)}")
        roles = PostgresRoles(**{k: check_name(v, f"'{where}.roles.{k}'") for k, v in roles_map.items() if v is not None})
        if roles.configured:
            missing = [k for k in ROLE_KINDS if not getattr(roles, k)]
            if missing:
                raise ConfigError(f"'{where}.roles' must name all of owner, writer, analyst; missing: {', '.join(missing)}")
            names = [roles.owner, roles.writer, roles.analyst]
            if len(set(names)) != 3:
                raise ConfigError(f"'{where}.roles': owner, writer and analyst must be three different roles")
            if user is not None and user == roles.analyst:
                raise ConfigError(f"'{where}.user' is the analyst role {user!r}, which may only read: "
                                  "Assay must log in as the owner, the writer, or a login granted both")
        schema = check_name(m.get("schema", "gold"), f"'{where}.schema'")
        state_schema = check_name(m.get("state_schema", "assay"), f"'{where}.state_schema'")
        if schema == state_schema:
            raise ConfigError(f"'{where}.state_schema' must differ from '{where}.schema' ({schema}): analysts read the one, not the other")
        lock_timeout = str(m.get("lock_timeout", "60s"))
        if not re.match(r"^\d+\s*(ms|s|min|h)?$", lock_timeout):
            raise ConfigError(f"'{where}.lock_timeout' must look like 500ms, 30s, 5min; got {lock_timeout!r}")
        try:
            connect_timeout = int(m.get("connect_timeout", 10))
            batch_rows = int(m.get("batch_rows", 65536))
        except (TypeError, ValueError):
            raise ConfigError(f"'{where}.connect_timeout' and '{where}.batch_rows' must be numbers") from None
        if batch_rows < 1 or connect_timeout < 1:
            raise ConfigError(f"'{where}.connect_timeout' and '{where}.batch_rows' must be positive")
        return cls(dsn=dsn, host=host, port=port, dbname=m.get("dbname"), user=user, password=password,
                   schema=schema, state_schema=state_schema, sslmode=sslmode, sslrootcert=m.get("sslrootcert"),
                   sslcert=m.get("sslcert"), sslkey=m.get("sslkey"), connect_timeout=connect_timeout,
                   application_name=m.get("application_name", "assay"), roles=roles,
                   lock_timeout=lock_timeout, batch_rows=batch_rows)

    def connect_kwargs(self) -> dict[str, Any]:
        given = psycopg.conninfo.conninfo_to_dict(self.dsn) if self.dsn else {}
        kwargs: dict[str, Any] = {k: v for k, v in {
            "host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user,
            "password": self.password, "sslmode": self.sslmode, "sslrootcert": self.sslrootcert,
            "sslcert": self.sslcert, "sslkey": self.sslkey}.items() if v is not None}
        defaults = {"connect_timeout": self.connect_timeout, "application_name": self.application_name,
                    # a server that vanishes mid-load (failover, network) is noticed, not waited on forever
                    "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
        kwargs.update({k: v for k, v in defaults.items() if k not in given})
        return kwargs

    def _parts(self) -> dict[str, Any]:
        parts = dict(psycopg.conninfo.conninfo_to_dict(self.dsn)) if self.dsn else {}
        parts.update(self.connect_kwargs())
        return parts

    def address(self) -> str:
        """host:port, as libpq will try it."""
        parts = self._parts()
        return secrets.redact(f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}")

    def describe(self) -> str:
        """host:port/dbname as user, without any secret."""
        parts = self._parts()
        text = f"{self.address()}/{parts.get('dbname', '')}"
        return secrets.redact(text + (f" as {parts['user']}" if parts.get("user") else ""))


# ------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class TableChange:
    """What ensure_table did."""
    table: str
    created: bool
    added_columns: tuple[str, ...] = ()


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


# ----------------------------------------------------------------------------------- the sink
def _message(exc: BaseException) -> str:
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


def _connect(config: PostgresConfig) -> psycopg.Connection:
    """A connection, or NoConnection saying which server did not take it and what to check."""
    try:
        return psycopg.connect(config.dsn or "", autocommit=True, **config.connect_kwargs())
    except psycopg.OperationalError as exc:
        reason = str(exc).strip()
        if "Connection refused" in reason:
            message = (f"PostgreSQL at {config.address()} refused the connection (nothing listens there): check that the "
                       "server is running, and postgres.host / postgres.port (assay.yml, or --conf postgres.host=… "
                       "--conf postgres.port=…)")
        else:       # libpq's reason: timeout, authentication, unknown host or database, TLS
            reason = reason.splitlines()[0].rsplit(" failed: ", 1)[-1]
            message = (f"cannot connect to PostgreSQL at {config.describe()}: {reason}; check postgres.host, "
                       "port, dbname, user and the password's ${env:…} variable")
        raise NoConnection(secrets.redact(message)) from exc


def _aux_name(name: str, suffix: str) -> str:
    """name + suffix, shortened with a hash when it would pass PostgreSQL's 63-byte limit."""
    if len(name) + len(suffix) <= 63:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:63 - len(suffix) - 9]}_{digest}{suffix}"


def _lock_key(schema: str, table: str) -> int:
    """A stable signed 64-bit advisory lock key for one mirrored table."""
    digest = hashlib.sha256(f"assay.postgres:{schema}.{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _file_path(item: Any) -> tuple[str, dict]:
    """A file of a Delta batch: a path, or an object with `.path` and `.partition_values`."""
    if isinstance(item, (str, Path)):
        return str(item), {}
    path = getattr(item, "path", None)
    if path is None:
        raise FlowError(f"a batch file must be a path or have a .path, got {item!r}")
    return str(path), dict(getattr(item, "partition_values", None) or {})


def _open_parquet(path: str) -> pq.ParquetFile:
    if "://" in path:
        import pyarrow.fs as pafs
        filesystem, inner = pafs.FileSystem.from_uri(path)
        return pq.ParquetFile(filesystem.open_input_file(inner))
    return pq.ParquetFile(path)


def _csv_ready(array: pa.Array) -> pa.Array:
    """An array as Arrow's CSV writer formats it the way PostgreSQL reads it back."""
    t = array.type
    if pa.types.is_dictionary(t):
        return _csv_ready(array.dictionary_decode())
    if pa.types.is_timestamp(t) and t.tz:
        # the same UTC instants without the zone: formatted ~10x faster, and read as UTC by
        # PostgreSQL (every transaction sets TimeZone to UTC)
        return array.cast(pa.timestamp(t.unit))
    if getattr(pa.types, "is_string_view", lambda _: False)(t):
        return array.cast(pa.string())
    if pa.types.is_float16(t):
        return array.cast(pa.float32())
    return array


class PostgresSink:
    """One PostgreSQL database mirroring Delta tables into one schema. Not thread-safe: one per thread."""

    def __init__(self, config: PostgresConfig | Mapping[str, Any]):
        self.config = PostgresConfig.from_mapping(config)
        self._conn: psycopg.Connection | None = None

    # ---------------------------------------------------------------- connection & transactions
    def __enter__(self) -> "PostgresSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self.close()
        if self._conn is None:
            self._conn = _connect(self.config)
        return self._conn

    @contextmanager
    def _failures(self, action: str, table: str, batch: str = "") -> Iterator[None]:
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
                f"PostgreSQL {action} of {table}{batch} on {self.config.describe()} failed: {_message(exc)}")) from exc
        except (OSError, pa.ArrowException) as exc:      # the transaction was rolled back
            raise FlowError(secrets.redact(f"PostgreSQL {action} of {table}{batch} failed reading its files: {exc}")) from exc

    def _begin(self, conn: psycopg.Connection, role: str | None, schema: str, table: str) -> None:
        """The first statements of every transaction: role, UTC, and this table's lock."""
        if role and self.config.roles.configured:
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        conn.execute("SELECT set_config('TimeZone', 'UTC', true)")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(schema, table),))

    def _qualified(self, name: str) -> tuple[str, str, str]:
        table = check_name(name, "a PostgreSQL table name", FlowError)
        return self.config.schema, table, f"{self.config.schema}.{table}"

    # --------------------------------------------------------------------------- catalog reads
    @staticmethod
    def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str]] | None:
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

    @staticmethod
    def _primary_key(conn: psycopg.Connection, schema: str, table: str) -> tuple[str, ...]:
        rows = conn.execute(
            """SELECT a.attname FROM pg_index i
               JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
               WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary
               ORDER BY array_position(i.indkey::int2[], a.attnum)""", (schema, table)).fetchall()
        return tuple(r[0] for r in rows)

    @staticmethod
    def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
        return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None

    def _bookkeeping_exists(self, conn: psycopg.Connection) -> bool:
        return self._columns(conn, self.config.state_schema, BOOKKEEPING_TABLE) is not None

    # -------------------------------------------------------------------------------- DDL
    def _planned_columns(self, arrow_schema: pa.Schema, keys: Iterable[str], table: str) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
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

    def _create_schema(self, conn: psycopg.Connection, schema: str) -> None:
        if not self._schema_exists(conn, schema):
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))

    def _create_bookkeeping(self, conn: psycopg.Connection) -> None:
        """<state_schema>.loaded_batches: one row per batch loaded, written with the batch's rows."""
        if self._bookkeeping_exists(conn):
            return
        state = sql.Identifier(self.config.state_schema)
        self._create_schema(conn, self.config.state_schema)
        conn.execute(sql.SQL("""CREATE TABLE IF NOT EXISTS {}.{} (
                table_schema text NOT NULL, table_name text NOT NULL, app_id text NOT NULL,
                batch_id bigint NOT NULL, rows bigint NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (table_schema, table_name, app_id, batch_id))""").format(
            state, sql.Identifier(BOOKKEEPING_TABLE)))
        conn.execute(sql.SQL("COMMENT ON TABLE {}.{} IS {}").format(
            state, sql.Identifier(BOOKKEEPING_TABLE),
            sql.Literal("Assay: the Delta batches loaded into each mirrored table (exactly-once bookkeeping)")))
        writer = self.config.roles.writer
        if writer:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(state, sql.Identifier(writer)))
            conn.execute(sql.SQL("GRANT SELECT, INSERT ON {}.{} TO {}").format(
                state, sql.Identifier(BOOKKEEPING_TABLE), sql.Identifier(writer)))

    def _create_table_sql(self, schema: str, table: str, columns: list[tuple[str, str]],
                          keys: tuple[str, ...], constraint: str) -> sql.Composed:
        parts = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns]
        if keys:
            parts.append(sql.SQL("CONSTRAINT {} PRIMARY KEY ({})").format(
                sql.Identifier(constraint), sql.SQL(", ").join(map(sql.Identifier, keys))))
        return sql.SQL("CREATE TABLE {}.{} ({})").format(
            sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(parts))

    def ensure_table(self, name: str, arrow_schema: pa.Schema, keys: Iterable[str] = ()) -> TableChange:
        """Create `<schema>.<name>` with a primary key on `keys`, or add the columns it lacks.

        Idempotent and cheap when nothing changed (one catalog read, no role switch). A column
        whose type differs from the mapped type, or a different primary key, is an error: both
        need a full refresh of the mirror, which Assay does not do behind your back. Columns the
        Delta schema no longer has are left in place (NULL for new rows).
        """
        schema, table, qualified = self._qualified(name)
        columns, keys = self._planned_columns(arrow_schema, keys, qualified)
        with self._failures("DDL", qualified):
            conn = self._connection()
            if self._plan_ddl(conn, schema, table, columns, keys) is None and self._bookkeeping_exists(conn):
                return TableChange(qualified, created=False)
            with conn.transaction():
                self._begin(conn, self.config.roles.owner, schema, table)
                self._create_bookkeeping(conn)
                plan = self._plan_ddl(conn, schema, table, columns, keys)   # again, under the lock
                if plan is None:
                    return TableChange(qualified, created=False)
                if plan == "create":
                    self._create_schema(conn, schema)
                    conn.execute(self._create_table_sql(schema, table, columns, keys, _aux_name(table, "_pkey")))
                    return TableChange(qualified, created=True, added_columns=tuple(c for c, _ in columns))
                for column, pg in plan:
                    conn.execute(sql.SQL("ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS {} {}").format(
                        sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column), sql.SQL(pg)))
                return TableChange(qualified, created=False, added_columns=tuple(c for c, _ in plan))

    def _plan_ddl(self, conn, schema, table, columns, keys):
        """None: nothing to do; "create"; or the list of (column, type) to add."""
        existing = self._columns(conn, schema, table)
        if existing is None:
            return "create"
        have = dict(existing)
        wrong = [f"{c} is {have[c]} in PostgreSQL but {t} in Delta" for c, t in columns if c in have and have[c] != t]
        if wrong:
            raise FlowError(f"{schema}.{table}: column type changed ({'; '.join(wrong)}); PostgreSQL columns "
                            "are never retyped by Assay: drop the PostgreSQL table to rebuild it")
        pk = self._primary_key(conn, schema, table)
        if keys and pk != keys:
            raise FlowError(f"{schema}.{table} has primary key ({', '.join(pk) or 'none'}) in PostgreSQL, "
                            f"but the dataset's keys are ({', '.join(keys)}): drop the PostgreSQL table to rebuild it")
        added = [(c, t) for c, t in columns if c not in have]
        return added or None

    # ------------------------------------------------------------------------------ batches
    def _recorded(self, conn, schema: str, table: str, app_id: str, batch_id: int) -> bool:
        return conn.execute(sql.SQL(
            "SELECT 1 FROM {}.{} WHERE table_schema = %s AND table_name = %s AND app_id = %s AND batch_id = %s"
        ).format(sql.Identifier(self.config.state_schema), sql.Identifier(BOOKKEEPING_TABLE)),
            (schema, table, app_id, batch_id)).fetchone() is not None

    def _record(self, conn, schema: str, table: str, app_id: str, batch_id: int, rows: int) -> None:
        conn.execute(sql.SQL(
            "INSERT INTO {}.{} (table_schema, table_name, app_id, batch_id, rows) VALUES (%s, %s, %s, %s, %s)"
        ).format(sql.Identifier(self.config.state_schema), sql.Identifier(BOOKKEEPING_TABLE)),
            (schema, table, app_id, batch_id, rows))

    def loaded_batches(self, name: str, app_id: str) -> list[int]:
        """The batch ids of `app_id` already loaded into `name`, ascending (to catch PostgreSQL up)."""
        schema, table, qualified = self._qualified(name)
        with self._failures("bookkeeping read", qualified):
            conn = self._connection()
            if not self._bookkeeping_exists(conn):
                return []
            rows = conn.execute(sql.SQL(
                "SELECT batch_id FROM {}.{} WHERE table_schema = %s AND table_name = %s AND app_id = %s ORDER BY batch_id"
            ).format(sql.Identifier(self.config.state_schema), sql.Identifier(BOOKKEEPING_TABLE)),
                (schema, table, app_id)).fetchall()
        return [r[0] for r in rows]

    def last_batch(self, name: str, app_id: str) -> int | None:
        """The greatest batch id of `app_id` loaded into `name` (None: none yet): where a catch-up starts."""
        schema, table, qualified = self._qualified(name)
        with self._failures("bookkeeping read", qualified):
            conn = self._connection()
            if not self._bookkeeping_exists(conn):
                return None
            return conn.execute(sql.SQL(
                "SELECT max(batch_id) FROM {}.{} WHERE table_schema = %s AND table_name = %s AND app_id = %s"
            ).format(sql.Identifier(self.config.state_schema), sql.Identifier(BOOKKEEPING_TABLE)),
                (schema, table, app_id)).fetchone()[0]

    def _stream_csv(self, copy, files: Iterable[Any], columns: list[str], table: str) -> int:
        """Write every row of `files` (only `columns`, in that order) into an open COPY; returns the count.

        Bounded memory: one Arrow record batch (config.batch_rows rows) at a time, written as CSV
        by Arrow's C++ writer. Columns a file lacks are NULL; a partition value of a Delta file
        becomes a constant column (PostgreSQL parses its text into the column's type).
        """
        wanted = set(columns)
        rows = 0
        for item in files:
            path, partition_values = _file_path(item)
            parquet = _open_parquet(path)
            present = set(parquet.schema_arrow.names)
            extra = sorted((present | set(partition_values)) - wanted)
            if extra:
                raise FlowError(f"{path} has column(s) {', '.join(extra)} that {table} lacks in PostgreSQL: "
                                "call ensure_table with the Delta schema first")
            read = [c for c in columns if c in present]
            for batch in parquet.iter_batches(batch_size=self.config.batch_rows, columns=read, use_threads=False):
                n = batch.num_rows
                if n == 0:
                    continue
                arrays = []
                for c in columns:
                    if c in present:
                        arrays.append(_csv_ready(batch.column(c)))
                    elif partition_values.get(c) not in (None, ""):    # Delta: "" and null are both null
                        arrays.append(pa.array([str(partition_values[c])] * n, pa.string()))
                    else:
                        arrays.append(pa.nulls(n, pa.string()))
                out = pa.BufferOutputStream()
                pa_csv.write_csv(pa.RecordBatch.from_arrays(arrays, names=columns), out, _CSV)
                copy.write(out.getvalue())
                rows += n
        return rows

    def upsert_batch(self, name: str, files: Iterable[Any], keys: Iterable[str], app_id: str,
                     batch_id: int, *, delete_files: Iterable[Any] = (), previous_batch: Any = ...) -> LoadResult:
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
        schema, table, qualified = self._qualified(name)
        keys = tuple(check_name(k, f"key column of {qualified}", FlowError) for k in keys)
        if not keys:
            raise FlowError(f"upsert into {qualified} needs key columns")
        if not isinstance(app_id, str) or not app_id or len(app_id) > 512:
            raise FlowError(f"upsert into {qualified}: app_id must be a non-empty string, got {app_id!r}")
        if not isinstance(batch_id, int) or isinstance(batch_id, bool) or batch_id < 0:
            raise FlowError(f"upsert into {qualified}: batch_id must be an integer ≥ 0, got {batch_id!r}")
        where = f" (batch {batch_id} of {app_id})"
        started = time.monotonic()
        with self._failures("upsert", qualified, where):
            conn = self._connection()
            with conn.transaction():
                self._begin(conn, self.config.roles.writer, schema, table)
                if not self._bookkeeping_exists(conn):
                    raise FlowError(f"upsert into {qualified}{where}: the bookkeeping table "
                                    f"{self.config.state_schema}.{BOOKKEEPING_TABLE} is missing: call ensure_table first")
                if self._recorded(conn, schema, table, app_id, batch_id):
                    return LoadResult(qualified, 0, True, time.monotonic() - started, app_id, batch_id)
                if previous_batch is not ...:
                    last = self._last(conn, schema, table, app_id)
                    if last != previous_batch:
                        raise FlowError(f"upsert into {qualified}{where}: it follows batch {previous_batch}, but "
                                        f"PostgreSQL holds batch {last} of {app_id}: another loader moved the "
                                        "table meanwhile; nothing was applied, the next run starts from there")
                existing = self._columns(conn, schema, table)
                if existing is None:
                    raise FlowError(f"upsert into {qualified}{where}: the table does not exist: call ensure_table first")
                pk = self._primary_key(conn, schema, table)
                if pk != keys:
                    raise FlowError(f"upsert into {qualified}{where}: its primary key is ({', '.join(pk) or 'none'}), "
                                    f"not ({', '.join(keys)})")
                columns = [c for c, _ in existing]
                ids = [sql.Identifier(c) for c in columns]
                target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
                stage = sql.Identifier(STAGE)
                deleted = self._delete_keys(conn, target, keys, delete_files, qualified)
                conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(stage, target))
                with conn.cursor() as cur:
                    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                            stage, sql.SQL(", ").join(ids))) as copy:
                        rows = self._stream_csv(copy, files, columns, qualified)
                updates = [c for c in columns if c not in keys]
                action = (sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
                    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates))
                    if updates else sql.SQL("DO NOTHING"))
                conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                    target, sql.SQL(", ").join(ids), sql.SQL(", ").join(ids), stage,
                    sql.SQL(", ").join(map(sql.Identifier, keys)), action))
                self._record(conn, schema, table, app_id, batch_id, rows)
        return LoadResult(qualified, rows, False, time.monotonic() - started, app_id, batch_id, deleted)

    def _delete_keys(self, conn, target, keys: tuple[str, ...], files: Iterable[Any], qualified: str) -> int:
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
                self._stream_csv(copy, files, list(keys), qualified)
        match = sql.SQL(" AND ").join(sql.SQL("t.{0} = d.{0}").format(k) for k in ids)
        return conn.execute(sql.SQL("DELETE FROM {} t USING (SELECT DISTINCT * FROM {}) d WHERE {}").format(
            target, stage, match)).rowcount

    def _last(self, conn, schema: str, table: str, app_id: str) -> int | None:
        return conn.execute(sql.SQL(
            "SELECT max(batch_id) FROM {}.{} WHERE table_schema = %s AND table_name = %s AND app_id = %s"
        ).format(sql.Identifier(self.config.state_schema), sql.Identifier(BOOKKEEPING_TABLE)),
            (schema, table, app_id)).fetchone()[0]

    def read_table(self, name: str, order_by: Iterable[str] = ()) -> pa.Table:
        """The rows of `<schema>.<name>` as an Arrow table typed by the map above (verification:
        compare it with the Delta table or a truth manifest). One `COPY (SELECT …) TO STDOUT`, read by
        Arrow's CSV reader; the whole table is held in memory."""
        schema, table, qualified = self._qualified(name)
        order = [check_name(c, f"order_by column of {qualified}", FlowError) for c in order_by]
        with self._failures("read", qualified):
            conn = self._connection()
            with conn.transaction():
                conn.execute("SELECT set_config('TimeZone', 'UTC', true)")
                columns = self._columns(conn, schema, table)
                if columns is None:
                    raise FlowError(f"{qualified} does not exist in PostgreSQL")
                types = {c: arrow_type(t, c, qualified) for c, t in columns}
                selected = [sql.SQL("({} AT TIME ZONE 'UTC')").format(sql.Identifier(c))   # naive UTC text
                            if t == "timestamp with time zone" else sql.Identifier(c) for c, t in columns]
                query = sql.SQL("COPY (SELECT {} FROM {}.{}{}) TO STDOUT (FORMAT csv)").format(
                    sql.SQL(", ").join(selected), sql.Identifier(schema), sql.Identifier(table),
                    sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(map(sql.Identifier, order))) if order else sql.SQL(""))
                buffer = pa.BufferOutputStream()
                with conn.cursor() as cur, cur.copy(query) as copy:
                    for chunk in copy:
                        buffer.write(chunk)
        names = [c for c, _ in columns]
        parse_types = {c: (pa.timestamp("us") if pa.types.is_timestamp(t) else t) for c, t in types.items()}
        data = buffer.getvalue()
        if data.size == 0:
            return pa.table({c: pa.array([], t) for c, t in types.items()})
        read = pa_csv.read_csv(
            pa.BufferReader(data), read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(column_types=parse_types, true_values=["t"], false_values=["f"],
                                                  null_values=[""], strings_can_be_null=True,
                                                  quoted_strings_can_be_null=False))
        return pa.table({c: read.column(c).cast(types[c]) for c in names})

    # ------------------------------------------------------------------------ materialized views
    def replace_table(self, name: str, files: Iterable[Any], keys: Iterable[str] = (), *,
                      schema: pa.Schema | None = None, app_id: str | None = None,
                      batch_id: int | None = None, method: str = "swap") -> LoadResult:
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
        schema_name, table, qualified = self._qualified(name)
        keys = tuple(check_name(k, f"key column of {qualified}", FlowError) for k in keys)
        if (app_id is None) != (batch_id is None):
            raise FlowError(f"replace of {qualified}: give both app_id and batch_id, or neither")
        where = f" (batch {batch_id} of {app_id})" if app_id is not None else ""
        files = iter(files)
        first = next(files, None)
        started = time.monotonic()
        with self._failures("replace", qualified, where):
            if schema is None and first is not None:
                schema = _open_parquet(_file_path(first)[0]).schema_arrow
            if method == "in_place":
                return self._replace_in_place(schema_name, table, qualified, where, first, files, keys,
                                              schema, app_id, batch_id, started)
            conn = self._connection()
            with conn.transaction():
                self._begin(conn, self.config.roles.owner, schema_name, table)
                if app_id is not None:
                    self._create_bookkeeping(conn)
                    if self._recorded(conn, schema_name, table, app_id, batch_id):
                        return LoadResult(qualified, 0, True, time.monotonic() - started, app_id, batch_id)
                old = self._columns(conn, schema_name, table)
                if schema is not None:
                    columns, keys = self._planned_columns(schema, keys, qualified)
                elif old is not None:
                    columns = old
                else:
                    raise FlowError(f"replace of {qualified}: no file and no schema to create the table from")
                self._create_schema(conn, schema_name)
                new = _aux_name(table, "__assay_new")
                ident_schema, ident_new = sql.Identifier(schema_name), sql.Identifier(new)
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(ident_schema, ident_new))
                conn.execute(self._create_table_sql(schema_name, new, columns, keys, _aux_name(new, "_pkey")))
                names = [c for c, _ in columns]
                with conn.cursor() as cur:
                    with cur.copy(sql.SQL("COPY {}.{} ({}) FROM STDIN (FORMAT csv)").format(
                            ident_schema, ident_new, sql.SQL(", ").join(map(sql.Identifier, names)))) as copy:
                        rows = self._stream_csv(copy, [first] if first is not None else [], names, qualified)
                        rows += self._stream_csv(copy, files, names, qualified)
                ident_table = sql.Identifier(table)
                if old is not None:
                    self._copy_grants(conn, schema_name, table, new)
                    conn.execute("SELECT set_config('lock_timeout', %s, true)", (self.config.lock_timeout,))
                    conn.execute(sql.SQL("DROP TABLE {}.{}").format(ident_schema, ident_table))
                conn.execute(sql.SQL("ALTER TABLE {}.{} RENAME TO {}").format(ident_schema, ident_new, ident_table))
                if keys:
                    conn.execute(sql.SQL("ALTER TABLE {}.{} RENAME CONSTRAINT {} TO {}").format(
                        ident_schema, ident_table, sql.Identifier(_aux_name(new, "_pkey")),
                        sql.Identifier(_aux_name(table, "_pkey"))))
                if app_id is not None:
                    self._record(conn, schema_name, table, app_id, batch_id, rows)
        return LoadResult(qualified, rows, False, time.monotonic() - started, app_id, batch_id)

    def _replace_in_place(self, schema_name, table, qualified, where, first, files, keys, schema,
                          app_id, batch_id, started) -> LoadResult:
        if schema is not None:
            self.ensure_table(table, schema, keys)
        conn = self._connection()
        with conn.transaction():
            self._begin(conn, self.config.roles.writer, schema_name, table)
            if app_id is not None and self._recorded(conn, schema_name, table, app_id, batch_id):
                return LoadResult(qualified, 0, True, time.monotonic() - started, app_id, batch_id)
            existing = self._columns(conn, schema_name, table)
            if existing is None:
                raise FlowError(f"replace of {qualified}{where}: the table does not exist and there is no "
                                "file or schema to create it from")
            names = [c for c, _ in existing]
            target = sql.SQL("{}.{}").format(sql.Identifier(schema_name), sql.Identifier(table))
            conn.execute(sql.SQL("DELETE FROM {}").format(target))
            with conn.cursor() as cur:
                with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                        target, sql.SQL(", ").join(map(sql.Identifier, names)))) as copy:
                    rows = self._stream_csv(copy, [first] if first is not None else [], names, qualified)
                    rows += self._stream_csv(copy, files, names, qualified)
            if app_id is not None:
                self._record(conn, schema_name, table, app_id, batch_id, rows)
        return LoadResult(qualified, rows, False, time.monotonic() - started, app_id, batch_id)

    @staticmethod
    def _copy_grants(conn, schema: str, old: str, new: str) -> None:
        """The old table's grants (and comment) on the new one, so a swap changes no one's access."""
        acl = conn.execute(
            """SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
                      a.privilege_type, a.is_grantable
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                    aclexplode(c.relacl) a
               WHERE n.nspname = %s AND c.relname = %s AND a.grantee <> c.relowner""", (schema, old)).fetchall()
        target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(new))
        for grantee, privilege, grantable in acl:
            if privilege not in TABLE_PRIVILEGES:
                continue
            conn.execute(sql.SQL("GRANT {} ON {} TO {}{}").format(
                sql.SQL(privilege), target, sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC"),
                sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL("")))
        comment = conn.execute(
            """SELECT obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %s AND c.relname = %s""", (schema, old)).fetchone()
        if comment and comment[0] is not None:
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(target, sql.Literal(comment[0])))


# ------------------------------------------------------------------------------------ roles
def apply_roles(config: PostgresConfig | Mapping[str, Any], *, admin: PostgresConfig | Mapping[str, Any] | None = None,
                passwords: Mapping[str, str] | None = None, create_login: bool = False) -> None:
    """Make the roles of `config.roles` real, with least-privilege grants. Idempotent.

    Runs as `admin` (a superuser, or a role with CREATEROLE that owns the database, such as
    the master user of RDS / Azure Database), default: `config` itself. In one transaction:
    - owner, writer, analyst exist (NOLOGIN, or LOGIN with the SCRAM verifier of
      `passwords[kind]`; the plain password never reaches the server or its log); a writer or
      analyst with SUPERUSER, CREATEROLE, CREATEDB or BYPASSRLS, or a superuser owner, is refused;
    - the owner owns `schema` (gold), every table in it and `state_schema` with the bookkeeping;
    - the writer: USAGE on gold, SELECT/INSERT/UPDATE/DELETE/TRUNCATE on its tables (today's and,
      through ALTER DEFAULT PRIVILEGES, future ones), SELECT/INSERT on the bookkeeping table;
      no grant option, no DDL;
    - the analyst: USAGE on gold and SELECT on its tables (today's and future ones), nothing else;
    - PUBLIC loses its default rights on schema `public`, gold and the state schema;
    - the login `config.user` gets membership in owner and writer (or, when it is the owner,
      in the writer) so that the sink can `SET ROLE` to each; with `create_login`, a missing
      login is created first (LOGIN, the SCRAM verifier of `config.password`, no other attribute).
    """
    cfg = PostgresConfig.from_mapping(config)
    roles = cfg.roles
    if not roles.configured:
        raise ConfigError("apply_roles needs 'roles' with owner, writer and analyst in the PostgreSQL configuration")
    admin_cfg = PostgresConfig.from_mapping(admin) if admin is not None else cfg
    passwords = dict(passwords or {})
    unknown = sorted(set(passwords) - set(ROLE_KINDS))
    if unknown:
        raise ConfigError(f"apply_roles: passwords for unknown role kind(s) {', '.join(unknown)}; known: {', '.join(ROLE_KINDS)}")
    for kind, value in passwords.items():
        secrets.register(f"postgres.roles.{kind} password", value)
    I = sql.Identifier
    owner, writer, analyst = I(roles.owner), I(roles.writer), I(roles.analyst)
    gold, state = I(cfg.schema), I(cfg.state_schema)
    bookkeeping = sql.SQL("{}.{}").format(state, I(BOOKKEEPING_TABLE))
    try:
        with _connect(admin_cfg) as conn:
            with conn.transaction():
                superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
                for kind, role in roles.items():
                    row = conn.execute("""SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls
                                          FROM pg_roles WHERE rolname = %s""", (role,)).fetchone()
                    if row is None:
                        conn.execute(sql.SQL("CREATE ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                                             "NOBYPASSRLS INHERIT NOLOGIN").format(I(role)))
                    elif (kind == "owner" and (row[0] or row[3])) or (kind != "owner" and any(row)):
                        raise ConfigError(f"PostgreSQL role {role} ({kind}) has SUPERUSER, CREATEROLE, CREATEDB or "
                                          "BYPASSRLS: it would not be least privilege; use another role")
                    if kind in passwords:
                        verifier = conn.pgconn.encrypt_password(passwords[kind].encode(), role.encode(), b"scram-sha-256")
                        conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                            I(role), sql.Literal(verifier.decode())))
                if create_login and cfg.user and cfg.user not in dict(roles.items()).values() and conn.execute(
                        "SELECT 1 FROM pg_roles WHERE rolname = %s", (cfg.user,)).fetchone() is None:
                    if not cfg.password:
                        raise ConfigError(f"apply_roles: the login {cfg.user} does not exist and the configuration "
                                          "has no password to create it with")
                    verifier = conn.pgconn.encrypt_password(cfg.password.encode(), cfg.user.encode(), b"scram-sha-256")
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                                         "NOBYPASSRLS INHERIT PASSWORD {}").format(I(cfg.user), sql.Literal(verifier.decode())))
                if not superuser:   # a CREATEROLE admin must be a member to give the owner its objects
                    conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(owner))
                database = I(conn.execute("SELECT current_database()").fetchone()[0])
                conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}, {}").format(database, owner, writer, analyst))
                conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}, {}").format(database, owner, writer))
                if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'public'").fetchone():
                    conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
                for schema_ident, schema_name in ((gold, cfg.schema), (state, cfg.state_schema)):
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(schema_ident, owner))
                    conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema_ident, owner))
                    conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema_ident))
                    for (table,) in conn.execute("""SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                                    WHERE n.nspname = %s AND c.relkind IN ('r', 'p')
                                                      AND c.relowner <> to_regrole(%s)""",
                                                 (schema_name, roles.owner)).fetchall():
                        conn.execute(sql.SQL("ALTER TABLE {}.{} OWNER TO {}").format(schema_ident, I(table), owner))
                # the login the sink uses can act as the owner (DDL) and as the writer (loads)
                if cfg.user and cfg.user == roles.owner:
                    conn.execute(sql.SQL("GRANT {} TO {}").format(writer, owner))
                elif cfg.user and cfg.user != roles.writer:
                    conn.execute(sql.SQL("GRANT {}, {} TO {}").format(owner, writer, I(cfg.user)))
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(owner))
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {}").format(gold, writer, analyst))
                conn.execute(sql.SQL("GRANT " + WRITER_PRIVILEGES + " ON ALL TABLES IN SCHEMA {} TO {}").format(gold, writer))
                conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(gold, analyst))
                conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT " + WRITER_PRIVILEGES
                                     + " ON TABLES TO {}").format(owner, gold, writer))
                conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}")
                             .format(owner, gold, analyst))
                conn.execute(sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
                        table_schema text NOT NULL, table_name text NOT NULL, app_id text NOT NULL,
                        batch_id bigint NOT NULL, rows bigint NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (table_schema, table_name, app_id, batch_id))""").format(bookkeeping))
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(state, writer))
                conn.execute(sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(bookkeeping, writer))
    except psycopg.Error as exc:
        raise FlowError(secrets.redact(
            f"PostgreSQL apply_roles on {admin_cfg.describe()} failed: {_message(exc)}")) from exc


def sink_for(spec) -> PostgresSink:
    """The sink of assay.yml's `postgres:` section (its password resolved from the environment)."""
    if not spec.postgres:
        raise ConfigError(f"pipeline '{spec.name}' publishes tables to PostgreSQL, but assay.yml has no 'postgres:' "
                          "section (host, port, dbname, user, password: ${env:…}; docs/postgres.md)")
    try:
        return PostgresSink(dict(spec.postgres))
    except ConfigError as exc:
        raise ConfigError(f"assay.yml: {exc}") from None
