"""The PostgreSQL sink against a real server (scripts/postgres.sh): tables created and evolved,
batches upserted exactly once (replays, kill -9 of the loader mid-COPY, PostgreSQL stopped
mid-load), materialized views swapped atomically under concurrent readers, and least
privilege proven by logging in as each role. The Parquet inputs are written with pyarrow, as
the files a Delta batch commits.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import queue
import random
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from psycopg import errors as pg_errors
from psycopg import sql

from assay import secrets
from assay.errors import ConfigError, FlowError
from assay.sinks.postgres import PostgresConfig, PostgresSink, apply_roles, postgres_type

pytest_plugins = ["tests.postgres_server"]

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = {"owner": "owner-pw-7f3a9c", "writer": "writer-pw-51be0d", "analyst": "analyst-pw-c28e44"}
LOADER_PASSWORD = "loader-pw-9d0e6b"


# ------------------------------------------------------------------------------------ helpers
@dataclass
class Env:
    """One database with its own roles (roles are cluster-wide, so their names carry a suffix)."""
    server: object
    db: str
    roles: dict
    loader: str

    def config(self, user: str | None = None, password: str | None = None, **extra) -> dict:
        user = user or self.loader
        password = password or (LOADER_PASSWORD if user == self.loader else
                                PASSWORDS[next(k for k, v in self.roles.items() if v == user)])
        return {"host": self.server.host, "port": self.server.port, "dbname": self.db, "user": user,
                "password": password, "roles": dict(self.roles), **extra}

    def sink(self, **kw) -> PostgresSink:
        return PostgresSink(self.config(**kw))

    def admin(self):
        return self.server.connect(self.db)

    def connect_as(self, kind: str, autocommit: bool = True):
        return self.server.connect(self.db, user=self.roles[kind], password=PASSWORDS[kind], autocommit=autocommit)


@pytest.fixture
def pg(postgres_server):
    server = postgres_server
    if not server.running:          # a test that stopped it and failed before starting it again
        server.start()
    db = server.create_database("sink")
    suffix = db.split("_", 1)[1]
    roles = {"owner": f"owner_{suffix}", "writer": f"writer_{suffix}", "analyst": f"analyst_{suffix}"}
    loader = f"loader_{suffix}"
    with server.connect(db) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(loader), sql.Literal(LOADER_PASSWORD)))
    env = Env(server, db, roles, loader)
    apply_roles(env.config(), admin=server.conninfo(db), passwords=PASSWORDS)
    return env


def write_files(folder: Path, table: pa.Table, files: int = 1) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    step = max(1, -(-table.num_rows // files))
    paths = []
    for i in range(files):
        path = folder / f"part-{i:05d}.parquet"
        pq.write_table(table.slice(i * step, step), path, compression="zstd")
        paths.append(str(path))
    return paths


def rows(conn, query: str, *params) -> list[tuple]:
    return conn.execute(query, params or None).fetchall()


def install_audit(env: Env, table: str, key: str) -> None:
    """Statement triggers copying every inserted or updated row's (key, batch_no) into
    audit.applied, in the loading transaction: a batch applied twice shows up twice, a lost one
    not at all, and a rolled-back load leaves nothing."""
    with env.admin() as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS audit")
        conn.execute("CREATE TABLE IF NOT EXISTS audit.applied (k text NOT NULL, batch_no int NOT NULL)")
        conn.execute(sql.SQL("""CREATE OR REPLACE FUNCTION audit.log_rows() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
            BEGIN INSERT INTO audit.applied SELECT {}, batch_no FROM new_rows; RETURN NULL; END $$""")
                     .format(sql.Identifier(key)))
        for event in ("INSERT", "UPDATE"):
            conn.execute(sql.SQL("CREATE TRIGGER {} AFTER " + event + " ON gold.{} REFERENCING NEW TABLE AS new_rows "
                                 "FOR EACH STATEMENT EXECUTE FUNCTION audit.log_rows()").format(
                sql.Identifier(f"audit_{event.lower()}"), sql.Identifier(table)))


def versioned_batch(b: int, n: int, step: int) -> pa.Table:
    """Batch b: keys [b*step, b*step + n) (consecutive batches overlap: inserts and updates)."""
    keys = np.arange(b * step, b * step + n)
    return pa.table({
        "k": pc.binary_join_element_wise("c", pa.array(np.char.zfill(keys.astype(str), 8)), ""),
        "batch_no": pa.array(np.full(n, b), pa.int32()),
        "val": pa.array(keys * 1.5 + b, pa.float64()),
        "note": pa.array(np.where(keys % 7 == 0, "", "n" + str(b)), pa.string()),
    })


def check_exactly_once(env: Env, table: str, app_id: str, batches: dict[int, pa.Table]) -> tuple[int, int]:
    """Every batch's rows applied exactly once (audit), recorded once, and the table's final state
    is the batches applied in order. Returns (rows lost, rows duplicated)."""
    expected: dict[str, tuple] = {}
    for b in sorted(batches):
        for r in batches[b].to_pylist():
            expected[r["k"]] = (r["batch_no"], r["val"], r["note"])
    with env.admin() as conn:
        applied = dict(rows(conn, "SELECT batch_no, count(*) FROM audit.applied GROUP BY batch_no"))
        distinct = rows(conn, "SELECT count(*) FROM (SELECT DISTINCT k, batch_no FROM audit.applied) d")[0][0]
        recorded = rows(conn, "SELECT batch_id, count(*), sum(rows) FROM assay.loaded_batches "
                              "WHERE table_name = %s AND app_id = %s GROUP BY batch_id", table, app_id)
        state = {k: (b, v, n) for k, b, v, n in rows(conn, sql.SQL("SELECT k, batch_no, val, note FROM gold.{}").format(
            sql.Identifier(table)).as_string(conn))}
    total = sum(applied.values())
    lost = sum(max(0, batches[b].num_rows - applied.get(b, 0)) for b in batches)
    duplicated = total - distinct + sum(max(0, applied.get(b, 0) - batches[b].num_rows) for b in batches)
    assert {b: (c, s) for b, c, s in recorded} == {b: (1, t.num_rows) for b, t in batches.items()}
    assert state == expected
    return lost, duplicated


# ----------------------------------------------------------------------------- configuration
def test_config_checks_names_and_never_shows_the_password(pg):
    with pytest.raises(ConfigError, match="schema"):
        PostgresConfig.from_mapping({"host": "h", "dbname": "d", "schema": 'gold"; DROP TABLE x; --'})
    with pytest.raises(ConfigError, match="roles.analyst"):
        PostgresConfig.from_mapping({"host": "h", "dbname": "d", "roles": {"owner": "o", "writer": "w", "analyst": "a b"}})
    with pytest.raises(ConfigError, match="unknown key"):
        PostgresConfig.from_mapping({"host": "h", "dbname": "d", "passwd": "x"})
    with pytest.raises(ConfigError, match="sslmode"):
        PostgresConfig.from_mapping({"host": "h", "dbname": "d", "sslmode": "verify-fully"})
    with pytest.raises(ConfigError, match="needs either"):
        PostgresConfig.from_mapping({"user": "u"})
    with pytest.raises(ConfigError, match="may only read"):
        PostgresConfig.from_mapping({"host": "h", "dbname": "d", "user": "a", "roles": {"owner": "o", "writer": "w", "analyst": "a"}})
    with pytest.raises(FlowError, match="column name"):
        PostgresSink(pg.config()).ensure_table("t", pa.schema([("bad-name", pa.int64())]), [])
    with pytest.raises(FlowError, match="table name"):
        PostgresSink(pg.config()).ensure_table("t; drop", pa.schema([("a", pa.int64())]), [])

    secret = "wrong-password-4f1c8a2b"
    config = PostgresConfig.from_mapping(pg.config(password=secret, user=pg.loader))
    assert secret not in repr(config)
    with pytest.raises(FlowError) as failure:
        PostgresSink(config).ensure_table("t", pa.schema([("a", pa.int64())]), ["a"])
    text = str(failure.value)
    assert "gold.t" in text and "password authentication failed" in text and secret not in text
    assert secrets.redact(f"x {secret} y") == "x ***postgres.password*** y"

    dsn = PostgresConfig.from_mapping({"dsn": f"postgresql://u:{secret}x@db.example.com:5432/analytics?sslmode=verify-full"})
    assert secret not in dsn.describe() and "db.example.com:5432/analytics" in dsn.describe()
    with pytest.raises(ConfigError, match="sslmode"):
        PostgresConfig.from_mapping({"dsn": "host=h dbname=d sslmode=nope"})


# ------------------------------------------------------------------------- create and evolve
TYPED = pa.schema([
    ("id", pa.int64()), ("i8", pa.int8()), ("i16", pa.int16()), ("i32", pa.int32()), ("u8", pa.uint8()),
    ("u16", pa.uint16()), ("u32", pa.uint32()), ("u64", pa.uint64()), ("f32", pa.float32()), ("f64", pa.float64()),
    ("money", pa.decimal128(10, 2)), ("big", pa.decimal128(38, 9)), ("s", pa.string()), ("ls", pa.large_string()),
    ("flag", pa.bool_()), ("day", pa.date32()), ("ts", pa.timestamp("us", tz="UTC")), ("ts_ntz", pa.timestamp("us")),
    ("ts_ms", pa.timestamp("ms", tz="UTC")),
])
EXPECTED_TYPES = {
    "id": "bigint", "i8": "smallint", "i16": "smallint", "i32": "integer", "u8": "smallint", "u16": "integer",
    "u32": "bigint", "u64": "numeric(20,0)", "f32": "real", "f64": "double precision", "money": "numeric(10,2)",
    "big": "numeric(38,9)", "s": "text", "ls": "text", "flag": "boolean", "day": "date",
    "ts": "timestamp with time zone", "ts_ntz": "timestamp without time zone", "ts_ms": "timestamp with time zone",
}


def column_types(conn, table: str) -> dict:
    return dict(rows(conn, """SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
                              WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped""", f"gold.{table}"))


def test_ensure_table_creates_with_primary_key_and_adds_new_columns(pg):
    with pg.sink() as sink:
        change = sink.ensure_table("typed", TYPED, ["id"])
        assert change.created and change.table == "gold.typed"
        assert sink.ensure_table("typed", TYPED, ["id"]).added_columns == ()          # idempotent
        with pg.admin() as conn:
            assert column_types(conn, "typed") == EXPECTED_TYPES
            assert rows(conn, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'gold.typed'::regclass") == [(pg.roles["owner"],)]
            assert rows(conn, """SELECT pg_get_constraintdef(oid) FROM pg_constraint
                                 WHERE conrelid = 'gold.typed'::regclass AND contype = 'p'""") == [("PRIMARY KEY (id)",)]

        evolved = TYPED.append(pa.field("segment", pa.string())).append(pa.field("score", pa.decimal128(5, 1)))
        change = sink.ensure_table("typed", evolved, ["id"])
        assert change.added_columns == ("segment", "score") and not change.created
        with pg.admin() as conn:
            types = column_types(conn, "typed")
            assert types["segment"] == "text" and types["score"] == "numeric(5,1)"

        with pytest.raises(FlowError, match=r"tags.*list<item: string>.*no PostgreSQL mapping"):
            sink.ensure_table("typed", evolved.append(pa.field("tags", pa.list_(pa.string()))), ["id"])
        with pytest.raises(FlowError, match=r"money is numeric\(10,2\) in PostgreSQL but numeric\(12,2\)"):
            sink.ensure_table("typed", evolved.set(evolved.get_field_index("money"), pa.field("money", pa.decimal128(12, 2))), ["id"])
        with pytest.raises(FlowError, match=r"primary key \(id\).*keys are \(i8\)"):
            sink.ensure_table("typed", evolved, ["i8"])
        with pytest.raises(FlowError, match="not in its schema"):
            sink.ensure_table("other", TYPED, ["nope"])
        multi = sink.ensure_table("summary", pa.schema([("contract", pa.string()), ("internet", pa.string()),
                                                         ("n", pa.int64())]), ["contract", "internet"])
        assert multi.created
    assert postgres_type(pa.field("d", pa.dictionary(pa.int32(), pa.string()))) == "text"


# ------------------------------------------------------------------------------------ upserts
def typed_rows() -> pa.Table:
    utc = dt.timezone.utc
    strings = ["plain", "", None, 'with "quotes"', "comma, and; semi", "new\nline\r\nand tab\t", "back\\slash",
               "\\.", "\\N", "NULL", "ünïcødé ✓ 日本"]
    n = len(strings)
    return pa.table({
        "id": pa.array(range(1, n + 1), pa.int64()),
        "i8": pa.array([-128, 127] + [None] * (n - 2), pa.int8()),
        "i16": pa.array([-32768, 32767] + [0] * (n - 2), pa.int16()),
        "i32": pa.array([-2**31, 2**31 - 1] + [7] * (n - 2), pa.int32()),
        "u8": pa.array([255] * n, pa.uint8()), "u16": pa.array([65535] * n, pa.uint16()),
        "u32": pa.array([2**32 - 1] * n, pa.uint32()), "u64": pa.array([2**64 - 1] + [None] * (n - 1), pa.uint64()),
        "f32": pa.array([1.1, float("inf"), float("-inf"), None] + [0.5] * (n - 4), pa.float32()),
        "f64": pa.array([0.1 + 0.2, float("nan"), -0.0, 1e308, 5e-324, None] + [2.5] * (n - 6), pa.float64()),
        "money": pa.array([Decimal("12345678.90"), Decimal("-0.01"), None] + [Decimal("1.00")] * (n - 3), pa.decimal128(10, 2)),
        "big": pa.array([Decimal("12345678901234567890123456789.123456789"), None] + [Decimal("0")] * (n - 2), pa.decimal128(38, 9)),
        "s": pa.array(strings, pa.string()), "ls": pa.array(list(reversed(strings)), pa.large_string()),
        "flag": pa.array([True, False, None] + [True] * (n - 3)),
        "day": pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31), None] + [dt.date(2024, 2, 29)] * (n - 3)),
        "ts": pa.array([dt.datetime(2026, 11, 1, 12, 30, 45, 123456, tzinfo=utc), None,
                        dt.datetime(1970, 1, 1, tzinfo=utc)] + [dt.datetime(2000, 1, 1, tzinfo=utc)] * (n - 3),
                       pa.timestamp("us", tz="UTC")),
        "ts_ntz": pa.array([dt.datetime(2026, 11, 1, 12, 30, 45, 123456), None] + [dt.datetime(1999, 12, 31, 23, 59, 59)] * (n - 2),
                           pa.timestamp("us")),
        "ts_ms": pa.array([dt.datetime(2026, 6, 1, 0, 0, 0, 1000, tzinfo=utc)] * n, pa.timestamp("ms", tz="UTC")),
    })


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, Decimal) and isinstance(b, int):
        return a == b
    return a == b


def test_upsert_round_trips_every_type_and_a_replayed_batch_is_a_no_op(pg, tmp_path):
    data = typed_rows()
    with pg.sink() as sink:
        sink.ensure_table("typed", TYPED, ["id"])
        first = sink.upsert_batch("typed", write_files(tmp_path / "b0", data, files=3), ["id"], "flow_a", 0)
        assert (first.rows, first.skipped) == (data.num_rows, False)
        with pg.admin() as conn:
            got = rows(conn, sql.SQL("SELECT {} FROM gold.typed ORDER BY id").format(
                sql.SQL(", ").join(map(sql.Identifier, TYPED.names))).as_string(conn))
        for want, have in zip(data.to_pylist(), got):
            for name, value in zip(TYPED.names, have):
                expect = want[name]
                if name == "f32" and expect is not None and math.isfinite(expect):
                    expect = float(np.float32(expect))
                assert same(value, expect) or (value is not None and expect is not None and
                                               isinstance(value, float) and math.isclose(value, expect, rel_tol=1e-6)), \
                    (name, want["id"], value, expect)

        # read back as Arrow (what a verification compares): the same values, in the mapped types
        back = sink.read_table("typed", order_by=["id"])
        assert back.schema.names == TYPED.names and str(back.schema.field("u64").type) == "decimal128(20, 0)"
        assert back.schema.field("ts").type == pa.timestamp("us", tz="UTC")
        for want, have in zip(data.cast(back.schema).to_pylist(), back.to_pylist()):
            assert all(same(have[c], want[c]) for c in TYPED.names), (want, have)

        # the same batch id again, even with different files: nothing happens
        changed = data.set_column(data.schema.get_field_index("s"), "s", pa.array(["changed"] * data.num_rows))
        replay = sink.upsert_batch("typed", write_files(tmp_path / "b0-replay", changed), ["id"], "flow_a", 0)
        assert replay.skipped and replay.rows == 0
        # a later batch updates some keys, inserts others; a column its files lack becomes NULL
        later = pa.table({"id": pa.array([1, 2, 100], pa.int64()), "s": ["one", "two", "hundred"],
                          "money": pa.array([Decimal("9.99")] * 3, pa.decimal128(10, 2))})
        second = sink.upsert_batch("typed", write_files(tmp_path / "b1", later), ["id"], "flow_a", 1)
        assert (second.rows, second.skipped) == (3, False)
        # the same batch id of another app id is another batch
        assert not sink.upsert_batch("typed", write_files(tmp_path / "b1-other", later), ["id"], "flow_b", 1).skipped
        assert sink.loaded_batches("typed", "flow_a") == [0, 1]
        assert sink.last_batch("typed", "flow_a") == 1 and sink.last_batch("typed", "nobody") is None
        with pg.admin() as conn:
            assert rows(conn, "SELECT id, s, money, flag, ts FROM gold.typed WHERE id IN (1, 2, 100) ORDER BY id") == [
                (1, "one", Decimal("9.99"), None, None), (2, "two", Decimal("9.99"), None, None),
                (100, "hundred", Decimal("9.99"), None, None)]
            assert rows(conn, "SELECT count(*) FROM gold.typed") == [(data.num_rows + 1,)]
            assert rows(conn, "SELECT count(*) FROM assay.loaded_batches") == [(3,)]


class DataFile:
    """What the runtime's Delta data files give the sink: a path and the partition values."""
    def __init__(self, path, partition_values):
        self.path, self.partition_values = path, partition_values


def test_partition_values_of_delta_files_become_columns(pg, tmp_path):
    schema = pa.schema([("id", pa.int64()), ("v", pa.string()), ("day", pa.date32()), ("hour", pa.int32())])
    files = []
    for i, (day, hour) in enumerate([("2026-11-01", "3"), ("2026-11-02", "")]):
        files.append(DataFile(write_files(tmp_path / f"p{i}", pa.table({"id": pa.array([i * 10 + 1, i * 10 + 2], pa.int64()),
                                                                          "v": ["a", "b"]}))[0],
                               {"day": day, "hour": hour}))
    with pg.sink() as sink:
        sink.ensure_table("parted", schema, ["id"])
        assert sink.upsert_batch("parted", files, ["id"], "f", 0).rows == 4
    with pg.admin() as conn:
        assert rows(conn, "SELECT id, v, day, hour FROM gold.parted ORDER BY id") == [
            (1, "a", dt.date(2026, 11, 1), 3), (2, "b", dt.date(2026, 11, 1), 3),
            (11, "a", dt.date(2026, 11, 2), None), (12, "b", dt.date(2026, 11, 2), None)]


def test_dictionary_view_and_half_float_columns_load_as_their_value_types(pg, tmp_path):
    data = pa.table({"k": pa.array([1, 2, 3], pa.int64()),
                     "d": pa.array(["x", "y", "x"]).dictionary_encode(),
                     "sv": pa.array(["p", None, ""], pa.string_view()),
                     "h": pa.array(np.array([1.5, 2, -0.25], np.float16))})
    with pg.sink() as sink:
        sink.ensure_table("encoded", data.schema, ["k"])
        assert sink.upsert_batch("encoded", write_files(tmp_path / "e", data), ["k"], "a", 0).rows == 3
    with pg.admin() as conn:
        assert column_types(conn, "encoded") == {"k": "bigint", "d": "text", "sv": "text", "h": "real"}
        assert rows(conn, "SELECT k, d, sv, h FROM gold.encoded ORDER BY k") == [
            (1, "x", "p", 1.5), (2, "y", None, 2.0), (3, "x", "", -0.25)]


def test_failures_name_the_table_the_batch_and_postgres_own_message(pg, tmp_path):
    schema = pa.schema([("id", pa.int64()), ("v", pa.string())])
    with pg.sink() as sink:
        sink.ensure_table("t", schema, ["id"])
        sink.upsert_batch("t", write_files(tmp_path / "ok", pa.table({"id": [1], "v": ["kept"]}, schema=schema)), ["id"], "app", 0)
        dup = write_files(tmp_path / "dup", pa.table({"id": [5, 5], "v": ["x", "y"]}, schema=schema))
        with pytest.raises(FlowError) as failure:
            sink.upsert_batch("t", dup, ["id"], "app", 3)
        text = str(failure.value)
        assert "gold.t" in text and "batch 3 of app" in text and "cannot affect row a second time" in text
        assert "SQLSTATE 21000" in text
        with pytest.raises(FlowError, match=r"gold\.t .*batch 4 of app.*invalid input syntax for type bigint"):
            bad = pa.table({"id": ["not-a-number"], "v": ["z"]})
            sink.upsert_batch("t", write_files(tmp_path / "bad", bad), ["id"], "app", 4)
        with pytest.raises(FlowError, match=r"extra.*call ensure_table"):
            wider = pa.table({"id": [9], "v": ["w"], "extra": [1.0]})
            sink.upsert_batch("t", write_files(tmp_path / "wide", wider), ["id"], "app", 5)
        with pytest.raises(FlowError, match="does not exist: call ensure_table"):
            sink.upsert_batch("missing", dup, ["id"], "app", 0)
        with pytest.raises(FlowError, match=r"gold\.t.*batch 6 of app.*failed reading its files"):
            sink.upsert_batch("t", [str(tmp_path / "nope.parquet")], ["id"], "app", 6)
        # the sink still works after failures, and none of them was recorded or half-applied
        assert not sink.upsert_batch("t", write_files(tmp_path / "ok2", pa.table({"id": [2], "v": ["b"]}, schema=schema)),
                                     ["id"], "app", 3).skipped
        assert sink.loaded_batches("t", "app") == [0, 3]
    with pg.admin() as conn:
        assert rows(conn, "SELECT id, v FROM gold.t ORDER BY id") == [(1, "kept"), (2, "b")]


# -------------------------------------------------------------------------- materialized views
def mv_version(v: int) -> pa.Table:
    n = 500 + 97 * v
    return pa.table({"contract": pa.array([f"c{i % 50}" for i in range(n)]),
                     "internet": pa.array([f"i{i // 50}" for i in range(n)]),
                     "version": pa.array([v] * n, pa.int32()), "total": pa.array(np.arange(n) * 0.5)})


@pytest.mark.parametrize("method", ["swap", "in_place"])
def test_replace_table_is_atomic_under_concurrent_readers_and_keeps_grants(pg, tmp_path, method):
    keys = ["contract", "internet"]
    sizes = {v: mv_version(v).num_rows for v in range(10)}
    with pg.sink() as sink:
        first = sink.replace_table("summary", write_files(tmp_path / "v0", mv_version(0)), keys, method=method)
        assert first.rows == sizes[0]
    auditor = f"auditor_{pg.db}"
    with pg.admin() as conn:       # grants given by hand and a comment must survive every replacement
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(auditor)))
        conn.execute(sql.SQL("GRANT SELECT ON gold.summary TO {}").format(sql.Identifier(auditor)))
        conn.execute("COMMENT ON TABLE gold.summary IS 'contracts by internet service'")
    # a REPEATABLE READ transaction whose snapshot is older than every replacement
    old_snapshot = pg.connect_as("analyst", autocommit=False)
    old_snapshot.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    old_snapshot.execute("SELECT 1")

    stop = threading.Event()
    observations: list[list[tuple]] = [[], [], []]
    errors: list[str] = []

    def reader(slot: int, slow: bool) -> None:
        query = ("SELECT count(*), min(version), max(version) FROM gold.summary" +
                 (", pg_sleep(0.02)" if slow else ""))
        try:
            with pg.connect_as("analyst") as conn:
                while not stop.is_set():
                    observations[slot].append(conn.execute(query).fetchone())
        except Exception as exc:      # noqa: BLE001 - recorded and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=reader, args=(i, i == 2), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        with pg.sink() as sink:
            for v in range(1, 10):
                result = sink.replace_table("summary", write_files(tmp_path / f"v{v}", mv_version(v), files=2), keys,
                                            method=method)
                assert result.rows == sizes[v] and not result.skipped
                # every reader sees the new version before the next one (a bounded wait, no timing assert)
                for _ in range(3000):
                    if errors or all(any(o[1] == v for o in obs[-3:]) for obs in observations):
                        break
                    stop.wait(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    flat = [o for obs in observations for o in obs]
    assert flat and all(lo == hi and count == sizes[lo] for count, lo, hi in flat), \
        [o for o in flat if not (o[1] == o[2] and o[0] == sizes[o[1]])][:5]
    assert {lo for _, lo, _ in flat} >= set(range(1, 10))        # the readers lived through every replacement
    if method == "in_place":       # MVCC-safe: the old snapshot still sees the old rows, whole
        assert old_snapshot.execute("SELECT count(*), min(version), max(version) FROM gold.summary").fetchone() == (sizes[0], 0, 0)
    old_snapshot.close()
    with pg.admin() as conn:
        assert rows(conn, "SELECT has_table_privilege(%s, 'gold.summary', 'SELECT')", auditor) == [(True,)]
        assert rows(conn, "SELECT obj_description('gold.summary'::regclass, 'pg_class')") == [("contracts by internet service",)]
        assert rows(conn, "SELECT count(*), min(version) FROM gold.summary") == [(sizes[9], 9)]
        assert rows(conn, """SELECT conname FROM pg_constraint WHERE conrelid = 'gold.summary'::regclass""") == [("summary_pkey",)]
        assert rows(conn, "SELECT count(*) FROM pg_class WHERE relnamespace = 'gold'::regnamespace AND relname LIKE '%%assay_new%%'") == [(0,)]
        assert rows(conn, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'gold.summary'::regclass") == [(pg.roles["owner"],)]
    with pg.connect_as("writer") as conn:      # the writer's default grants reach the new table too
        assert rows(conn, "SELECT count(*) FROM gold.summary") == [(sizes[9],)]
    # with a batch id, a replacement is recorded and a replay is a no-op
    with pg.sink() as sink:
        assert not sink.replace_table("summary", write_files(tmp_path / "r", mv_version(3)), keys, app_id="mv", batch_id=1,
                                      method=method).skipped
        assert sink.replace_table("summary", write_files(tmp_path / "r2", mv_version(4)), keys, app_id="mv", batch_id=1,
                                  method=method).skipped
        assert sink.replace_table("summary", [], keys, method=method).rows == 0       # no file: emptied, same shape
        empty = sink.read_table("summary")
        assert empty.num_rows == 0 and empty.schema == pa.schema([("contract", pa.string()), ("internet", pa.string()),
                                                                  ("version", pa.int32()), ("total", pa.float64())])
    with pg.admin() as conn:
        assert rows(conn, "SELECT count(*) FROM gold.summary") == [(0,)]


# --------------------------------------------------------------------------- crashes: kill -9
def test_kill_9_of_the_loader_mid_copy_loses_and_duplicates_nothing(pg, tmp_path):
    n_batches, per_batch, step = 14, 30_000, 15_000
    batches = {b: versioned_batch(b, per_batch, step) for b in range(n_batches)}
    job = {"config": pg.config(), "table": "versions", "keys": ["k"],
           "batches": [{"app_id": "kill", "batch_id": b, "files": write_files(tmp_path / f"b{b}", t, files=4)}
                       for b, t in batches.items()]}
    with pg.sink() as sink:
        sink.ensure_table("versions", batches[0].schema, ["k"])
    install_audit(pg, "versions", "k")

    def start_loader():
        proc = subprocess.Popen([sys.executable, "-m", "tests.postgres_loader", json.dumps(job)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l.strip()) for l in proc.stdout] + [lines.put(None)], daemon=True).start()
        return proc, lines

    def recorded(batch_id: int) -> bool:
        with pg.admin() as conn:
            return bool(rows(conn, "SELECT 1 FROM assay.loaded_batches WHERE app_id = 'kill' AND batch_id = %s", batch_id))

    rnd = random.Random(13)
    kills = interrupted = 0
    longest = 0.25                   # shrinks when a kill comes after the commit (a fast machine)
    for _attempt in range(60):
        if interrupted >= 16:
            break
        proc, lines = start_loader()
        line = lines.get(timeout=120)
        while line is not None and not line.startswith("COPY"):
            line = lines.get(timeout=120)
        if line is None:             # finished every batch without being killed: no more to kill
            proc.wait(30)
            break
        batch_id = int(line.split()[1])
        stop = threading.Event()
        stop.wait(rnd.uniform(0.0, longest))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(30)
        if proc.returncode == -signal.SIGKILL and not recorded(batch_id):
            interrupted += 1         # the batch being copied was not committed: the kill cut it
        else:
            longest *= 0.6
    proc, lines = start_loader()     # the rerun that completes the work
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    lost, duplicated = check_exactly_once(pg, "versions", "kill", batches)
    print(f"\nkill -9 of the loader: {kills} kills, {interrupted} mid-load (batch uncommitted), "
          f"{lost} rows lost, {duplicated} duplicated")
    assert interrupted >= 15 and lost == 0 and duplicated == 0


# ---------------------------------------------------------------- crashes: PostgreSQL restarts
def test_postgres_stopped_mid_load_then_rerun_loads_each_batch_once(pg, tmp_path):
    server = pg.server
    batches = {b: versioned_batch(b, 20_000, 10_000) for b in range(3)}
    files = {b: write_files(tmp_path / f"b{b}", t, files=4) for b, t in batches.items()}
    with pg.sink() as sink:
        sink.ensure_table("versions", batches[0].schema, ["k"])
    install_audit(pg, "versions", "k")

    sink = pg.sink()
    for b, mode in ((0, "fast"), (1, "immediate")):
        streaming, stopped = threading.Event(), threading.Event()
        outcome: list = []

        def paused_files(paths):
            for i, path in enumerate(paths):
                if i == 1:             # the COPY is open and a file is in it: stop PostgreSQL now
                    streaming.set()
                    stopped.wait(120)
                yield path

        def load():
            try:
                outcome.append(sink.upsert_batch("versions", paused_files(files[b]), ["k"], "restart", b))
            except Exception as exc:  # noqa: BLE001 - asserted below
                outcome.append(exc)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        assert streaming.wait(120)
        server.stop(mode)
        stopped.set()
        loader.join(120)
        failure = outcome[0]
        assert isinstance(failure, FlowError), failure
        assert "gold.versions" in str(failure) and f"batch {b} of restart" in str(failure)
        # while PostgreSQL is down the next attempt fails too, naming the table and the batch
        with pytest.raises(FlowError, match=rf"gold\.versions \(batch {b} of restart\).*(refused|failed)"):
            sink.upsert_batch("versions", files[b], ["k"], "restart", b)
        server.start()
        assert sink.loaded_batches("versions", "restart") == list(range(b))        # nothing of batch b landed
        assert not sink.upsert_batch("versions", files[b], ["k"], "restart", b).skipped
        assert sink.upsert_batch("versions", files[b], ["k"], "restart", b).skipped
    assert not sink.upsert_batch("versions", files[2], ["k"], "restart", 2).skipped
    sink.close()
    assert check_exactly_once(pg, "versions", "restart", batches) == (0, 0)


# ------------------------------------------------------------------------------ least privilege
def test_roles_enforce_least_privilege(pg, tmp_path):
    schema = pa.schema([("id", pa.int64()), ("v", pa.string())])
    with pg.sink() as sink:
        sink.ensure_table("features", schema, ["id"])
        sink.upsert_batch("features", write_files(tmp_path / "a", pa.table({"id": [1, 2], "v": ["a", "b"]}, schema=schema)),
                          ["id"], "app", 0)
    owner, writer, analyst = pg.roles["owner"], pg.roles["writer"], pg.roles["analyst"]
    with pg.admin() as conn:       # things the analyst must not see
        conn.execute("CREATE SCHEMA silver")
        conn.execute("CREATE TABLE silver.customers (id int, email text)")
        conn.execute("CREATE TABLE public.secrets (k text)")
    apply_roles(pg.config(), admin=pg.server.conninfo(pg.db), passwords=PASSWORDS)        # idempotent
    with pg.sink() as sink:        # a table created after the grants: readable through default privileges
        sink.ensure_table("later", schema, ["id"])
        sink.upsert_batch("later", write_files(tmp_path / "b", pa.table({"id": [7], "v": ["x"]}, schema=schema)),
                          ["id"], "app", 0)

    denied = (pg_errors.InsufficientPrivilege,)
    with pg.connect_as("analyst") as conn:
        assert rows(conn, "SELECT id, v FROM gold.features ORDER BY id") == [(1, "a"), (2, "b")]
        assert rows(conn, "SELECT id, v FROM gold.later") == [(7, "x")]
        for statement in ("INSERT INTO gold.features VALUES (3, 'c')", "UPDATE gold.features SET v = 'z'",
                          "DELETE FROM gold.features", "TRUNCATE gold.features", "CREATE TABLE gold.mine (a int)",
                          "CREATE VIEW gold.mine AS SELECT 1 AS a", "DROP TABLE gold.features",
                          "ALTER TABLE gold.features ADD COLUMN x int", "SELECT * FROM silver.customers",
                          "SELECT * FROM public.secrets", "CREATE TABLE public.mine (a int)",
                          "SELECT * FROM assay.loaded_batches", f'SET ROLE "{writer}"'):
            with pytest.raises(denied):
                conn.execute(statement)
        assert rows(conn, "SELECT count(*) FROM gold.features") == [(2,)]

    with pg.connect_as("writer") as conn:
        with conn.transaction(force_rollback=True):          # it may load...
            conn.execute("INSERT INTO gold.features VALUES (3, 'c')")
            conn.execute("UPDATE gold.features SET v = 'z' WHERE id = 3")
            conn.execute("DELETE FROM gold.features WHERE id = 3")
            conn.execute("TRUNCATE gold.later")
            conn.execute("INSERT INTO assay.loaded_batches (table_schema, table_name, app_id, batch_id, rows) "
                         "VALUES ('gold', 'x', 'y', 1, 0)")
        # ...but not change grants: GRANT/REVOKE without grant option change nothing (PostgreSQL
        # only warns), and the rest is refused
        conn.execute(sql.SQL("GRANT INSERT, DELETE ON gold.features TO {}").format(sql.Identifier(analyst)))
        conn.execute(sql.SQL("REVOKE SELECT ON gold.features FROM {}").format(sql.Identifier(analyst)))
        conn.execute("GRANT ALL ON SCHEMA gold TO PUBLIC")
        conn.execute("GRANT SELECT ON gold.features TO PUBLIC")
        for statement in (sql.SQL("GRANT {} TO {}").format(sql.Identifier(owner), sql.Identifier(writer)),
                          sql.SQL("GRANT {} TO {}").format(sql.Identifier(analyst), sql.Identifier(writer)),
                          sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA gold GRANT ALL ON TABLES TO PUBLIC")
                          .format(sql.Identifier(owner)),
                          sql.SQL("CREATE TABLE gold.mine (a int)"),
                          sql.SQL("DROP TABLE gold.features"), sql.SQL("ALTER TABLE gold.features OWNER TO {}").format(sql.Identifier(writer)),
                          sql.SQL("SET ROLE {}").format(sql.Identifier(owner)),
                          sql.SQL("DELETE FROM assay.loaded_batches"), sql.SQL("SELECT * FROM silver.customers")):
            with pytest.raises(denied):
                conn.execute(statement)
    with pg.admin() as conn:
        assert rows(conn, "SELECT has_table_privilege(%s, 'gold.features', 'INSERT'), "
                          "has_table_privilege(%s, 'gold.features', 'DELETE'), "
                          "has_table_privilege(%s, 'gold.features', 'SELECT')", analyst, analyst, analyst) == [(False, False, True)]
        assert rows(conn, "SELECT has_schema_privilege('public', 'gold', 'CREATE'), "
                          "has_schema_privilege('public', 'gold', 'USAGE'), "
                          "has_table_privilege('public', 'gold.features', 'SELECT')") == [(False, False, False)]

    # a loader logged in as the writer itself loads existing tables but cannot run DDL
    with pg.sink(user=writer) as sink:
        result = sink.upsert_batch("features", write_files(tmp_path / "c", pa.table({"id": [2, 4], "v": ["B", "d"]}, schema=schema)),
                                   ["id"], "app", 1)
        assert result.rows == 2
        with pytest.raises(FlowError, match=r"gold\.brand_new.*permission denied"):
            sink.ensure_table("brand_new", schema, ["id"])
        with pytest.raises(FlowError, match=r"gold\.features.*permission denied"):
            sink.replace_table("features", write_files(tmp_path / "d", pa.table({"id": [1], "v": ["r"]}, schema=schema)), ["id"])
    with pg.connect_as("analyst") as conn:
        assert rows(conn, "SELECT id, v FROM gold.features ORDER BY id") == [(1, "a"), (2, "B"), (4, "d")]
    with pg.sink(user=writer) as sink:      # an in-place replacement needs no DDL: the writer may do it
        sink.replace_table("later", write_files(tmp_path / "e", pa.table({"id": [8, 9], "v": ["p", "q"]}, schema=schema)),
                           ["id"], method="in_place")
    with pg.connect_as("analyst") as conn:
        assert rows(conn, "SELECT id, v FROM gold.later ORDER BY id") == [(8, "p"), (9, "q")]
