"""Issue 18, point 10: running pipelines/customers_stream locally as its README says, and the
messages of publishing into PostgreSQL, against the real server of tests/postgres_server.py
(nothing mocked): other targets' secrets are not needed, PostgreSQL's host, port and database
can be given at run time, a refused connection names host:port and what to check, a failure
names the Delta version, an interrupted COPY leaks no psycopg noise, and a run that catches a
mirror up says so in its output."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.errors import ConfigError, FlowError
from assay.runtime.runner import RunOptions, Runner
from assay.sinks.postgres import PostgresSink
from assay.spec import load_spec
from tests.conftest import ROOT, cli, table
from tests.test_publish import PASSWORD_ENV, land, pg_rows

pytest_plugins = ["tests.postgres_server"]

CUSTOMERS = ROOT / "pipelines" / "customers_stream"

PEOPLE = """
from assay import pipelines as dp

@dp.table(name="bronze.changes_raw")
def changes_raw():
    return dp.read_files("changes", format="json", schema="id INT, seq INT, name STRING, amount DECIMAL(10,2), op STRING",
                         include_metadata=False)

dp.create_streaming_table("gold.people", publish=dp.postgres(keys=["id"]))
dp.create_auto_cdc_flow(target="people", source="changes_raw", keys=["id"], sequence_by="seq",
                        apply_as_deletes="op = 'DELETE'", except_column_list=["op"], stored_as_scd_type=1)
"""


def config(host: str, port: int, db: str) -> str:
    return textwrap.dedent(f"""
        name: pub
        storage: ./storage
        landing: ./landing
        schemas: {{bronze: 01_bronze, silver: 02_silver, gold: 03_gold, system: _system}}
        postgres:
          host: {host}
          port: {port}
          dbname: {db}
          user: postgres
          password: ${{env:{PASSWORD_ENV}}}
          schema: gold
          connect_timeout: 3
    """)


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def person(i: int, seq: int = 1, name: str | None = None) -> dict:
    return {"id": i, "seq": seq, "name": name or f"n{i}", "amount": "1.00", "op": "UPSERT"}


@pytest.fixture
def pg(postgres_server, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, postgres_server.password)
    return postgres_server


# ------------------------------------------------------------------------ setup: assay.yml
def test_customers_stream_dev_target_needs_no_event_hubs_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("EVENTHUBS_CONNECTION_STRING", raising=False)
    monkeypatch.setenv("CUSTOMERS_PG_PASSWORD", "a-long-loader-password")
    spec = load_spec(CUSTOMERS)                                 # default target: dev
    assert spec.target == "dev" and spec.configuration["kafka.bootstrap_servers"] == "127.0.0.1:9092"
    # a command of the README, as a new user runs it: exit 0, not 2
    done = cli("postgres", "status", "-p", str(CUSTOMERS), "--storage", str(tmp_path / "storage"), cwd=ROOT,
               env={"CUSTOMERS_PG_PASSWORD": "a-long-loader-password"})
    assert done.returncode == 0, done.stderr
    # the target in use still needs its references, named by key and variable
    with pytest.raises(ConfigError) as missing:
        load_spec(CUSTOMERS, target="azure")
    assert "'targets.azure.configuration.kafka.options.sasl.password'" in str(missing.value)
    assert "EVENTHUBS_CONNECTION_STRING is not set" in str(missing.value)
    monkeypatch.delenv("CUSTOMERS_PG_PASSWORD")
    with pytest.raises(ConfigError, match=r"'postgres.password' refers to \$\{env:CUSTOMERS_PG_PASSWORD\}"):
        load_spec(CUSTOMERS)


def test_customers_stream_readme_psql_step_runs(pg, monkeypatch):
    """The README's `CREATE DATABASE` step, run as written (on the fixture's port, without a terminal
    to type a password into)."""
    readme = (CUSTOMERS / "README.md").read_text().replace("\\\n", " ")
    step = next(line for line in readme.splitlines() if line.lstrip().split(" ", 1)[0] != "#" and "psql" in line)
    step = step.split("  #")[0].replace("port=5432", f"port={pg.port}").replace("analytics", "analytics_readme")
    env = {**os.environ, "ASSAY_PG_ADMIN_PASSWORD": pg.password}
    env.pop("PGPASSWORD", None)
    done = subprocess.run(["bash", "-c", step], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{step}\n{done.stderr}"
    assert pg_rows(pg, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'analytics_readme'") == [(1,)]


def test_postgres_host_port_and_database_are_given_at_run_time(pg, project, engine):
    db = pg.create_database("pub")
    folder = project({"transformations/p.py": PEOPLE}, config("127.0.0.1", closed_port(), "not_this_one"))
    land(folder, "a.json", [person(1), person(2)])
    spec = load_spec(folder, conf={"postgres.port": str(pg.port), "postgres.dbname": db,
                                   "postgres.host": pg.host})
    assert spec.conf_overrides == frozenset()          # not a dp.config key: no "no dataset reads" error
    Runner(spec, RunOptions(), engine=engine).run()
    assert pg_rows(pg, db, "SELECT id FROM gold.people ORDER BY id") == [(1,), (2,)]
    with pytest.raises(ConfigError, match=r"postgres\.password.*\$\{env:NAME\} in assay.yml"):
        load_spec(folder, conf={"postgres.password": "x"})
    with pytest.raises(ConfigError, match="postgres.port must be a port number"):
        load_spec(folder, conf={"postgres.port": "fivefourthreetwo"})
    with pytest.raises(ConfigError, match="only postgres.host, postgres.port"):
        load_spec(folder, conf={"postgres.schema": "public"})


# ------------------------------------------------------------------------ publish errors
def test_a_refused_connection_names_host_port_and_what_to_check(pg, project, run_pipeline):
    port = closed_port()
    folder = project({"transformations/p.py": PEOPLE}, config("127.0.0.1", port, "pub"))
    land(folder, "a.json", [person(1)])
    with pytest.raises(FlowError) as failure:
        run_pipeline(folder)
    message = str(failure.value)
    assert f"127.0.0.1:{port} refused the connection" in message
    assert "postgres.host" in message and "postgres.port" in message
    assert "DDL" not in message                        # no statement ever ran
    assert "'people' (Delta version 0" in message and "gold.people" in message
    assert pg.password not in message
    assert {r["id"] for r in table(folder, "03_gold", "people")} == {1}       # Delta committed anyway


def test_a_failed_publish_names_the_delta_version(pg, project, run_pipeline):
    db = pg.create_database("pub")
    folder = project({"transformations/p.py": PEOPLE}, config(pg.host, pg.port, db))
    land(folder, "a.json", [person(1)])
    run_pipeline(folder)
    with pg.connect(db) as conn:                        # someone retyped a column by hand
        conn.execute("ALTER TABLE gold.people ALTER COLUMN amount TYPE text")
    land(folder, "b.json", [person(2)])
    with pytest.raises(FlowError) as failure:
        run_pipeline(folder)
    message = str(failure.value)
    assert "publishing 'people' (Delta version 1" in message and "gold.people" in message
    assert "column type changed" in message


def test_a_copy_cut_by_a_lost_server_leaks_no_psycopg_warning(pg, tmp_path, caplog):
    db = pg.create_database("sink")
    sink = PostgresSink({**pg.conninfo(db), "application_name": "assay_victim", "batch_rows": 1000})
    schema = pa.schema([("id", pa.int64()), ("v", pa.string())])
    sink.ensure_table("t", schema, ["id"])
    rows = 200_000
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": range(rows), "v": ["x" * 50] * rows}, schema=schema), path)

    def files():                                        # the server ends the session mid-COPY
        yield str(path)
        with pg.connect(db) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'assay_victim'")
        yield str(path)

    caplog.set_level(logging.DEBUG)
    with pytest.raises(FlowError, match=r"upsert of gold\.t .*failed"):
        sink.upsert_batch("t", files(), ["id"], "app", 1)
    leaked = [r.getMessage() for r in caplog.records if "error ignored terminating" in r.getMessage()]
    assert leaked == []
    assert sink.upsert_batch("t", [str(path)], ["id"], "app", 1).rows == rows     # reconnects, loads once
    assert pg_rows(pg, db, "SELECT count(*) FROM gold.t") == [(rows,)]


def test_a_run_that_catches_a_mirror_up_says_so(pg, project, run_pipeline):
    db = pg.create_database("pub")
    folder = project({"transformations/p.py": PEOPLE}, config(pg.host, pg.port, db))
    env = {PASSWORD_ENV: pg.password}
    land(folder, "a.json", [person(1)])
    land(folder, "b.json", [person(2)])
    first = cli("run", "--max-files-per-batch", "1", cwd=folder, env=env, check=True)
    assert "caught up" not in first.stdout              # each version mirrored by the run that made it

    (folder / "assay.yml").write_text(config("127.0.0.1", closed_port(), db))
    land(folder, "c.json", [person(3)])
    with pytest.raises(FlowError):
        run_pipeline(folder)                            # Delta version 2 committed, not mirrored

    (folder / "assay.yml").write_text(config(pg.host, pg.port, db))
    land(folder, "d.json", [person(1, seq=2, name="ann")])
    again = cli("run", cwd=folder, env=env, check=True)
    lines = [line for line in again.stdout.splitlines() if "caught up" in line]
    assert lines == ["mirror gold.people caught up from Delta version 1 to 3 (2 rows loaded, 0 deleted)"], again.stdout
    assert pg_rows(pg, db, "SELECT id, name FROM gold.people ORDER BY id") == [(1, "ann"), (2, "n2"), (3, "n3")]
