"""What a new user hits first (issue: a pipeline that stops for good after 100 upstream commits,
runs that never end, configuration that silently does nothing, rough progress and warnings)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assay.errors import ConfigError
from tests.conftest import ROOT, cli, table, write_project

BRONZE_SILVER = """
from pyspark.sql import functions as F
from assay import pipelines as dp

@dp.table(name="bronze.events")
def events():
    return dp.read_files("events", "json", schema="id STRING, n INT", max_files_per_batch=1)

@dp.table(name="silver.copies")
def copies():
    return dp.read_stream("events").select("id", "n")
"""


def slowed(pipeline: str, seconds: float) -> str:
    """The pipeline with a pandas UDF `slow_n` that takes `seconds` per batch (a long batch)."""
    return pipeline.replace("from assay import pipelines as dp", f"""from assay import pipelines as dp
import time
import pandas as pd

@F.pandas_udf("int")
def slow_n(n: pd.Series) -> pd.Series:
    time.sleep({seconds})
    return n
""")


def land(folder: Path, name: str, rows: list, mtime: float | None = None) -> Path:
    path = folder / "landing" / "events" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.mark.slow
def test_reads_upstream_past_its_delta_checkpoint(project, run_pipeline):
    """delta-rs writes a checkpoint every 100 commits; the embedded engine refuses versions behind
    it. Silver reads in bounded batches that start before the checkpoint, and still gets all."""
    folder = project({"transformations/p.py": BRONZE_SILVER}, config="""
        name: t
        storage: ./storage
        landing: ./landing
        schemas: {bronze: 01_bronze, silver: 02_silver, system: _system}
        batch: {max_records: 40}
    """)
    base = time.time() - 3600
    for i in range(105):
        land(folder, f"f{i:03d}.json", [{"id": f"e{i}", "n": i}], mtime=base + i)
    summaries = run_pipeline(folder)
    assert summaries["events"].batches == 105
    last_checkpoint = folder / "storage/01_bronze/events/_delta_log/_last_checkpoint"
    assert json.loads(last_checkpoint.read_text())["version"] >= 99    # readers start from version 99 on
    assert summaries["copies"].batches == 3            # 40 + 40 + 25 rows, whole commits each
    assert sorted(r["n"] for r in table(folder, "02_silver", "copies")) == list(range(105))


def test_a_run_processes_what_was_there_when_it_started(project, engine):
    """availableNow: files landing during a run wait for the next run, so a run always ends."""
    from assay.runtime.runner import RunOptions, Runner
    from assay.spec import load_spec
    folder = project({"transformations/p.py": BRONZE_SILVER})
    base = time.time() - 3600
    for i in range(3):
        land(folder, f"f{i}.json", [{"id": f"e{i}", "n": i}], mtime=base + i)
    landed_during = []

    def on_progress(summary):
        if summary.flow == "events" and summary.batch == 1 and not landed_during:
            landed_during.append(land(folder, "late.json", [{"id": "late", "n": 99}], mtime=base + 10))
    runner = Runner(load_spec(folder), RunOptions(), engine=engine, on_progress=on_progress)
    first = {s.flow: s for s in runner.run()}
    assert landed_during and first["events"].batches == 3 and first["copies"].rows_written == 3
    again = {s.flow: s for s in Runner(load_spec(folder), RunOptions(), engine=engine).run()}
    assert again["events"].batches == 1 and again["copies"].rows_written == 1


@pytest.mark.slow
def test_sigterm_names_the_flows_that_did_not_complete(tmp_path):
    slow = slowed(BRONZE_SILVER.replace('schema="id STRING, n INT", max_files_per_batch=1)',
                                        'schema="id STRING, n INT", max_files_per_batch=1).select(\n'
                                        '        "id", slow_n("n").alias("n"))'), seconds=0.5)
    folder = write_project(tmp_path / "proj", {"transformations/p.py": slow})
    base = time.time() - 3600
    for i in range(30):
        land(folder, f"f{i:02d}.json", [{"id": f"e{i}", "n": i}], mtime=base + i)
    proc = subprocess.Popen([sys.executable, "-m", "assay.cli", "run", "-p", str(folder)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RUST_LOG": "error", "PYTHONUNBUFFERED": "1"})
    seen = ""
    deadline = time.monotonic() + 120
    while "batch=2" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    out = seen + proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out
    final = [line for line in out.splitlines() if line.startswith("run ")]
    assert len(final) == 1 and " stopped: " in final[0], out
    assert "completed none; not completed events, copies" in final[0], final[0]


def test_conf_key_nobody_reads_stops_with_its_name(tmp_path, assay_cli):
    folder = write_project(tmp_path / "proj", {"transformations/p.py": BRONZE_SILVER})
    result = assay_cli("run", "-p", str(folder), "--conf", "sallt_buckets=3", cwd=ROOT)
    assert result.returncode == ConfigError.exit_code, result.stdout + result.stderr
    assert "--conf sallt_buckets" in result.stderr and "no dataset" in result.stderr


def test_unknown_batch_key_stops_with_its_name(tmp_path, assay_cli):
    folder = write_project(tmp_path / "proj", {"transformations/p.py": BRONZE_SILVER}, config="""
        name: t
        batch: {max_recordz: 10}
        targets:
          prod:
            batch: {max_filez: 2}
    """)
    result = assay_cli("dry-run", "-p", str(folder), cwd=ROOT)
    assert result.returncode == ConfigError.exit_code and "batch.max_recordz" in result.stderr, result.stderr
    (folder / "assay.yml").write_text("name: t\ntargets:\n  prod:\n    batch: {max_filez: 2}\n")
    result = assay_cli("dry-run", "-p", str(folder), "--target", "prod", cwd=ROOT)
    assert result.returncode == ConfigError.exit_code and "max_filez" in result.stderr, result.stderr


@pytest.mark.slow
def test_progress_without_a_terminal_shows_the_batch_and_elapsed_time(tmp_path):
    slow = slowed(BRONZE_SILVER.replace('return dp.read_stream("events").select("id", "n")',
                                        'return dp.read_stream("events").select("id", slow_n("n").alias("n"))'),
                  seconds=2.0)
    folder = write_project(tmp_path / "proj", {"transformations/p.py": slow})
    land(folder, "f.json", [{"id": "e1", "n": 1}])
    result = cli("run", "-p", str(folder), cwd=ROOT, env={"ASSAY_PROGRESS_EVERY": "0.5"})
    assert result.returncode == 0, result.stdout + result.stderr
    running = [line for line in result.stdout.splitlines() if line.strip().startswith("running") and "copies" in line]
    assert any("batch=0" in line for line in running), result.stdout
    elapsed = [float(line.rsplit(" ", 1)[1].rstrip("s")) for line in running]
    assert max(elapsed) >= 1.0, result.stdout           # the heartbeat shows time passing inside one batch


def test_rewritten_landing_file_is_reported_once(project, engine):
    from assay.runtime.runner import RunOptions, Runner
    from assay.spec import load_spec
    folder = project({"transformations/p.py": BRONZE_SILVER})
    path = land(folder, "f.json", [{"id": "e1", "n": 1}], mtime=time.time() - 600)
    Runner(load_spec(folder), RunOptions(), engine=engine).run()
    land(folder, "f.json", [{"id": "e1", "n": 1}, {"id": "e2", "n": 2}], mtime=time.time() - 300)
    warnings = []
    runner = Runner(load_spec(folder), RunOptions(), engine=engine)
    runner.events.on_warning = warnings.append
    assert {s.flow: s for s in runner.run()}["events"].batches == 0
    assert len(warnings) == 1 and str(path) in warnings[0] and "allow_overwrites=True" in warnings[0]
    runner = Runner(load_spec(folder), RunOptions(), engine=engine)
    runner.events.on_warning = warnings.append
    runner.run()
    assert len(warnings) == 1                           # once per file
    from assay.delta.table import read_arrow
    log = read_arrow(folder / "storage/_system/event_log").to_pylist()
    assert [e["message"] for e in log if e["event_type"] == "source_warning"] == warnings


def test_replacements_are_counted_apart_from_inserts(project, run_pipeline):
    folder = project({"transformations/p.py": """
from pyspark.sql import functions as F
from assay import pipelines as dp

@dp.table(name="silver.latest")
@dp.dedupe(["id"], order_by=["n"])
def latest():
    return dp.read_files("events", "json", schema="id STRING, n INT")
"""})
    land(folder, "f1.json", [{"id": "a", "n": 5}, {"id": "b", "n": 5}], mtime=time.time() - 600)
    first = run_pipeline(folder)["latest"]
    assert (first.rows_inserted, first.rows_replaced) == (2, 0)
    land(folder, "f2.json", [{"id": "a", "n": 1}, {"id": "c", "n": 1}, {"id": "b", "n": 9}], mtime=time.time() - 300)
    second = run_pipeline(folder)["latest"]
    assert (second.rows_inserted, second.rows_replaced, second.rows_duplicate) == (1, 1, 1)
    assert sorted((r["id"], r["n"]) for r in table(folder, "02_silver", "latest")) == [("a", 1), ("b", 5), ("c", 1)]


KAFKA_JSON = """
from assay import pipelines as dp

@dp.table(name="bronze.orders")
def orders():
    return dp.read_kafka(dp.config("topic"), format="json", schema="order_id STRING, amount DOUBLE")
"""


@pytest.mark.kafka
def test_read_kafka_parses_json_with_rescue(kafka_broker, project, run_pipeline):
    topic = kafka_broker.create_topic(f"orders-{time.time_ns()}", partitions=1)
    kafka_broker.produce(topic, [(None, b'{"order_id": "o1", "amount": 2.5}', 0),
                                 (None, b'{"order_id": "o2", "amount": "lots", "coupon": "X"}', 0),
                                 (None, b"[1, 2]", 0), (None, b"\xff\xfe", 0), (None, None, 0)])
    folder = project({"transformations/p.py": KAFKA_JSON}, config=f"""
        name: t
        schemas: {{bronze: 01_bronze, system: _system}}
        configuration: {{kafka.bootstrap_servers: "{kafka_broker.bootstrap}", topic: {topic}}}
    """)
    run_pipeline(folder)
    rows = sorted(table(folder, "01_bronze", "orders"), key=lambda r: r["offset"])
    assert [(r["order_id"], r["amount"]) for r in rows] == [("o1", 2.5), ("o2", None), (None, None), (None, None),
                                                            (None, None)]
    rescued = [json.loads(r["_rescued_data"]) if r["_rescued_data"] else None for r in rows]
    assert rescued == [None, {"amount": "lots", "coupon": "X"}, {"_corrupt_record": "[1, 2]"},
                       {"_corrupt_record": "base64://4="}, {"_tombstone": True}]
    assert {r["topic"] for r in rows} == {topic} and [r["offset"] for r in rows] == [0, 1, 2, 3, 4]


@pytest.mark.kafka
def test_run_ends_while_a_producer_keeps_sending(kafka_broker, tmp_path):
    """availableNow on Kafka: a run reads up to the end offsets of its first plan, then the
    downstream flows run, even with a producer sending 2 000 messages/s all along."""
    import threading
    topic = kafka_broker.create_topic(f"busy-{time.time_ns()}", partitions=2)
    kafka_broker.produce(topic, [(None, json.dumps({"order_id": f"o{i}", "amount": 1.0}).encode(), i % 2)
                                 for i in range(2000)])
    folder = write_project(tmp_path / "proj", {"transformations/p.py": KAFKA_JSON + """
@dp.table(name="silver.copy")
def copy():
    return dp.read_stream("orders").select("order_id")
"""}, config=f"""
        name: t
        schemas: {{bronze: 01_bronze, silver: 02_silver, system: _system}}
        configuration: {{kafka.bootstrap_servers: "{kafka_broker.bootstrap}", topic: {topic}}}
    """)
    stop = threading.Event()

    def keep_sending():
        n = 0
        while not stop.is_set():
            kafka_broker.produce(topic, [(None, json.dumps({"order_id": f"p{n + i}"}).encode(), i % 2)
                                         for i in range(200)])
            n += 200
            time.sleep(0.1)
    producer = threading.Thread(target=keep_sending, daemon=True)
    producer.start()
    try:
        result = cli("run", "-p", str(folder), "--max-records-per-batch", "500", cwd=ROOT, timeout=120)
    finally:
        stop.set()
        producer.join()
    assert result.returncode == 0, result.stdout + result.stderr
    assert " completed: 2 flows" in result.stdout, result.stdout
    assert len(table(folder, "02_silver", "copy")) == len(table(folder, "01_bronze", "orders"))


def test_a_landing_file_with_invalid_utf8_is_read_with_replacement_characters(project, engine):
    """The embedded engine stops a whole read at the first invalid byte; the batch is retried on a
    repaired copy, the other lines of the file are not lost, and it is said once."""
    from assay.runtime.runner import RunOptions, Runner
    from assay.spec import load_spec
    folder = project({"transformations/p.py": BRONZE_SILVER})
    good = land(folder, "a.json", [{"id": "e1", "n": 1}], mtime=time.time() - 600)
    bad = good.with_name("b.json")
    bad.write_bytes(b'{"id": "e2", "n": 2}\n{"id": "caf\xe9", "n": 3}\n{"id": "e4", "n": 4}\n')
    os.utime(bad, (time.time() - 500, time.time() - 500))
    warnings = []
    runner = Runner(load_spec(folder), RunOptions(), engine=engine)
    runner.events.on_warning = warnings.append
    runner.run()
    assert sorted(r["id"] for r in table(folder, "02_silver", "copies")) == ["caf\ufffd", "e1", "e2", "e4"]
    assert len(warnings) == 1 and str(bad) in warnings[0] and "U+FFFD" in warnings[0]
    assert {r["_source_file"] for r in table(folder, "01_bronze", "events")} == {str(good), str(bad)}


@pytest.mark.slow
def test_continuous_outlives_a_failed_round(tmp_path):
    failing = BRONZE_SILVER.replace('@dp.table(name="bronze.events")', '@dp.table(name="bronze.events")\n'
                                    '@dp.expect_or_fail("small", "n < 100")')
    folder = write_project(tmp_path / "proj", {"transformations/p.py": failing})
    land(folder, "bad.json", [{"id": "e1", "n": 500}])
    proc = subprocess.Popen([sys.executable, "-m", "assay.cli", "run", "-p", str(folder), "--continuous",
                             "--interval", "2s"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RUST_LOG": "error", "PYTHONUNBUFFERED": "1"})
    seen, failures = "", 0
    deadline = time.monotonic() + 90
    while failures < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if "round failed" in line:
            failures += 1
    proc.send_signal(signal.SIGTERM)
    seen += proc.communicate(timeout=60)[0]
    assert failures == 3, seen
    assert "expectation 'small'" in seen and proc.returncode == 0, seen
