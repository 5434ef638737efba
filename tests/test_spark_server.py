"""The local Apache Spark 4.2 Spark Connect server, and the facts the Spark engine builds on.

A real server from Maven Central jars (tests/spark_server.py), driven by the thin pyspark-client;
a real Kafka broker (tests/kafka_broker.py). No mocks, no skips. One server serves the whole file;
two tests start one more each (the engine's own local server, the script's lifecycle).

Run: python -m pytest -q tests/test_spark_server.py
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from pyspark.sql import functions as F

from assay import processes
from assay.engines import create_engine
from assay.engines import spark_server as launcher
from assay.engines.spark import SparkEngine

pytest_plugins = ["tests.spark_server"]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "spark.sh"
UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def engine(spark_server):
    """A SparkEngine on the session's server, through its `remote` option (it owns no server)."""
    eng = create_engine("spark", {"remote": spark_server})
    assert isinstance(eng, SparkEngine) and eng.remote == spark_server
    eng.spark
    yield eng
    eng.stop()


@pytest.fixture
def spark(engine):
    return engine.spark


def delta_rs_rows(path, order="id") -> list[dict]:
    return sorted(DeltaTable(str(path)).to_pyarrow_table().to_pylist(), key=lambda r: r[order])


# ------------------------------------------------------------------------------------ the server
def test_server_settings_reach_the_session(spark, spark_server):
    assert spark.version == "4.2.0"
    expected = {
        "spark.sql.session.timeZone": "UTC",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.pyspark.python": sys.executable,
        **launcher.DELTA_PROTOCOL_DEFAULTS,
    }
    assert {k: spark.conf.get(k) for k in expected} == expected
    assert spark.sql("SELECT current_timezone() AS tz").first().tz == "UTC"


def _listening_addresses(pid: int) -> set[str]:
    """Local addresses of the TCP sockets process `pid` listens on (from /proc, no tools needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:        # 0A: LISTEN
                found.add(cols[1].rsplit(":", 1)[0])
    return found


def test_server_listens_on_loopback_only(spark_server):
    pid = spark_server.server.pid()
    assert pid is not None
    addresses = _listening_addresses(pid)
    assert addresses, "the server listens on no TCP port"
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}     # 127.0.0.1, ::ffff:127.0.0.1
    assert addresses <= loopback, addresses


# --------------------------------------------------------------------------- Delta interplay
def test_spark_writes_delta_that_delta_rs_reads(spark, tmp_path):
    path = tmp_path / "spark_table"
    df = spark.sql("""
        SELECT * FROM VALUES
          (1, 'a', TIMESTAMP'2026-11-01 10:15:30.123456', DATE'2026-11-01', CAST(1.25 AS DECIMAL(10,2))),
          (2, NULL, TIMESTAMP'0001-01-01 00:00:00', DATE'0001-01-01', NULL),
          (3, 'c', TIMESTAMP'9999-12-31 23:59:59.999999', DATE'9999-12-31', CAST(-7.5 AS DECIMAL(10,2)))
        AS t(id, name, ts, day, amount)""")
    df.write.format("delta").partitionBy("name").save(str(path))

    table = DeltaTable(str(path))
    protocol = table.protocol()
    # plain protocol: no table features delta-rs cannot read or append to
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)
    assert not protocol.reader_features and not protocol.writer_features
    assert delta_rs_rows(path) == [
        {"id": 1, "name": "a", "ts": dt.datetime(2026, 11, 1, 10, 15, 30, 123456, tzinfo=UTC),
         "day": dt.date(2026, 11, 1), "amount": decimal.Decimal("1.25")},
        {"id": 2, "name": None, "ts": dt.datetime(1, 1, 1, tzinfo=UTC), "day": dt.date(1, 1, 1), "amount": None},
        {"id": 3, "name": "c", "ts": dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
         "day": dt.date(9999, 12, 31), "amount": decimal.Decimal("-7.50")},
    ]
    # delta-rs can append to the Spark-made table, and Spark sees both writers' rows
    write_deltalake(str(path), pa.table({
        "id": pa.array([4], pa.int32()), "name": ["d"],
        "ts": pa.array([dt.datetime(2026, 1, 1, tzinfo=UTC)], pa.timestamp("us", "UTC")),
        "day": pa.array([dt.date(2026, 1, 1)], pa.date32()),
        "amount": pa.array([decimal.Decimal("2.00")], pa.decimal128(10, 2))}), mode="append")
    assert sorted(r.id for r in spark.read.format("delta").load(str(path)).collect()) == [1, 2, 3, 4]


def test_delta_rs_writes_delta_that_spark_reads(spark, tmp_path):
    path = tmp_path / "rs_table"
    write_deltalake(str(path), pa.table({
        "id": pa.array([1, 2], pa.int64()),
        "ts": pa.array([dt.datetime(2026, 11, 1, 10, 15, 30, 123456, tzinfo=UTC), None], pa.timestamp("us", "UTC")),
        "day": pa.array([dt.date(2026, 11, 1), dt.date(1970, 1, 1)], pa.date32()),
        "name": ["x", None]}), partition_by=["day"])
    rows = sorted(spark.read.format("delta").load(str(path)).collect(), key=lambda r: r.id)
    # pyspark returns naive datetimes in the session time zone (UTC)
    assert [r.asDict() for r in rows] == [
        {"id": 1, "ts": dt.datetime(2026, 11, 1, 10, 15, 30, 123456), "day": dt.date(2026, 11, 1), "name": "x"},
        {"id": 2, "ts": None, "day": dt.date(1970, 1, 1), "name": None},
    ]
    # Spark appends to the delta-rs table; delta-rs still reads it (no feature was switched on)
    spark.createDataFrame([(3, None, dt.date(2026, 11, 2), "z")], "id long, ts timestamp, day date, name string") \
        .write.format("delta").mode("append").save(str(path))
    assert [r["id"] for r in delta_rs_rows(path)] == [1, 2, 3]
    protocol = DeltaTable(str(path)).protocol()
    assert not protocol.reader_features and not protocol.writer_features


def test_delta_protocol_defaults_are_session_settings(spark_server, tmp_path):
    """What a remote cluster defaults to is overridden by the engine's own session settings."""
    from pyspark.sql import SparkSession
    other = SparkSession.builder.remote(spark_server).create()     # a plain session, as on a cluster
    try:
        other.conf.set("spark.databricks.delta.properties.defaults.enableDeletionVectors", "true")
        other.range(3).write.format("delta").save(str(tmp_path / "dv"))
        assert "deletionVectors" in (DeltaTable(str(tmp_path / "dv")).protocol().writer_features or [])
    finally:
        other.stop()
    eng = SparkEngine({"remote": spark_server})
    try:
        assert eng.spark.conf.get("spark.databricks.delta.properties.defaults.enableDeletionVectors") == "false"
        eng.spark.range(3).write.format("delta").save(str(tmp_path / "plain"))
        protocol = DeltaTable(str(tmp_path / "plain")).protocol()
        assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)
        assert not protocol.writer_features
    finally:
        eng.stop()


def test_txn_app_id_makes_a_repeated_append_a_no_op(spark, tmp_path):
    path = str(tmp_path / "idempotent")
    batch = spark.range(5)

    def append(df, version):
        (df.write.format("delta").mode("append")
         .option("txnAppId", "flow-a").option("txnVersion", version).save(path))

    append(batch, 1)
    append(batch, 1)                                    # a replay of batch 1: skipped
    assert spark.read.format("delta").load(path).count() == 5
    assert len(DeltaTable(path).history()) == 1
    append(batch, 2)
    append(batch, 1)                                    # an older batch: skipped as well
    assert spark.read.format("delta").load(path).count() == 10
    assert DeltaTable(path).transaction_version("flow-a") == 2

    # an application transaction committed by delta-rs is honoured by Spark
    write_deltalake(path, pa.table({"id": pa.array([99], pa.int64())}), mode="append",
                    commit_properties=CommitProperties(app_transactions=[Transaction("flow-a", 3)]))
    append(batch, 3)
    assert spark.read.format("delta").load(path).count() == 11
    assert DeltaTable(path).transaction_version("flow-a") == 3


# ------------------------------------------------------------------------------- pandas UDFs
def test_pandas_udf_runs_in_the_projects_python(spark):
    # a nested function: cloudpickle ships it by value (see the next test for importable modules)
    @F.pandas_udf("string")
    def categorize_region(locations: pd.Series) -> pd.Series:
        def region(loc):
            if not isinstance(loc, str) or "," not in loc:
                return None
            code = loc.rsplit(",", 1)[1].strip().upper()
            return "West Coast" if code in {"CA", "OR", "WA"} else "East Coast" if code in {"NY", "MA"} else None
        return locations.map(region)

    @F.pandas_udf("string")
    def worker_python(s: pd.Series) -> pd.Series:
        import sys as worker_sys
        return pd.Series([worker_sys.executable] * len(s))

    df = spark.createDataFrame([("Austin, CA",), ("Boston, ma",), ("",), (None,)], "location string")
    out = df.select(categorize_region("location").alias("region"), worker_python("location").alias("py")).collect()
    assert [r.region for r in out] == ["West Coast", "East Coast", None, None]
    assert {r.py for r in out} == {sys.executable}


def test_udf_from_a_module_the_server_cannot_import(spark, tmp_path, monkeypatch):
    """A function from an importable module is pickled by reference: the server's Python must import it."""
    from pyspark import cloudpickle          # the copy pyspark pickles UDFs with

    name = f"assay_udf_helpers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        def double(x):
            return x * 2
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)

    @F.pandas_udf("long")
    def doubled(s: pd.Series) -> pd.Series:
        return s.map(module.double)

    with pytest.raises(Exception, match=f"ModuleNotFoundError|No module named '{name}'"):
        spark.range(3).select(doubled("id")).collect()
    cloudpickle.register_pickle_by_value(module)
    try:
        assert [r[0] for r in spark.range(3).select(doubled("id")).collect()] == [0, 2, 4]
    finally:
        cloudpickle.unregister_pickle_by_value(module)


# ----------------------------------------------------------------------------------- readers
def test_kafka_batch_reader_reads_exactly_the_planned_range(spark, kafka_broker):
    topic = kafka_broker.create_topic(f"spark-{uuid.uuid4().hex[:8]}", partitions=3)
    kafka_broker.produce(topic, [(f"k{i}", f"p0-{i}", 0) for i in range(10)]
                         + [(f"k{i}", f"p1-{i}", 1) for i in range(4)]
                         + [(None, f"p2-{i}", 2) for i in range(2)])
    assert [kafka_broker.watermarks(topic, p) for p in range(3)] == [(0, 10), (0, 4), (0, 2)]
    plan_start = {topic: {"0": 3, "1": 0, "2": 2}}
    plan_end = {topic: {"0": 8, "1": 4, "2": 2}}        # partition 2: an empty range at its end
    df = (spark.read.format("kafka")
          .option("kafka.bootstrap.servers", kafka_broker.bootstrap)
          .option("assign", json.dumps({topic: [0, 1, 2]}))
          .option("startingOffsets", json.dumps(plan_start))
          .option("endingOffsets", json.dumps(plan_end))
          .load())
    assert [(f.name, f.dataType.simpleString()) for f in df.schema.fields][:7] == [
        ("key", "binary"), ("value", "binary"), ("topic", "string"), ("partition", "int"), ("offset", "bigint"),
        ("timestamp", "timestamp"), ("timestampType", "int")]
    rows = df.select(F.col("key").cast("string").alias("key"), F.col("value").cast("string").alias("value"),
                     "partition", "offset").collect()
    got = sorted((r.partition, r.offset, r.key, r.value) for r in rows)
    assert got == ([(0, o, f"k{o}", f"p0-{o}") for o in range(3, 8)]
                   + [(1, o, f"k{o}", f"p1-{o}") for o in range(4)])


def test_binary_file_and_text_readers(spark, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.json").write_bytes(b'{"x": 1}\n{"x": 2}\nnot json\n')
    (landing / "b.json").write_bytes(b'{"x": 3}\n')
    (landing / ".hidden.json").write_bytes(b"ignored\n")

    files = spark.read.format("binaryFile").option("pathGlobFilter", "*.json").load(str(landing))
    assert [(f.name, f.dataType.simpleString()) for f in files.schema.fields] == [
        ("path", "string"), ("modificationTime", "timestamp"), ("length", "bigint"), ("content", "binary")]
    got = sorted((r.path, r.length, bytes(r.content)) for r in files.collect())
    assert got == [(f"file:{landing / 'a.json'}", 27, (landing / "a.json").read_bytes()),
                   (f"file:{landing / 'b.json'}", 9, (landing / "b.json").read_bytes())]

    # one file's lines, tagged with a literal path column, and the file metadata column
    path = str(landing / "a.json")
    text = spark.read.text(path).withColumn("_source_file", F.lit(path))
    rows = text.select("value", "_source_file", F.col("_metadata.file_path").alias("meta")).collect()
    assert [(r.value, r._source_file) for r in rows] == [
        ('{"x": 1}', path), ('{"x": 2}', path), ("not json", path)]
    assert {r.meta for r in rows} == {f"file:{path}"}          # Spark: file:/abs/path (one slash)
    # several files read at once, each line with its own file
    both = spark.read.text([str(landing / "a.json"), str(landing / "b.json")])
    assert both.count() == 4


def test_object_storage_file_systems_load(spark):
    """s3a:// and abfss:// resolve to hadoop-aws / hadoop-azure (the AWS SDK without its bundle jar).

    Nothing listens on 127.0.0.1:1: reaching the HTTP call proves the classes are all there. Session
    settings reach Hadoop without the ``spark.hadoop.`` prefix (with it, only at server start)."""
    for key, value in {"fs.s3a.endpoint": "http://127.0.0.1:1", "fs.s3a.endpoint.region": "us-east-1",
                       "fs.s3a.access.key": "k", "fs.s3a.secret.key": "s", "fs.s3a.path.style.access": "true",
                       "fs.s3a.impl.disable.cache": "true", "fs.s3a.attempts.maximum": "1",
                       "fs.s3a.retry.limit": "1"}.items():
        spark.conf.set(key, value)
    with pytest.raises(Exception, match="Connect to 127.0.0.1:1") as s3:
        spark.read.parquet(f"s3a://bucket-{uuid.uuid4().hex[:6]}/x").count()
    assert "ClassNotFound" not in str(s3.value) and "NoClassDefFound" not in str(s3.value)
    with pytest.raises(Exception, match="fs.azure.account.key"):   # the ABFS driver asks for credentials
        spark.read.parquet("abfss://container@account.dfs.core.windows.net/x").count()


# -------------------------------------------------------------------------- engine and script
def test_engine_on_a_remote_leaves_the_server_running(spark_server):
    eng = SparkEngine({"spark.remote": spark_server, "spark.sql.shuffle.partitions": "3"})
    assert eng.spark.conf.get("spark.sql.shuffle.partitions") == "3"
    assert eng.spark.range(4).count() == 4
    eng.stop()
    assert spark_server.server.running()


def test_engine_starts_and_stops_its_own_local_server(monkeypatch):
    monkeypatch.setenv("ASSAY_SPARK_CACHE", os.environ.get("ASSAY_SPARK_CACHE") or str(ROOT / ".cache" / "spark"))
    monkeypatch.setenv("ASSAY_SPARK_PORT", str(launcher.free_port()))     # nothing there to reuse
    eng = create_engine("spark", {"server.spark.sql.shuffle.partitions": "2"})
    try:
        assert eng.spark.conf.get("spark.sql.shuffle.partitions") == "2"
        assert eng.spark.range(10).where("id % 2 = 0").count() == 5
        server = eng._server
        pid, run_dir = server.pid(), server.run_dir
        assert pid is not None and server.remote.startswith("sc://127.0.0.1:")
        assert "assay-spark-connect" in (run_dir / "command.txt").read_text()
    finally:
        eng.stop()
    assert not processes.alive(pid)
    assert not run_dir.exists()


def _script(*args, env=None, timeout=240):
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})})


def test_script_lifecycle_and_watch_pid(tmp_path, spark_server, monkeypatch):
    watched = subprocess.Popen(["sleep", "600"])
    port = launcher.free_port()
    env = {"ASSAY_SPARK_RUN_DIR": str(tmp_path / "run"), "ASSAY_SPARK_WATCH_PID": str(watched.pid),
           "ASSAY_SPARK_MEMORY": "1g"}
    try:
        started = _script("start", str(port), env=env)
        assert started.returncode == 0, started.stderr + _script("log", str(port), env=env).stdout
        assert started.stdout.strip() == f"sc://127.0.0.1:{port}"
        status = _script("status", str(port), env=env)
        assert status.returncode == 0 and status.stdout.startswith("running pid=")
        pid = int(status.stdout.split("pid=")[1].split()[0])
        again = _script("start", str(port), env=env)         # idempotent: the same server
        assert again.returncode == 0 and again.stdout.strip() == f"sc://127.0.0.1:{port}"
        assert "Spark Connect server started at: 127.0.0.1:" in _script("log", str(port), env=env).stdout
        # the Spark engine reuses a server started by the script on its default port, and leaves it running
        with monkeypatch.context() as m:
            m.setenv("ASSAY_SPARK_PORT", str(port))
            eng = create_engine("spark")
            assert eng.spark.range(3).count() == 3
            assert eng._server is None
            eng.stop()
        assert processes.alive(pid) and launcher.port_open(port)
        # another server cannot take a port in use: a clear error, no JVM started
        busy = _script("start", str(spark_server.port), env={"ASSAY_SPARK_RUN_DIR": str(tmp_path / "busy")})
        assert busy.returncode == 1 and "already in use" in busy.stderr
    finally:
        watched.kill()
        watched.wait()
    # the watcher stops the server once the watched process is gone
    deadline = time.monotonic() + 120
    while processes.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    alive = processes.alive(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the server outlived the process it watched"
    stopped = _script("status", str(port), env=env)
    assert stopped.returncode == 3 and stopped.stdout.startswith("stopped")
    assert _script("stop", str(port), env=env).returncode == 0      # stopping nothing is fine


def test_script_without_command_prints_usage():
    out = _script()
    assert out.returncode == 2 and "scripts/spark.sh start [PORT]" in out.stdout
