"""assay.verify: equal tables pass whatever their order and physical types; differences are
reported precisely (which rows are missing, unexpected, or outside tolerance)."""
from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from assay.verify import compare, verify

UTC = timezone.utc


def _truth() -> pa.Table:
    return pa.table({
        "event_date": pa.array([date(2026, 11, 1), date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 2)]),
        "product_id": ["P1", "P2", "P1", None],
        "purchases": pa.array([3, 0, 1, 1], pa.int64()),
        "revenue": [30.03, 0.0, 10.01, 5.0],
        "last_ts": pa.array([datetime(2026, 11, 1, 10, 0, 0, 123000, tzinfo=UTC)] * 3 + [None],
                            pa.timestamp("us", tz="UTC")),
        "rules": pa.array([["a", "b"], [], ["c"], None], pa.list_(pa.string())),
    })


def _write_truth(tmp_path, tables: dict, approx: dict | None = None):
    d = tmp_path / "truth"
    d.mkdir()
    for name, t in tables.items():
        pq.write_table(t, d / f"{name}.parquet")
    manifest = {"tables": {n: {"rows": t.num_rows, "columns": t.column_names,
                               "approx_distinct": (approx or {}).get(n, [])} for n, t in tables.items()}}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


def test_equal_tables_pass_regardless_of_order_types_and_extra_columns():
    t = _truth()
    shuffled = t.take([3, 1, 0, 2])
    actual = pa.table({
        "ingested_at": pa.array([1, 2, 3, 4]),                                   # extra column: ignored
        "rules": shuffled["rules"],
        "purchases": pc.cast(shuffled["purchases"], pa.int32()),                 # narrower int
        "revenue": pc.add(shuffled["revenue"], 1e-12),                           # float noise
        "last_ts": pc.cast(pc.cast(shuffled["last_ts"], pa.timestamp("us")), pa.timestamp("ns")),  # naive, ns
        "product_id": shuffled["product_id"],
        "event_date": pc.cast(shuffled["event_date"], pa.string()),              # ISO date text
    })
    res = compare("t", t, actual)
    assert res.ok, res
    assert res.truth_rows == res.actual_rows == 4


def test_missing_unexpected_and_tolerance_are_reported_precisely():
    t = _truth()
    rows = t.to_pylist()
    rows[0]["revenue"] = 30.04                       # outside 1e-9 relative
    rows[1]["purchases"] = 7                         # exact column differs: one missing + one unexpected
    del rows[2]                                      # missing
    rows.append(dict(rows[-1]))                      # duplicate of the NULL-key row: one unexpected
    res = compare("gold", t, pa.Table.from_pylist(rows, schema=t.schema))
    assert res.status == "mismatch"
    assert (res.missing, res.unexpected, res.mismatched) == (2, 2, 1)
    assert {r["product_id"] for r in res.missing_examples} == {"P2", "P1"}
    assert {r["purchases"] for r in res.missing_examples} == {0, 1}
    assert res.mismatch_examples[0]["revenue"] == "30.03 -> 30.04"
    assert res.mismatch_examples[0]["last_ts"] == "2026-11-01T10:00:00.123000+00:00"


def test_duplicates_are_counted_as_a_multiset():
    t = pa.table({"k": ["a", "a", "b"]})
    assert compare("x", t, pa.table({"k": ["a", "b", "b"]})).unexpected == 1
    assert compare("x", t, pa.table({"k": ["a", "b", "b"]})).missing == 1
    assert compare("x", t, pa.table({"k": ["b", "a", "a"]})).ok


def test_timestamps_compare_at_microseconds():
    t = pa.table({"ts": pa.array([1_000_000_000_123_456], pa.timestamp("us", tz="UTC"))})
    same_ns = pa.table({"ts": pa.array([1_000_000_000_123_456_789], pa.timestamp("ns", tz="UTC"))})
    other_tz = pa.table({"ts": pc.cast(t["ts"], pa.timestamp("us", tz="America/New_York"))})
    off_by_one = pa.table({"ts": pa.array([1_000_000_000_123_457], pa.timestamp("us", tz="UTC"))})
    assert compare("x", t, same_ns).ok
    assert compare("x", t, other_tz).ok
    assert compare("x", t, off_by_one).missing == 1


def test_approximate_distinct_within_the_estimators_error():
    # 25 %, at least 3: what Spark's HyperLogLog++ at rsd 5 % stays within (15 -> 13 was seen on Zenith data)
    t = pa.table({"user_id": [1, 2, 3], "distinct_products_purchased": pa.array([100, 7, 15], pa.int64())})
    near = pa.table({"user_id": [1, 2, 3], "distinct_products_purchased": [125, 10, 13]})
    far = pa.table({"user_id": [1, 2, 3], "distinct_products_purchased": [126, 7, 15]})
    assert compare("s", t, near, approx=["distinct_products_purchased"]).ok
    res = compare("s", t, far, approx=["distinct_products_purchased"])
    assert res.mismatched == 1 and res.mismatch_examples[0]["distinct_products_purchased"] == "100 -> 126"
    assert not compare("s", t, near).ok           # exact unless the column is declared approximate


def test_equal_infinities_and_nans_match():
    t = pa.table({"k": [1, 2, 3], "x": [float("inf"), float("-inf"), float("nan")]})
    assert compare("f", t, t).ok
    assert compare("f", t, pa.table({"k": [1, 2, 3], "x": [float("-inf"), float("-inf"), float("nan")]})).mismatched == 1
    assert compare("f", t, pa.table({"k": [1, 2, 3], "x": [1e308, float("-inf"), float("nan")]})).mismatched == 1


def test_source_file_compares_by_base_name():
    t = pa.table({"source_file": ["part-00000-00001.json"], "position": [3]})
    a = pa.table({"source_file": ["file:///tmp/landing/streaming/user_events/part-00000-00001.json"], "position": [3]})
    assert compare("q", t, a).ok


def test_verify_reports_missing_tables_columns_and_reader_errors(tmp_path):
    t = _truth()
    d = _write_truth(tmp_path, {"good": t, "absent": t, "narrow": t, "broken": t, "empty": t.slice(0, 0)})

    def read(name):
        if name == "good":
            return t
        if name == "narrow":
            return t.drop_columns(["revenue"])
        if name == "broken":
            raise RuntimeError("delta log is corrupt")
        return None

    report = verify(d, read)
    assert not report.ok
    status = {r.name: r.status for r in report.tables}
    assert status == {"good": "ok", "absent": "missing", "narrow": "missing_columns", "broken": "error", "empty": "ok"}
    text = report.render()
    assert "FAILED (3 of 5 tables differ)" in text
    assert "columns missing: revenue" in text and "delta log is corrupt" in text


def test_verify_passes_on_equal_tables_and_renders_examples(tmp_path):
    t = _truth()
    d = _write_truth(tmp_path, {"gold": t})
    assert verify(d, lambda name: t).ok
    changed = t.set_column(1, "product_id", pa.array(["P1", "P9", "P1", None]))
    report = verify(d, lambda name: changed)
    text = report.render()
    assert "1 missing, 1 unexpected, 0 outside tolerance" in text
    assert "product_id: 'P2'" in text and "product_id: 'P9'" in text


def test_fractional_values_in_an_integer_column_are_an_error():
    t = pa.table({"n": pa.array([1], pa.int64())})
    assert compare("x", t, pa.table({"n": [1.0]})).ok
    assert compare("x", t, pa.table({"n": [1.5]})).status == "error"


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_every_timestamp_unit_is_understood(unit):
    t = pa.table({"ts": pa.array([datetime(2026, 11, 1, 10, 15, 30, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))})
    assert compare("x", t, pa.table({"ts": pc.cast(t["ts"], pa.timestamp(unit, tz="UTC"))})).ok


def test_text_timestamps_and_text_numbers_are_parsed():
    t = pa.table({"ts": pa.array([datetime(2026, 11, 1, 10, 15, 30, 123000, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
                  "n": pa.array([3], pa.int64())})
    assert compare("x", t, pa.table({"ts": ["2026-11-01T10:15:30.123Z"], "n": ["3"]})).ok
    assert compare("x", t, pa.table({"ts": ["2026-11-01T10:15:30.124Z"], "n": ["3"]})).missing == 1


# ---------------------------------------------------------------- the engine's comparison
# What `assay verify` runs: the same rules computed by the engine over the truth's Parquet and the
# pipeline's Delta table (assay.verify_engine); the Python comparison above is the reference.

import random  # noqa: E402

from assay import verify_engine  # noqa: E402
from assay.delta import table as storage  # noqa: E402
from assay.spec import load_spec  # noqa: E402
from assay.truth import frame_reader  # noqa: E402
from assay.verify_engine import compare_frames, verify_in_engine  # noqa: E402
from tests.conftest import ROOT, cli, write_project  # noqa: E402


def _compare_in(engine, tmp_path):
    """compare(), computed by the engine: the truth as a Parquet file, the table as a Delta table."""
    count = [0]

    def run(truth: pa.Table, actual: pa.Table, approx=(), examples: int = 5):
        count[0] += 1
        path, table = tmp_path / f"truth{count[0]}.parquet", tmp_path / f"table{count[0]}"
        pq.write_table(truth, path)
        storage.write_small(table, actual, mode="overwrite")
        return compare_frames("t", engine.read_parquet([path]), truth.num_rows, engine.read_table(table),
                              approx=approx, examples=examples)
    return run


@pytest.fixture
def in_engine(engine, tmp_path):
    return _compare_in(engine, tmp_path)


def test_engine_equal_tables_pass_regardless_of_order_types_and_extra_columns(in_engine):
    t = _truth()
    shuffled = t.take([3, 1, 0, 2])
    actual = pa.table({
        "ingested_at": pa.array([1, 2, 3, 4]),
        "rules": shuffled["rules"],
        "purchases": pc.cast(shuffled["purchases"], pa.int32()),
        "revenue": pc.add(shuffled["revenue"], 1e-12),
        "last_ts": pc.cast(pc.cast(shuffled["last_ts"], pa.timestamp("us")), pa.timestamp("ns")),
        "product_id": shuffled["product_id"],
        "event_date": pc.cast(shuffled["event_date"], pa.string()),
    })
    res = in_engine(t, actual)
    assert res.ok, res
    assert res.truth_rows == res.actual_rows == 4


def _truth_and_a_wrong_copy():
    """A truth table and a copy with one value off tolerance, one exact value changed, a row lost
    and a row doubled."""
    t = _truth()
    rows = t.to_pylist()
    rows[0]["revenue"] = 30.04
    rows[1]["purchases"] = 7
    del rows[2]
    rows.append(dict(rows[-1]))
    return t, pa.Table.from_pylist(rows, schema=t.schema)


def test_engine_reports_missing_unexpected_and_tolerance_as_the_reference_does(in_engine):
    t, actual = _truth_and_a_wrong_copy()
    res, ref = in_engine(t, actual), compare("t", t, actual)
    assert res.status == "mismatch"
    assert (res.missing, res.unexpected, res.mismatched) == (2, 2, 1)
    assert sorted(map(str, res.missing_examples)) == sorted(map(str, ref.missing_examples))
    assert sorted(map(str, res.unexpected_examples)) == sorted(map(str, ref.unexpected_examples))
    assert res.mismatch_examples == ref.mismatch_examples
    assert res.mismatch_examples[0]["revenue"] == "30.03 -> 30.04"
    assert res.mismatch_examples[0]["last_ts"] == "2026-11-01T10:00:00.123000+00:00"


def test_engine_counts_duplicates_as_a_multiset(in_engine):
    t = pa.table({"k": ["a", "a", "b"]})
    res = in_engine(t, pa.table({"k": ["a", "b", "b"]}))
    assert (res.missing, res.unexpected) == (1, 1)
    assert res.missing_examples == [{"k": "a"}] and res.unexpected_examples == [{"k": "b"}]
    assert in_engine(t, pa.table({"k": ["b", "a", "a"]})).ok
    # duplicates of a loose row pair in order: (1, 1.0), (1, 2.0) against (1, 1.0), (1, 2.5)
    t = pa.table({"k": [1, 1, 1], "x": [2.0, 1.0, 1.0]})
    res = in_engine(t, pa.table({"k": [1, 1, 1], "x": [1.0, 2.5, 1.0]}))
    assert (res.missing, res.unexpected, res.mismatched) == (0, 0, 1)
    assert res.mismatch_examples == [{"k": 1, "x": "2.0 -> 2.5"}]


def test_engine_compares_timestamps_at_microseconds(in_engine):
    t = pa.table({"ts": pa.array([1_000_000_000_123_456, None], pa.timestamp("us", tz="UTC"))})
    assert in_engine(t, pa.table({"ts": pc.cast(t["ts"], pa.timestamp("us"))})).ok        # naive: UTC
    assert in_engine(t, pa.table({"ts": pc.cast(t["ts"], pa.timestamp("us", tz="America/New_York"))})).ok
    assert in_engine(t, pa.table({"ts": ["2001-09-09T01:46:40.123456Z", None]})).ok       # ISO text
    res = in_engine(t, pa.table({"ts": pa.array([1_000_000_000_123_457, None], pa.timestamp("us", tz="UTC"))}))
    assert (res.missing, res.unexpected) == (1, 1)
    assert res.missing_examples == [{"ts": "2001-09-09T01:46:40.123456+00:00"}]


def test_engine_approximate_distinct_within_the_estimators_error(in_engine):
    t = pa.table({"user_id": [1, 2, 3], "distinct_products_purchased": pa.array([100, 7, 15], pa.int64())})
    near = pa.table({"user_id": [1, 2, 3], "distinct_products_purchased": [125, 10, 13]})
    far = pa.table({"user_id": [1, 2, 3], "distinct_products_purchased": [126, 7, 15]})
    assert in_engine(t, near, approx=["distinct_products_purchased"]).ok
    res = in_engine(t, far, approx=["distinct_products_purchased"])
    assert res.mismatched == 1 and res.mismatch_examples[0]["distinct_products_purchased"] == "100 -> 126"
    assert not in_engine(t, near).ok


def test_engine_float_tolerance_infinities_nans_and_nulls(in_engine):
    t = pa.table({"k": [1, 2, 3, 4, 5], "x": [float("inf"), float("-inf"), float("nan"), 1e9, None]})
    assert in_engine(t, t).ok
    assert in_engine(t, pa.table({"k": [1, 2, 3, 4, 5], "x": [float("inf"), float("-inf"), None, 1e9 + 0.5,
                                                                float("nan")]})).ok     # NULL reads as NaN
    res = in_engine(t, pa.table({"k": [1, 2, 3, 4, 5], "x": [1e308, float("-inf"), float("nan"), 1e9 + 2, None]}))
    assert res.mismatched == 2 and (res.missing, res.unexpected) == (0, 0)


def test_engine_compares_source_file_by_base_name(in_engine):
    t = pa.table({"source_file": ["part-00000-00001.json"], "position": [3]})
    a = pa.table({"source_file": ["file:///tmp/landing/streaming/user_events/part-00000-00001.json"], "position": [3]})
    assert in_engine(t, a).ok
    assert not in_engine(t, pa.table({"source_file": ["file:///x/part-00000-00002.json"], "position": [3]})).ok


def test_engine_compares_structs_field_by_field(in_engine):
    kind = pa.struct([("event_ts", pa.timestamp("us", tz="UTC")), ("seq", pa.int64())])
    t = pa.table({"id": [1, 2, 3], "__START_AT": pa.array([{"event_ts": datetime(2026, 11, 1, tzinfo=UTC), "seq": 1},
                                                           {"event_ts": datetime(2026, 11, 2, tzinfo=UTC), "seq": 2},
                                                           None], kind)})
    reordered = pa.struct([("seq", pa.int32()), ("event_ts", pa.timestamp("us", tz="UTC")), ("extra", pa.string())])
    same = pa.table({"id": [3, 2, 1], "__START_AT": pa.array(
        [None, {"seq": 2, "event_ts": datetime(2026, 11, 2, tzinfo=UTC), "extra": "x"},
         {"seq": 1, "event_ts": datetime(2026, 11, 1, tzinfo=UTC), "extra": None}], reordered)})
    assert in_engine(t, same).ok
    other = pa.table({"id": [1, 2, 3], "__START_AT": pa.array([{"event_ts": datetime(2026, 11, 1, tzinfo=UTC), "seq": 9},
                                                               {"event_ts": datetime(2026, 11, 2, tzinfo=UTC), "seq": 2},
                                                               None], kind)})
    res = in_engine(t, other)
    assert (res.missing, res.unexpected) == (1, 1)
    assert res.missing_examples == [{"id": 1, "__START_AT.event_ts": "2026-11-01T00:00:00+00:00", "__START_AT.seq": 1}]
    res = in_engine(t, pa.table({"id": [1, 2, 3], "__START_AT": pa.array([None] * 3, pa.struct([("seq", pa.int64())]))}))
    assert res.status == "missing_columns" and "__START_AT.event_ts" in res.note


def test_engine_lists_and_fractional_integers(in_engine):
    t = pa.table({"n": pa.array([1, 2], pa.int64()), "rules": pa.array([["a", "b"], []], pa.list_(pa.string()))})
    assert in_engine(t, pa.table({"n": [2.0, 1.0], "rules": pa.array([[], ["a", "b"]], pa.list_(pa.string()))})).ok
    res = in_engine(t, pa.table({"n": [1.5, 2.0], "rules": pa.array([["a", "b"], []], pa.list_(pa.string()))}))
    assert res.status == "error" and "fractional" in res.note
    res = in_engine(t, pa.table({"n": [1, 2], "rules": pa.array([["a", "b"], None], pa.list_(pa.string()))}))
    assert (res.missing, res.unexpected) == (1, 1)       # a NULL list is not an empty one


def _random_table(rng: random.Random, rows: int) -> pa.Table:
    return pa.table({
        "k": pa.array([rng.choice(["a", "b", "c", None]) for _ in range(rows)], pa.string()),
        "n": pa.array([rng.choice([1, 2, None]) for _ in range(rows)], pa.int64()),
        "d": pa.array([rng.choice([date(2026, 1, 1), date(2026, 1, 2)]) for _ in range(rows)]),
        "x": pa.array([rng.choice([0.5, 1.0, 1.0 + 1e-12, 2.0, float("nan"), None, float("inf")]) for _ in range(rows)]),
        "c": pa.array([rng.choice([10, 11, 14]) for _ in range(rows)], pa.int64()),
    })


def _perturbed(rng: random.Random, t: pa.Table) -> pa.Table:
    rows = t.to_pylist()
    rng.shuffle(rows)
    for _ in range(rng.randint(0, 4)):
        action, i = rng.choice(["drop", "copy", "key", "float", "approx"]), rng.randrange(len(rows))
        if action == "drop":
            rows.pop(i)
        elif action == "copy":
            rows.append(dict(rows[i]))
        elif action == "key":
            rows[i]["n"] = rng.choice([1, 2, 3, None])
        elif action == "float":
            rows[i]["x"] = rng.choice([0.5, 1.5, 2.0 + 1e-7, None, float("-inf")])
        else:
            rows[i]["c"] += rng.choice([-4, 2, 3])
    return pa.Table.from_pylist(rows, schema=t.schema)


def test_engine_agrees_with_the_reference_on_random_mismatches(in_engine, monkeypatch):
    # Few buckets and small chunks, so that pairing runs over several chunks of several buckets.
    monkeypatch.setattr(verify_engine, "BUCKETS", 4)
    monkeypatch.setattr(verify_engine, "CHUNK_ROWS", 20)
    rng = random.Random(20)
    for _ in range(12):
        t = _random_table(rng, rng.randint(5, 30))
        a = _perturbed(rng, t)
        ref, res = compare("t", t, a, approx=["c"]), in_engine(t, a, approx=["c"])
        assert (res.status, res.missing, res.unexpected, res.mismatched, res.actual_rows) == \
               (ref.status, ref.missing, ref.unexpected, ref.mismatched, ref.actual_rows), (t.to_pylist(), a.to_pylist())
        assert len(res.missing_examples) == min(5, ref.missing)
        assert len(res.mismatch_examples) == min(5, ref.mismatched)


def _storage_project(tmp_path, tables: dict[str, pa.Table]):
    folder = write_project(tmp_path / "proj", {})
    for name, data in tables.items():
        storage.write_small(folder / "storage" / "02_silver" / name, data, mode="overwrite")
    return folder


def test_verify_in_engine_reads_tables_with_the_pipelines_aliases(engine, tmp_path):
    t = _truth()
    quarantine = pa.table({"source_file": ["a.json", "b.json"], "failed_rules": [["x", "y"], ["z"]]})
    d = _write_truth(tmp_path, {"gold": t, "quarantine": quarantine, "absent": t, "empty": t.slice(0, 0),
                                "narrow": t})
    folder = _storage_project(tmp_path, {
        "gold": t.take([2, 0, 3, 1]),
        "quarantine": pa.table({"_source_file": ["s3://bucket/landing/b.json", "/landing/a.json"],
                                "_failed_rules": [["z"], ["y", "x"]]}),
        "narrow": t.drop_columns(["revenue"])})
    report = verify_in_engine(d, engine, frame_reader(load_spec(folder), engine))
    status = {r.name: r.status for r in report.tables}
    assert status == {"gold": "ok", "quarantine": "ok", "absent": "missing", "empty": "ok",
                      "narrow": "missing_columns"}
    text = report.render()
    assert "FAILED (2 of 5 tables differ)" in text and "columns missing: revenue" in text


def test_verify_in_engine_reports_reader_errors(engine, tmp_path):
    t = _truth()
    d = _write_truth(tmp_path, {"broken": t, "good": t})

    def read(name):
        if name == "broken":
            raise RuntimeError("delta log is corrupt")
        return engine.read_parquet([d / "good.parquet"])

    report = verify_in_engine(d, engine, read)
    assert {r.name: r.status for r in report.tables} == {"broken": "error", "good": "ok"}
    assert "delta log is corrupt" in report.render()


def test_assay_verify_prints_the_diff_and_exits_1(tmp_path):
    t = _truth()
    d = _write_truth(tmp_path, {"gold": t})
    folder = _storage_project(tmp_path, {"gold": t.set_column(1, "product_id", pa.array(["P1", "P9", "P1", None]))})
    result = cli("verify", "t", "--truth", str(d), "-p", str(folder), cwd=ROOT)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 missing, 1 unexpected, 0 outside tolerance" in result.stdout
    assert "product_id: 'P2'" in result.stdout and "product_id: 'P9'" in result.stdout


def test_engine_compares_files_whose_every_column_is_constant(in_engine):
    # A Parquet reader may read a column with min = max and no NULL as a constant: hashing such
    # columns alone once failed in the embedded engine.
    t = pa.table({"k": pa.array([1, 1, 1], pa.int64()), "s": ["a", "a", "a"]})
    assert in_engine(t, t).ok
    res = in_engine(t, pa.table({"k": pa.array([1, 1], pa.int64()), "s": ["a", "a"]}))
    assert (res.missing, res.unexpected) == (1, 0) and res.missing_examples == [{"k": 1, "s": "a"}]
    assert in_engine(pa.table({"k": [2, 2], "x": [1.0, 1.0]}), pa.table({"k": [2, 2], "x": [1.0, 1.0]})).ok


def test_spark_computes_the_same_comparison(spark_server, tmp_path, monkeypatch):
    # The engine of a pipeline on Apache Spark: the same functions, the same answers.
    from assay.engines import create_engine
    with create_engine("spark", {"remote": spark_server}) as spark:
        run = _compare_in(spark, tmp_path)
        t, actual = _truth_and_a_wrong_copy()
        res, ref = run(t, actual), compare("t", t, actual)
        assert (res.missing, res.unexpected, res.mismatched) == (2, 2, 1)
        assert res.mismatch_examples == ref.mismatch_examples
        assert sorted(map(str, res.missing_examples)) == sorted(map(str, ref.missing_examples))
        constant = pa.table({"k": pa.array([1, 1, 1], pa.int64()), "s": ["a", "a", "a"]})
        assert run(constant, constant).ok
        monkeypatch.setattr(verify_engine, "BUCKETS", 4)
        monkeypatch.setattr(verify_engine, "CHUNK_ROWS", 20)
        rng = random.Random(7)
        for _ in range(4):
            t = _random_table(rng, rng.randint(5, 30))
            a = _perturbed(rng, t)
            ref, res = compare("t", t, a, approx=["c"]), run(t, a, approx=["c"])
            assert (res.status, res.missing, res.unexpected, res.mismatched) == \
                   (ref.status, ref.missing, ref.unexpected, ref.mismatched)
