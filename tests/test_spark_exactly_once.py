"""Exactly once on Apache Spark: kill -9 the `assay run` process, or the Spark Connect server itself,
in the middle of batches, restart what died, run again: nothing lost, nothing duplicated.

Everything real: the session's Spark Connect server (tests/spark_server.py) for the runs that are
killed, and a second server of this module's own for the one whose server is killed and restarted.
Executors write each batch's files into the tables' folders; the Assay process commits them through
delta-rs with the batch's application transaction (docs/engines.md) — the same protocol as on the
embedded engine, so the same replay makes a killed batch land once.

Run: python -m pytest -q tests/test_spark_exactly_once.py
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from assay.engines import spark_server as launcher
from assay.generator import generate, land_drop
from tests import pipeline_support as support
from tests.conftest import ROOT, cli, table, write_project
from tests.spark_server import START_TIMEOUT_S, cache
from tests.test_engine_parity import differences, run_on

ZENITH = ROOT / "pipelines" / "zenith"
KILLS = int(os.environ.get("ASSAY_SPARK_KILLS", "6"))
# Each server kill costs a restart (5-7 s) and a run on a cold JVM: four reach bronze, silver and gold.
SERVER_KILLS = int(os.environ.get("ASSAY_SPARK_SERVER_KILLS", "4"))


def test_kill_9_of_assay_run_on_spark(spark_server, tmp_path):
    """Zenith's generated drops on Spark (`--remote`), runs killed -9 across bronze, silver and gold
    of drops 2 and 3; a last run (`--engine spark`, reusing the server) and the tables equal the truth."""
    out = tmp_path / "gen"
    generate("zenith", out, rows=4000, seed=31, drops=3)
    landing, store = tmp_path / "landing", tmp_path / "storage"
    remote = ("--remote", spark_server)
    land_drop(out, landing, 0)
    support.finish_run(ZENITH, landing, store, remote)

    rng = random.Random(7)
    plan = [(1, r"running\s+bronze_user_events\s+batches=1", "bronze, 2nd file of drop 2"),
            (None, r"running\s+silver_sessionized_activity\s+batches=1", "silver, 2nd file of drop 2"),
            (None, r"running\s+gold_daily_product_performance", "gold, drop 2"),
            (2, r"running\s+bronze_user_events\s+batches=0", "bronze, 1st file of drop 3"),
            (None, r"running\s+silver_sessionized_activity\s+batches=2", "silver, 3rd file of drop 3"),
            (None, r"running\s+customer_purchase_summary", "gold, drop 3")][:KILLS]
    kills = support.kill_through_drops(ZENITH, out, landing, store, tmp_path, plan, rng, max_delay=1.0,
                                       extra=remote)
    print(f"kill -9 of assay run on Spark landed in: {kills}")
    assert len(kills) >= min(3, KILLS), f"only {len(kills)} kills landed: {kills}"

    # `--engine spark` without an address reuses a server the launcher started on ASSAY_SPARK_PORT
    result = cli("run", "-p", str(ZENITH), "--landing", str(landing), "--storage", str(store), "--engine", "spark",
                 cwd=ROOT, timeout=300, env={"ASSAY_SPARK_PORT": str(spark_server.port)})
    assert result.returncode == 0, result.stdout + result.stderr
    report = support.verify_storage(ZENITH, out / "truth", store)
    assert report.ok, f"after kills at {kills}:\n{report.render()}"
    assert not list(store.rglob("_SUCCESS")) and not list(store.rglob("*.crc")), "Spark left clutter in the tables"


# ---------------------------------------------------------------------------------- the server killed
@pytest.fixture
def own_server(tmp_path):
    """A Spark Connect server of this test's own (it is killed -9 and restarted on the same port)."""
    server = launcher.SparkServer(port=launcher.free_port(), run_dir=tmp_path / "server", cache=cache())
    server.start(timeout_s=START_TIMEOUT_S, watch_pid=os.getpid())
    yield server
    server.stop()


def kill_server(server: launcher.SparkServer) -> None:
    pid = server.pid()
    assert pid is not None, "the server is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (server.pid() is not None or launcher.port_open(server.port)) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_kill_9_of_the_spark_server_then_restart(own_server, engine, tmp_path):
    """tests/test_exactly_once.py's pipeline (bronze with quarantine, silver deduplicated with a
    watermark, a gold view) on a server that is killed -9 in the middle of a batch, then restarted on
    the same port; the interrupted run fails on its own (its session died with the server) and the
    next run goes on. The tables equal those of one uninterrupted run on the embedded engine (which
    tests/test_exactly_once.py holds to its model of the files)."""
    from tests.test_exactly_once import PIPELINE, land, make_files, running_flow

    folder = write_project(tmp_path / "proj", {"transformations/p.py": PIPELINE})
    files = make_files(seed=17)[:4 + 2 * SERVER_KILLS]
    landed = 0
    for name, rows in files[:4]:
        land(folder, name, rows)
        landed += 1
    rng = random.Random(3)
    targets = ["events", "clean", "totals"]
    kills, hit, attempts = 0, Counter(), 0

    def start(log: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "assay.cli", "run", "--remote", own_server.remote],
                                cwd=folder, stdout=open(log, "w"),
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "RUST_LOG": "error", "PYTHONUNBUFFERED": "1",
                                     "PYTHONPATH": str(ROOT)})

    while kills < SERVER_KILLS:
        attempts += 1
        assert attempts <= SERVER_KILLS * 3, f"only {kills} server kills landed in {attempts} runs"
        for _ in range(2):
            if landed < len(files):
                land(folder, *files[landed])
                landed += 1
        log = tmp_path / f"run-{attempts}.log"
        proc = start(log)
        target = targets[kills % len(targets)]
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline and f"running  {target}" not in log.read_text():
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.8))
        if proc.poll() is not None:
            assert proc.returncode == 0, log.read_text()
            continue
        kill_server(own_server)
        kills += 1
        hit[running_flow(log) or "startup"] += 1
        own_server.start(timeout_s=START_TIMEOUT_S, watch_pid=os.getpid())
        try:        # the run finds its session gone once the server is back, and stops with an error
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the run did not stop after its server restarted:\n{log.read_text()}")
        assert proc.returncode != 0, log.read_text()
    while landed < len(files):
        land(folder, *files[landed])
        landed += 1
    final = subprocess.run([sys.executable, "-m", "assay.cli", "run", "--remote", own_server.remote], cwd=folder,
                           capture_output=True, text=True, timeout=600,
                           env={**os.environ, "RUST_LOG": "error", "PYTHONPATH": str(ROOT)})
    assert final.returncode == 0, final.stdout + final.stderr
    print(f"server kills: {kills} in {attempts} runs, by flow running at the kill: {dict(hit)}")

    # The same files in one uninterrupted run on the embedded engine: every table equal, row for row
    # (the event log is not: killed runs recorded their failures).
    reference = run_on(engine, folder, None, tmp_path / "reference")
    assert all(s.status == "done" for s in reference.values()), reference
    problems = differences({"sail": tmp_path / "reference", "spark": folder / "storage"},
                           skip=("_system/event_log",))
    assert not problems, f"after {kills} server kills ({dict(hit)}):\n" + "\n".join(problems)
    ids = Counter(r["id"] for r in table(folder, "02_silver", "clean"))
    assert ids and max(ids.values()) == 1, "silver holds a key twice"
