"""`assay generate` from the command line: files with a truth manifest, and events to a real Kafka topic."""
import json

from assay.sources.base import BatchLimits
from assay.sources.kafka import KafkaSource
from tests.conftest import cli


def test_generate_to_files_and_land(tmp_path, assay_cli):
    result = assay_cli("generate", "activity_logs", "--out", str(tmp_path / "gen"), "--rows", "3000", "--drops", "2",
                 "--seed", "5", "--landing", str(tmp_path / "landing"), cwd=tmp_path, check=True)
    assert "3,000 rows in 2 drop(s)" in result.stdout
    manifest = json.loads((tmp_path / "gen/truth/manifest.json").read_text())
    landed = sorted(p.relative_to(tmp_path / "landing").as_posix() for p in (tmp_path / "landing").rglob("*.csv"))
    assert landed == sorted(manifest["files"]["0"] + manifest["files"]["1"])
    bad = assay_cli("generate", "nope", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert bad.returncode == 2 and "unknown pipeline 'nope'" in bad.stderr


def test_generate_to_kafka_at_a_rate(tmp_path, kafka_broker):
    kafka_broker.create_topic("customers", 3)
    result = cli("generate", "customers_stream", "--out", str(tmp_path / "gen"), "--rows", "2000", "--seed", "3",
                 "--kafka", kafka_broker.bootstrap, "--rate", "5000/s", cwd=tmp_path, check=True)
    assert "sent 2,000 messages to customers" in result.stdout
    lines = [line for p in sorted((tmp_path / "gen/drops/0").rglob("*.json")) for line in p.read_bytes().splitlines()
             if line.strip()]
    source = KafkaSource("customers", kafka_broker.bootstrap)
    plan = source.plan(None, BatchLimits())
    path = tmp_path / "batch.parquet"
    assert source.fetch_to_parquet(plan, str(path)) == len(lines) == 2000
    import pyarrow.parquet as pq
    values = sorted(pq.read_table(path).column("value").to_pylist())
    assert values == sorted(lines)


def test_generate_to_kafka_creates_a_missing_topic(tmp_path, kafka_broker):
    result = cli("generate", "customers_stream", "--out", str(tmp_path / "gen"), "--rows", "300", "--seed", "4",
                 "--kafka", kafka_broker.bootstrap, "--topic", "created_by_generate", "--partitions", "2",
                 cwd=tmp_path, check=True)
    assert "sent 300 messages to created_by_generate" in result.stdout
    topic = kafka_broker.admin().list_topics("created_by_generate", timeout=10).topics["created_by_generate"]
    assert topic.error is None and sorted(topic.partitions) == [0, 1]
    assert sum(kafka_broker.watermarks("created_by_generate", p)[1] for p in (0, 1)) == 300


def test_generate_to_kafka_says_at_once_how_to_create_a_topic_the_broker_refuses(tmp_path, kafka_broker):
    result = cli("generate", "customers_stream", "--out", str(tmp_path / "gen"), "--rows", "10",
                 "--kafka", kafka_broker.bootstrap, "--topic", "no room/for this", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    err = " ".join(result.stderr.split())
    assert "topic 'no room/for this' does not exist" in err and "the broker refused to create it" in err
    assert (f"kafka-topics.sh --bootstrap-server {kafka_broker.bootstrap} --create --topic 'no room/for this' "
            "--partitions 3 --replication-factor 1") in err
