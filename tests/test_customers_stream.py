"""The customers_stream reference pipeline end to end: generated customer messages through the real
Kafka broker (tests/kafka_broker.py) into bronze, silver and gold Delta tables, gold mirrored into
the real PostgreSQL server (tests/postgres_server.py) under least-privilege roles, every table
compared row for row with the generator's truth, in Delta and in PostgreSQL.

- one run over every drop = one run per drop, with PostgreSQL stopped (a crash) and restarted
  between runs: the Delta side goes on, the next run catches PostgreSQL up;
- `assay status` shows each Kafka partition's lag;
- the analyst reads gold and nothing else, and cannot write; the writer cannot change grants;
- kill -9 of `assay run` during Kafka ingestion, during the gold flows and inside the PostgreSQL
  load transaction (≥ 15 kills): 0 lost, 0 duplicated, in Delta and in PostgreSQL.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import errors as pg_errors

from assay.errors import FlowError
from assay.generator import generate
from assay.generator.kafka_producer import produce
from assay.generator.to_kafka import _key
from tests.conftest import ROOT, cli, table

pytest_plugins = ["tests.postgres_server"]
pytestmark = pytest.mark.kafka

PIPELINE = ROOT / "pipelines" / "customers_stream"
PASSWORD_ENV = "CUSTOMERS_PG_PASSWORD"
LOADER_PASSWORD = "cs-loader-pw-4e1f0a"
ROLE_PASSWORDS = {"analyst": "cs-analyst-pw-8b2d71", "writer": "cs-writer-pw-03c9ee"}
KILLS = int(os.environ.get("ASSAY_CUSTOMERS_KILLS", "16"))


class Setup:
    """A copy of the pipeline reading its own topic, with its own storage and PostgreSQL database
    (roles are cluster-wide: their names carry a suffix)."""

    def __init__(self, tmp: Path, broker, server, name: str):
        self.broker, self.server = broker, server
        self.folder = tmp / name
        shutil.copytree(PIPELINE / "transformations", self.folder / "transformations")
        sfx = uuid.uuid4().hex[:6]
        self.topic = broker.create_topic(f"customers-{sfx}", 3)
        self.db = server.create_database("cust")
        self.roles = {"owner": f"cs_owner_{sfx}", "writer": f"cs_writer_{sfx}", "analyst": f"cs_analyst_{sfx}"}
        self.loader = f"cs_loader_{sfx}"
        spec = yaml.safe_load((PIPELINE / "assay.yml").read_text())
        for key in ("targets", "default_target"):
            spec.pop(key)
        spec["storage"] = "./storage"
        spec["configuration"]["kafka.bootstrap_servers"] = broker.bootstrap
        spec["configuration"]["kafka.topic"] = self.topic
        spec["postgres"].update(host=server.host, port=server.port, dbname=self.db, user=self.loader,
                                roles=self.roles, connect_timeout=5)
        (self.folder / "assay.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
        self.env = {PASSWORD_ENV: LOADER_PASSWORD, "ASSAY_PG_ADMIN_PASSWORD": server.password,
                    **{f"CS_{k.upper()}_PW": v for k, v in ROLE_PASSWORDS.items()}}
        result = cli("postgres", "apply-roles", "-p", str(self.folder), "--admin-user", server.superuser,
                     "--role-password", "analyst=CS_ANALYST_PW", "--role-password", "writer=CS_WRITER_PW",
                     cwd=ROOT, env=self.env)
        assert result.returncode == 0, result.stdout + result.stderr
        self.store = self.folder / "storage"

    def send(self, out: Path, drop: int) -> int:
        manifest = json.loads((out / "truth" / "manifest.json").read_text())
        lines = [line.rstrip(b"\n") for rel in sorted(manifest["files"][str(drop)])
                 for line in open(out / "drops" / str(drop) / rel, "rb") if line.strip()]
        return produce(self.broker.bootstrap, self.topic, [(_key(line), line) for line in lines])

    def connect(self, user: str | None = None, password: str | None = None):
        return self.server.connect(self.db, user=user, password=password)

    def verify(self, truth: Path):
        """Every truth table against Delta, and the published ones against PostgreSQL."""
        from assay.sinks.commands import verify_mirrors
        from assay.spec import load_spec
        from assay.truth import table_reader
        from assay.verify import verify
        spec = load_spec(self.folder)
        report = verify(truth, table_reader(spec))
        report.tables += verify_mirrors(spec, truth)
        return report


def run_in_process(setup: Setup, engine, **options):
    from assay.runtime.runner import RunOptions, Runner
    from assay.spec import load_spec
    return {s.flow: s for s in Runner(load_spec(setup.folder), RunOptions(**options), engine=engine).run()}


def generated(tmp: Path, rows: int, drops: int, seed: int) -> Path:
    out = tmp / f"gen-{seed}"
    generate("customers_stream", out, rows=rows, seed=seed, drops=drops, files_per_drop=1, malformed_rate=0.03,
             late_rate=0.05, null_rate=0.03, duplicate_rate=0.05)
    return out


def events(setup: Setup, kind: str) -> list[dict]:
    return sorted((e for e in table(setup.folder, "_system", "event_log") if e["event_type"] == kind),
                  key=lambda e: e["timestamp"])


def assert_ok(report) -> None:
    assert report.ok, report.render()
    assert {t.name for t in report.tables} >= {"bronze_customers", "silver_customers", "silver_customers_quarantine",
                                               "customer_features", "contract_summary",
                                               "postgres:gold.customer_features", "postgres:gold.contract_summary"}


# ------------------------------------------------------------------------ one run = one run per drop
def test_one_run_equals_a_run_per_drop_with_postgres_restarted_verified_in_delta_and_postgres(
        kafka_broker, postgres_server, engine, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, LOADER_PASSWORD)
    out = generated(tmp_path, rows=6000, drops=3, seed=11)
    truth = out / "truth"

    once = Setup(tmp_path, kafka_broker, postgres_server, "once")
    for drop in range(3):
        once.send(out, drop)
    run_in_process(once, engine)
    assert_ok(once.verify(truth))
    verified = cli("verify", "customers_stream", "--truth", str(truth), "-p", str(once.folder), cwd=ROOT, env=once.env)
    assert verified.returncode == 0 and "OK               postgres:gold.customer_features" in verified.stdout, \
        verified.stdout + verified.stderr

    per = Setup(tmp_path, kafka_broker, postgres_server, "per_drop")
    sent = per.send(out, 0)
    run_in_process(per, engine)
    # PostgreSQL crashes between runs: the next run commits Delta and fails naming what it could not publish
    postgres_server.stop("immediate")
    try:
        sent += per.send(out, 1)
        with pytest.raises(FlowError) as failed:
            run_in_process(per, engine)
    finally:
        postgres_server.start()
    message = " ".join(str(failed.value).split())
    for name in ("customer_features", "contract_summary"):
        assert f"publishing '{name}'" in message
    assert "PostgreSQL" in message and "next run catches PostgreSQL up" in message and LOADER_PASSWORD not in message
    assert {e["target"] for e in events(per, "publish_failed")} == {"customer_features", "contract_summary"}
    assert len(table(per.folder, "bronze", "bronze_customers")) == sent          # the Delta side went on
    per.send(out, 2)
    run_in_process(per, engine)
    assert_ok(per.verify(truth))

    # what the event log counts: out-of-order versions (AUTO CDC), late versions, quarantined rules
    progress = [e for e in events(per, "flow_progress") if e["flow"] == "silver_customers"]
    metrics = [json.loads(e["metrics"]) for e in progress]
    assert sum(m["out_of_order"] for m in metrics) > 0
    late = sum(m["late_versions"] for m in metrics)
    assert 0 < late < 0.1 * sum(e["rows_read"] for e in progress), late      # repeats and late versions only
    rules = Counter(r for row in table(per.folder, "silver", "silver_customers_quarantine") for r in row["failed_rules"])
    assert set(rules) == {"is_json_object", "has_customer_id", "valid_updated_at"}
    caught_up = [json.loads(e["metrics"]) for e in events(per, "publish") if e["target"] == "customer_features"][-1]
    assert caught_up["how"] == "upsert" and caught_up["previous_version"] == 0 and caught_up["delta_version"] == 2
    # silver is partitioned by the hour of updated_at
    from assay.delta.table import open_table
    assert open_table(per.store / "silver" / "silver_customers").metadata().partition_columns == [
        "year", "month", "day", "hour"]

    # assay status: each Kafka partition's lag (0 now; then what was produced since)
    assert status_lag(per) == {0: 0, 1: 0, 2: 0}
    kafka_broker.produce(per.topic, [(b"x", b'{"customer_id":"x"}', 1)] * 7)
    assert status_lag(per) == {0: 0, 1: 7, 2: 0}

    # least privilege, logged in as each role
    check_least_privilege(per)


def status_lag(setup: Setup) -> dict[int, int]:
    """`assay status`'s Kafka table: partition → lag, for the pipeline's topic."""
    status = cli("status", "-p", str(setup.folder), cwd=ROOT, env=setup.env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "kafka lag" in status.stdout, status.stdout
    cells = [[c.strip() for c in line.split("\u2502")] for line in status.stdout.splitlines()]
    return {int(c[2]): int(c[5].replace(",", "")) for c in cells
            if len(c) == 6 and c[0] == "bronze_customers" and c[1] == setup.topic}


def check_least_privilege(setup: Setup) -> None:
    analyst, writer = setup.roles["analyst"], setup.roles["writer"]
    with setup.connect(analyst, ROLE_PASSWORDS["analyst"]) as conn:
        assert conn.execute("SELECT count(*) FROM gold.customer_features").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM gold.contract_summary").fetchone()[0] > 0
        for statement in ("INSERT INTO gold.contract_summary (contract, internet_service) VALUES ('x', 'y')",
                          "UPDATE gold.customer_features SET tenure = 0",
                          "DELETE FROM gold.customer_features",
                          "TRUNCATE gold.contract_summary",
                          "CREATE TABLE gold.mine (x int)",
                          "DROP TABLE gold.contract_summary",
                          "ALTER TABLE gold.customer_features ADD COLUMN y int",
                          "SELECT * FROM assay.loaded_batches",
                          "CREATE TABLE public.mine (x int)",
                          f"SET ROLE {setup.roles['owner']}"):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                conn.execute(statement)
    with setup.connect(writer, ROLE_PASSWORDS["writer"]) as conn:
        assert conn.execute("SELECT count(*) FROM gold.customer_features").fetchone()[0] > 0
        before = conn.execute("SELECT relacl::text FROM pg_class WHERE oid = 'gold.customer_features'::regclass").fetchone()
        conn.execute(f"GRANT INSERT ON gold.customer_features TO {analyst}")        # PostgreSQL warns, grants nothing
        conn.execute(f"REVOKE SELECT ON gold.customer_features FROM {analyst}")
        after = conn.execute("SELECT relacl::text FROM pg_class WHERE oid = 'gold.customer_features'::regclass").fetchone()
        assert before == after
        for statement in ("CREATE TABLE gold.mine (x int)", "DROP TABLE gold.contract_summary",
                          f"ALTER DEFAULT PRIVILEGES FOR ROLE {setup.roles['owner']} GRANT INSERT ON TABLES TO {analyst}"):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                conn.execute(statement)
    with setup.connect(analyst, ROLE_PASSWORDS["analyst"]) as conn:
        assert conn.execute("SELECT has_table_privilege('gold.customer_features', 'INSERT')").fetchone()[0] is False


# ------------------------------------------------------------------------ kill -9
def start_run(setup: Setup, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "assay.cli", "run", "-p", str(setup.folder),
                             "--max-records-per-batch", "400"],
                            cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, **setup.env, "RUST_LOG": "error", "PYTHONUNBUFFERED": "1",
                                 "PYTHONPATH": str(ROOT)})


def running_flow(log: Path) -> str | None:
    text = log.read_text()
    if " completed: " in text:
        return "completed"
    lines = [line.split() for line in text.splitlines() if line.strip().startswith("running")]
    return lines[-1][1] if lines else None


def wait_for(proc: subprocess.Popen, log: Path, needle: str, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log.read_text():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"the run printed no {needle!r} within {timeout}s:\n{log.read_text()}")


LOADING = """SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = %s
             AND backend_xid IS NOT NULL AND state <> 'idle'"""
WAITING = """SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = %s
             AND wait_event_type = 'Lock'"""


def wait_in_postgres(proc: subprocess.Popen, setup: Setup, query: str, timeout: float = 90) -> bool:
    """True as soon as the run's PostgreSQL session matches `query` (a load transaction that has written)."""
    deadline = time.monotonic() + timeout
    with setup.connect() as watcher:
        while time.monotonic() < deadline:
            if watcher.execute(query, (setup.db, setup.loader)).fetchone()[0]:
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.003)
    proc.kill()
    raise AssertionError(f"the run never reached {query!r} within {timeout}s")


def test_kill_9_during_kafka_ingestion_and_postgres_load_exactly_once(kafka_broker, postgres_server, tmp_path,
                                                                     monkeypatch, assay_cli):
    monkeypatch.setenv(PASSWORD_ENV, LOADER_PASSWORD)
    started = time.monotonic()
    drops = KILLS + 2
    out = generated(tmp_path, rows=250 * drops, drops=drops, seed=23)
    setup = Setup(tmp_path, kafka_broker, postgres_server, "kills")
    sent = setup.send(out, 0)
    rng = random.Random(7)
    modes = ["kafka", "postgres_commit", "gold", "postgres_load"]
    hit, attempts, next_drop = Counter(), 0, 1
    while sum(hit[m] for m in modes) < KILLS:
        attempts += 1
        assert attempts < KILLS * 3, f"only {dict(hit)} kills in {attempts} runs"
        mode = modes[attempts % len(modes)]
        log = tmp_path / f"run-{attempts}.log"
        hold = None
        if mode == "postgres_commit":
            # the run's load transaction writes its rows, then waits for the bookkeeping table (this
            # session holds it): the kill lands after the rows, before the record and the commit
            hold = psycopg.connect(**postgres_server.conninfo(setup.db), autocommit=False)
            hold.execute("LOCK TABLE assay.loaded_batches IN EXCLUSIVE MODE")
        proc = start_run(setup, log)
        try:
            if mode == "kafka":
                reached = wait_for(proc, log, "running  bronze_customers")
                time.sleep(rng.uniform(0.0, 1.2))
            elif mode == "gold":
                reached = wait_for(proc, log, "running  customer_features")
                time.sleep(rng.uniform(0.0, 2.5))
            elif mode == "postgres_commit":
                reached = wait_in_postgres(proc, setup, WAITING)
            else:
                reached = wait_in_postgres(proc, setup, LOADING)
            where = running_flow(log) if mode in ("kafka", "gold") else mode
            if reached and proc.poll() is None:
                proc.kill()
                proc.wait()
                hit[mode if where not in ("completed", None) else "missed"] += 1
            else:
                proc.wait()
                assert proc.returncode == 0, log.read_text()
                hit["finished"] += 1
        finally:
            if hold is not None:
                hold.rollback()
                hold.close()
        if next_drop < drops:
            sent += setup.send(out, next_drop)
            next_drop += 1
    while next_drop < drops:
        sent += setup.send(out, next_drop)
        next_drop += 1

    final = assay_cli("run", "-p", str(setup.folder), cwd=ROOT, env=setup.env)    # mends the storage: in process
    assert final.returncode == 0, final.stdout + final.stderr
    report = setup.verify(out / "truth")
    kills = sum(hit[m] for m in modes)
    print(f"kills: {kills} ({dict(hit)}) in {attempts} runs; {sent} messages; {time.monotonic() - started:.0f}s")
    assert_ok(report)
    assert hit["kafka"] >= 3 and hit["postgres_commit"] >= 3 and hit["postgres_load"] >= 3, dict(hit)
    with setup.connect() as conn:       # every Delta version published at most once
        rows = conn.execute("SELECT table_name, batch_id FROM assay.loaded_batches").fetchall()
        assert len(rows) == len(set(rows))
