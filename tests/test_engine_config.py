"""Choosing the engine: assay.yml (`engine: spark`, `engine: {spark: {remote: ...}}`, targets,
`engine_conf`), `--engine` / `--remote`, the engine registry and what each engine declares, and the
Spark engine's translations (Kafka options, the class-data archive) — none of which needs a server."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from assay.engines import ENGINES, create_engine, engine_class, spark_server
from assay.engines.sail import SailEngine
from assay.engines.spark import SparkEngine, java_kafka_options
from assay.errors import ConfigError
from assay.spec import load_spec
from tests.conftest import ROOT, cli


def write(tmp_path, text: str):
    (tmp_path / "assay.yml").write_text("name: x\n" + text)
    return tmp_path


def test_engine_forms_in_assay_yml(tmp_path):
    assert (load_spec(write(tmp_path, "")).engine, load_spec(tmp_path).engine_conf) == ("sail", {})
    spec = load_spec(write(tmp_path, "engine: spark\nengine_conf: {spark.sql.shuffle.partitions: 8}\n"))
    assert (spec.engine, spec.engine_conf) == ("spark", {"spark.sql.shuffle.partitions": "8"})
    spec = load_spec(write(tmp_path, "engine:\n  spark:\n    remote: sc://cluster:15002\n"
                                     "    spark: {sql: {shuffle.partitions: 64}}\n"))
    assert spec.engine == "spark"
    assert spec.engine_conf == {"remote": "sc://cluster:15002", "spark.sql.shuffle.partitions": "64"}
    with pytest.raises(ConfigError, match="names one engine"):
        load_spec(write(tmp_path, "engine: {spark: {}, sail: {}}\n"))
    with pytest.raises(ConfigError, match="engine must be one of sail, spark, got 'duck'"):
        load_spec(write(tmp_path, "engine: {duck: {}}\n"))
    with pytest.raises(ConfigError, match="engine_conf' must be a mapping"):
        load_spec(write(tmp_path, "engine_conf: [a]\n"))


def test_targets_switch_engines(tmp_path):
    folder = write(tmp_path, "engine_conf: {spark.sql.shuffle.partitions: 8}\n"
                             "targets:\n  prod:\n    engine: {spark: {remote: 'sc://prod:443/;use_ssl=true'}}\n"
                             "  local_spark: {engine: spark}\n")
    assert load_spec(folder).engine == "sail"
    prod = load_spec(folder, target="prod")
    assert prod.engine == "spark"
    assert prod.engine_conf == {"remote": "sc://prod:443/;use_ssl=true", "spark.sql.shuffle.partitions": "8"}
    assert load_spec(folder, target="local_spark").engine_conf == {"spark.sql.shuffle.partitions": "8"}


def test_run_time_engine_and_remote(tmp_path):
    folder = write(tmp_path, "engine: {spark: {remote: 'sc://a:1'}}\nengine_conf: {k: v}\n")
    assert load_spec(folder, engine="spark").engine_conf == {"remote": "sc://a:1", "k": "v"}   # same engine: kept
    sail = load_spec(folder, engine="sail")
    assert (sail.engine, sail.engine_conf) == ("sail", {"k": "v"})      # another engine: its options go
    other = load_spec(folder, remote="sc://b:2")
    assert (other.engine, other.engine_conf) == ("spark", {"remote": "sc://b:2", "k": "v"})
    assert load_spec(write(tmp_path, ""), remote="sc://c:3").engine == "spark"     # --remote implies spark
    with pytest.raises(ConfigError, match="--engine: engine must be one of"):
        load_spec(folder, engine="duck")


@pytest.mark.slow
def test_cli_engine_flags(tmp_path):
    folder = write(tmp_path, "")
    result = cli("dry-run", "-p", str(folder), "--engine", "duck", cwd=ROOT)
    assert result.returncode == 2 and "engine must be one of sail, spark, got 'duck'" in result.stderr
    for command in ("run", "dry-run", "graph", "query", "history", "status"):
        help_text = cli(command, "--help", cwd=ROOT).stdout
        assert "--engine" in help_text and "--remote" in help_text, command


def test_registry_and_declared_capabilities():
    assert list(ENGINES) == ["sail", "spark"]
    assert engine_class("sail") is SailEngine and engine_class("spark") is SparkEngine
    with pytest.raises(ConfigError, match="unknown engine 'duck'"):
        create_engine("duck")
    assert SparkEngine.reads_kafka and not SailEngine.reads_kafka
    spark = create_engine("spark", {"remote": "sc://h:1", "server.spark.x": "1", "spark.sql.y": "2"})
    assert (spark.remote, spark.server_conf) == ("sc://h:1", {"spark.x": "1"})
    # the settings that make Spark's results equal the embedded engine's are on every session
    assert {"spark.sql.session.timeZone": "UTC", "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
            "spark.sql.parquet.compression.codec": "zstd", "spark.sql.mapKeyDedupPolicy": "LAST_WIN",
            "spark.sql.y": "2"}.items() <= spark.conf.items()


def test_kafka_options_in_the_java_clients_names():
    plain = java_kafka_options({"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                                "sasl.username": "$ConnectionString", "sasl.password": 'Endpoint=sb://x/;Key="k"',
                                "request.timeout.ms": "60000", "fetch.wait.max.ms": "100",
                                "ssl.ca.location": "/etc/ca.pem", "client.id": "assay"})
    assert plain == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "request.timeout.ms": "60000",
        "ssl.truststore.location": "/etc/ca.pem", "ssl.truststore.type": "PEM", "client.id": "assay",
        "sasl.jaas.config": 'org.apache.kafka.common.security.plain.PlainLoginModule required '
                            'username="$ConnectionString" password="Endpoint=sb://x/;Key=\\"k\\"";',
        "isolation.level": "read_committed"}     # librdkafka's default, so both engines skip aborted records
    scram = java_kafka_options({"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u", "sasl.password": "p",
                                "isolation.level": "read_uncommitted"})
    assert scram["sasl.jaas.config"].startswith("org.apache.kafka.common.security.scram.ScramLoginModule")
    assert scram["isolation.level"] == "read_uncommitted"
    own = java_kafka_options({"sasl.username": "u", "sasl.jaas.config": "mine;"})
    assert own["sasl.jaas.config"] == "mine;"


def test_class_data_archive_flags(tmp_path, monkeypatch):
    """No archive: the JVM writes one at exit under a name of its own. A finished one is adopted by the
    next start, which maps it; one still being written by a live JVM is left alone."""
    java = spark_server.java_executable()
    monkeypatch.delenv("ASSAY_SPARK_CDS", raising=False)
    first = spark_server.cds_flags(tmp_path, java)
    dump = next(f for f in first if f.startswith("-XX:ArchiveClassesAtExit="))
    partial = dump.split("=", 1)[1]
    with open(partial, "wb") as f:
        f.write(b"archive")
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", dump])
    try:
        assert any(f.startswith("-XX:ArchiveClassesAtExit=") for f in spark_server.cds_flags(tmp_path, java))
        assert os.path.exists(partial)                 # a live process will still write it
    finally:
        writer.kill()
        writer.wait()
    flags = spark_server.cds_flags(tmp_path, java)
    archive = next(f for f in flags if f.startswith("-XX:SharedArchiveFile=")).split("=", 1)[1]
    assert open(archive, "rb").read() == b"archive" and not os.path.exists(partial)
    monkeypatch.setenv("ASSAY_SPARK_CDS", "0")
    assert spark_server.cds_flags(tmp_path, java) == []


def test_the_embedded_engine_ignores_txn_app_id_as_declared(engine, tmp_path):
    """Why Assay commits every batch itself: Sail accepts delta-spark's idempotent-write options and
    appends twice (Spark honours them: tests/test_spark_server.py)."""
    path = str(tmp_path / "t")
    for _ in range(2):
        (engine.spark.range(3).write.format("delta").mode("append")
         .option("txnAppId", "assay-test").option("txnVersion", 1).save(path))
    assert engine.spark.read.format("delta").load(path).count() == 6
