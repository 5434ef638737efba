"""How `assay ui` answers with a long history: RUNS runs of a 6-flow pipeline in the event log.

Writes the event log through delta-rs as the runtime does (schema of assay.runtime.eventlog;
by default one commit per run, `--per-event` for one commit per event as `assay run` writes
it: ~14 per run, much slower to generate), starts `assay ui` on a free loopback port, then
times: the first /api/runs (cold: the whole log read), later ones (warm), the other documents,
the runs page in Chromium until rendered (when /usr/bin/chromium is there), and one more run
appended (the incremental read).

Usage: python bench/bench_ui.py [RUNS] [--per-event]
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from assay.runtime.eventlog import SCHEMA

ROOT = Path(__file__).resolve().parent.parent
FLOWS = [("orders_raw", None), ("customers", None), ("orders", ["has_id", "positive_amount", "known_customer"]),
         ("order_lines", ["has_order"]), ("daily_revenue", None), ("customer_totals", None)]
PIPELINE = textwrap.dedent('''
    from pyspark.sql import functions as F
    from assay import pipelines as dp

    @dp.table(name="bronze.orders_raw")
    def orders_raw():
        return dp.read_files("orders", format="json", schema="id STRING, customer INT, amount DOUBLE")

    @dp.table(name="bronze.customers")
    def customers():
        return dp.read_files("customers", format="json", schema="customer INT, name STRING")

    @dp.table(name="silver.orders", quarantine=True)
    @dp.expect_or_drop("has_id", "id IS NOT NULL")
    @dp.expect_or_drop("positive_amount", "amount > 0")
    @dp.expect("known_customer", "customer IS NOT NULL")
    def orders():
        return dp.read_stream("orders_raw")

    @dp.table(name="silver.order_lines")
    @dp.expect("has_order", "id IS NOT NULL")
    def order_lines():
        return dp.read_stream("orders").select("id", "amount")

    @dp.materialized_view(name="gold.daily_revenue")
    def daily_revenue():
        return dp.read("order_lines").groupBy("id").agg(F.sum("amount").alias("revenue"))

    @dp.materialized_view(name="gold.customer_totals")
    def customer_totals():
        return dp.read("orders").join(dp.read("customers"), "customer").groupBy("customer").count()
''')


def run_events(index: int, start: datetime) -> list[dict]:
    run_id = f"{start:%Y%m%dT%H%M%S}-{index:06x}"
    failed = index % 97 == 96                                  # now and then a run fails
    t = start
    rows = [dict(run_id=run_id, event_type="run_started", timestamp=t, metrics=json.dumps({"engine": "sail"}))]
    for n, (flow, rules) in enumerate(FLOWS):
        t += timedelta(seconds=0.4)
        read = 10_000 + (index * 37 + n * 11) % 5000
        dropped = (index + n) % 7 if rules else 0
        common = dict(run_id=run_id, flow=flow, target=flow, timestamp=t, rows_read=read, rows_written=read - dropped,
                      rows_dropped=dropped, rows_quarantined=dropped, rows_late=index % 3, rows_duplicate=index % 5,
                      duration_s=0.4, inputs=json.dumps([]), outputs=json.dumps([flow]))
        if failed and n == 2:
            rows.append(dict(common, event_type="flow_failed", status="failed", rows_written=None,
                             message=f"flow '{flow}' (defined at transformations/shop.py:14) failed: boom"))
            rows.append(dict(run_id=run_id, event_type="run_failed", timestamp=t, status="failed", duration_s=2.5,
                             message=f"flow '{flow}' failed"))
            return rows
        expectations = json.dumps([{"name": r, "action": "drop", "passed": read - k, "failed": k}
                                   for k, r in enumerate(rules or [])]) if rules else None
        rows.append(dict(common, event_type="flow_progress", batch_id=index, status="ok", expectations=expectations,
                         sources=json.dumps({f"files:json:/landing/{flow}": {"files": 3, "bytes": 123456}})))
        rows.append(dict(common, event_type="flow_completed", status="completed"))
    rows.append(dict(run_id=run_id, event_type="run_completed", timestamp=t, status="completed", duration_s=2.5))
    return rows


def write_log(path: Path, runs: int, per_event: bool) -> float:
    started = time.perf_counter()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for index in range(runs):
        rows = [dict(r, pipeline="bench") for r in run_events(index, start + timedelta(minutes=10 * index))]
        batches = [[r] for r in rows] if per_event else [rows]
        for batch in batches:
            write_deltalake(str(path), pa.Table.from_pylist(batch, schema=SCHEMA), mode="append")
    return time.perf_counter() - started


def get(url: str) -> tuple[float, dict]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        body = json.loads(response.read())
    return time.perf_counter() - started, body


def main(runs: int = 1000, per_event: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "bench_ui"
        (project / "transformations").mkdir(parents=True)
        (project / "assay.yml").write_text("name: bench_ui\nstorage: ./storage\nlanding: ./landing\n"
                                           "schemas: {bronze: 01_bronze, silver: 02_silver, gold: 03_gold, "
                                           "system: _system}\n")
        (project / "transformations" / "shop.py").write_text(PIPELINE)
        log = project / "storage" / "_system" / "event_log"
        seconds = write_log(log, runs, per_event)
        files = len(list(log.glob("*.parquet")))
        print(f"event log: {runs:,} runs, {files:,} data files, {len(list((log / '_delta_log').glob('*.json'))):,} "
              f"commits, written in {seconds:.1f}s")
        env = {**os.environ, "HOME": tmp, "TMPDIR": tmp, "RUST_LOG": "error"}
        server = subprocess.Popen([sys.executable, "-m", "assay.cli", "ui", "-p", str(project), "--port", "0"],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            found: list[str] = []
            reader = threading.Thread(target=lambda: found.extend(re.findall(r"http://\S+/", server.stdout.readline())))
            reader.start()
            reader.join(60)
            if not found:
                raise SystemExit(f"assay ui did not start: {server.stderr.read()}")
            url = found[0]
            cold, body = get(url + "api/runs?offset=0&limit=50")
            assert body["total"] == runs, body["total"]
            warm = [get(url + "api/runs?offset=0&limit=50")[0] for _ in range(20)]
            deep = [get(url + f"api/runs?offset={runs - 50}&limit=50")[0] for _ in range(5)]
            print(f"/api/runs first page: cold {cold * 1000:.0f} ms (whole log read), warm median "
                  f"{statistics.median(warm) * 1000:.1f} ms; last page median {statistics.median(deep) * 1000:.1f} ms")
            for path in ("api/runs/" + body["runs"][0]["run_id"], "api/quality?last=50", "api/graph", "api/state"):
                first, _ = get(url + path)
                again = statistics.median(get(url + path)[0] for _ in range(5))
                print(f"/{path.split('?')[0] if 'runs/' not in path else 'api/runs/RUN'}"
                      f"{'?' + path.split('?')[1] if '?' in path else ''}: first {first * 1000:.0f} ms, "
                      f"then {again * 1000:.1f} ms")
            if os.access("/usr/bin/chromium", os.X_OK):
                page_load(url, tmp)
            else:
                print("runs page in a browser: skipped (no /usr/bin/chromium; bash scripts/browser.sh install)")
            t = time.perf_counter()
            start = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=10 * runs)
            for row in run_events(runs, start):
                write_deltalake(str(log), pa.Table.from_pylist([dict(row, pipeline="bench")], schema=SCHEMA),
                                mode="append")
            appended = time.perf_counter() - t
            took, body = get(url + "api/runs?offset=0&limit=50")
            assert body["total"] == runs + 1
            print(f"one more run appended ({appended:.2f}s, one commit per event): next /api/runs "
                  f"{took * 1000:.0f} ms (incremental read)")
        finally:
            server.terminate()
            server.wait(20)


def page_load(url: str, tmp: str) -> None:
    from playwright.sync_api import sync_playwright
    args = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-gpu"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=args,
                                     env={**os.environ, "HOME": tmp, "TMPDIR": tmp})
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        times = []
        for _ in range(5):
            started = time.perf_counter()
            page.goto(url + "?t=%d#/runs" % len(times))
            page.wait_for_selector("body[data-page='runs'][data-ready='1'] #runs-table tbody tr", state="attached",
                                   timeout=60_000)
            times.append(time.perf_counter() - started)
        rows = len(page.query_selector_all("#runs-table tbody tr"))
        bars = len(page.query_selector_all("svg.timeline rect.bar"))
        browser.close()
    print(f"runs page in Chromium (navigation to rendered table of {rows} runs + {bars}-run timeline): "
          f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(arguments[0]) if arguments else 1000, per_event="--per-event" in sys.argv)
