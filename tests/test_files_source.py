"""The landing-folder source: Auto Loader semantics on real files."""
import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.errors import SchemaChanged
from tests.conftest import table


def bronze(options: str = "", schema: str = '"id STRING, n INT"', fmt: str = "json") -> dict:
    return {"transformations/p.py": f"""
from assay import pipelines as dp

@dp.table(name="bronze.raw")
def raw():
    return dp.read_files("in", "{fmt}", schema={schema}{options})
"""}


def land(folder, name, text, mode="w"):
    path = folder / "landing" / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as handle:
        handle.write(text)
    return path


def rows(folder):
    return table(folder, "01_bronze", "raw") or []


def test_each_file_once_later_files_rewrites_and_temp_names(project, run_pipeline):
    folder = project(bronze())
    land(folder, "a.json", '{"id": "1", "n": 1}\n')
    land(folder, ".hidden.json", '{"id": "h", "n": 1}\n')
    land(folder, "b.json.tmp", '{"id": "t", "n": 1}\n')
    land(folder, "_b.json", '{"id": "u", "n": 1}\n')
    run_pipeline(folder)
    assert [r["id"] for r in rows(folder)] == ["1"]
    land(folder, "c.json", '{"id": "2", "n": 2}\n')
    land(folder, "a.json", '{"id": "1", "n": 1}\n{"id": "1b", "n": 1}\n')   # rewritten in place
    result = run_pipeline(folder)
    assert result["raw"].rows_read == 1 and sorted(r["id"] for r in rows(folder)) == ["1", "2"]


def test_allow_overwrites_reads_a_rewritten_file_again(project, run_pipeline):
    folder = project(bronze(", allow_overwrites=True"))
    path = land(folder, "a.json", '{"id": "1", "n": 1}\n')
    run_pipeline(folder)
    time.sleep(0.02)
    land(folder, "a.json", '{"id": "1", "n": 1}\n{"id": "2", "n": 2}\n')
    os.utime(path, None)
    run_pipeline(folder)
    assert sorted(r["id"] for r in rows(folder)) == ["1", "1", "2"]


def test_metadata_malformed_lines_and_type_mismatches(project, run_pipeline):
    folder = project(bronze(", schema_evolution_mode='rescue'"))
    path = land(folder, "a.json", '{"id": "1", "n": 1}\n\n{"id": "2", "n": "two", "extra": true}\n{oops\n'
                                  '\ufeff{"id": "3"}\n')
    run_pipeline(folder, full_refresh=set())
    got = sorted(rows(folder), key=lambda r: r["id"] or "~")
    assert [r["id"] for r in got] == ["1", "2", "3", None] and "_source_position" not in got[0]
    assert got[0]["_rescued_data"] is None and got[0]["n"] == 1
    assert json.loads(got[1]["_rescued_data"]) == {"n": "two", "extra": "true"} and got[1]["n"] is None
    assert got[2]["_rescued_data"] is None and got[2]["n"] is None      # after a UTF-8 BOM, a record like any
    assert json.loads(got[3]["_rescued_data"]) == {"_corrupt_record": "{oops"}
    assert got[0]["_source_file"] == str(path) and got[0]["_source_size"] == path.stat().st_size
    assert got[0]["_source_modified"].timestamp() == pytest.approx(path.stat().st_mtime, abs=1e-3)


def test_csv_quotes_bom_bad_rows_and_empty_file(project, run_pipeline):
    folder = project(bronze(", header=True", schema='"id INT, name STRING"', fmt="csv"))
    land(folder, "a.csv", '\ufeffid,name\n1,"Smith, Ann"\n2,b,extra\nx,c\n3\n')
    land(folder, "empty.csv", "")
    run_pipeline(folder)
    got = sorted(rows(folder), key=lambda r: (r["id"] is None, r["id"]))
    # A row with the wrong number of fields keeps the fields it has (as Spark's PERMISSIVE mode) and its text.
    assert [(r["id"], r["name"]) for r in got] == [(1, "Smith, Ann"), (2, "b"), (3, None), (None, "c")]
    assert json.loads(got[1]["_rescued_data"]) == {"_corrupt_record": "2,b,extra"}
    assert json.loads(got[3]["_rescued_data"]) == {"id": "x"}
    assert json.loads(got[2]["_rescued_data"]) == {"_corrupt_record": "3"}


def test_parquet_struct_schema_and_hints(project, run_pipeline):
    folder = project(bronze(", schema_hints='n BIGINT'", schema="None", fmt="parquet"))
    (folder / "landing" / "in").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["a", "b"], "n": pa.array([1, 2], pa.int32()), "x": [1.5, 2.5]}),
                   folder / "landing" / "in" / "p.parquet")
    run_pipeline(folder)
    got = rows(folder)
    assert sorted((r["id"], r["n"], r["x"]) for r in got) == [("a", 1, 1.5), ("b", 2, 2.5)]
    from assay.delta.table import open_table
    fields = {f.name: str(f.type) for f in open_table(folder / "storage/01_bronze/raw").schema().fields}
    assert fields["n"] == 'PrimitiveType("long")' and fields["x"] == 'PrimitiveType("double")'


def test_inferred_json_schema(project, run_pipeline):
    folder = project(bronze(schema="None"))
    land(folder, "a.json", '{"id": "1", "n": 3, "price": 2.5, "ok": true}\n')
    run_pipeline(folder)
    assert rows(folder)[0]["price"] == 2.5 and rows(folder)[0]["ok"] is True


def test_add_new_columns_stops_records_and_resumes(project, run_pipeline):
    folder = project(bronze())
    land(folder, "a.json", '{"id": "1", "n": 1}\n')
    run_pipeline(folder)
    land(folder, "b.json", '{"id": "2", "n": 2, "coupon": "X1"}\n')
    with pytest.raises(SchemaChanged, match="new column\\(s\\) coupon appeared; they are recorded"):
        run_pipeline(folder)
    run_pipeline(folder)
    assert {r["id"]: r.get("coupon") for r in rows(folder)} == {"1": None, "2": "X1"}


def test_rescue_fail_and_none_modes(project, run_pipeline):
    for mode, check in (("rescue", lambda r: json.loads(r["_rescued_data"]) == {"coupon": "X1"}),
                        ("none", lambda r: r["_rescued_data"] is None and "coupon" not in r)):
        folder = project(bronze(f", schema_evolution_mode='{mode}'"))
        land(folder, f"{mode}.json", '{"id": "2", "n": 2, "coupon": "X1"}\n')
        run_pipeline(folder, full_refresh={"raw"})
        assert check(rows(folder)[-1]), mode
    folder = project(bronze(", schema_evolution_mode='failOnNewColumns'"))
    with pytest.raises(SchemaChanged, match="failOnNewColumns"):
        run_pipeline(folder, full_refresh={"raw"})


def test_batch_limits_by_files_and_bytes(project, run_pipeline):
    folder = project(bronze(", max_bytes_per_batch='90B'"))
    for i in range(4):
        land(folder, f"f{i}.json", '{"id": "%d", "n": %d}\n' % (i, i) * 2)
        time.sleep(0.01)
    result = run_pipeline(folder)
    assert result["raw"].batches == 2 and result["raw"].rows_written == 8   # 40-byte files, 2 per batch
    log = table(folder, "_system", "event_log")
    files = [json.loads(r["sources"]).popitem()[1]["files"] for r in log if r["event_type"] == "flow_progress"]
    assert files == [2, 2]
    land(folder, "g.json", '{"id": "9", "n": 9}\n')
    land(folder, "h.json", '{"id": "8", "n": 8}\n')
    assert run_pipeline(folder, max_files=1)["raw"].batches == 2


def test_file_still_changing_waits_for_next_run(project, run_pipeline):
    folder = project(bronze(", min_file_age='30s'"))
    land(folder, "fresh.json", '{"id": "1", "n": 1}\n')
    assert run_pipeline(folder)["raw"].batches == 0
    old = time.time() - 60
    os.utime(folder / "landing/in/fresh.json", (old, old))
    assert run_pipeline(folder)["raw"].rows_written == 1


def test_plans_of_committed_batches_are_merged_and_each_file_still_read_once(project, run_pipeline, monkeypatch):
    """A run reads the merge of the committed batches' plans and the plans after it, not one file per
    batch ever run; what a merge replaced is deleted, and a plan left behind by a crash between the
    merge and the deletes is never read again."""
    monkeypatch.setattr("assay.sources.files.source.MERGE_AFTER", 2)
    folder = project(bronze())
    for i in range(3):
        land(folder, f"a{i}.json", '{"id": "a%d", "n": %d}\n' % (i, i))
    assert run_pipeline(folder, max_files=1)["raw"].batches == 3
    state = next((folder / "storage" / "_system" / "checkpoints" / "raw" / "sources").iterdir())
    plans = lambda: sorted(p.name for p in state.glob("*.parquet"))       # noqa: E731
    assert plans() == [f"files-0000000{i}.parquet" for i in (1, 2, 3)]
    kept = (state / "files-00000001.parquet").read_bytes()
    land(folder, "b.json", '{"id": "b", "n": 9}\n')
    assert run_pipeline(folder)["raw"].rows_read == 1                      # merged at its start: batches 1-3
    assert plans() == ["files-00000004.parquet", "seen-00000003.parquet"]
    (state / "files-00000001.parquet").write_bytes(kept)                  # as if a crash stopped the deletes
    land(folder, "c.json", '{"id": "c", "n": 9}\n')
    assert run_pipeline(folder)["raw"].rows_read == 1
    assert sorted(r["id"] for r in rows(folder)) == ["a0", "a1", "a2", "b", "c"]
    for name in ("d", "e"):
        land(folder, f"{name}.json", '{"id": "%s", "n": 9}\n' % name)
        assert run_pipeline(folder)["raw"].rows_read == 1
    # the run of e started with 6 committed, 3 merged: merged again, the leftover plan deleted
    assert plans() == ["files-00000007.parquet", "seen-00000006.parquet"]
    assert sorted(r["id"] for r in rows(folder)) == ["a0", "a1", "a2", "b", "c", "d", "e"]
