"""Incremental materialized views (issue 20): each refresh is `noop`, `append` (the rows appended
to its input aggregated and merged into the view by group key), `partitions` (the partitions the
changed rows fall in recomputed) or `full`, logged with its reason.

Differential proof: after every drop of files, every view equals its full recompute (the same
storage copied and the views refreshed with --full-refresh), whichever technique refreshed it,
and the technique is the one the view's shape and silver's Delta log call for."""
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.delta import table as storage
from assay.delta.log import read_commit
from assay.runtime import faults
from tests.conftest import write_project

PIPELINE = """
from pyspark.sql import Window
from pyspark.sql import functions as F
from assay import pipelines as dp

@dp.table(name="bronze.events")
def events():
    return (dp.read_files("events", "json",
                          schema="id STRING, ts STRING, user INT, region STRING, amount BIGINT, price DECIMAL(10,2)")
            .withColumn("event_time", F.to_timestamp("ts")))

@dp.table(name="silver.clean")
@dp.dedupe(["id"], event_time="event_time", watermark="10 minutes")
def clean():
    return dp.read_stream("events").select("id", "event_time", "user", "region", "amount", "price")

@dp.table(name="silver.regions")
def regions():
    return dp.read_files("regions", "json", schema="region STRING, zone STRING").select("region", "zone")

@dp.materialized_view(name="gold.v_count")
def v_count():
    return dp.read("clean").groupBy("user").agg(F.count("*").alias("n"))

@dp.materialized_view(name="gold.v_count_col")
def v_count_col():
    return dp.read("clean").groupBy("region").agg(F.count("amount").alias("with_amount"))

@dp.materialized_view(name="gold.v_sum")
def v_sum():
    return dp.read("clean").groupBy("user").agg(F.sum("amount").alias("amount"), F.sum("price").alias("price"))

@dp.materialized_view(name="gold.v_minmax")
def v_minmax():
    return (dp.read("clean").groupBy("region")
            .agg(F.min("event_time").alias("first"), F.max("amount").alias("most"), F.min("id").alias("id")))

@dp.materialized_view(name="gold.v_avg")
def v_avg():
    return dp.read("clean").groupBy("user").agg(F.avg("amount").alias("mean"))

@dp.materialized_view(name="gold.v_filter")
def v_filter():
    return (dp.read("clean").where(F.col("amount") > 2).withColumn("double", F.col("amount") * 2)
            .groupBy("user").agg(F.sum("double").alias("doubled"), F.count(F.lit(1)).alias("n"))
            .withColumnRenamed("n", "big_ones").orderBy("user"))

@dp.materialized_view(name="gold.v_join")
def v_join():
    return (dp.read("clean").join(dp.read("regions"), "region", "left")
            .groupBy("zone").agg(F.count("*").alias("n"), F.max("price").alias("top_price")))

@dp.materialized_view(name="gold.v_window")
def v_window():
    totals = dp.read("clean").groupBy("user").agg(F.count("*").alias("n"))
    return totals.withColumn("place", F.rank().over(Window.orderBy(F.col("n").desc())))

@dp.materialized_view(name="gold.v_part", partition_cols=["region"])
def v_part():
    return dp.read("clean").groupBy("region", "user").agg(F.sum("amount").alias("amount"),
                                                         F.max("event_time").alias("last"))

@dp.materialized_view(name="gold.v_part_rank", partition_cols=["region"])
def v_part_rank():
    salted = (dp.read("clean").withColumn("salt", F.floor(F.rand(seed=3) * 3).cast("int"))
              .groupBy("region", "user", "salt").agg(F.sum("amount").alias("amount")))
    totals = salted.groupBy("region", "user").agg(F.sum("amount").alias("amount"))
    in_region = Window.partitionBy("region").orderBy(F.col("amount").desc(), "user")
    return totals.withColumn("place", F.rank().over(in_region))

@dp.materialized_view(name="gold.v_part_avg", partition_cols=["region"])
def v_part_avg():
    return dp.read("clean").groupBy("region").agg(F.avg("amount").alias("mean"), F.countDistinct("user").alias("users"))

@dp.materialized_view(name="gold.v_part_overall", partition_cols=["region"])
def v_part_overall():
    totals = dp.read("clean").groupBy("region").agg(F.count("*").alias("n"))
    return totals.withColumn("place", F.rank().over(Window.orderBy(F.col("n").desc(), "region")))

@dp.materialized_view(name="gold.v_global")
def v_global():
    return dp.read("clean").groupBy().agg(F.count("*").alias("n"), F.sum("amount").alias("amount"))

@dp.materialized_view(name="gold.v_distinct")
def v_distinct():
    return dp.read("clean").groupBy("region").agg(F.countDistinct("user").alias("users"))
"""

VIEWS = ["v_count", "v_count_col", "v_sum", "v_minmax", "v_avg", "v_filter", "v_join", "v_window", "v_part",
         "v_part_rank", "v_part_avg", "v_part_overall", "v_global", "v_distinct"]
NEVER_APPEND = {"v_avg": "avg(amount) is not mergeable", "v_window": "window function rank()",
                "v_distinct": "countDistinct(user) is not mergeable", "v_part_rank": "rand() in",
                "v_part_avg": "avg(amount) is not mergeable", "v_part_overall": "window function rank()"}
# Partitioned views whose partitions are computed apart: recomputed by partition when not appended.
BY_PARTITION = {"v_part", "v_part_rank", "v_part_avg"}
NOT_BY_PARTITION = {"v_part_overall": "window function rank() over (...) is not partitioned by region"}


def ev(i, minute, user=1, region="north", amount=1, price="1.50", hour=10):
    return {"id": f"e{i}", "ts": f"2026-11-01T{hour:02d}:{minute:02d}:00Z", "user": user, "region": region,
            "amount": amount, "price": price}


def land(folder: Path, sub: str, name: str, rows: list) -> None:
    path = folder / "landing" / sub / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def rows_of(path: Path) -> list:
    data = storage.read_arrow(path)
    assert data is not None, path
    rows = []
    for row in data.to_pylist():
        rows.append(tuple(sorted((k, round(v, 9) if isinstance(v, float) else v) for k, v in row.items())))
    return sorted(rows, key=repr)


def recomputed(folder: Path, tmp: Path, run_pipeline) -> dict[str, list]:
    """Every view recomputed whole over a copy of the storage (--full-refresh of the views)."""
    copy = tmp / "recompute"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("landing"))
    (copy / "landing").mkdir()
    run_pipeline(copy, full_refresh=set(VIEWS), refresh=set(VIEWS))
    return {v: rows_of(copy / "storage" / "03_gold" / v) for v in VIEWS}


def check(folder: Path, tmp: Path, run_pipeline, summaries: dict) -> dict[str, dict]:
    expected = recomputed(folder, tmp, run_pipeline)
    for view in VIEWS:
        assert rows_of(folder / "storage" / "03_gold" / view) == expected[view], (view, summaries[view].refresh)
    return {v: summaries[v].refresh for v in VIEWS}


@pytest.fixture
def folder(tmp_path):
    return write_project(tmp_path / "proj", {"transformations/p.py": PIPELINE})


def test_every_view_equals_its_recompute_after_every_drop(folder, tmp_path, run_pipeline):
    land(folder, "regions", "r.json", [{"region": "north", "zone": "N"}, {"region": "south", "zone": "S"}])
    land(folder, "events", "f1.json", [ev(1, 0), ev(2, 5, user=2, region="south", amount=5, price="9.99"),
                                       ev(3, 6, user=2, amount=None), ev(4, 7, user=3, region=None, amount=3)])
    first = run_pipeline(folder)
    techniques = check(folder, tmp_path, run_pipeline, first)
    assert {v: t["refresh"] for v, t in techniques.items()} == {v: "full" for v in VIEWS}
    assert all(t["reason"] == "first refresh" for t in techniques.values())

    # Plain appends, a duplicate of an earlier id (same time: the first copy stays) and a late row.
    land(folder, "events", "f2.json", [ev(5, 20, user=1, amount=7, price="0.10"), ev(1, 0),
                                       ev(6, 21, user=4, region="west", amount=None, price=None),
                                       ev(7, 1, user=1, amount=100, hour=9)])   # late: before 10:07 - 10 minutes
    second = run_pipeline(folder)
    assert second["clean"].rows_late == 1 and second["clean"].rows_duplicate == 1
    assert second["clean"].rows_replaced == 0
    techniques = check(folder, tmp_path, run_pipeline, second)
    for view, technique in techniques.items():
        if view not in NEVER_APPEND:
            assert technique["refresh"] == "append", (view, technique)
            assert "clean had only appends since version" in technique["reason"]
            continue
        assert NEVER_APPEND[view] in technique["reason"], technique
        assert technique["refresh"] == ("partitions" if view in BY_PARTITION else "full"), (view, technique)
    assert NOT_BY_PARTITION["v_part_overall"] in techniques["v_part_overall"]["reason"]
    assert "the partitions of region its added rows fall in" in techniques["v_part_rank"]["reason"]

    # A row that beats an earlier survivor of its key (an earlier event time, inside the watermark):
    # silver's dedupe replaces it, which removes files: views computed by partition recompute the
    # partitions of the rows added and removed, every other view is recomputed, saying so.
    land(folder, "events", "f3.json", [ev(5, 15, user=2, region="south", amount=11, price="3.00"),
                                       ev(8, 22, user=5, amount=2)])
    third = run_pipeline(folder)
    assert third["clean"].rows_replaced == 1
    # The replacement's commit names the folder of the one row it replaced (the old survivor of e5),
    # so the views by partition recompute that row's partition, not every rewritten file's.
    clean = folder / "storage" / "02_silver" / "clean"
    [replacing] = [c for c in (read_commit(clean, v) for v in range(storage.current_version(clean) + 1)) if c.removed]
    old_rows = pq.read_table(clean / replacing.replaced_rows).to_pylist()
    assert [(r["id"], r["region"], r["amount"]) for r in old_rows] == [("e5", "north", 7)]
    techniques = check(folder, tmp_path, run_pipeline, third)
    for view, technique in techniques.items():
        assert technique["refresh"] == ("partitions" if view in BY_PARTITION else "full"), (view, technique)
        assert "clean had 1 removed file(s) since version" in technique["reason"], technique
    assert "its added and removed rows fall in" in techniques["v_part"]["reason"]

    # Appends again after that full refresh; new groups, NULL amounts into existing groups.
    land(folder, "events", "f4.json", [ev(9, 30, user=9, region="east", amount=4),
                                       ev(10, 31, user=2, region="south", amount=None, price="0.01"),
                                       ev(11, 32, user=1, region="north", amount=-3)])
    fourth = run_pipeline(folder)
    techniques = check(folder, tmp_path, run_pipeline, fourth)
    assert {v for v, t in techniques.items() if t["refresh"] == "append"} == set(VIEWS) - set(NEVER_APPEND)
    assert {v for v, t in techniques.items() if t["refresh"] == "partitions"} == BY_PARTITION & set(NEVER_APPEND)

    # Rows in most regions the views already hold: by partition would recompute most of them, so
    # the views that are not appended are recomputed whole, saying how many partitions it would take.
    land(folder, "events", "f5.json", [ev(12, 40, user=1, region="north"), ev(13, 41, user=2, region="south"),
                                       ev(14, 42, user=9, region="east", amount=2)])
    fifth = run_pipeline(folder)
    techniques = check(folder, tmp_path, run_pipeline, fifth)
    for view in BY_PARTITION & set(NEVER_APPEND):
        assert techniques[view]["refresh"] == "full", (view, techniques[view])
        assert "by partition it would recompute 3 of its 5 partition(s)" in techniques[view]["reason"]

    # Nothing new: nothing refreshed, and the event log says why for each view.
    sixth = run_pipeline(folder)
    assert all(sixth[v].refresh["refresh"] == "noop" for v in VIEWS)
    log = sorted(storage.read_arrow(folder / "storage" / "_system" / "event_log").to_pylist(),
                 key=lambda e: e["timestamp"])
    done = [json.loads(e["metrics"]) for e in log if e["event_type"] == "flow_completed" and e["flow"] == "v_sum"]
    assert [m["refresh"] for m in done] == ["full", "append", "full", "append", "append", "noop"]
    progress = [json.loads(e["metrics"]) for e in log if e["event_type"] == "flow_progress" and e["flow"] == "v_sum"]
    assert [m["refresh"] for m in progress] == ["full", "append", "full", "append", "append"]


INCREMENTAL = """
from pyspark.sql import functions as F
from assay import pipelines as dp

@dp.table(name="bronze.events")
def events():
    return dp.read_files("events", "json", schema="id STRING, user INT, amount BIGINT")

@dp.materialized_view(name="gold.totals", refresh="incremental")
def totals():
    return dp.read("events").groupBy("user").agg(F.sum("amount").alias("amount"), F.count("*").alias("n"))

@dp.materialized_view(name="gold.means", refresh="incremental")
def means():
    return dp.read("events").groupBy("user").agg(F.avg("amount").alias("mean"))
"""

INCREMENTAL_SQL = """
CREATE MATERIALIZED VIEW gold.sql_totals TBLPROPERTIES ('assay.refresh' = 'incremental')
AS SELECT user, COUNT(*) AS n FROM events GROUP BY user;
"""


def test_a_view_that_requires_incremental_refresh_fails_with_the_reason(tmp_path, run_pipeline, assay_cli):
    from assay.errors import AssayError
    folder = write_project(tmp_path / "inc", {"transformations/p.py": INCREMENTAL, "transformations/s.sql": INCREMENTAL_SQL})
    land(folder, "events", "a.json", [{"id": "a", "user": 1, "amount": 2}, {"id": "b", "user": 2, "amount": 3}])
    first = run_pipeline(folder)                   # a first refresh is whole whatever the view requires
    assert first["means"].refresh["refresh"] == "full" and first["sql_totals"].refresh["refresh"] == "full"
    land(folder, "events", "b.json", [{"id": "c", "user": 1, "amount": 5}])
    with pytest.raises(AssayError) as failed:
        run_pipeline(folder, refresh={"events", "totals", "means"})
    assert "'means'" in str(failed.value) and "requires an incremental refresh" in str(failed.value)
    assert "avg(amount) is not mergeable" in str(failed.value)
    assert sorted(r["amount"] for r in storage.read_arrow(folder / "storage" / "03_gold" / "totals").to_pylist()) == [3, 7]
    status = {r["flow"]: r for r in json.loads(assay_cli("status", "--format", "json", cwd=folder, check=True).stdout)}
    assert status["totals"]["refresh"].startswith("append: events had only appends since version 0 (up to version 1)")
    assert status["means"]["last_outcome"] == "flow_failed" and status["events"]["refresh"] is None
    with pytest.raises(AssayError) as failed:
        run_pipeline(folder, refresh={"sql_totals"})
    assert "defined in SQL" in str(failed.value)


def test_a_refresh_interrupted_after_it_landed_or_before_is_merged_once(folder, tmp_path, run_pipeline, monkeypatch):
    """A crash after the view's append landed and before it was recorded, then one before it
    landed: the view never counts an appended row twice and is never left stale."""
    land(folder, "regions", "r.json", [{"region": "north", "zone": "N"}])
    land(folder, "events", "f1.json", [ev(1, 0), ev(2, 5, user=2, amount=5)])
    run_pipeline(folder)

    class Crash(Exception):
        pass

    def crash_at(point):
        def crash(name):
            if name == point:
                raise Crash(name)
        return crash

    for point, minute in ((faults.REFRESHED, 20), (faults.WRITTEN, 30)):
        land(folder, "events", f"at-{minute}.json", [ev(minute, minute, user=1, amount=minute)])
        run_pipeline(folder, refresh={"events", "clean"})
        monkeypatch.setattr(faults, "crash_point", crash_at(point))
        with pytest.raises(Exception, match="v_sum"):
            run_pipeline(folder, refresh={"v_sum"})     # only v_sum reaches the crash point
        monkeypatch.undo()
        again = run_pipeline(folder)
        check(folder, tmp_path, run_pipeline, again)
        expected = "noop" if point == faults.REFRESHED else "append"      # landed: recorded, not redone
        assert again["v_sum"].refresh["refresh"] == expected, again["v_sum"].refresh
    land(folder, "events", "last.json", [ev(40, 40, user=1, amount=1)])
    last = run_pipeline(folder)
    assert last["v_sum"].refresh["refresh"] == "append"
    check(folder, tmp_path, run_pipeline, last)
    totals = {r["user"]: r["amount"] for r in storage.read_arrow(folder / "storage" / "03_gold" / "v_sum").to_pylist()}
    assert totals == {1: 1 + 20 + 30 + 1, 2: 5}


def test_partition_shapes_that_keep_partitions_apart_and_those_that_do_not(engine):
    """The plan reading behind `partitions`: each blocker names what mixes partitions."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from assay.plan.refresh import partition_blockers
    spark = engine.spark
    tables = {"clean": "/data/clean", "regions": "/data/regions"}
    clean = spark.read.format("delta").load("/data/clean")
    regions = spark.read.format("delta").load("/data/regions")

    def blockers(df):
        return partition_blockers(df._plan.to_proto(spark.client).root, ["region"], "clean", tables)

    by_region = Window.partitionBy("region").orderBy("n")
    assert blockers(clean.where(F.col("amount") > 0).select("region", "user", "amount")) == []
    assert blockers(clean.groupBy("region").agg(F.count("*").alias("n")).withColumn("r", F.rank().over(by_region))) == []
    assert blockers(clean.withColumn("id", F.expr("uuid()")).dropDuplicates(["region", "user"])) == []
    assert blockers(clean.groupBy("user").agg(F.count("*").alias("n"))) == [
        "an aggregate that does not group by region"]
    assert blockers(clean.join(regions, "region")) == [
        "'clean' is joined there (its rows would meet rows of other partitions)"]
    assert "unioned" in blockers(clean.unionByName(clean.where("amount > 1")))[0]
    assert blockers(clean.withColumn("region", F.upper("region"))) == [
        "partition column 'region' is computed (upper(region)), not the input's"]
    assert blockers(clean.withColumnRenamed("region", "area")) == ["a partition column (region) is renamed"]
    assert blockers(clean.withColumn("at", F.current_timestamp())) == [
        "current_timestamp() in a computed column depends on when or where it runs"]
    assert blockers(clean.dropDuplicates(["user"])) == ["distinct rows by columns without region"]
    assert blockers(clean.limit(5)) == ["limit over 'clean' mixes partitions"]


PARTITIONED_SILVER = """
from pyspark.sql import functions as F
from assay import pipelines as dp

@dp.table(name="bronze.events")
def events():
    return (dp.read_files("events", "json",
                          schema="id STRING, ts STRING, user INT, region STRING, amount BIGINT, price STRING")
            .withColumn("event_time", F.to_timestamp("ts")))

@dp.table(name="silver.clean", partition_cols=["region"])
@dp.dedupe(["id"], event_time="event_time", watermark="10 minutes")
def clean():
    return dp.read_stream("events").select("id", "event_time", "user", "region", "amount")

@dp.materialized_view(name="gold.users", partition_cols=["region"])
def users():
    return dp.read("clean").groupBy("region").agg(F.countDistinct("user").alias("users"), F.sum("amount").alias("amount"))
"""


def test_a_replacement_in_a_partitioned_input_touches_only_the_replaced_rows_partitions(tmp_path, run_pipeline):
    """silver partitioned by region: the replaced survivor's partition comes from its folder's path."""
    folder = write_project(tmp_path / "proj", {"transformations/p.py": PARTITIONED_SILVER})
    regions = ["north", "south", "east", "west", "up"]
    land(folder, "events", "f1.json", [ev(i, i, user=i, region=r) for i, r in enumerate(regions)])
    run_pipeline(folder)
    land(folder, "events", "f2.json", [ev(0, 58, user=7, region="north", amount=5, hour=9)])   # beats e0 (10:00)
    second = run_pipeline(folder)
    assert second["clean"].rows_replaced == 1
    technique = second["users"].refresh
    assert technique["refresh"] == "partitions", technique
    assert "(1 of its 5 partition(s), and 0 new)" in technique["reason"], technique
    copy = tmp_path / "recompute"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("landing"))
    (copy / "landing").mkdir()
    run_pipeline(copy, full_refresh={"users"}, refresh={"users"})
    assert rows_of(folder / "storage" / "03_gold" / "users") == rows_of(copy / "storage" / "03_gold" / "users")
