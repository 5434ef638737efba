"""`assay run` semantics on the embedded engine: incremental streaming tables, materialized views,
expectations and quarantine, deduplication with a watermark, refresh selection, the event log."""
import json
from pathlib import Path

import pytest

from assay.errors import ExpectationFailed
from tests.conftest import table

PIPELINE = """
from pyspark.sql import functions as F
from assay import pipelines as dp

@dp.table(name="bronze.events", quarantine=True)
@dp.expect_or_drop("has_id", "id IS NOT NULL")
@dp.expect("positive_amount", "amount > 0")
def events():
    return (dp.read_files("events", "json", schema="id STRING, ts STRING, user INT, amount DOUBLE")
            .withColumn("event_time", F.to_timestamp("ts")))

@dp.table(name="silver.clean")
@dp.dedupe(["id"], event_time="event_time", watermark="10 minutes")
def clean():
    return dp.read_stream("events").select("id", "event_time", "user", "amount", "_source_file", "_source_modified")

@dp.materialized_view(name="gold.totals", partition_cols=["user"])
def totals():
    return dp.read("clean").groupBy("user").agg(F.sum("amount").alias("total"), F.count("*").alias("n"))
"""


def land(folder: Path, name: str, rows: list) -> None:
    path = folder / "landing" / "events" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def ev(i, minute, user=1, amount=1.0):
    return {"id": f"e{i}", "ts": f"2026-11-01T10:{minute:02d}:00Z", "user": user, "amount": amount}


def test_incremental_dedupe_late_and_quarantine(project, run_pipeline):
    folder = project({"transformations/p.py": PIPELINE})
    land(folder, "f1.json", [ev(1, 0), ev(2, 30, user=2, amount=5), ev(1, 0), "{broken", ev(3, 31, amount=-1)])
    first = run_pipeline(folder)
    assert first["events"].rows_written == 4 and first["events"].rows_quarantined == 1
    assert first["clean"].rows_written == 3 and first["clean"].rows_duplicate == 1
    quarantined = table(folder, "01_bronze", "events_quarantine")
    assert quarantined[0]["_failed_rules"] == ["has_id"]   # warn rules are counted, not listed
    assert json.loads(quarantined[0]["_rescued_data"]) == {"_corrupt_record": "{broken"}

    # Nothing new: nothing read again.
    again = run_pipeline(folder)
    assert again["events"].batches == 0 and again["clean"].batches == 0

    # A later file: a duplicate from the first file, a late event (< 10:31 - 10 min), a new one.
    land(folder, "f2.json", [ev(2, 30, user=2, amount=5), ev(4, 5), ev(5, 40, user=3, amount=7)])
    second = run_pipeline(folder)
    assert second["events"].rows_read == 3
    assert second["clean"].rows_duplicate == 1 and second["clean"].rows_late == 1
    assert sorted(r["id"] for r in table(folder, "02_silver", "clean")) == ["e1", "e2", "e3", "e5"]
    assert [r["id"] for r in table(folder, "02_silver", "clean_late")] == ["e4"]
    totals = {r["user"]: (r["total"], r["n"]) for r in table(folder, "03_gold", "totals")}
    assert totals == {1: (0.0, 2), 2: (5.0, 1), 3: (7.0, 1)}
    from assay.delta.table import add_actions, open_table
    gold = open_table(folder / "storage" / "03_gold" / "totals")
    assert gold.metadata().partition_columns == ["user"]
    assert sorted(a["partition.user"] for a in add_actions(gold)) == [1, 2, 3]


def test_dedupe_keeps_the_earliest_row_whatever_the_batches(project, run_pipeline):
    folder = project({"transformations/p.py": PIPELINE})
    land(folder, "f1.json", [ev(1, 20, amount=1)])
    run_pipeline(folder)
    # The same id, earlier event time, arriving later: it replaces the kept row (merge, not append).
    land(folder, "f2.json", [ev(1, 15, amount=2)])
    result = run_pipeline(folder)
    assert result["clean"].rows_written == 1
    rows = table(folder, "02_silver", "clean")
    assert len(rows) == 1 and rows[0]["amount"] == 2.0 and rows[0]["_source_file"].endswith("f2.json")


def test_batch_limits_make_several_batches(project, run_pipeline):
    folder = project({"transformations/p.py": PIPELINE})
    for i in range(5):
        land(folder, f"f{i}.json", [ev(i, i)])
    result = run_pipeline(folder, max_files=2)
    assert result["events"].batches == 3 and result["events"].rows_written == 5


def test_fail_expectation_writes_nothing_and_resumes(project, run_pipeline):
    code = PIPELINE.replace('@dp.expect("positive_amount", "amount > 0")',
                            '@dp.expect_or_fail("positive_amount", "amount > 0")')
    folder = project({"transformations/p.py": code})
    land(folder, "f1.json", [ev(1, 0), ev(2, 1, amount=-3)])
    with pytest.raises(ExpectationFailed, match="expectation 'positive_amount' .*failed on 1 row.*amount=-3.0") as err:
        run_pipeline(folder)
    # The failing row reads as the data does, not as Python objects.
    assert "id='e2'" in str(err.value) and "event_time=2026-11-01 10:01:00" in str(err.value), str(err.value)
    assert "datetime.datetime" not in str(err.value) and "_rescued_data=NULL" in str(err.value)
    assert table(folder, "01_bronze", "events") is None
    # The user relaxes the rule: the same planned batch is processed, once.
    (folder / "transformations/p.py").write_text(PIPELINE)
    result = run_pipeline(folder)
    assert result["events"].rows_written == 2 and len(table(folder, "01_bronze", "events")) == 2


def test_transformation_that_raises(project, run_pipeline):
    folder = project({"transformations/p.py": PIPELINE.replace(
        'return dp.read("clean")', 'raise ValueError("bad gold logic")\n    return dp.read("clean")')})
    land(folder, "f1.json", [ev(1, 0)])
    with pytest.raises(Exception) as info:
        run_pipeline(folder)
    assert "bad gold logic" in str(info.value) and "p.py" in str(info.value)


def test_query_raising_at_run_time_keeps_checkpoint(project, run_pipeline):
    code = PIPELINE.replace("def clean():\n", "def clean():\n    if dp.config('explode') == 'yes':\n        "
                            "return dp.read_stream('events').selectExpr('assert_true(false) AS x')\n")
    folder = project({"transformations/p.py": code}, config="""
        name: t
        storage: ./storage
        landing: ./landing
        schemas: {bronze: 01_bronze, silver: 02_silver, gold: 03_gold}
        configuration: {explode: 'no'}
    """)
    land(folder, "f1.json", [ev(1, 0), ev(2, 1)])
    result = run_pipeline(folder)
    assert result["clean"].rows_written == 2


def test_refresh_selection_and_full_refresh(project, run_pipeline):
    folder = project({"transformations/p.py": PIPELINE})
    land(folder, "f1.json", [ev(1, 0), ev(2, 1)])
    run_pipeline(folder)
    land(folder, "f2.json", [ev(3, 2)])
    only_bronze = run_pipeline(folder, refresh={"events"})
    assert set(only_bronze) >= {"events"} and only_bronze["clean"].status == "skipped"
    assert len(table(folder, "02_silver", "clean")) == 2
    run_pipeline(folder)
    assert len(table(folder, "02_silver", "clean")) == 3
    # Full refresh re-reads every file into bronze and rebuilds silver from it.
    run_pipeline(folder, full_refresh={"events", "clean"})
    assert len(table(folder, "01_bronze", "events")) == 3
    assert sorted(r["id"] for r in table(folder, "02_silver", "clean")) == ["e1", "e2", "e3"]


def test_append_flows_sql_and_views(project, run_pipeline):
    folder = project({
        "transformations/p.py": """
from assay import pipelines as dp

dp.create_streaming_table("bronze.all_events", expect_all_or_drop={"has_id": "id IS NOT NULL"})

@dp.append_flow(target="all_events")
def web():
    return dp.read_files("web", "csv", schema="id STRING, amount DOUBLE").selectExpr("id", "amount", "'web' AS channel")

@dp.append_flow(target="all_events")
def app():
    return dp.read_files("app", "csv", schema="id STRING, amount DOUBLE").selectExpr("id", "amount", "'app' AS channel")

@dp.temporary_view
def positive():
    return dp.read("all_events").where("amount > 0")
""",
        "transformations/gold.sql": """
CREATE MATERIALIZED VIEW gold.by_channel (
  CONSTRAINT known_channel EXPECT (channel IN ('web', 'app')) ON VIOLATION FAIL UPDATE
) AS SELECT channel, COUNT(*) AS n, SUM(amount) AS total FROM positive GROUP BY channel;
"""})
    (folder / "landing/web").mkdir(parents=True)
    (folder / "landing/app").mkdir(parents=True)
    (folder / "landing/web/w.csv").write_text("id,amount\na,1\nb,2\n,3\n")
    (folder / "landing/app/a.csv").write_text("id,amount\nc,5\nd,-1\n")
    result = run_pipeline(folder)
    assert result["web"].rows_written == 2 and result["web"].rows_dropped == 1
    assert {r["channel"]: (r["n"], r["total"]) for r in table(folder, "03_gold", "by_channel")} == {
        "web": (2, 3.0), "app": (1, 5.0)}


def test_event_log_records_counts_offsets_and_lineage(project, run_pipeline):
    folder = project({"transformations/p.py": PIPELINE})
    land(folder, "f1.json", [ev(1, 0), ev(1, 0), "{broken", ev(2, 1, amount=-2)])
    run_pipeline(folder)
    log = table(folder, "_system", "event_log")
    progress = {r["flow"]: r for r in log if r["event_type"] == "flow_progress"}
    events = progress["events"]
    assert events["rows_read"] == 4 and events["rows_written"] == 3 and events["rows_quarantined"] == 1
    rules = {r["name"]: (r["passed"], r["failed"], r["action"]) for r in json.loads(events["expectations"])}
    assert rules == {"has_id": (3, 1, "drop"), "positive_amount": (2, 2, "warn")}
    assert json.loads(events["sources"])[next(iter(json.loads(events["sources"])))]["files"] == 1
    assert json.loads(events["outputs"]) == ["events", "events_quarantine"]
    assert json.loads(progress["clean"]["inputs"]) == ["events"] and progress["clean"]["rows_duplicate"] == 1
    assert json.loads(progress["totals"]["inputs"]) == ["clean"]
    kinds = [r["event_type"] for r in log]
    assert kinds.count("run_started") == 1 and kinds.count("run_completed") == 1
    assert kinds.count("flow_completed") == 3
    assert len({r["run_id"] for r in log}) == 1


def test_materialized_view_is_not_recomputed_when_nothing_it_reads_changed(project, run_pipeline):
    folder = project({"transformations/p.py": PIPELINE})
    land(folder, "f1.json", [ev(1, 20, amount=1)])
    assert run_pipeline(folder)["totals"].batches == 1
    assert run_pipeline(folder)["totals"].batches == 0                  # nothing new: skipped
    assert run_pipeline(folder, refresh={"totals"})["totals"].batches == 1   # asked for: recomputed
    land(folder, "f2.json", [ev(2, 25, amount=2)])
    assert run_pipeline(folder)["totals"].batches == 1                  # its input changed
    (folder / "assay.yml").write_text((folder / "assay.yml").read_text() + "configuration: {x: '1'}\n")
    assert run_pipeline(folder)["totals"].batches == 1                  # configuration changed


def test_full_refresh_keeps_the_files_of_older_versions(project, run_pipeline):
    """Batch numbers restart after a full refresh; the old generation's files still belong to the
    table's older versions (time travel) until vacuum removes them."""
    from assay.delta.table import add_actions, open_table
    folder = project({"transformations/p.py": PIPELINE})
    land(folder, "f1.json", [ev(1, 20, amount=1)])
    run_pipeline(folder)
    path = folder / "storage" / "01_bronze" / "events"
    before = open_table(path).version()
    run_pipeline(folder, full_refresh={"events"})
    old = open_table(path, version=before)
    assert all((path / a["path"]).exists() for a in add_actions(old))
    assert old.to_pyarrow_table().num_rows == 1
