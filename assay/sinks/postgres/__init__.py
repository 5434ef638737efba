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
- Every identifier is checked against `NAME` (sinks/declaration.py) and quoted with
  `psycopg.sql.Identifier`; values travel as parameters. Secrets never appear in messages (`assay.secrets.redact`).
- DDL runs as the configured owner role (`SET LOCAL ROLE`), loads as the writer role.

Modules, one job each: config (assay.yml's `postgres:`), connection (connecting, errors, the
start of a transaction), typemap (Delta ↔ PostgreSQL types), catalog (what exists), schema (DDL),
bookkeeping (loaded batches), rows (COPY in and out), load (upserts), replace (materialized
views), roles (grants), sink (the PostgresSink the rest of Assay uses).
"""
from importlib.util import find_spec

if find_spec("psycopg") is None:  # pragma: no cover - a declared dependency; said plainly if missing
    raise ImportError("the PostgreSQL sink needs psycopg 3: pip install 'psycopg[binary]'")

from .config import PostgresConfig
from .roles import apply_roles
from .sink import PostgresSink
from .typemap import postgres_type

__all__ = ["PostgresConfig", "PostgresSink", "apply_roles", "postgres_type"]
