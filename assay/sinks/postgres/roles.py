"""Who may do what in the mirror: the owner, writer and analyst roles made real with
least-privilege grants (`assay postgres apply-roles`), and a swapped table keeping the grants of
the one it replaces."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from ... import secrets
from ...errors import ConfigError, FlowError
from .bookkeeping import BOOKKEEPING_TABLE
from .config import ROLE_KINDS, PostgresConfig
from .connection import connect, message

WRITER_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE"
TABLE_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"}


def copy_grants(conn, schema: str, old: str, new: str) -> None:
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
        with connect(admin_cfg) as conn:
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
            f"PostgreSQL apply_roles on {admin_cfg.describe()} failed: {message(exc)}")) from exc
