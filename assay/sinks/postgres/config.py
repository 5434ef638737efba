"""Where and as whom the sink connects: assay.yml's `postgres:` mapping, checked key by key
(unknown keys, names that reach SQL, ports, TLS modes, the three roles), secrets registered
for masking before any message can carry them."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ... import secrets
from ...errors import ConfigError
from ..declaration import NAME

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
CONFIG_KEYS = {"dsn", "host", "port", "dbname", "user", "password", "schema", "state_schema", "sslmode",
               "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name", "roles",
               "lock_timeout", "batch_rows"}
ROLE_KINDS = ("owner", "writer", "analyst")


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
