"""A watermark dedupe over rows that carry no `_source_modified` (a select that drops the lineage
columns, `include_metadata=False`, Kafka): the whole batch is one arrival unit, under the watermark
of the batches before it (assay/plan/dedupe.py). It used to fail in `routing._watermark`."""
import json
from datetime import datetime, timezone

import pytest

from assay.runtime.services import analyse
from assay.spec import load_spec
from tests.conftest import table

PIPELINE = """
from pyspark.sql import functions as F
from assay import pipelines as dp

@dp.table(name="bronze.events")
def events():
    return (dp.read_files("events", "json", schema="id STRING, ts STRING, amount DOUBLE", {options})
            .withColumn("event_time", F.to_timestamp("ts")))

@dp.table(name="silver.clean")
@dp.dedupe(["id"], event_time="event_time", watermark="10 minutes")
def clean():
    return dp.read_stream("events"){select}
"""
# The two ways rows lose their lineage columns: a select without them, or files read without them.
WITHOUT_LINEAGE = {"select": dict(options="", select='.select("id", "event_time", "amount")'),
                   "include_metadata=False": dict(options="include_metadata=False", select="")}


def land(folder, name, rows):
    path = folder / "landing" / "events" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": i, "ts": f"2026-11-01T{hm}:00Z", "amount": a}) + "\n"
                            for i, hm, a in rows))


def at(hm):
    return datetime.fromisoformat(f"2026-11-01T{hm}:00+00:00")


def rows(folder, name):
    found = table(folder, "02_silver", name) or []
    return sorted(((r["id"], r["event_time"].astimezone(timezone.utc), r["amount"]) for r in found))


@pytest.mark.parametrize("variant", WITHOUT_LINEAGE)
def test_watermark_dedupe_without_source_columns(project, run_pipeline, engine, variant):
    folder = project({"transformations/p.py": PIPELINE.format(**WITHOUT_LINEAGE[variant])})
    land(folder, "f1.json", [("e1", "10:00", 1.0), ("e2", "10:30", 2.0), ("e1", "10:00", 1.0), ("e3", "10:31", 3.0)])
    land(folder, "f2.json", [
        ("e2", "10:30", 2.0),      # the row kept from batch 0 again: a duplicate
        ("e4", "10:05", 4.0),      # behind batch 0's watermark (10:31 - 10 min): late
        ("e5", "10:40", 5.0),
        ("e6", "10:25", 6.0),      # behind e5 by 15 min, but in the same unit: on time
        ("e5", "10:41", 50.0),     # a later copy of e5 in the batch: a duplicate
        ("e3", "10:22", 30.0),     # earlier than the e3 kept: replaces it
    ])
    # dry-run (the graph's validation) and run agree: both accept the pipeline.
    assert analyse(load_spec(folder), engine).graph.order == ["events", "clean"]
    result = run_pipeline(folder, max_files=1)["clean"]
    assert (result.batches, result.rows_read, result.rows_inserted, result.rows_replaced, result.rows_duplicate,
            result.rows_late) == (2, 10, 5, 1, 3, 1)
    assert rows(folder, "clean") == [("e1", at("10:00"), 1.0), ("e2", at("10:30"), 2.0), ("e3", at("10:22"), 30.0),
                                     ("e5", at("10:40"), 5.0), ("e6", at("10:25"), 6.0)]
    assert rows(folder, "clean_late") == [("e4", at("10:05"), 4.0)]
