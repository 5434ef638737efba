"""AUTO CDC flows (SCD type 1 and 2) on the embedded engine, against hand-written change fixtures
and an in-order reference model written here, independently of the runtime.

Every case lands change rows in files, in drops, runs the pipeline after each drop, and reads
the Delta tables back. The scenario pipeline gives each edge case its own key, so one set of runs
serves many named tests.
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from assay.errors import FlowError, GraphError
from tests.conftest import ROOT, table, write_project

SOURCE = """
from assay import pipelines as dp

@dp.table(name="bronze.changes")
def changes():
    return dp.read_files("changes", "json", include_metadata=False,
                         schema="id INT, name STRING, city STRING, plan STRING, ts INT, tie INT, op STRING")
"""

SCENARIOS = SOURCE + """
dp.create_streaming_table("silver.history")
dp.create_auto_cdc_flow(target="history", source="changes", keys=["id"], sequence_by="ts",
                        stored_as_scd_type=2, apply_as_deletes="op = 'D'",
                        except_column_list=["op", "tie", "_rescued_data"],
                        track_history_column_list=["city", "plan"])

dp.create_streaming_table("silver.latest")
dp.create_auto_cdc_flow(target="latest", source="changes", keys=["id"], sequence_by="ts",
                        apply_as_deletes="op = 'D'", except_column_list=["op", "tie", "_rescued_data"])

dp.create_streaming_table("silver.latest_no_nulls")
dp.create_auto_cdc_flow(target="latest_no_nulls", source="changes", keys=["id"], sequence_by="ts",
                        ignore_null_updates=True, apply_as_deletes="op = 'D'",
                        column_list=["id", "name", "city", "ts"])
"""

SCENARIOS_SQL = """
CREATE OR REFRESH STREAMING TABLE silver.history;
CREATE FLOW history AS AUTO CDC INTO silver.history
FROM STREAM(changes)
KEYS (id)
APPLY AS DELETE WHEN op = 'D'
SEQUENCE BY ts
COLUMNS * EXCEPT (op, tie, _rescued_data)
STORED AS SCD TYPE 2
TRACK HISTORY ON city, plan;

CREATE OR REFRESH STREAMING TABLE silver.latest;
CREATE FLOW latest AS AUTO CDC INTO latest FROM STREAM changes KEYS (id)
  APPLY AS DELETE WHEN op = 'D' SEQUENCE BY ts COLUMNS * EXCEPT (op, tie, _rescued_data) STORED AS SCD TYPE 1;

CREATE STREAMING TABLE silver.latest_no_nulls;
CREATE FLOW latest_no_nulls AS AUTO CDC INTO latest_no_nulls FROM STREAM(changes) KEYS (id) IGNORE NULL UPDATES
  APPLY AS DELETE WHEN op = 'D' SEQUENCE BY ts COLUMNS (id, name, city, ts);
"""


def c(key, ts, city=None, name=None, plan="free", op=None, tie=None):
    row = {"id": key, "ts": ts, "city": city, "name": name, "plan": plan}
    if op:
        row = {"id": key, "ts": ts, "op": op}
    if tie is not None:
        row["tie"] = tie
    return row


# Each key is one edge case: (changes of the first drop, changes of the second drop).
CASES = {
    1: ([c(1, 10, "A", "a1"), c(1, 30, "C", "c1")], [c(1, 20, "B", "b1")]),                 # late inside an interval
    2: ([c(2, 10, "A", "a2"), c(2, 30, "B", "b2")], [c(2, 20, "B", "x2")]),                 # late, equal to next version
    3: ([c(3, 10, "A", "a3"), c(3, 20, op="D")], [c(3, 30, "B", "b3")]),                    # delete, then re-insert
    4: ([c(4, 10, "A", "n1")], [c(4, 20, "A", "n2")]),                                      # untracked-only change
    5: ([c(5, 10, "A", "a5"), c(5, 20, "B", "b5")], [c(5, 20, "B", "b5"), c(5, 10, "A", "a5")]),  # repeated
    6: ([c(6, 10, "A", "a6"), c(6, 30, "A", "z6")], [c(6, 20, "B", "b6")]),                 # absorbed change reopens
    7: ([c(7, 10, "A", "a7"), c(7, 30, "B", "b7")], [c(7, 20, op="D")]),                    # late delete
    8: ([c(8, 20, "B", "b8")], [c(8, 10, "A", "a8")]),                                      # late, before the first
    9: ([c(9, 10, "A", "n1"), c(9, 30, "A", "n3")], [c(9, 20, "A", "n2")]),                 # late untracked change
    10: ([c(10, 10, "A", "a10"), c(10, 30, op="D")], [c(10, 20, "B", "b10")]),              # older than the delete
    11: ([c(11, 30, op="D")], [c(11, 10, "A", "a11")]),                                     # delete came first
    12: ([c(12, 10, "A", "n1"), c(12, 30, "B", None)], [c(12, 20, None, "n2")]),            # NULLs, out of order
    13: ([c(13, 10, "A", "a13", plan="free")], [c(13, 20, "A", "a13", plan="pro")]),        # second tracked column
}


def drops() -> list[list[dict]]:
    return [[ch for first, _ in CASES.values() for ch in first], [ch for _, second in CASES.values() for ch in second]]


_mtime = [time.time() - 7200.0]


def land(folder: Path, name: str, rows: list[dict], sub: str = "changes") -> None:
    """A landing file with a later modification time than every earlier one (arrival order)."""
    path = folder / "landing" / sub / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _mtime[0] += 1.0
    os.utime(tmp, (_mtime[0], _mtime[0]))
    os.replace(tmp, path)


def rows_of(folder: Path, name: str, schema: str = "02_silver") -> list[dict]:
    data = table(folder, schema, name)
    assert data is not None, f"no table {name}"
    return sorted(data, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def history_of(rows: list[dict], key: int) -> list[tuple]:
    return sorted((r["__START_AT"], r["__END_AT"], r["city"], r["name"]) for r in rows if r["id"] == key)


def by_key(rows: list[dict]) -> dict:
    return {r["id"]: r for r in rows}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, engine):
    """The scenario pipeline run once per drop (Python form), its tables, and its run summaries."""
    from tests.conftest import write_project as make
    from assay.runtime.runner import RunOptions, Runner
    from assay.spec import load_spec
    folder = make(tmp_path_factory.mktemp("cdc") / "per_drop", {"transformations/p.py": SCENARIOS})
    summaries = []
    for i, rows in enumerate(drops()):
        land(folder, f"drop-{i}.json", rows)
        summaries.append({s.flow: s for s in Runner(load_spec(folder), RunOptions(), engine=engine).run()})
    return folder, summaries


# --- SCD type 2 -----------------------------------------------------------------------------------

def test_scd2_late_event_inside_an_interval_splits_it(scenario):
    rows = rows_of(scenario[0], "history")
    assert history_of(rows, 1) == [(10, 20, "A", "a1"), (20, 30, "B", "b1"), (30, None, "C", "c1")]


def test_scd2_late_event_equal_to_the_next_version_moves_its_start_earlier(scenario):
    # 10:A, 30:B arrive; then 20:B: B starts at 20 (no extra row), its values those of its latest change
    assert history_of(rows_of(scenario[0], "history"), 2) == [(10, 20, "A", "a2"), (20, None, "B", "b2")]


def test_scd2_delete_closes_the_current_row_then_reinsert_opens_one(scenario):
    assert history_of(rows_of(scenario[0], "history"), 3) == [(10, 20, "A", "a3"), (30, None, "B", "b3")]


def test_scd2_untracked_only_change_updates_the_current_row_in_place(scenario):
    assert history_of(rows_of(scenario[0], "history"), 4) == [(10, None, "A", "n2")]
    # arriving late, an untracked change lands in its version, which keeps its latest values
    assert history_of(rows_of(scenario[0], "history"), 9) == [(10, None, "A", "n3")]


def test_scd2_repeated_events_are_no_ops(scenario):
    folder, summaries = scenario
    assert history_of(rows_of(folder, "history"), 5) == [(10, 20, "A", "a5"), (20, None, "B", "b5")]


def test_scd2_change_absorbed_into_a_version_opens_one_when_a_late_change_precedes_it(scenario):
    # in order: 10:A, 20:B, 30:A — three versions, though 30:A had left no row of its own
    assert history_of(rows_of(scenario[0], "history"), 6) == [(10, 20, "A", "a6"), (20, 30, "B", "b6"),
                                                             (30, None, "A", "z6")]


def test_scd2_late_delete_and_late_first_event(scenario):
    rows = rows_of(scenario[0], "history")
    assert history_of(rows, 7) == [(10, 20, "A", "a7"), (30, None, "B", "b7")]
    assert history_of(rows, 8) == [(10, 20, "A", "a8"), (20, None, "B", "b8")]
    assert history_of(rows, 10) == [(10, 20, "A", "a10"), (20, 30, "B", "b10")]
    assert history_of(rows, 11) == [(10, 30, "A", "a11")]      # in order: 10:A, then the delete at 30
    assert history_of(rows, 13) == [(10, 20, "A", "a13"), (20, None, "A", "a13")]   # plan is tracked too


def test_scd2_columns_and_history_column_types(scenario):
    from assay.delta.table import open_table
    folder = scenario[0]
    schema = open_table(folder / "storage" / "02_silver" / "history").schema().to_arrow()
    names = [f.name for f in schema]
    assert names == ["id", "name", "city", "plan", "ts", "__START_AT", "__END_AT"]
    import pyarrow as pa
    arrow = pa.schema(schema)
    assert arrow.field("__START_AT").type == arrow.field("ts").type == arrow.field("__END_AT").type


# --- SCD type 1 -----------------------------------------------------------------------------------

def test_scd1_latest_wins_and_older_changes_arriving_later_never_overwrite(scenario):
    latest = by_key(rows_of(scenario[0], "latest"))
    assert (latest[1]["city"], latest[1]["ts"]) == ("C", 30)       # 20:B arrived after 30:C
    assert (latest[2]["name"], latest[2]["ts"]) == ("b2", 30)
    assert (latest[8]["city"], latest[8]["ts"]) == ("B", 20)       # 10:A arrived after 20:B
    assert (latest[4]["name"], latest[6]["name"], latest[13]["plan"]) == ("n2", "z6", "pro")


def test_scd1_deletes_remove_and_are_remembered(scenario):
    latest = by_key(rows_of(scenario[0], "latest"))
    assert latest[3]["city"] == "B"            # deleted at 20, re-inserted at 30
    assert latest[7]["city"] == "B"            # the late delete (20) is older than 30:B
    assert 10 not in latest                    # 20:B arrived after the delete at 30
    assert 11 not in latest                    # a delete before any upsert still wins over older ones


def test_scd1_ignore_null_updates_in_sequence_order(scenario):
    rows = by_key(rows_of(scenario[0], "latest_no_nulls"))
    # in order: 10 (n1, A), 20 (n2, NULL), 30 (NULL, B): each NULL keeps the earlier value
    assert (rows[12]["name"], rows[12]["city"], rows[12]["ts"]) == ("n2", "B", 30)
    plain = by_key(rows_of(scenario[0], "latest"))
    assert (plain[12]["name"], plain[12]["city"]) == (None, "B")   # without it, NULLs overwrite


def test_scd1_column_list_and_except_column_list(scenario):
    from assay.delta.table import open_table
    folder = scenario[0]
    names = lambda t: [f.name for f in open_table(folder / "storage" / "02_silver" / t).schema().to_arrow()]  # noqa
    assert names("latest_no_nulls") == ["id", "name", "city", "ts"]
    assert names("latest") == ["id", "name", "city", "plan", "ts"]


def test_event_log_counts_per_batch(scenario):
    folder, summaries = scenario
    from assay.delta.table import read_arrow
    log = read_arrow(folder / "storage" / "_system" / "event_log").to_pylist()
    batches = {(r["flow"], r["batch_id"]): json.loads(r["metrics"]) for r in log
               if r["event_type"] == "flow_progress" and r["flow"] == "history"}
    second = batches[("history", 1)]
    first_changes, second_changes = (len(d) for d in drops())
    assert batches[("history", 0)]["out_of_order"] == 0
    assert second["rows_upserted"] + second["rows_deleted"] == second_changes
    assert second["rows_deleted"] == 1                 # key 7's late delete
    assert second["repeated"] == 2                     # key 5's two changes
    # out of order: second-drop changes sequenced before the newest first-drop change of their key
    newest = {}
    for ch in drops()[0]:
        newest[ch["id"]] = max(newest.get(ch["id"], ch["ts"]), ch["ts"])
    assert second["out_of_order"] == sum(1 for ch in drops()[1] if ch["ts"] < newest[ch["id"]])
    rows = rows_of(folder, "history")
    assert batches[("history", 0)]["history_rows_added"] + second["history_rows_added"] == len(rows)
    assert summaries[1]["history"].rows_read == second_changes


# --- one run = one run per drop; SQL = Python ----------------------------------------------------

def test_one_run_equals_one_run_per_drop(scenario, tmp_path, run_pipeline):
    folder = write_project(tmp_path / "once", {"transformations/p.py": SCENARIOS})
    for i, rows in enumerate(drops()):
        land(folder, f"drop-{i}.json", rows)
    run_pipeline(folder)
    for name in ("history", "latest", "latest_no_nulls"):
        assert rows_of(folder, name) == rows_of(scenario[0], name), name


def test_sql_form_equals_python_form(scenario, tmp_path, run_pipeline):
    folder = write_project(tmp_path / "sql", {"transformations/source.py": SOURCE,
                                               "transformations/cdc.sql": SCENARIOS_SQL})
    for i, rows in enumerate(drops()):
        land(folder, f"drop-{i}.json", rows)
        run_pipeline(folder)
    for name in ("history", "latest", "latest_no_nulls"):
        assert rows_of(folder, name) == rows_of(scenario[0], name), name


# --- sequencing ---------------------------------------------------------------------------------

def test_equal_sequence_values_for_one_key_stop_the_flow_naming_the_key(tmp_path, run_pipeline):
    folder = write_project(tmp_path / "tie", {"transformations/p.py": SCENARIOS})
    land(folder, "drop-0.json", [c(1, 10, "A", "a"), c(2, 10, "A", "same"), c(2, 10, "A", "same")])
    run_pipeline(folder)
    land(folder, "drop-1.json", [c(2, 20, "B", "b"), c(1, 10, "B", "other")])   # key 1: a second change at 10
    with pytest.raises(FlowError) as failed:
        run_pipeline(folder)
    message = str(failed.value)
    assert "id=1" in message and "same sequence value" in message and "id=2" not in message
    assert by_key(rows_of(folder, "latest"))[1]["city"] == "A"        # nothing of the batch was written


def test_struct_sequence_by_breaks_ties(tmp_path, run_pipeline):
    pipeline = SOURCE + """
dp.create_streaming_table("silver.history")
dp.create_auto_cdc_flow(target="history", source="changes", keys=["id"], sequence_by=["ts", "tie"],
                        stored_as_scd_type=2, column_list=["id", "city", "ts", "tie"])
dp.create_streaming_table("silver.latest")
dp.create_auto_cdc_flow(target="latest", source="changes", keys=["id"], sequence_by="struct(ts, tie)",
                        column_list=["id", "city", "ts", "tie"])
"""
    folder = write_project(tmp_path / "struct", {"transformations/p.py": pipeline})
    land(folder, "drop-0.json", [c(1, 10, "A", tie=1), c(1, 10, "C", tie=3)])
    run_pipeline(folder)
    land(folder, "drop-1.json", [c(1, 10, "B", tie=2), c(1, 9, "Z", tie=99)])   # late, between by the tie
    run_pipeline(folder)
    history = sorted(((r["__START_AT"], r["__END_AT"], r["city"]) for r in rows_of(folder, "history")),
                     key=lambda h: (h[0]["ts"], h[0]["tie"]))
    seq = lambda ts, tie: {"ts": ts, "tie": tie}   # noqa: E731
    assert history == [(seq(9, 99), seq(10, 1), "Z"), (seq(10, 1), seq(10, 2), "A"),
                       (seq(10, 2), seq(10, 3), "B"), (seq(10, 3), None, "C")]
    assert [r["city"] for r in rows_of(folder, "latest")] == ["C"]


def test_scd1_truncate_empties_the_table_in_sequence_order(tmp_path, run_pipeline):
    pipeline = SOURCE + """
dp.create_streaming_table("silver.latest")
dp.create_auto_cdc_flow(target="latest", source="changes", keys=["id"], sequence_by="ts",
                        apply_as_deletes="op = 'D'", apply_as_truncates="op = 'T'", column_list=["id", "city", "ts"])
"""
    folder = write_project(tmp_path / "truncate", {"transformations/p.py": pipeline})
    land(folder, "drop-0.json", [c(1, 10, "A"), c(2, 10, "A"), c(3, 40, "A")])
    run_pipeline(folder)
    land(folder, "drop-1.json", [{"ts": 20, "op": "T"}, c(4, 30, "B"), c(1, 15, "late")])
    run_pipeline(folder)
    assert sorted((r["id"], r["city"]) for r in rows_of(folder, "latest")) == [(3, "A"), (4, "B")]
    land(folder, "drop-2.json", [c(2, 19, "before the truncate"), c(2, 21, "after it")])
    run_pipeline(folder)
    assert sorted((r["id"], r["city"]) for r in rows_of(folder, "latest")) == [(2, "after it"), (3, "A"), (4, "B")]


# --- random change streams against an in-order reference model ------------------------------------

RANDOM = SOURCE + """
CDC = dict(source="changes", keys=["id"], sequence_by="ts", apply_as_deletes="op = 'D'")
dp.create_streaming_table("silver.hist")
dp.create_auto_cdc_flow(target="hist", stored_as_scd_type=2, except_column_list=["op", "tie", "_rescued_data"],
                        track_history_column_list=["city", "plan"], **CDC)
dp.create_streaming_table("silver.hist_all")
dp.create_auto_cdc_flow(target="hist_all", stored_as_scd_type=2,
                        except_column_list=["op", "tie", "_rescued_data", "ts"], **CDC)
dp.create_streaming_table("silver.hist_nn")
dp.create_auto_cdc_flow(target="hist_nn", stored_as_scd_type=2, ignore_null_updates=True,
                        column_list=["id", "name", "city", "plan"], track_history_except_column_list=["name"], **CDC)
dp.create_streaming_table("silver.latest")
dp.create_auto_cdc_flow(target="latest", except_column_list=["op", "tie", "_rescued_data"], **CDC)
dp.create_streaming_table("silver.latest_nn")
dp.create_auto_cdc_flow(target="latest_nn", ignore_null_updates=True, column_list=["id", "name", "city", "plan"],
                        **CDC)
"""

# target → (type, its non-key columns, tracked columns, ignore_null_updates)
MODELS = {"hist": (2, ("name", "city", "plan", "ts"), ("city", "plan"), False),
          "hist_all": (2, ("name", "city", "plan"), ("name", "city", "plan"), False),
          "hist_nn": (2, ("name", "city", "plan"), ("city", "plan"), True),
          "latest": (1, ("name", "city", "plan", "ts"), (), False),
          "latest_nn": (1, ("name", "city", "plan"), (), True)}


def random_changes(seed: int, keys: int = 30) -> list[dict]:
    """Changes of `keys` keys with distinct sequence values per key, deletes, NULLs and exact
    repeats, in a random arrival order."""
    rng = random.Random(seed)
    changes = []
    for key in range(keys):
        for ts in sorted(rng.sample(range(1, 80), rng.randint(1, 7))):
            if rng.random() < 0.15:
                changes.append(c(key, ts, op="D"))
            else:
                changes.append(c(key, ts, rng.choice(["A", "B", "C", None]), rng.choice(["n1", "n2", None]),
                                 plan=rng.choice(["free", "pro"])))
    changes += [dict(ch) for ch in rng.sample(changes, len(changes) // 10)]
    rng.shuffle(changes)
    return changes


def expected(changes: list[dict], target: str) -> list[tuple]:
    """What applying each key's distinct changes in sequence order builds (the definition)."""
    scd, data, tracked, ignore_null = MODELS[target]
    by_id: dict[int, set] = {}
    for ch in changes:
        values = None if ch.get("op") == "D" else tuple(ch.get(col) for col in data)
        by_id.setdefault(ch["id"], set()).add((ch["ts"], values))
    out = []
    for key, events in by_id.items():
        current, history = None, []
        for ts, values in sorted(events, key=lambda e: e[0]):
            if values is None:                          # a delete
                if current is not None:
                    history.append((*current[:2], ts))
                current = None
                continue
            values = dict(zip(data, values))
            if ignore_null and current is not None:
                values = {col: values[col] if values[col] is not None else current[1][col] for col in data}
            if current is not None and (scd == 1 or all(values[t] == current[1][t] for t in tracked)):
                current = (current[0], values)          # type 1: replaced; type 2: updated in place
            else:
                if current is not None:
                    history.append((*current[:2], ts))
                current = (ts, values)
        if current is not None:
            history.append((*current, None))
        for start, values, end in history:
            if scd == 1 and end is not None:
                continue                                # type 1 keeps the current row only
            row = (key, *(values[col] for col in data))
            out.append(row + ((start, end) if scd == 2 else ()))
    return sorted(out, key=repr)


def actual(folder: Path, target: str, store: Path | None = None) -> list[tuple]:
    from assay.delta.table import read_arrow
    scd, data, _, _ = MODELS[target]
    rows = read_arrow((store or folder / "storage") / "02_silver" / target).to_pylist()
    return sorted(((r["id"], *(r[col] for col in data)) + ((r["__START_AT"], r["__END_AT"]) if scd == 2 else ())
                   for r in rows), key=repr)


def split(changes: list[dict], parts: int) -> list[list[dict]]:
    size = -(-len(changes) // parts)
    return [changes[i:i + size] for i in range(0, len(changes), size)]


@pytest.mark.slow
def test_random_streams_run_per_drop_equal_in_order_processing(tmp_path, run_pipeline):
    changes = random_changes(seed=11)
    folder = write_project(tmp_path / "random", {"transformations/p.py": RANDOM})
    for i, part in enumerate(split(changes, 4)):
        land(folder, f"drop-{i}.json", part)
        run_pipeline(folder)
    for target in MODELS:
        assert actual(folder, target) == expected(changes, target), target


# --- kill -9 --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_mid_run_loses_and_duplicates_no_history_row(tmp_path, assay_cli):
    from tests.pipeline_support import finish_run, kill_when, start_run
    kills_wanted = int(os.environ.get("ASSAY_CDC_KILLS", "12"))
    rng = random.Random(5)
    changes = random_changes(seed=23, keys=40)
    folder = write_project(tmp_path / "kill", {"transformations/p.py": RANDOM})
    for i, part in enumerate(split(changes, 10)):     # one file per batch: 10 batches per flow
        land(folder, f"drop-{i:02d}.json", part)
    landing, store = folder / "landing", folder / "storage"
    kills, attempts = [], 0
    while len(kills) < kills_wanted and attempts < kills_wanted * 3:
        attempts += 1
        log = tmp_path / f"run-{attempts}.log"
        proc = start_run(folder, landing, store, log)
        if not kill_when(proc, log, r"running\s+(hist|latest)", rng.uniform(0.0, 1.2)):
            break                                       # the run finished before the kill
        lines = [ln for ln in log.read_text().splitlines() if "running" in ln]
        kills.append(lines[-1].split()[1] if lines else "?")     # the flow running when killed
    finish_run(folder, landing, store, run=assay_cli)        # the rerun mends the storage in process
    print(f"kill -9: {len(kills)} kills landed in {attempts} runs, in flows {kills}")
    assert len(kills) >= min(3, kills_wanted), f"only {len(kills)} kills landed"
    for target in MODELS:
        want, got = expected(changes, target), actual(folder, target)
        lost = [r for r in want if r not in got]
        extra = [r for r in got if r not in want] + [r for r in set(got) if got.count(r) > 1]
        assert (lost, extra) == ([], []), f"{target} after {len(kills)} kills: lost {lost[:3]}, extra {extra[:3]}"


# --- snapshots, once, full refresh ----------------------------------------------------------------

SNAPSHOT_FUNCTION = """
import os
from assay import pipelines as dp

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "landing", "snapshots")

def next_snapshot(last):
    version = 1 if last is None else last + 1
    path = os.path.join(FOLDER, f"v{version}.json")
    if not os.path.exists(path):
        return None
    return dp.spark().read.schema("id INT, city STRING, name STRING").json(path), version

dp.create_streaming_table("gold.dim")
dp.create_auto_cdc_from_snapshot_flow(target="dim", source=next_snapshot, keys=["id"], stored_as_scd_type=2,
                                      track_history_column_list=["city"])
dp.create_streaming_table("gold.current")
dp.create_auto_cdc_from_snapshot_flow(target="current", source=next_snapshot, keys=["id"])
"""


def snap(*rows):
    return [{"id": i, "city": city, "name": name} for i, city, name in rows]


def test_snapshot_flow_from_a_function_derives_changes_between_snapshots(tmp_path, run_pipeline):
    folder = write_project(tmp_path / "snap", {"transformations/p.py": SNAPSHOT_FUNCTION})
    land(folder, "v1.json", snap((1, "A", "a"), (2, "B", "b"), (4, "D", "d")), sub="snapshots")
    first = run_pipeline(folder)
    assert first["dim"].batches == 1
    # v2: 1 changes city, 2 disappears, 3 appears, 4 changes an untracked column; v3 = v2: no change
    land(folder, "v2.json", snap((1, "A2", "a"), (3, "C", "c"), (4, "D", "d2")), sub="snapshots")
    land(folder, "v3.json", snap((1, "A2", "a"), (3, "C", "c"), (4, "D", "d2")), sub="snapshots")
    second = run_pipeline(folder)
    assert second["dim"].batches == 2
    assert run_pipeline(folder)["dim"].batches == 0          # no new snapshot
    dim = sorted((r["id"], r["city"], r["name"], r["__START_AT"], r["__END_AT"]) for r in rows_of(folder, "dim", "03_gold"))
    assert dim == [(1, "A", "a", 1, 2), (1, "A2", "a", 2, None), (2, "B", "b", 1, 2), (3, "C", "c", 2, None),
                   (4, "D", "d2", 1, None)]
    current = sorted((r["id"], r["city"], r["name"]) for r in rows_of(folder, "current", "03_gold"))
    assert current == [(1, "A2", "a"), (3, "C", "c"), (4, "D", "d2")]


def test_snapshot_flow_from_a_dataset_and_duplicate_keys(tmp_path, run_pipeline):
    pipeline = """
from assay import pipelines as dp

@dp.materialized_view(name="bronze.accounts")
def accounts():
    return dp.read_files("accounts", "json", schema="id INT, city STRING", batch=True, include_metadata=False)

dp.create_streaming_table("silver.accounts_history")
dp.create_auto_cdc_from_snapshot_flow(target="accounts_history", source="accounts", keys=["id"],
                                      stored_as_scd_type=2)
"""
    folder = write_project(tmp_path / "snapds", {"transformations/p.py": pipeline})
    land(folder, "a.json", snap((1, "A", None), (2, "B", None)), sub="accounts")
    run_pipeline(folder)
    (folder / "landing" / "accounts" / "a.json").unlink()
    land(folder, "b.json", snap((1, "A", None), (2, "Z", None)), sub="accounts")
    run_pipeline(folder)
    rows = sorted((r["id"], r["city"], r["__END_AT"] is None) for r in rows_of(folder, "accounts_history"))
    assert rows == [(1, "A", True), (2, "B", False), (2, "Z", True)]
    starts = {r["__START_AT"] for r in rows_of(folder, "accounts_history") if r["id"] == 2 and r["city"] == "Z"}
    from assay.delta.table import current_version
    assert starts == {current_version(folder / "storage" / "01_bronze" / "accounts")}   # the snapshot's version
    land(folder, "c.json", snap((3, "C", None), (3, "C2", None)), sub="accounts")
    with pytest.raises(FlowError, match=r"several rows for one key: id=3 \(2 rows\)"):
        run_pipeline(folder)


def test_once_flow_runs_its_first_run_only_until_a_full_refresh(tmp_path, run_pipeline):
    pipeline = SOURCE + """
dp.create_streaming_table("silver.initial")
dp.create_auto_cdc_flow(target="initial", source="changes", keys=["id"], sequence_by="ts", once=True,
                        column_list=["id", "city", "ts"])
"""
    folder = write_project(tmp_path / "once", {"transformations/p.py": pipeline})
    land(folder, "drop-0.json", [c(1, 10, "A"), c(2, 10, "B")])
    land(folder, "drop-1.json", [c(1, 20, "A2")])
    assert run_pipeline(folder, max_files=1)["initial"].batches == 2      # its first run reads all there is
    land(folder, "drop-2.json", [c(3, 10, "C")])
    assert run_pipeline(folder)["initial"].batches == 0
    assert sorted((r["id"], r["city"]) for r in rows_of(folder, "initial")) == [(1, "A2"), (2, "B")]
    run_pipeline(folder, full_refresh={"initial"})
    assert sorted((r["id"], r["city"]) for r in rows_of(folder, "initial")) == [(1, "A2"), (2, "B"), (3, "C")]


def test_full_refresh_rebuilds_from_the_source_with_a_fresh_change_log(scenario, tmp_path, run_pipeline):
    folder = write_project(tmp_path / "refresh", {"transformations/p.py": SCENARIOS})
    land(folder, "drop-0.json", drops()[0])
    run_pipeline(folder)
    land(folder, "drop-1.json", drops()[1])
    run_pipeline(folder, full_refresh={"history", "changes"})
    assert rows_of(folder, "history") == rows_of(scenario[0], "history")


# --- graph errors ---------------------------------------------------------------------------------

def test_graph_errors_name_the_flow_file_and_line(tmp_path, engine):
    from assay.runtime import services
    from assay.spec import load_spec

    def analyse(files):
        folder = write_project(tmp_path / f"g{len(list(tmp_path.iterdir()))}", files)
        return services.analyse(load_spec(folder), engine).graph

    bad = SOURCE + """
dp.create_streaming_table("silver.a")
dp.create_auto_cdc_flow(target="a", source="changes", keys=["nope"], sequence_by="ts")
dp.create_streaming_table("silver.b")
dp.create_auto_cdc_flow(target="b", source="changes", keys=["id"], sequence_by="no_such_column + 1")
dp.create_streaming_table("silver.d", expect_all={"x": "id > 0"})
dp.create_auto_cdc_flow(target="d", source="changes", keys=["id"], sequence_by="ts")
"""
    with pytest.raises(GraphError) as failed:
        analyse({"transformations/p.py": bad})
    text = str(failed.value)
    assert "3 problem(s)" in text
    assert "AUTO CDC flow 'a' into 'a' (at " in text and "p.py:10): key(s) 'nope' not in the source" in text
    assert "p.py:12): sequence_by" in text and "'no_such_column' does not exist" in text
    assert "p.py:14): its target 'd'" in text and "do not support" in text

    with pytest.raises(GraphError, match=r"stored_as_scd_type=1"):
        analyse({"transformations/p.py": SOURCE + """
dp.create_streaming_table("silver.a")
dp.create_auto_cdc_flow(target="a", source="changes", keys=["id"], sequence_by="ts", apply_as_truncates="op = 'T'",
                        stored_as_scd_type=2)
"""})
    sql = "CREATE STREAMING TABLE silver.a;\n\nCREATE FLOW a AS AUTO CDC INTO a FROM STREAM(changes)\n  KEYS (id)\n  STORED AS SCD TYPE 3;\n"
    with pytest.raises(GraphError, match=r"cdc.sql:3: .*SEQUENCE BY"):
        analyse({"transformations/s.py": SOURCE, "transformations/cdc.sql": sql})
    with pytest.raises(GraphError, match=r"cdc.sql:5: expected STORED AS SCD TYPE 1 or"):
        analyse({"transformations/s.py": SOURCE,
                 "transformations/cdc.sql": sql.replace("KEYS (id)", "KEYS (id) SEQUENCE BY ts")})


def test_a_column_added_to_the_flow_reaches_the_target_and_its_change_log(tmp_path, run_pipeline):
    before = SOURCE + """
dp.create_streaming_table("silver.history")
dp.create_auto_cdc_flow(target="history", source="changes", keys=["id"], sequence_by="ts", stored_as_scd_type=2,
                        except_column_list=["op", "tie", "_rescued_data", "plan"])
"""
    folder = write_project(tmp_path / "evolve", {"transformations/p.py": before})
    land(folder, "drop-0.json", [c(1, 10, "A", "a"), c(2, 10, "B", "b")])
    run_pipeline(folder)
    (folder / "transformations" / "p.py").write_text(before.replace(', "plan"]', "]"))
    land(folder, "drop-1.json", [c(1, 20, "A", "a", plan="pro")])
    run_pipeline(folder)
    rows = sorted((r["id"], r["__START_AT"], r["plan"]) for r in rows_of(folder, "history"))
    assert rows == [(1, 10, None), (1, 20, "pro"), (2, 10, None)]


def test_change_logs_are_compacted_and_later_batches_still_apply_every_change(tmp_path, run_pipeline, monkeypatch):
    """The history upkeep at the end of a run merges each AUTO CDC flow's change log (one small file
    per batch); the runs after it read the merged log and give the same tables as runs without."""
    from assay.delta import table as storage
    from assay.runtime import history
    later = [{"id": 1, "ts": 21, "city": "B", "name": "b1", "plan": "pro"}, {"id": 2, "ts": 7, "op": "D"},
             {"id": 3, "ts": 99, "city": "Z", "name": "z3", "plan": "free"}]
    last = [{"id": 1, "ts": 41, "city": "D", "name": "d1", "plan": "free"}]
    folders = {}
    for compacted in (False, True):
        if compacted:
            monkeypatch.setattr(history, "COMPACT_EVERY", 1)
            monkeypatch.setattr(history, "CHANGE_LOG_SMALL_FILES", 2)
        folders[compacted] = write_project(tmp_path / str(compacted), {"transformations/p.py": SCENARIOS})
        for i, rows in enumerate([*drops(), later, last]):
            land(folders[compacted], f"drop-{i}.json", rows)
            run_pipeline(folders[compacted])
    for name in ("history", "latest", "latest_no_nulls"):
        merges = [v for v, h in enumerate(reversed(storage.open_table(
            folders[True] / "storage" / "_system" / "checkpoints" / name / "changes").history()))
            if h["operation"] == "OPTIMIZE"]
        assert len(merges) >= 2, name                     # merged, then merged again after later batches
        assert rows_of(folders[True], name) == rows_of(folders[False], name), name
