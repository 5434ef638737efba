"""What a new user met with the engines (issue 18, points 5, 6 and 11): one Ctrl-C that hung for
minutes, a Spark Connect address that was silent for 10 minutes, and the Spark engine's setup (two
jar caches, "unexpected" setup errors, a silent JVM start, run folders left by killed runs)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from assay.engines import spark_server
from tests.conftest import ASSAY, ROOT, cli, table, write_project

INTERRUPTED = "interrupted: the current batch was not committed; the next run resumes it."

# Bronze holds each batch in a pandas UDF for SLOW_S seconds: a batch that takes a while.
PIPELINE = """
import os
import time

import pandas as pd
from pyspark.sql import functions as F
from assay import pipelines as dp

@F.pandas_udf("int")
def slow_n(n: pd.Series) -> pd.Series:
    time.sleep(float(os.environ.get("SLOW_S", "0")))
    return n

@dp.table(name="bronze.events")
def events():
    return dp.read_files("events", "json", schema="id STRING, n INT", max_files_per_batch=1).select(
        "id", slow_n("n").alias("n"))

@dp.table(name="silver.copies")
def copies():
    return dp.read_stream("events").select("id", "n")
"""


def project_with_files(folder: Path, files: int) -> list[tuple[str, int]]:
    write_project(folder, {"transformations/p.py": PIPELINE})
    landing = folder / "landing" / "events"
    landing.mkdir(parents=True)
    base = time.time() - 3600
    for i in range(files):
        path = landing / f"f{i:02d}.json"
        path.write_text(json.dumps({"id": f"e{i}", "n": i}) + "\n")
        os.utime(path, (base + i, base + i))
    return [(f"e{i}", i) for i in range(files)]


def rows(folder: Path, schema: str, name: str) -> list[tuple[str, int]]:
    return sorted((r["id"], r["n"]) for r in table(folder, schema, name) or [])


class Run:
    """`assay run` in the background, its output collected by a thread (a hang cannot block the test)."""

    def __init__(self, folder: Path, *args: str, env: dict[str, str]):
        self.proc = subprocess.Popen([*ASSAY, "run", "-p", str(folder), *args], cwd=ROOT, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={**os.environ, "RUST_LOG": "error", "PYTHONUNBUFFERED": "1", **env})
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.text:
            assert self.proc.poll() is None and time.monotonic() < deadline, f"no {needle!r}:\n{self.text}"
            time.sleep(0.1)

    def interrupt(self) -> tuple[int | None, float]:
        """SIGINT once; the exit code and the seconds to exit (None if still running after 60 s)."""
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - sent

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def interrupted_in_a_batch(folder: Path, *args: str, env: dict[str, str]) -> None:
    """Ctrl-C 2 s into a batch that takes 60 s: the run exits within 10 s, saying so, with 130."""
    run = Run(folder, *args, env={**env, "SLOW_S": "60"})
    try:
        run.wait_for("batch=0", 180)
        time.sleep(2)
        code, seconds = run.interrupt()
    finally:
        run.kill()
    assert code == 130 and seconds < 10, f"exit {code} after {seconds:.1f} s:\n{run.text}"
    assert run.text.rstrip().endswith(INTERRUPTED), run.text


@pytest.mark.slow
def test_ctrl_c_stops_a_run_within_seconds_and_the_next_run_resumes(tmp_path):
    """Point 5: the embedded engine. One Ctrl-C hung for minutes (PySpark retried to cancel the
    query and release the session on a server that the interrupt had stopped)."""
    folder = tmp_path / "proj"
    landed = project_with_files(folder, 5)
    interrupted_in_a_batch(folder, env={})
    assert rows(folder, "01_bronze", "events") == []               # the interrupted batch is not there
    cli("run", "-p", str(folder), cwd=ROOT, env={"SLOW_S": "0"}, check=True)
    assert rows(folder, "01_bronze", "events") == landed
    assert rows(folder, "02_silver", "copies") == landed


@pytest.mark.service      # three JVMs, one at a time
@pytest.mark.slow
def test_spark_engine_says_it_starts_a_server_stops_on_ctrl_c_and_removes_killed_runs_folders(tmp_path):
    """Points 5 and 11 on Apache Spark, with the server the engine starts for each run: the start
    is said; a run killed with SIGKILL leaves its run folder, which the next start removes once
    its server has stopped; Ctrl-C stops within seconds; the third run completes the tables."""
    folder = tmp_path / "proj"
    landed = project_with_files(folder, 4)
    tmp = tmp_path / "tmp"                  # the runs' temporary folder: only this test's run folders
    tmp.mkdir()
    env = {"TMPDIR": str(tmp), "ASSAY_SPARK_PORT": str(spark_server.free_port())}   # none to reuse

    def servers_gone(timeout_s: float = 60) -> list[Path]:
        """The run folders left in tmp, once no server runs in any (one server at a time)."""
        deadline = time.monotonic() + timeout_s
        while any(spark_server.SparkServer(port=0, run_dir=d).pid() for d in tmp.glob("assay-spark-*")):
            assert time.monotonic() < deadline, "a Spark server outlived its run by a minute"
            time.sleep(0.5)
        return sorted(tmp.glob("assay-spark-*"))

    killed = Run(folder, "--engine", "spark", env={**env, "SLOW_S": "60"})
    try:
        killed.wait_for("batch=0", 240)
    finally:
        killed.kill()
    start = [line for line in killed.lines if "starting a local Spark Connect server" in line]
    assert start and killed.text.index(start[0]) < killed.text.index("batch=0"), killed.text
    assert "ready at sc://127.0.0.1:" in killed.text, killed.text
    left = servers_gone()
    assert [d.name.split("-")[2] for d in left] == [str(killed.proc.pid)]    # the killed run's folder

    interrupted_in_a_batch(folder, "--engine", "spark", env=env)
    assert left[0] not in servers_gone()                                     # removed by that start

    cli("run", "-p", str(folder), "--engine", "spark", cwd=ROOT, env={**env, "SLOW_S": "0"}, check=True)
    assert servers_gone() == []             # the interrupted run's folder too, and the last run's own
    assert rows(folder, "01_bronze", "events") == landed
    assert rows(folder, "02_silver", "copies") == landed


def test_stale_run_folders_are_those_of_ended_processes(tmp_path):
    """Point 11: which folders a start removes. Owners are real processes: one ended, one alive."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    old = time.time() - spark_server.LEGACY_RUN_DIR_AGE_S - 60
    folders = {name: tmp_path / name for name in (f"assay-spark-{ended.pid}-a1b2", f"assay-spark-{os.getpid()}-c3d4",
                                                  "assay-spark-legacyold", "assay-spark-legacynew")}
    for folder in folders.values():
        (folder / "tmp").mkdir(parents=True)
    os.utime(folders["assay-spark-legacyold"], (old, old))
    removed = spark_server.remove_stale_run_dirs(tmp_path)
    assert sorted(p.name for p in removed) == [f"assay-spark-{ended.pid}-a1b2", "assay-spark-legacyold"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"assay-spark-{os.getpid()}-c3d4", "assay-spark-legacynew"]


def test_make_spark_fetch_and_the_spark_engine_use_one_jar_cache(tmp_path):
    """Point 11: scripts/spark.sh (make spark-fetch) filled the checkout's .cache/spark while the
    engine looked in ~/.cache/assay/spark. Both now use one folder, moved by ASSAY_SPARK_CACHE."""
    env = {k: v for k, v in os.environ.items() if k != "ASSAY_SPARK_CACHE"}

    def engine_cache(extra: dict[str, str]) -> str:
        code = "from assay.engines.spark_server import cache_dir; print(cache_dir())"
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, **extra}, text=True,
                              capture_output=True, timeout=60, check=True).stdout.strip()

    def script_cache(extra: dict[str, str]) -> str:
        out = subprocess.run(["bash", "scripts/spark.sh", "status", "1"], cwd=ROOT, env={**env, **extra},
                             text=True, capture_output=True, timeout=60)
        assert out.returncode == 3, out.stdout + out.stderr                  # nothing runs on port 1
        return out.stdout.split(" run=")[1].strip().removesuffix("/run-1")

    assert engine_cache({}) == script_cache({}) == str(ROOT / ".cache" / "spark")
    moved = str(tmp_path / "jars-here")
    assert engine_cache({"ASSAY_SPARK_CACHE": moved}) == script_cache({"ASSAY_SPARK_CACHE": moved}) == moved


def test_spark_engine_without_jars_or_maven_says_what_to_run(tmp_path):
    """Point 11: `SparkServerError: mvn is required … (an unexpected error …)` became a setup error
    naming what is missing and what to run."""
    folder = tmp_path / "proj"
    project_with_files(folder, 1)
    path = tmp_path / "bin"                 # java and nothing else: no mvn
    path.mkdir()
    (path / "java").symlink_to(os.path.realpath(shutil.which("java")))
    cache = tmp_path / "empty-cache"
    result = cli("run", "-p", str(folder), "--engine", "spark", cwd=ROOT, timeout=120,
                 env={"PATH": str(path), "ASSAY_SPARK_CACHE": str(cache), "JAVA_HOME": "",
                      "ASSAY_SPARK_PORT": str(spark_server.free_port())})
    said = " ".join(result.stderr.split())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "unexpected" not in said and "Traceback" not in said, said
    assert (f"error: mvn is not on PATH; the Spark Connect server's jars are not in {cache / 'jars'} and Maven "
            "fetches them from Maven Central. Install Maven (apt-get install maven), then run "
            "`make spark-fetch`") in said, said


@pytest.mark.slow
def test_a_spark_connect_address_that_does_not_answer_stops_within_the_timeout(tmp_path):
    """Point 6: `--remote sc://localhost:1` was silent for 10 min 12 s, then a raw gRPC error."""
    folder = tmp_path / "proj"
    project_with_files(folder, 1)
    port = spark_server.free_port()         # closed: nothing listens there
    started = time.monotonic()
    result = cli("run", "-p", str(folder), "--remote", f"sc://localhost:{port}", cwd=ROOT, timeout=90,
                 env={"ASSAY_SPARK_CONNECT_TIMEOUT": "3"})
    seconds = time.monotonic() - started
    said = " ".join(result.stderr.split())
    assert result.returncode == 1 and seconds < 3 + 30, f"exit {result.returncode} after {seconds:.0f} s: {said}"
    assert (f"error: no Spark Connect server answered at localhost:{port} within 3 s (a gRPC connection was "
            "tried until then). Check that the server runs and that the host and port are right") in said, said
    assert "_InactiveRpcError" not in said and "unexpected" not in said, said

    # the engine option in assay.yml does the same
    (folder / "assay.yml").write_text((folder / "assay.yml").read_text()
                                      + f"engine: {{spark: {{remote: 'sc://127.0.0.1:{port}', connect_timeout: 2}}}}\n")
    result = cli("run", "-p", str(folder), cwd=ROOT, timeout=90)
    said = " ".join(result.stderr.split())
    assert result.returncode == 1 and f"answered at 127.0.0.1:{port} within 2 s" in said, said
