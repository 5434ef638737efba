"""What a new user met with the engines (issue 18): one Ctrl-C that hung for minutes (point 5)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

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

