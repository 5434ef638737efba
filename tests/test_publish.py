"""Publishing Delta tables into PostgreSQL from the runtime (`publish=dp.postgres(...)`, assay.yml
`postgres:`), against the real server of tests/postgres_server.py: appends, AUTO CDC updates and
deletes, a materialized view replaced whole, catch-up after PostgreSQL was unreachable (the
Delta side untouched), vacuumed history, and the errors a user meets."""
from __future__ import annotations

import json
import textwrap
from decimal import Decimal

import pytest

from assay.errors import ConfigError, FlowError, GraphError
from tests.conftest import table, write_project

pytest_plugins = ["tests.postgres_server"]

PASSWORD_ENV = "ASSAY_TEST_PG_PASSWORD"

PIPELINE = """
from pyspark.sql import functions as F
from assay import pipelines as dp

@dp.table(name="bronze.changes_raw", publish=dp.postgres(keys=["id", "seq"], table="raw_changes"))
def changes_raw():
    return dp.read_files("changes", format="json", schema="id INT, seq INT, name STRING, amount DECIMAL(10,2), op STRING",
                         include_metadata=False)

dp.create_streaming_table("gold.people", publish=dp.postgres(keys=["id"]))
dp.create_auto_cdc_flow(target="people", source="changes_raw", keys=["id"], sequence_by="seq",
                        apply_as_deletes="op = 'DELETE'", except_column_list=["op"], stored_as_scd_type=1)

@dp.materialized_view(name="gold.totals", publish=dp.postgres(keys=["name"]))
def totals():
    return dp.read("people").groupBy("name").agg(F.sum("amount").alias("amount"), F.count(F.lit(1)).alias("people"))
"""


SQL_VIEW = """
CREATE MATERIALIZED VIEW gold.names
TBLPROPERTIES ('assay.publish' = 'postgres', 'assay.publish.keys' = 'name', 'assay.publish.replace' = 'in_place')
AS SELECT name, count(*) AS people FROM people GROUP BY name;
"""


def config(server, db: str, port: int | None = None) -> str:
    return textwrap.dedent(f"""
        name: pub
        storage: ./storage
        landing: ./landing
        schemas: {{bronze: 01_bronze, silver: 02_silver, gold: 03_gold, system: _system}}
        postgres:
          host: {server.host}
          port: {port or server.port}
          dbname: {db}
          user: postgres
          password: ${{env:{PASSWORD_ENV}}}
          schema: gold
          connect_timeout: 3
    """)


@pytest.fixture
def pg(postgres_server, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, postgres_server.password)
    return postgres_server


def land(folder, name: str, rows: list[dict]) -> None:
    path = folder / "landing" / "changes" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def pg_rows(server, db: str, query: str) -> list[tuple]:
    with server.connect(db) as conn:
        return conn.execute(query).fetchall()


def events(folder, kind: str) -> list[dict]:
    return sorted((e for e in table(folder, "_system", "event_log") if e["event_type"] == kind),
                  key=lambda e: e["timestamp"])


def test_appends_updates_deletes_and_a_view_are_mirrored_and_caught_up(pg, project, run_pipeline):
    db = pg.create_database("pub")
    folder = project({"transformations/p.py": PIPELINE, "transformations/t.sql": SQL_VIEW}, config(pg, db))
    land(folder, "a.json", [{"id": 1, "seq": 1, "name": "ann", "amount": "10.50", "op": "UPSERT"},
                            {"id": 2, "seq": 1, "name": "bob", "amount": "3.25", "op": "UPSERT"},
                            {"id": 3, "seq": 1, "name": "cid", "amount": "7.00", "op": "UPSERT"}])
    run_pipeline(folder)
    assert pg_rows(pg, db, "SELECT id, name, amount FROM gold.people ORDER BY id") == [
        (1, "ann", Decimal("10.50")), (2, "bob", Decimal("3.25")), (3, "cid", Decimal("7.00"))]
    assert pg_rows(pg, db, "SELECT count(*) FROM gold.raw_changes") == [(3,)]
    # keys and types come from the Delta schema
    assert pg_rows(pg, db, """SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
                              AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'gold.people'::regclass
                              AND i.indisprimary""") == [("id",)]
    assert pg_rows(pg, db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                           "attrelid = 'gold.people'::regclass AND attname = 'amount'") == [("numeric(10,2)",)]

    # an update, a delete and a late (older) change: PostgreSQL follows the Delta table
    land(folder, "b.json", [{"id": 1, "seq": 2, "name": "ann", "amount": "11.00", "op": "UPSERT"},
                            {"id": 2, "seq": 2, "op": "DELETE"},
                            {"id": 3, "seq": 0, "name": "old", "amount": "1.00", "op": "UPSERT"}])
    run_pipeline(folder)
    assert pg_rows(pg, db, "SELECT id, name, amount FROM gold.people ORDER BY id") == [
        (1, "ann", Decimal("11.00")), (3, "cid", Decimal("7.00"))]
    assert pg_rows(pg, db, "SELECT name, amount, people FROM gold.totals ORDER BY name") == [
        ("ann", Decimal("11.00"), 1), ("cid", Decimal("7.00"), 1)]
    assert pg_rows(pg, db, "SELECT name, people FROM gold.names ORDER BY name") == [("ann", 1), ("cid", 1)]
    upserts = [json.loads(e["metrics"]) for e in events(folder, "publish") if e["target"] == "people"]
    assert [(m["how"], m["rows_upserted"], m["rows_deleted"]) for m in upserts] == [("full", 3, 0), ("upsert", 1, 1)]

    # PostgreSQL unreachable: Delta goes on, the run fails naming the table, its version and the cause
    unreachable = folder / "assay.yml"
    unreachable.write_text(config(pg, db, port=1))
    land(folder, "c.json", [{"id": 4, "seq": 1, "name": "dee", "amount": "2.00", "op": "UPSERT"}])
    with pytest.raises(FlowError) as failure:
        run_pipeline(folder)
    message = str(failure.value)
    assert "publishing 'people' (Delta version 2" in message and "refused the connection" in message
    assert "next run catches PostgreSQL up" in message and pg.password not in message
    assert {r["id"] for r in table(folder, "03_gold", "people")} == {1, 3, 4}          # Delta committed
    failed = events(folder, "publish_failed")
    assert {e["target"] for e in failed} == {"changes_raw", "people", "totals", "names"}
    land(folder, "d.json", [{"id": 3, "seq": 2, "op": "DELETE"}])
    with pytest.raises(FlowError):
        run_pipeline(folder)

    # back: one publish covers every version since, deletes included
    unreachable.write_text(config(pg, db))
    run_pipeline(folder)
    assert pg_rows(pg, db, "SELECT id, name FROM gold.people ORDER BY id") == [(1, "ann"), (4, "dee")]
    assert pg_rows(pg, db, "SELECT name FROM gold.totals ORDER BY name") == [("ann",), ("dee",)]
    assert pg_rows(pg, db, "SELECT count(*) FROM gold.raw_changes") == [(8,)]
    last = [json.loads(e["metrics"]) for e in events(folder, "publish") if e["target"] == "people"][-1]
    assert last["previous_version"] == 1 and last["delta_version"] == 3 and last["rows_deleted"] == 1
    # the bookkeeping holds one row per published version, in the same database
    versions = pg_rows(pg, db, "SELECT table_name, batch_id FROM assay.loaded_batches ORDER BY 1, 2")
    assert ("people", 3) in versions and len(versions) == len(set(versions))

    # nothing new: nothing published
    before = len(events(folder, "publish"))
    run_pipeline(folder)
    assert len(events(folder, "publish")) == before


def test_a_full_refresh_and_vacuumed_history_keep_the_mirror_equal(pg, project, run_pipeline):
    from assay.maintenance import optimize, vacuum
    from assay.spec import load_spec
    db = pg.create_database("pub")
    folder = project({"transformations/p.py": PIPELINE}, config(pg, db))
    land(folder, "a.json", [{"id": i, "seq": 1, "name": f"n{i}", "amount": "1.00", "op": "UPSERT"} for i in range(5)])
    run_pipeline(folder)
    run_pipeline(folder, full_refresh={"people"})
    assert [r[0] for r in pg_rows(pg, db, "SELECT id FROM gold.people ORDER BY id")] == [0, 1, 2, 3, 4]

    # PostgreSQL falls behind, then the files it would be compared with are vacuumed: it is replaced
    # whole (a row written there by hand goes too)
    with pg.connect(db) as conn:
        conn.execute("INSERT INTO gold.people (id, seq, name, amount) VALUES (99, 1, 'stray', 0)")
    (folder / "assay.yml").write_text(config(pg, db, port=1))
    land(folder, "b.json", [{"id": 0, "seq": 2, "op": "DELETE"}])
    with pytest.raises(FlowError):
        run_pipeline(folder)
    spec = load_spec(folder)
    optimize(spec, ["people"])
    assert vacuum(spec, ["people"], 0)["people"] > 0
    (folder / "assay.yml").write_text(config(pg, db))
    run_pipeline(folder)
    assert [r[0] for r in pg_rows(pg, db, "SELECT id FROM gold.people ORDER BY id")] == [1, 2, 3, 4]
    last = [json.loads(e["metrics"]) for e in events(folder, "publish") if e["target"] == "people"][-1]
    assert last["how"] == "full"


def test_configuration_errors_name_what_is_wrong(pg, project, run_pipeline):
    folder = project({"transformations/p.py": PIPELINE})       # no postgres: section
    land(folder, "a.json", [{"id": 1, "seq": 1, "name": "a", "amount": "1.00", "op": "UPSERT"}])
    with pytest.raises(ConfigError, match="no 'postgres:' section"):
        run_pipeline(folder)
    no_keys = PIPELINE.replace('publish=dp.postgres(keys=["id", "seq"], table="raw_changes")', "publish=dp.postgres()")
    folder2 = write_project(folder.parent / "p2", {"transformations/p.py": no_keys}, config(pg, "postgres"))
    land(folder2, "a.json", [{"id": 1, "seq": 1, "name": "a", "amount": "1.00", "op": "UPSERT"}])
    with pytest.raises(GraphError, match="published to PostgreSQL without keys"):
        run_pipeline(folder2)
    bad = folder / "assay.yml"
    bad.write_text(config(pg, "postgres").replace("schema: gold", "schema: gold; DROP TABLE x"))
    with pytest.raises(ConfigError, match="schema"):
        run_pipeline(folder)


def test_a_column_added_to_the_delta_table_is_added_in_postgres(pg, project, run_pipeline):
    db = pg.create_database("pub")
    folder = project({"transformations/p.py": PIPELINE}, config(pg, db))
    land(folder, "a.json", [{"id": 1, "seq": 1, "name": "ann", "amount": "1.00", "op": "UPSERT"}])
    run_pipeline(folder)
    wider = PIPELINE.replace("op STRING", "op STRING, city STRING")
    (folder / "transformations" / "p.py").write_text(textwrap.dedent(wider))
    land(folder, "b.json", [{"id": 2, "seq": 1, "name": "bob", "amount": "2.00", "op": "UPSERT", "city": "Lyon"}])
    run_pipeline(folder)
    assert pg_rows(pg, db, "SELECT id, city FROM gold.raw_changes ORDER BY id") == [(1, None), (2, "Lyon")]
    assert pg_rows(pg, db, "SELECT id, city FROM gold.people ORDER BY id") == [(1, None), (2, "Lyon")]
