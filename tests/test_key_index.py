"""The dedupe key index (assay/runtime/key_index.py) is a cache: whatever state it is in (hashes that
all collide, deleted, damaged, killed halfway through an update, behind the target), a deduplicated
table ends exactly as a plain reference deduplication of all its input says."""
import json

import pytest

from assay.runtime import key_index, routing
from tests.conftest import cli, table

PIPELINE = """
from pyspark.sql import functions as F
from assay import pipelines as dp

@dp.table(name="bronze.events")
def events():
    return (dp.read_files("events", "json", schema="id STRING, ts STRING, amount DOUBLE")
            .withColumn("event_time", F.to_timestamp("ts")))

@dp.table(name="silver.clean")
@dp.dedupe(["id"], event_time="event_time")
def clean():
    return dp.read_stream("events").select("id", "event_time", "amount", "_source_file")
"""

# Each drop repeats keys of earlier drops: the same row (a duplicate), an earlier one (replaces the
# survivor), a later one (a duplicate); and brings new keys.
DROPS = [
    [("e1", "10:00", 1.0), ("e2", "10:30", 2.0), ("e3", "10:31", 3.0), ("e4", "10:40", 4.0)],
    [("e1", "10:00", 1.0), ("e3", "10:20", 30.0), ("e5", "10:50", 5.0), ("e2", "10:35", 20.0)],
    [("e4", "10:10", 40.0), ("e6", "11:00", 6.0), ("e3", "10:25", 300.0), ("e5", "10:50", 5.0)],
    [("e7", "11:10", 7.0), ("e1", "09:59", 10.0), ("e6", "11:00", 6.0)],
]


def land(folder, day):
    path = folder / "landing" / "events" / f"d{day}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": i, "ts": f"2026-11-01T{hm}:00Z", "amount": a}) + "\n"
                            for i, hm, a in DROPS[day]))


def expected(days: int) -> list:
    """The reference: per key, the earliest event time, then the earliest file (files land in order)."""
    best = {}
    for day in range(days):
        for i, hm, amount in DROPS[day]:
            candidate = (hm, f"d{day}.json", amount)
            best[i] = min(best.get(i, candidate), candidate)
    return sorted((i, hm, amount) for i, (hm, _, amount) in best.items())


def survivors(folder) -> list:
    return sorted((r["id"], r["event_time"].strftime("%H:%M"), r["amount"])
                  for r in table(folder, "02_silver", "clean") or [])


def index_folder(folder):
    return folder / "storage" / "_system" / "checkpoints" / "clean" / "keyindex"


def test_a_run_per_drop_keeps_exactly_the_reference_survivors(project, run_pipeline):
    folder = project({"transformations/p.py": PIPELINE})
    for day in range(len(DROPS)):
        land(folder, day)
        run_pipeline(folder)
        assert survivors(folder) == expected(day + 1)
    manifest = json.loads((index_folder(folder) / "manifest.json").read_text())
    assert manifest["keys"] == ["id"] and manifest["parts"]


def test_hashes_that_all_collide_never_drop_a_new_key(project, run_pipeline, monkeypatch):
    """Every key hashes alike: every row of a batch is a hit, and only the real keys decide."""
    from pyspark.sql import functions as F
    monkeypatch.setattr(key_index, "key_hash", lambda keys: F.lit(7).cast("bigint"))
    monkeypatch.setattr("assay.runtime.execute.key_hash", key_index.key_hash)
    folder = project({"transformations/p.py": PIPELINE})
    for day in range(len(DROPS)):
        land(folder, day)
        run_pipeline(folder)
    assert survivors(folder) == expected(len(DROPS))


@pytest.mark.parametrize("damage", ["deleted", "garbled", "other engine"])
def test_a_lost_or_foreign_index_is_rebuilt_from_the_target(project, run_pipeline, damage):
    folder = project({"transformations/p.py": PIPELINE})
    for day in range(len(DROPS)):
        land(folder, day)
        run_pipeline(folder)
        manifest = index_folder(folder) / "manifest.json"
        if day == 1 and damage == "deleted":
            manifest.unlink()
        elif day == 1 and damage == "garbled":
            manifest.write_text("{not json")
        elif day == 1:
            data = json.loads(manifest.read_text())
            manifest.write_text(json.dumps({**data, "probe": data["probe"] + 1}))
        assert survivors(folder) == expected(day + 1)


# Each run writes bronze's batch first: `written` and `committed` of silver are their second instance.
@pytest.mark.parametrize("point", ["key_indexed:1", "written:2", "committed:2"])
def test_killed_around_the_index_update_loses_and_keeps_nothing(project, assay_cli, point):
    """kill -9 after the batch's files are written but before any commit (`written`: the index holds
    the earlier batches, the target not this one), after the target's commit while the index takes
    its new files (`key_indexed`: the part written, its manifest not: the target is ahead of the
    index and the batch not recorded), and after the commits and the index update but before the
    batch is recorded (`committed`). The killed run is a process of its own; the run after it,
    which must mend what it left, needs none."""
    folder = project({"transformations/p.py": PIPELINE})
    for day in range(len(DROPS)):
        land(folder, day)
        if day >= 1:
            crashed = cli("run", "--max-files-per-batch", "1", cwd=folder, env={"ASSAY_CRASH_AT": point})
            assert crashed.returncode == -9, crashed.stdout + crashed.stderr
        assay_cli("run", cwd=folder, check=True)
        assert survivors(folder) == expected(day + 1)


@pytest.mark.parametrize("rows_per_slice", [3, 5])
def test_a_backlog_goes_in_one_pass_sliced_by_key_with_the_same_survivors(project, run_pipeline, monkeypatch,
                                                                           rows_per_slice):
    """Bronze lands a drop per batch; silver then takes the whole backlog as one batch, sliced by
    key hash into engine jobs of a few rows: the slices share no key, so nothing changes but the size
    of each job."""
    monkeypatch.setattr("assay.runtime.execute.DEDUPE_SUBJOB_ROWS", rows_per_slice)
    jobs = []
    real_routes = routing.dedupe_routes
    monkeypatch.setattr(routing, "dedupe_routes", lambda *a, **k: jobs.append(1) or real_routes(*a, **k))
    folder = project({"transformations/p.py": PIPELINE})
    land(folder, 0)
    run_pipeline(folder)
    for day in range(1, len(DROPS)):
        land(folder, day)
        run_pipeline(folder, refresh={"events"})          # bronze alone: a commit per drop
    jobs.clear()
    assert run_pipeline(folder)["clean"].batches == 1
    assert 1 < len(jobs) <= -(-11 // rows_per_slice)       # the backlog's 11 rows, sliced (a slice may be empty)
    assert survivors(folder) == expected(len(DROPS))


def test_keys_constant_in_a_file_hash_like_any_other(engine, tmp_path):
    """A Parquet file whose key columns hold one value each (min = max, no NULL): the embedded
    engine's xxhash64 used to panic on such columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F
    pq.write_table(pa.table({"k": pa.array([1, 1, 1], pa.int64()), "s": ["a", "a", "a"]}), tmp_path / "a.parquet")
    hashed = engine.read_parquet([tmp_path]).select(key_index.key_hash(["k", "s"]).alias("h")).collect()
    expected = engine.spark.range(1).select(F.xxhash64(F.lit(1).cast("bigint"), F.lit("a"))).collect()[0][0]
    assert [row["h"] for row in hashed] == [expected] * 3


def test_each_batch_leaves_the_index_covering_every_file_it_committed(project, run_pipeline):
    """The files a batch adds are hashed right after its commit (replacements' rewrites marked
    covered): the next batch finds nothing to catch up, and the index holds one part per batch."""
    from assay.delta.table import add_actions, open_table
    folder = project({"transformations/p.py": PIPELINE})
    for day in range(len(DROPS)):
        land(folder, day)
        run_pipeline(folder)
        manifest = json.loads((index_folder(folder) / "manifest.json").read_text())
        files = {a["path"] for a in add_actions(open_table(folder / "storage" / "02_silver" / "clean"))}
        assert files <= set(manifest["covered"]), day
        assert len(manifest["parts"]) == day + 1
    assert survivors(folder) == expected(len(DROPS))
