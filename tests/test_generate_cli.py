"""`assay generate` from the command line: files with a truth manifest, and events to a real Kafka topic."""
import json

from assay.sources.base import BatchLimits
from assay.sources.kafka import KafkaSource
from tests.conftest import cli


def test_generate_to_files_and_land(tmp_path):
    result = cli("generate", "activity_logs", "--out", str(tmp_path / "gen"), "--rows", "3000", "--drops", "2",
                 "--seed", "5", "--landing", str(tmp_path / "landing"), cwd=tmp_path, check=True)
    assert "3,000 rows in 2 drop(s)" in result.stdout
    manifest = json.loads((tmp_path / "gen/truth/manifest.json").read_text())
    landed = sorted(p.relative_to(tmp_path / "landing").as_posix() for p in (tmp_path / "landing").rglob("*.csv"))
    assert landed == sorted(manifest["files"]["0"] + manifest["files"]["1"])
    bad = cli("generate", "nope", "--out", str(tmp_path / "x"), cwd=tmp_path)
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
