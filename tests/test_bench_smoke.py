"""Smoke runs of the benchmarks `make bench` runs, so they cannot rot: tiny sizes, one repetition,
both engines on the session's Spark Connect server (tests/spark_server.py). The figures are not
checked (no timing is asserted anywhere); what is checked is that every system ran, that Assay's
two engines left the same tables, that Assay's tables equal the generator's truth, and that the
results and the plot were written.

Run: python -m pytest -q tests/test_bench_smoke.py
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

pytest_plugins = ["tests.spark_server"]

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ["assay-sail", "assay-spark", "baseline", "floor-sail", "floor-spark"]


def bench(script: str, *args: str, timeout: float = 1500) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_compare_smoke(tmp_path, spark_server):
    results = tmp_path / "results"
    out = bench("compare.py", "--pipeline", "zenith", "--size", "2MB", "--drops", "10", "--reps", "1",
                "--remote", spark_server,
                "--work", str(tmp_path / "work"), "--results", str(results))
    result = json.loads((results / "compare-zenith-2MB.json").read_text())
    assert [r["system"] for r in result["runs"]] == [s for s in SYSTEMS for _ in
                                                     range(1 if s.startswith("floor") else 3)]
    assert all(r["ok"] and r["seconds"] > 0 and r["peak_rss_mb"] > 0 for r in result["runs"])
    for system in SYSTEMS:
        assert result["summary"][system]["full"]["rows_per_s"] > 0
    for system in ("assay-sail", "assay-spark"):
        assert result["summary"][system]["increment"]["verify"] == ["OK"]
    for kind in ("full", "increment"):
        compared = result["outputs"][kind]
        rows = compared["rows"]
        assert rows["assay-sail"] == rows["assay-spark"]                          # engine parity
        assert rows["baseline"]["bronze_user_events"] == rows["assay-sail"]["bronze_user_events"]
        for diff in compared["gold"]["assay-spark"].values():
            assert diff["only_left"] == diff["only_right"] == diff["different"] == 0
    assert (results / "compare.png").stat().st_size > 0
    assert "where the semantics differ" in out
    assert not (tmp_path / "work" / "zenith-2MB").exists()                       # generated data cleaned up


def test_compare_smoke_activity_logs_on_the_embedded_engine(tmp_path):
    """The CSV pipeline and its floor (the embedded engine's CSV reader would stop at the generated
    malformed rows: the floor splits text lines instead)."""
    results = tmp_path / "results"
    bench("compare.py", "--pipeline", "activity_logs", "--size", "2MB", "--drops", "10", "--reps", "1",
          "--systems", "assay-sail,floor-sail", "--work", str(tmp_path / "work"), "--results", str(results))
    result = json.loads((results / "compare-activity_logs-2MB.json").read_text())
    assert [r["system"] for r in result["runs"]] == ["assay-sail"] * 3 + ["floor-sail"]
    assert all(r["ok"] and r["seconds"] > 0 for r in result["runs"])
    assert result["summary"]["assay-sail"]["increment"]["verify"] == ["OK"]
    assert result["summary"]["floor-sail"]["full"]["rows_per_s"] > 0


def test_kafka_pipeline_smoke(tmp_path, spark_server):
    bench("bench_kafka_pipeline.py", "--messages", "3000", "--reps", "1", "--remote", spark_server,
          "--results", str(tmp_path))
    result = json.loads((tmp_path / "kafka-pipeline.json").read_text())
    assert result["messages"] == 3000
    assert {r["engine"] for r in result["runs"] if r["ok"]} == {"sail", "spark"}
    for engine in ("sail", "spark"):
        assert result["summary"][engine]["messages_per_s"] > 0
        assert set(result["summary"][engine]["flows_s"]) >= {"bronze_customers", "silver_customers"}


def test_days_smoke_on_both_engines(tmp_path, spark_server):
    """bench/days.py: one run a day on the embedded engine, then on Spark; every table verified at
    the end, the results and the plot written."""
    results = tmp_path / "results"
    for engine_args, name in (([], "days-activity_logs-3MB-2"), (["--remote", spark_server], "days-activity_logs-3MB-2-spark")):
        out = bench("days.py", "--pipeline", "activity_logs", "--size", "3MB", "--drops", "2",
                    "--work", str(tmp_path / "work"), "--results", str(results), *engine_args)
        result = json.loads((results / f"{name}.json").read_text())
        [run] = result["runs"]
        assert len(run["walls"]) == 2 and all(w > 0 for w in run["walls"]), out
        assert run["verify"] == "activity_logs: every table matches the truth", out
        assert (results / f"{name}.png").stat().st_size > 0
