"""Smoke run of the benchmark's Spark baseline (bench/baseline/): small generated data, one run each,
on the local Spark Connect server (tests/spark_server.py). Row counts only; no timing is asserted.

Run: python -m pytest -q tests/test_baseline_smoke.py
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

pytest_plugins = ["tests.spark_server"]

ROOT = Path(__file__).resolve().parent.parent
ROWS = 4000


def generate(pipeline: str, out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "assay.cli", "generate", pipeline, "--out", str(out),
                    "--rows", str(ROWS), "--landing", str(out / "landing")],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    return json.loads((out / "truth" / "manifest.json").read_text())


def baseline(script: str, out: Path, remote: str) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "baseline" / script),
                           "--landing", str(out / "landing"), "--out", str(out / "storage"), "--remote", remote],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def truth_rows(manifest: dict, table: str) -> int:
    return manifest["tables"][table]["rows"]


def test_zenith_baseline(tmp_path, spark_server):
    manifest = generate("zenith", tmp_path)
    result = baseline("zenith_streaming.py", tmp_path, spark_server)
    rows = result["rows"]
    assert result["pipeline"] == "zenith"
    assert rows["bronze_user_events"] == manifest["event_lines"] == ROWS        # every line, malformed too
    assert rows["bronze_product_details"] > 0 and rows["bronze_customer_profiles"] > 0
    # the seed keeps late rows and rows Assay quarantines, so its silver is at least Assay's
    assert truth_rows(manifest, "silver_sessionized_activity") <= rows["silver_sessionized_activity"] \
        < rows["bronze_user_events"]
    assert rows["gold_daily_product_performance"] > 0
    assert rows["customer_purchase_summary"] > 0
    assert 0 < result["null_region_events"] < rows["silver_sessionized_activity"]


def test_activity_logs_baseline(tmp_path, spark_server):
    manifest = generate("activity_logs", tmp_path)
    result = baseline("activity_logs_streaming.py", tmp_path, spark_server)
    rows = result["rows"]
    assert result["pipeline"] == "activity_logs"
    # the same rules as Assay's pipeline: every landed row in exactly one bronze table
    assert rows["bronze_activity_logs"] + rows["bronze_activity_logs_quarantine"] == ROWS
    assert rows["bronze_activity_logs"] == truth_rows(manifest, "bronze_activity_logs")
    assert rows["bronze_activity_logs_quarantine"] == truth_rows(manifest, "bronze_activity_logs_quarantine")
    # one availableNow batch: nothing is behind the watermark, one row per log_id
    assert rows["silver_activity_logs"] == truth_rows(manifest, "silver_activity_logs")
    assert rows["gold_user_watch_time"] == truth_rows(manifest, "gold_user_watch_time")
    assert rows["gold_region_daily_watch_time"] > 0
    assert rows["bronze_geo_ip"] > 0
