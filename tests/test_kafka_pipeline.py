"""Kafka → bronze → silver through the real runtime, on the real broker of tests/kafka_broker.py.

Nothing is mocked: `assay run` (in-process, or `python -m assay.cli run` as a subprocess for
kill -9 and for what a user sees) reads a 3-partition topic with `dp.read_kafka`, keeps the raw
message plus a parsed JSON column and a rescued raw value in bronze, and deduplicates into
silver by order id, keeping the earliest (partition, offset).
"""
from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.conftest import ROOT, table, write_project

pytestmark = pytest.mark.kafka

KILLS = int(os.environ.get("ASSAY_KAFKA_KILLS", "12"))

PIPELINE = """
from pyspark.sql import functions as F
from assay import pipelines as dp

ORDER = "order_id STRING, customer STRING, amount DOUBLE"

@dp.table(name="bronze.orders_raw")
def orders_raw():
    raw = dp.read_kafka(dp.config("kafka.topic"), starting_offsets="earliest",
                        options=dp.config("kafka.options"),
                        max_records_per_batch=int(dp.config("kafka.max_records")))
    # a value that is not UTF-8 becomes NULL instead of failing the batch (on Spark too, whose
    # try_cast from binary never checks the bytes: is_valid_utf8 does, on both engines)
    text = F.expr("CASE WHEN is_valid_utf8(value) THEN try_cast(value AS STRING) END")
    data = F.from_json(text, ORDER)
    parsed = data.order_id.isNotNull()
    return raw.select(
        "key", "value", "topic", "partition", "offset", "timestamp",
        F.when(parsed, data).alias("data"),
        F.when(~parsed, F.coalesce(text, F.concat(F.lit("base64:"), F.base64("value")))).alias("_rescued_data"))

@dp.table(name="silver.orders")
@dp.dedupe(keys=["order_id"], order_by=["partition", "offset"])
def orders():
    return (dp.read_stream("orders_raw").where("data IS NOT NULL")
            .select("data.order_id", "data.customer", "data.amount", "partition", "offset"))
"""

# (value, what bronze's _rescued_data must hold)
POISON = [
    (b"\xff\xfe\x00 not utf-8", "base64:" + base64.b64encode(b"\xff\xfe\x00 not utf-8").decode()),
    (b"{not json", "{not json"),
    (b"", ""),
    (None, None),                                   # a tombstone
    (b'{"customer": "c1", "amount": 3}', '{"customer": "c1", "amount": 3}'),   # no order_id
    (b"[1, 2, 3]", "[1, 2, 3]"),
]
RESCUED = {value: rescued for value, rescued in POISON}


def config(bootstrap: str, topic: str, max_records: int, options: str = "client.id: assay-tests") -> str:
    options = "\n".join("        " + line for line in textwrap.dedent(options).strip().splitlines())
    return f"""
name: k
storage: ./storage
landing: ./landing
schemas: {{bronze: 01_bronze, silver: 02_silver, gold: 03_gold, system: _system}}
configuration:
    kafka.bootstrap_servers: "{bootstrap}"
    kafka.topic: {topic}
    kafka.max_records: {max_records}
    kafka.options:
{options}
"""


class Feed:
    """Messages produced to a fresh topic, remembered by (partition, offset).

    Order ids repeat (re-deliveries, often in another partition) and a few messages are poison.
    """

    def __init__(self, broker, partitions: int = 3, seed: int = 5):
        self.broker = broker
        self.topic = broker.create_topic(f"orders-{uuid.uuid4().hex[:8]}", partitions)
        self.log: dict[int, list] = defaultdict(list)        # partition → values in offset order
        self.rng = random.Random(seed)
        self.next_id = 0

    def message(self, poison_rate: float, dup_rate: float) -> bytes | None:
        roll = self.rng.random()
        if roll < poison_rate:
            return self.rng.choice(POISON)[0]
        if roll < poison_rate + dup_rate and self.next_id > 0:
            order = self.rng.randrange(max(0, self.next_id - 500), self.next_id)   # a re-delivery
        else:
            order, self.next_id = self.next_id, self.next_id + 1
        return json.dumps({"order_id": f"o{order}", "customer": f"c{order % 17}",
                           "amount": float(self.rng.randrange(1, 10_000)) / 100}).encode()

    def produce(self, n: int, partitions=(0, 1, 2), poison_rate: float = 0.01, dup_rate: float = 0.08) -> None:
        records = []
        for i in range(n):
            p = partitions[i % len(partitions)]
            value = self.message(poison_rate, dup_rate)
            records.append((f"k{len(self.log[p])}".encode(), value, p))
            self.log[p].append(value)
        self.broker.produce(self.topic, records)

    def expected_bronze(self) -> list[tuple[int, int, bytes | None]]:
        return [(p, o, v) for p in sorted(self.log) for o, v in enumerate(self.log[p])]

    def expected_silver(self) -> dict[str, tuple]:
        """Per order id: the (partition, offset, customer, amount) of its earliest occurrence."""
        kept: dict[str, tuple] = {}
        for p, o, v in self.expected_bronze():
            if v is None or v in RESCUED:
                continue
            row = json.loads(v)
            if row["order_id"] not in kept or (p, o) < kept[row["order_id"]][:2]:
                kept[row["order_id"]] = (p, o, row["customer"], row["amount"])
        return kept


def check_bronze(folder: Path, feed: Feed) -> list[dict]:
    rows = table(folder, "01_bronze", "orders_raw") or []
    got = Counter((r["partition"], r["offset"]) for r in rows)
    dups = {k: n for k, n in got.items() if n > 1}
    assert not dups, f"bronze holds (partition, offset) more than once: {list(dups.items())[:5]}"
    expected = feed.expected_bronze()
    missing = {(p, o) for p, o, _ in expected} - set(got)
    assert not missing, f"bronze lost {len(missing)} messages, e.g. {sorted(missing)[:5]}"
    assert len(rows) == len(expected)
    by_position = sorted(rows, key=lambda r: (r["partition"], r["offset"]))
    assert [(r["partition"], r["offset"], r["value"]) for r in by_position] == expected
    for r in rows:
        assert r["topic"] == feed.topic and r["timestamp"] is not None
        assert r["key"] == f"k{r['offset']}".encode()
        if r["value"] is None or r["value"] in RESCUED:                 # poison: kept, rescued
            assert r["data"] is None and r["_rescued_data"] == RESCUED[r["value"]], r
        else:
            assert r["_rescued_data"] is None
            assert r["data"]["order_id"] == json.loads(r["value"])["order_id"]
    return rows


def check_silver(folder: Path, feed: Feed) -> None:
    rows = table(folder, "02_silver", "orders") or []
    ids = Counter(r["order_id"] for r in rows)
    assert all(n == 1 for n in ids.values()), f"silver keys not unique: {[k for k, n in ids.items() if n > 1][:5]}"
    got = {r["order_id"]: (r["partition"], r["offset"], r["customer"], r["amount"]) for r in rows}
    assert got == feed.expected_silver()


# -------------------------------------------------------------------------- incremental runs
def test_incremental_runs_poison_idle_partition_restart_and_event_log(kafka_broker, run_pipeline, tmp_path):
    feed = Feed(kafka_broker)
    folder = write_project(tmp_path / "proj", {"transformations/orders.py": PIPELINE},
                           config(kafka_broker.bootstrap, feed.topic, max_records=250))

    # 1. the topic is empty: nothing is planned, the run completes, no batch anywhere
    runs = [run_pipeline(folder)]
    assert runs[0]["orders_raw"].batches == 0 and runs[0]["orders"].batches == 0
    assert not table(folder, "01_bronze", "orders_raw")

    # 2. 700 messages on partitions 0 and 1 (partition 2 receives nothing): 3 batches of <= 250
    feed.produce(700, partitions=(0, 1), poison_rate=0.03)
    assert any(v in RESCUED for part in feed.log.values() for v in part), "the feed holds no poison message"
    runs.append(run_pipeline(folder))
    assert (runs[-1]["orders_raw"].batches, runs[-1]["orders_raw"].rows_written) == (3, 700)
    assert runs[-1]["orders"].status == "done"
    check_bronze(folder, feed)
    check_silver(folder, feed)

    # 3. only the new messages are read
    feed.produce(300, partitions=(0, 1), poison_rate=0.03)
    runs.append(run_pipeline(folder))
    assert (runs[-1]["orders_raw"].batches, runs[-1]["orders_raw"].rows_written) == (2, 300)

    # 4. the broker restarts between runs (its log survives): positions continue from the checkpoint
    kafka_broker.restart()
    feed.produce(200, partitions=(0, 1), poison_rate=0.03)
    runs.append(run_pipeline(folder))
    assert (runs[-1]["orders_raw"].batches, runs[-1]["orders_raw"].rows_written) == (1, 200)

    # 5. nothing new: no batch, nothing written
    runs.append(run_pipeline(folder))
    assert runs[-1]["orders_raw"].batches == 0 and runs[-1]["orders"].batches == 0

    rows = check_bronze(folder, feed)
    assert {r["partition"] for r in rows} == {0, 1}
    poison = [r for r in rows if r["data"] is None]
    assert len(poison) == sum(v in RESCUED for part in feed.log.values() for v in part) > 0
    check_silver(folder, feed)
    assert sum(s["orders"].rows_duplicate for s in runs) > 0, "the feed re-delivered no order id"

    # the event log: one flow_progress per bronze batch, whose sources hold its offset ranges
    events = [e for e in table(folder, "_system", "event_log")
              if e["event_type"] == "flow_progress" and e["flow"] == "orders_raw"]
    assert len(events) == 3 + 2 + 1
    covered: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e["batch_id"]):
        info = json.loads(e["sources"])[f"kafka:{feed.topic}"]
        assert info["topics"] == [feed.topic] and info["bootstrap_servers"] == kafka_broker.bootstrap
        ranges = info["offsets"][feed.topic]
        assert "2" not in ranges                                   # the idle partition has no range
        assert info["records"] == e["rows_read"] == sum(end - start for start, end in ranges.values())
        assert info["records"] <= 250
        for p, (start, end) in ranges.items():
            covered[int(p)].append((start, end))
    assert json.loads(min(events, key=lambda e: e["batch_id"])["sources"])[f"kafka:{feed.topic}"]["backlog"] == 450
    for p, spans in covered.items():        # the ranges tile each partition: no gap, no overlap
        assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert spans[-1][1] == len(feed.log[p])


# -------------------------------------------------------------------------- kill -9
def start_run(folder: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "assay.cli", "run"], cwd=folder,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "RUST_LOG": "error", "PYTHONUNBUFFERED": "1",
                                 "PYTHONPATH": str(ROOT)})


def running_flow(log: Path) -> str | None:
    """The flow the run was in when it was killed ("completed": the run had finished its work)."""
    text = log.read_text()
    if " completed: " in text:
        return "completed"
    lines = [line.split() for line in text.splitlines() if line.strip().startswith("running")]
    return lines[-1][1] if lines else None


def pending_batches(folder: Path, flow: str) -> int:
    """1 when the flow's checkpoint holds a planned batch without its commit (a kill interrupted it)."""
    ckpt = folder / "storage" / "_system" / "checkpoints" / flow
    ids = lambda sub: {int(f.stem) for f in (ckpt / sub).glob("*.json")} if (ckpt / sub).exists() else set()
    return int(bool(ids("offsets") - ids("commits")))


def wait_for(proc: subprocess.Popen, log: Path, needle: str, timeout: float = 60) -> bool:
    """True once `needle` is in the run's output, False if the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log.read_text():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"the run printed no {needle!r} within {timeout}s:\n{log.read_text()}")


def test_kill_9_at_random_instants_exactly_once_into_bronze_and_silver(kafka_broker, tmp_path, assay_cli):
    started = time.monotonic()
    feed = Feed(kafka_broker, seed=11)
    folder = write_project(tmp_path / "proj", {"transformations/orders.py": PIPELINE},
                           config(kafka_broker.bootstrap, feed.topic, max_records=1000))
    feed.produce(30_000, poison_rate=0.003, dup_rate=0.05)
    rng = random.Random(23)
    kills, hit, attempts, interrupted = 0, Counter(), 0, 0
    while kills < KILLS:
        attempts += 1
        assert attempts < KILLS * 3, f"only {kills} kills landed in {attempts} runs: {dict(hit)}"
        log = tmp_path / f"run-{attempts}.log"
        proc = start_run(folder, log)
        if attempts % 4 == 0:
            # aim at silver: once bronze has caught up, kill within silver's batch
            running = wait_for(proc, log, "running  orders ")
            delay = rng.uniform(0.0, 0.8)
        else:
            running = wait_for(proc, log, "running  orders_raw")
            delay = rng.uniform(0.0, 1.5)
        if running:
            time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            where = running_flow(log) or "startup"
            hit[where] += 1
            interrupted += sum(pending_batches(folder, flow) for flow in ("orders_raw", "orders"))
            kills += where in ("orders_raw", "orders")          # kills that landed inside a flow
        else:
            assert proc.returncode == 0, log.read_text()
            hit["finished"] += 1
        feed.produce(2000, poison_rate=0.003, dup_rate=0.05)           # more arrives between runs

    final = assay_cli("run", cwd=folder)      # the rerun is tested by the storage it mends: in process
    assert final.returncode == 0, final.stdout + final.stderr
    print(f"kills: {kills} in {attempts} runs, by flow running at the kill: {dict(hit)}; {interrupted} planned "
          f"batches left uncommitted by a kill; {sum(map(len, feed.log.values()))} messages; "
          f"{time.monotonic() - started:.0f}s")
    assert hit["orders_raw"] >= KILLS // 3 and hit["orders"] >= 1, f"kills did not reach both layers: {dict(hit)}"
    assert interrupted >= 1, "no kill interrupted a planned batch: the replay path was not exercised"

    check_bronze(folder, feed)
    check_silver(folder, feed)


# -------------------------------------------------------------------------- secrets and errors
@pytest.mark.parametrize("where", ["closed port", "broker without SASL"])
def test_connection_error_is_one_paragraph_and_never_shows_the_password(kafka_broker, tmp_path, where):
    from tests.kafka_broker import _free_port
    secret = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=" + uuid.uuid4().hex
    bootstrap = f"127.0.0.1:{_free_port()}" if where == "closed port" else kafka_broker.bootstrap
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    options = """
        security.protocol: SASL_PLAINTEXT
        sasl.mechanism: PLAIN
        sasl.username: $ConnectionString
        sasl.password: ${env:KAFKA_PASSWORD}
        kafkaConsumer.pollTimeoutMs: 3000
    """
    folder = write_project(tmp_path / "proj", {"transformations/orders.py": PIPELINE},
                           config(bootstrap, topic, max_records=100, options=options))
    assert secret not in (folder / "assay.yml").read_text()
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "assay.cli", "run"], cwd=folder, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "RUST_LOG": "error", "KAFKA_PASSWORD": secret,
                                              "PYTHONPATH": str(ROOT)})
    assert result.returncode != 0
    assert time.monotonic() - t0 < 25, "kafkaConsumer.pollTimeoutMs (3 s) was not applied"

    for text in (result.stdout, result.stderr):
        assert secret not in text and "SharedAccessKey" not in text
    message = result.stderr.strip()
    assert message.startswith("error:") and message.count("error:") == 1, message
    assert "\n\n" not in message and "Traceback" not in message, message
    flat = " ".join(message.split())
    assert f"kafka {topic} @ {bootstrap}" in flat and "metadata" in flat, flat

    events = table(folder, "_system", "event_log")
    failed = [e for e in events if e["event_type"] in ("flow_failed", "run_failed")]
    assert {e["event_type"] for e in failed} == {"flow_failed", "run_failed"}
    assert all(topic in e["message"] and bootstrap in e["message"] for e in failed)
    for e in events:
        assert not any(secret in str(v) or "SharedAccessKey" in str(v) for v in e.values())
    for path in (folder / "storage").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_spark_source_options_are_taken_from_the_options():
    from assay.sources.kafka import KafkaSource
    src = KafkaSource("t", "h:1", options={"kafkaConsumer.pollTimeoutMs": "1500", "failOnDataLoss": "true",
                                           "kafka.security.protocol": "SSL"})
    assert (src.poll_timeout_s, src.fail_on_data_loss) == (1.5, True)
    assert src.options == {"security.protocol": "SSL"}          # nothing librdkafka would reject
    assert KafkaSource("t", "h:1", options={"failOnDataLoss": False}).fail_on_data_loss is False
    assert KafkaSource("t", "h:1").poll_timeout_s == 30.0
    with pytest.raises(ValueError, match="pollTimeoutMs"):
        KafkaSource("t", "h:1", options={"kafkaConsumer.pollTimeoutMs": "soon"})
    with pytest.raises(ValueError, match="failOnDataLoss"):
        KafkaSource("t", "h:1", options={"failOnDataLoss": "maybe"})


LATEST = """
from assay import pipelines as dp

@dp.table(name="bronze.events_raw")
def events_raw():
    return dp.read_kafka(dp.config("kafka.topic"), starting_offsets="latest")
"""


def test_latest_is_pinned_by_the_first_run_even_when_it_finds_nothing(kafka_broker, run_pipeline, tmp_path):
    feed = Feed(kafka_broker, partitions=2)
    feed.produce(10, partitions=(0, 1), poison_rate=0)                  # history "latest" must skip
    folder = write_project(tmp_path / "proj", {"transformations/events.py": LATEST},
                           config(kafka_broker.bootstrap, feed.topic, max_records=100))
    first = run_pipeline(folder)["events_raw"]
    assert (first.batches, first.rows_written) == (1, 0)               # an empty batch records "latest"
    event = [e for e in table(folder, "_system", "event_log") if e["event_type"] == "flow_progress"][0]
    assert json.loads(event["sources"])[f"kafka:{feed.topic}"]["pinned_latest"] == {feed.topic: {"0": 5, "1": 5}}
    assert run_pipeline(folder)["events_raw"].batches == 0             # still nothing: no batch
    feed.produce(6, partitions=(0, 1), poison_rate=0)                   # after the first run: must be read
    assert run_pipeline(folder)["events_raw"].rows_written == 6
    rows = table(folder, "01_bronze", "events_raw")
    assert sorted((r["partition"], r["offset"]) for r in rows) == [(p, o) for p in (0, 1) for o in (5, 6, 7)]
    assert run_pipeline(folder)["events_raw"].batches == 0
