"""Both engines, the same answers: the embedded engine (Sail) and Apache Spark 4.2 through Spark Connect.

A differential suite, everything real (one Spark Connect server for the test session, the Kafka
broker, no mocks). Each scenario lands its input once, in one landing folder both engines read, and
after every drop runs the pipeline on Sail, then on Spark, each into its own storage. Then every
Delta table of the two storages (bronze, silver, gold, quarantine, late, the event log) must be
identical row for row: exact columns exactly, floats within verify's 1e-9 relative, approximate
distinct counts within verify's bound (25 %, at least 3), the same column names and types. Only what differs
between two correct runs is left out: ingestion timestamps, run ids, clock times, durations and
the engine's name in `run_started`.

Scenarios: both reference pipelines over generated drops (checked against their truth too) and
over their hand-written awkward fixtures; the runtime's own test pipelines (tests/test_run.py,
tests/test_exactly_once.py, tests/test_kafka_pipeline.py with a `format="json"` flow added); a
pipeline of values at the edges where the engines' readers and casts differ. Then switching
engines mid-life, and the data-plane facts each engine difference was fixed with.

Run: python -m pytest -q tests/test_engine_parity.py
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.delta import table as storage
from assay.engines import create_engine
from assay.generator import generate, land_drop
from assay.runtime.runner import RunOptions, Runner
from assay.spec import load_spec
from assay.truth import check_metrics
from assay.verify import compare
from tests import pipeline_support as support
from tests.conftest import ROOT, write_project

ZENITH = ROOT / "pipelines" / "zenith"
ACTIVITY = ROOT / "pipelines" / "activity_logs"
FIXTURES = ROOT / "tests" / "fixtures"
ROWS, DROPS = 4000, 3
# Columns whose values differ between two correct runs of the same input (the clock).
VOLATILE = {"ingestion_timestamp", "ingestion_time"}
EVENT_VOLATILE = {"run_id", "timestamp", "duration_s"}


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def spark_engine(spark_server):
    eng = create_engine("spark", {"remote": spark_server})
    eng.spark
    yield eng
    eng.stop()


@pytest.fixture(scope="module")
def engines(engine, spark_engine):
    return {"sail": engine, "spark": spark_engine}


@pytest.fixture(scope="module")
def zenith_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("parity_zenith_gen")
    return out, generate("zenith", out, rows=ROWS, seed=21, drops=DROPS)


@pytest.fixture(scope="module")
def activity_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("parity_activity_gen")
    return out, generate("activity_logs", out, rows=ROWS, seed=23, drops=DROPS)


def approx_columns(manifest: dict) -> set[str]:
    return {c for info in manifest["tables"].values() for c in info.get("approx_distinct", [])}


# ---------------------------------------------------------------------------------- running
def run_on(engine, project: Path, landing: Path | None, store: Path, **options) -> dict:
    spec = load_spec(project, landing=str(landing) if landing else None, storage=str(store))
    return {s.flow: s for s in Runner(spec, RunOptions(**options), engine=engine).run()}


def run_both(engines: dict, project: Path, landing: Path | None, base: Path, steps, **options) -> dict[str, Path]:
    """After each step (which lands more input), one run per engine, each into its own storage."""
    stores = {name: base / name for name in engines}
    for step in steps:
        step()
        for name, eng in engines.items():
            summaries = run_on(eng, project, landing, stores[name], **options)
            failed = {f: s.message for f, s in summaries.items() if s.status not in ("done", "skipped")}
            assert not failed, f"{name}: flows failed: {failed}"
    return stores


# ---------------------------------------------------------------------------------- comparing
def delta_tables(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("_delta_log") if "staging" not in p.parts
                  for p in [p.parent])


def comparable(rel: str, data: pa.Table) -> pa.Table:
    """Without what differs between two correct runs; nested values (structs, maps) as JSON text and
    bytes as hex, which verify's comparison takes as exact strings."""
    if rel.endswith("event_log"):
        data = data.drop_columns([c for c in EVENT_VOLATILE if c in data.column_names])
        metrics = [_without_engine(m) for m in data["metrics"].to_pylist()]
        data = data.set_column(data.column_names.index("metrics"), "metrics", pa.array(metrics, pa.string()))
    data = data.drop_columns([c for c in VOLATILE if c in data.column_names])
    for i, f in enumerate(data.schema):
        if pa.types.is_struct(f.type) or pa.types.is_map(f.type):
            text = [None if v is None else json.dumps(v, sort_keys=True, default=str) for v in data[f.name].to_pylist()]
            data = data.set_column(i, f.name, pa.array(text, pa.string()))
        elif pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            text = [None if v is None else v.hex() for v in data[f.name].to_pylist()]
            data = data.set_column(i, f.name, pa.array(text, pa.string()))
    return data


def _without_engine(metrics: str | None) -> str | None:
    if not metrics:
        return metrics
    value = json.loads(metrics)
    value.pop("engine", None)
    return json.dumps(value, sort_keys=True)


def differences(stores: dict[str, Path], approx: set[str] = frozenset(), skip: tuple[str, ...] = ()) -> list[str]:
    """Every way the two storages differ (empty: identical tables and event logs), but tables in `skip`."""
    sail, spark = stores["sail"], stores["spark"]
    problems = []
    names = [n for n in delta_tables(sail) if n not in skip]
    if names != [n for n in delta_tables(spark) if n not in skip]:
        problems.append(f"different tables: sail {names}, spark {delta_tables(spark)}")
    for rel in names:
        if not (spark / rel / "_delta_log").is_dir():
            continue
        a, b = comparable(rel, storage.read_arrow(sail / rel)), comparable(rel, storage.read_arrow(spark / rel))
        schema_a, schema_b = storage.open_table(sail / rel).schema(), storage.open_table(spark / rel).schema()
        if schema_a.to_json() != schema_b.to_json():
            problems.append(f"{rel}: Delta schemas differ:\n  sail  {schema_a.to_json()}\n  spark {schema_b.to_json()}")
            continue
        if [(f.name, f.type) for f in a.schema] != [(f.name, f.type) for f in b.schema]:
            problems.append(f"{rel}: columns differ:\n  sail  {a.schema}\n  spark {b.schema}")
            continue
        result = compare(rel, a, b, approx=sorted(approx & set(a.column_names)))
        if not result.ok:
            problems.append(f"{rel}: {result.status} {result.note} {result.missing} rows only on sail, "
                            f"{result.unexpected} only on spark, {result.mismatched} outside tolerance; "
                            f"e.g. sail {result.missing_examples[:2]} spark {result.unexpected_examples[:2]} "
                            f"{result.mismatch_examples[:2]}")
    assert names, f"no tables under {sail}"
    return problems


def assert_same(stores: dict[str, Path], approx: set[str] = frozenset()) -> None:
    problems = differences(stores, approx)
    assert not problems, "the engines disagree:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------- reference pipelines
# Engines of the storage that switches engines mid-life, drop by drop.
SWITCHING = ("sail", "spark", "sail")


@pytest.fixture(scope="module")
def zenith_runs(engines, zenith_data, tmp_path_factory):
    """Zenith's generated drops, one run per drop on each engine, and a third storage whose runs
    switch engines (SWITCHING); after each drop, how the switching storage differs from Sail's."""
    out, manifest = zenith_data
    base = tmp_path_factory.mktemp("parity_zenith_runs")
    landing, switched, after_each = base / "landing", base / "switched", []

    def step(k):
        if k > 0:       # the previous drop's runs are done: compare, then land the next drop
            summaries = run_on(engines[SWITCHING[k - 1]], ZENITH, landing, switched)
            assert all(s.status in ("done", "skipped") for s in summaries.values()), summaries
            after_each.append(differences({"sail": base / "sail", "spark": switched}, approx_columns(manifest)))
        land_drop(out, landing, k)
    stores = run_both(engines, ZENITH, landing, base, [lambda k=k: step(k) for k in range(DROPS)])
    step_last = run_on(engines[SWITCHING[-1]], ZENITH, landing, switched)
    assert all(s.status in ("done", "skipped") for s in step_last.values()), step_last
    after_each.append(differences({"sail": stores["sail"], "spark": switched}, approx_columns(manifest)))
    return stores, switched, after_each


def test_zenith_generated_drops(zenith_runs, zenith_data):
    out, manifest = zenith_data
    stores, _, _ = zenith_runs
    assert_same(stores, approx_columns(manifest))
    for name, store in stores.items():
        clutter = [p for p in store.rglob("*") if p.name == "_SUCCESS" or p.suffix == ".crc"]
        assert not clutter, f"{name} left files that are not data in the tables: {clutter[:3]}"
        report = support.verify_storage(ZENITH, out / "truth", store)
        assert report.ok, f"{name}:\n{report.render()}"
        assert check_metrics(load_spec(ZENITH, storage=str(store)), out / "truth") == [], name


def test_zenith_fixtures(engines, tmp_path):
    landing = tmp_path / "landing"
    land = lambda d: support.land_tree(FIXTURES / "zenith" / d, landing)  # noqa: E731
    # the reference data lands with the first drop, as in tests/test_zenith.py
    stores = run_both(engines, ZENITH, landing, tmp_path,
                      [lambda: (land("reference"), land("run1")), lambda: land("run2"), lambda: land("run3")])
    assert_same(stores, {"distinct_products_purchased"})


def test_activity_logs_generated_drops(engines, activity_data, tmp_path):
    out, manifest = activity_data
    landing = tmp_path / "landing"
    stores = run_both(engines, ACTIVITY, landing, tmp_path,
                      [lambda k=k: land_drop(out, landing, k) for k in range(DROPS)])
    assert_same(stores, approx_columns(manifest))
    for name, store in stores.items():
        report = support.verify_storage(ACTIVITY, out / "truth", store)
        assert report.ok, f"{name}:\n{report.render()}"


def test_activity_logs_fixtures(engines, tmp_path):
    landing = tmp_path / "landing"
    land = lambda d: support.land_tree(FIXTURES / "activity_logs" / d, landing)  # noqa: E731
    stores = run_both(engines, ACTIVITY, landing, tmp_path,
                      [lambda: (land("reference"), land("run1")), lambda: land("run2"), lambda: land("run3")])
    assert_same(stores)


# ---------------------------------------------------------------------------------- the runtime's own test pipelines
def test_runtime_pipeline_of_test_run(engines, tmp_path):
    """tests/test_run.py's pipeline (quarantine, a warn rule, dedupe with a watermark, a partitioned
    materialized view) over its files, plus a row that beats the one kept earlier for its key."""
    from tests.test_run import PIPELINE, ev, land
    project = write_project(tmp_path / "proj", {"transformations/p.py": PIPELINE})
    steps = [lambda: land(project, "f1.json", [ev(1, 0), ev(2, 30, user=2, amount=5), ev(1, 0), "{broken",
                                               ev(3, 31, amount=-1)]),
             lambda: land(project, "f2.json", [ev(2, 30, user=2, amount=5), ev(4, 5), ev(5, 40, user=3, amount=7)]),
             lambda: land(project, "f3.json", [ev(6, 41, user=3, amount=2), ev(5, 39, user=4, amount=1),
                                               {"id": None, "ts": "2026-11-01T10:42:00Z", "user": 1, "amount": 1.0}])]
    stores = run_both(engines, project, None, tmp_path, steps)
    assert_same(stores)
    replaced = [e for e in storage.read_arrow(stores["spark"] / "_system" / "event_log").to_pylist()
                if e["event_type"] == "flow_progress" and e["flow"] == "clean"
                and json.loads(e["metrics"] or "{}").get("rows_replaced")]
    assert replaced, "no batch replaced a row kept earlier: the scenario lost its point"


def test_runtime_pipeline_of_test_exactly_once(engines, tmp_path):
    """tests/test_exactly_once.py's pipeline over its generated files (duplicates, late rows, broken
    lines), one file per batch, in three drops of two files."""
    from tests.test_exactly_once import PIPELINE, land, make_files
    project = write_project(tmp_path / "proj", {"transformations/p.py": PIPELINE})
    files = make_files(seed=3)[:6]
    steps = [lambda i=i: [land(project, *f) for f in files[i * 2:(i + 1) * 2]] for i in range(3)]
    stores = run_both(engines, project, None, tmp_path, steps, max_files=1)
    assert_same(stores)


def test_runtime_kafka_pipeline(engines, kafka_broker, tmp_path):
    """tests/test_kafka_pipeline.py's pipeline (raw Kafka columns, poison messages, dedupe by
    partition and offset) plus a `format="json"` flow: Spark reads the planned offset ranges with
    its own Kafka reader, Sail through the Python consumer, and both give the same rows."""
    from tests.test_kafka_pipeline import PIPELINE, Feed, check_bronze, check_silver, config
    parsed = '''
from assay import pipelines as dp

@dp.table(name="bronze.orders_parsed")
def orders_parsed():
    return dp.read_kafka(dp.config("kafka.topic"), starting_offsets="earliest", format="json",
                         schema="order_id STRING, customer STRING, amount DOUBLE",
                         max_records_per_batch=int(dp.config("kafka.max_records")))
'''
    feed = Feed(kafka_broker, seed=9)
    project = write_project(tmp_path / "proj", {"transformations/orders.py": PIPELINE,
                                                "transformations/parsed.py": parsed},
                            config(kafka_broker.bootstrap, feed.topic, max_records=250))
    steps = [lambda: feed.produce(600, partitions=(0, 1), poison_rate=0.04),
             lambda: feed.produce(300, poison_rate=0.04)]
    stores = run_both(engines, project, None, tmp_path, steps)
    assert_same(stores)
    for store in stores.values():
        folder = store.parent / f"as-{store.name}"           # check_* read <folder>/storage
        folder.mkdir()
        (folder / "storage").symlink_to(store)
        check_bronze(folder, feed)
        check_silver(folder, feed)
    rescued = [r for r in storage.read_arrow(stores["spark"] / "01_bronze" / "orders_parsed").to_pylist()
               if r["_rescued_data"]]
    assert rescued, "no poison message reached the parsed table"


# ---------------------------------------------------------------------------------- switching engines mid-life
def test_switching_engines_drop_by_drop(engines, zenith_runs, zenith_data):
    """Drop 1 on Sail, drop 2 on Spark, drop 3 on Sail, in one storage: after each step the tables
    (and the event log's counts) equal those of Sail alone after the same drops, and at the end the
    generator's truth. The tables both engines appended to (silver, its late and quarantine tables,
    the event log) and a gold one then read the same through delta-spark, through the Spark engine's
    file listing, through Sail and through deltalake."""
    out, _ = zenith_data
    _, switched, after_each = zenith_runs
    for k, problems in enumerate(after_each):
        assert not problems, f"after drop {k + 1} ({SWITCHING[k]}):\n" + "\n".join(problems)
    report = support.verify_storage(ZENITH, out / "truth", switched)
    assert report.ok, report.render()

    spark = engines["spark"]
    written_by_both = [t for t in delta_tables(switched) if t.startswith("02_silver/")]
    for rel in written_by_both + ["03_gold/customer_purchase_summary", "_system/event_log"]:
        path = switched / rel
        readings = {"deltalake": storage.read_arrow(path),
                    "delta-spark": spark.spark.read.format("delta").load(str(path)).toArrow(),
                    "spark engine": spark.read_table(path).toArrow(),
                    "sail": engines["sail"].read_table(path).toArrow()}
        reference = comparable(rel, readings.pop("deltalake"))
        for reader, data in readings.items():
            data = comparable(rel, data).select(reference.column_names)
            result = compare(rel, reference, data.cast(reference.schema))
            assert result.ok, f"{rel} read by {reader} differs from deltalake: {result.status} {result.note}"


# ---------------------------------------------------------------------------------- values at the edges
EDGE_PIPELINE = '''
from pyspark.sql import functions as F
from assay import pipelines as dp

@dp.table(name="bronze.j", quarantine=True)
@dp.expect_or_drop("has_id", "id IS NOT NULL")
def j():
    return (dp.read_files("j", format="json", schema="id STRING, n INT, x DOUBLE, s STRING, ts STRING",
                          schema_evolution_mode="rescue")
            .withColumn("t", F.try_to_timestamp("ts")))

@dp.table(name="bronze.c")
def c():
    return dp.read_files("c", format="csv", schema="id STRING, n INT, x DOUBLE, s STRING, d DATE",
                         schema_evolution_mode="rescue")

@dp.table(name="bronze.p")
def p():
    return dp.read_files("p", format="parquet", schema="id STRING, n INT, x DOUBLE, s STRING",
                         schema_evolution_mode="rescue")
'''
# Inputs at the edges of the readers and casts on which both engines agree (those on which they do
# not are in test_engine_facts_that_differ and the engine notes of docs/engines.md).
EDGE_JSON = [
    '{"id":"a","n":1,"x":1.5,"s":"plain","ts":"2026-11-02T10:00:00Z"}',
    '{"id":"dup","n":1,"n":2}',                           # a repeated known field: the last wins
    '{"id":"dupunknown","z":1,"z":2}',                     # a repeated unknown field too
    '{"id":"numstr","n":"12","x":"1.5"}', '{"id":"floatint","n":1.5}', '{"id":"objstr","s":{"k":[1,2]}}',
    '{"id":"boolstr","s":true,"x":true}', '{"id":"unicode","s":"h\\u00e9llo \\ud83d\\ude00"}',
    '{"id":"escapes","s":"a\\"b\\\\c\\n"}', '{"id":"ws" ,  "n" : 3 }', '{"id":"unknown","u":{"a":[1,2]},"v":null}',
    '{"id":"neg0","x":-0.0}', '{"id":"big","x":1.7976931348623157e308}',
    '{"id":"ts1","ts":"2026-11-02 10:00:00"}', '{"id":"ts2","ts":"2026-11-02T10:00:00.123456Z"}',
    '{"id":"ts3","ts":"2026-11-02T10:00:00+01:00"}', '{"id":"ts4","ts":"not a time"}',
    '{}', '[1,2]', 'null', '{"id":"truncated"', '"just a string"', '{"id":"e","n":}',
]
EDGE_CSV = ['id,n,x,s,d', 'a,1,1.5,plain,2026-11-02', 'b," 7 ",+5,"q ""x"" y",2026-1-2',
            'd,2', 'e,1,2,3,2026-11-02,extra', 'f,9999999999,inf,"a,b",x', 'g,-0,NaN,"",""',
            'h,0x10,1_000,\u00e9,2026-02-30', 'i,1e2,1e3,,']


def land_edges(landing: Path) -> None:
    for folder in ("j", "c", "p"):
        (landing / folder).mkdir(parents=True, exist_ok=True)
    (landing / "j" / "a.json").write_text("\n".join(EDGE_JSON) + "\n", encoding="utf-8")
    (landing / "c" / "a.csv").write_text("\n".join(EDGE_CSV) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"id": ["a", "b", "c"], "n": pa.array([1.5, 2.0, None]), "x": pa.array([1, 2, 3]),
                             "s": ["x", None, "z"], "flag": [True, False, None]}), landing / "p" / "a.parquet")


def test_edge_values_agree(engines, tmp_path):
    project = write_project(tmp_path / "proj", {"transformations/p.py": EDGE_PIPELINE})
    stores = run_both(engines, project, None, tmp_path, [lambda: land_edges(project / "landing")])
    assert_same(stores)
    rows = storage.read_arrow(stores["spark"] / "01_bronze" / "j").num_rows
    assert rows == sum(1 for line in EDGE_JSON if line.startswith('{"id"')) - 2   # truncated and e: quarantined


def _plain(value):
    """A collected value in a comparable form (rows as dicts, NaN as text, dates as ISO)."""
    if hasattr(value, "asDict"):
        return {k: _plain(v) for k, v in value.asDict().items()}
    if isinstance(value, float) and value != value:
        return "NaN"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def facts(spark) -> dict:
    """The values an engine gives for expressions where the engines differ (docs/engines.md, Engine notes)."""
    from pyspark.sql import functions as F

    def one(column):
        return _plain(spark.range(1).select(column.alias("v")).first()["v"])

    def parsed(text, schema):
        return one(F.from_json(F.lit(text), schema))

    out = {
        "int overflow in JSON": parsed('{"n":9999999999}', "n INT"),
        "repeated unknown key": one(F.size(F.from_json(F.lit('{"z":1,"z":2}'), "map<string,string>"))),
        "repeated key, map rebuilt": one(F.size(F.map_concat(F.from_json(F.lit('{"z":1,"z":2}'),
                                                                         "map<string,string>")))),
        "text after the object": parsed('{"id":"a"} x', "id STRING"),
        "NaN as a JSON string": parsed('{"x":"NaN"}', "x DOUBLE"),
        "1e400 in JSON": parsed('{"id":"a","x":1e400}', "id STRING, x DOUBLE"),
        "1.5d as a double": one(F.lit("1.5d").try_cast("double")),
        "a time in a date": one(F.lit("2026-11-02T10:00:00").try_cast("date")),
        "1e10 as text": one(F.lit(1e10).cast("string")),
        "non-UTF-8 bytes, portable": one(F.expr("CASE WHEN is_valid_utf8(X'FF00') THEN try_cast(X'FF00' AS STRING) END")),
    }
    try:
        out["bad date in JSON"] = parsed('{"d":"2026-1-2"}', "d DATE")
    except Exception:                   # the embedded engine fails the whole query
        out["bad date in JSON"] = "error"
    return out


def test_engine_facts_that_differ(engines):
    """Where Sail and Spark give different values for the same expression. Landing-file readers are
    written around them where docs/engines.md says so (Engine notes); the rest are listed for pipeline
    authors and reported. A change here means an engine changed: update the notes."""
    sail, spark = facts(engines["sail"].spark), facts(engines["spark"].spark)
    assert sail == {
        "int overflow in JSON": {"n": 1410065407},          # wraps around silently: a Sail bug
        "repeated unknown key": 1, "repeated key, map rebuilt": 1,
        "text after the object": {"id": None},              # not JSON: a corrupt record
        "NaN as a JSON string": {"x": None},
        "1e400 in JSON": {"id": None, "x": None},           # the whole line unparsed
        "1.5d as a double": None, "a time in a date": None, "1e10 as text": "10000000000.0",
        "non-UTF-8 bytes, portable": None,
        "bad date in JSON": "error",                        # one bad value fails the query: a Sail bug
    }
    assert spark == {
        "int overflow in JSON": {"n": None},
        "repeated unknown key": 2,                          # from_json keeps both entries...
        "repeated key, map rebuilt": 1,                     # ...a rebuilt map keeps the last (LAST_WIN)
        "text after the object": {"id": "a"},               # Jackson stops after the first value
        "NaN as a JSON string": {"x": "NaN"},
        "1e400 in JSON": {"id": "a", "x": float("inf")},
        "1.5d as a double": 1.5,                            # Java's parseDouble takes a d/f suffix
        "a time in a date": "2026-11-02",
        "1e10 as text": "1.0E10",
        "non-UTF-8 bytes, portable": None,
        "bad date in JSON": {"d": "2026-01-02"},            # a lenient date parser
    }


def test_lines_of_planned_files_carry_their_files_columns(engines, tmp_path):
    """Spark reads a batch's text files in one scan and gives each line its file's columns through
    the path Spark reports; a name Spark would escape (space, non-ASCII) is read on its own. Both
    engines give every line exactly its own file's columns."""
    from pyspark.sql import functions as F
    odd = tmp_path / "odd dir" / "x+y é.txt"
    odd.parent.mkdir()
    contents = {tmp_path / "a.txt": "1\n2\n", tmp_path / "b=c.txt": "3\n", odd: "4\n"}
    for path, text in contents.items():
        path.write_text(text)
    expected = sorted((p.name, len(p.name), line) for p, text in contents.items() for line in text.split())
    for plain_only in (False, True):
        chosen = [p for p in contents if not plain_only or p != odd]
        files = [(str(p), {"name": F.lit(p.name), "length": F.lit(len(p.name))}) for p in chosen]
        for name, eng in engines.items():
            rows = sorted(tuple(r) for r in eng.read_lines(files).collect())
            assert rows == [r for r in expected if not plain_only or r[0] != odd.name], name


def test_a_line_of_an_unplanned_file_fails_the_spark_read(spark_engine, tmp_path, monkeypatch):
    """If Spark ever reported a path in another form than the one planned, the batch must fail
    naming the file, not land rows without their file's columns."""
    from pyspark.sql import functions as F
    from assay.engines import spark as spark_module
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("x\n")
    monkeypatch.setattr(spark_module, "_spark_file_path", lambda path: "file:/elsewhere" + path)
    files = [(str(tmp_path / n), {"name": F.lit(n)}) for n in ("a.txt", "b.txt")]
    with pytest.raises(Exception, match="was not planned: file:.*a.txt|was not planned: file:.*b.txt"):
        spark_engine.read_lines(files).collect()


def test_key_hashes_agree(engines):
    """The dedupe key index (assay/runtime/key_index.py) keeps xxhash64 values made by one engine and
    may be read by the other after a switch: the hash of every key type must be the same value."""
    from assay.runtime.key_index import key_hash
    query = ("SELECT * FROM VALUES ('log-00af', 1, CAST(7 AS BIGINT), DATE'2026-11-01', "
             "TIMESTAMP'2026-11-01 10:00:00.123456', 'Zürich ☃'), "
             "(NULL, NULL, NULL, NULL, NULL, ''), ('', -1, CAST(-9223372036854775808 AS BIGINT), "
             "DATE'1970-01-01', TIMESTAMP'1970-01-01 00:00:00', 'x') AS t(s, i, b, d, ts, u)")
    keysets = [["s"], ["i"], ["b"], ["d"], ["ts"], ["u"], ["s", "i"], ["u", "b", "d"]]

    def hashes(spark):
        df = spark.sql(query)
        return [[row[0] for row in df.select(key_hash(keys)).collect()] for keys in keysets]
    assert hashes(engines["sail"].spark) == hashes(engines["spark"].spark)


def test_incremental_views_refresh_alike(engines, tmp_path):
    """tests/test_incremental_views.py's views (append, partitions and full refreshes, with their
    reasons in the event log) over its drops: plain appends with a duplicate and a late row, a row
    replacing an earlier survivor (removed files upstream), then appends again."""
    from tests.test_incremental_views import PIPELINE, ev, land
    project = write_project(tmp_path / "proj", {"transformations/p.py": PIPELINE})
    steps = [lambda: (land(project, "regions", "r.json", [{"region": "north", "zone": "N"}]),
                      land(project, "events", "f1.json", [ev(1, 0), ev(2, 5, user=2, region="south", amount=5),
                                                          ev(4, 7, user=3, region=None, amount=3)])),
             lambda: land(project, "events", "f2.json", [ev(5, 20, amount=7), ev(1, 0), ev(7, 1, amount=100, hour=9)]),
             lambda: land(project, "events", "f3.json", [ev(5, 15, user=2, region="south", amount=11),
                                                         ev(8, 22, user=5, amount=2)]),
             lambda: land(project, "events", "f4.json", [ev(9, 30, user=9, region="east", amount=4)])]
    stores = run_both(engines, project, None, tmp_path, steps)
    assert_same(stores)
    techniques = {json.loads(e["metrics"])["refresh"] for e in storage.read_arrow(stores["spark"] / "_system" / "event_log")
                  .to_pylist() if e["event_type"] == "flow_completed" and e["flow"] == "v_part_rank"}
    assert techniques == {"full", "partitions"}, techniques
