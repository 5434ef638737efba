"""KafkaSource against a real Kafka broker (tests/kafka_broker.py): no mocks.

Run: python -m pytest -q tests/test_kafka_source.py -p tests.kafka_broker
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer, TopicPartition

from assay.generator.kafka_producer import produce
from assay.sources.base import BatchLimits, LoadContext, Plan
from assay.sources.kafka import KAFKA_SCHEMA, KafkaSource, KafkaSourceError, fair_shares

pytestmark = pytest.mark.kafka

NO_LIMIT = BatchLimits()


def new_topic(broker, partitions=1, config=None) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    return broker.create_topic(name, partitions, config)


def fetch(source: KafkaSource, plan: Plan, tmp_path) -> pa.Table:
    path = tmp_path / f"batch-{uuid.uuid4().hex[:6]}.parquet"
    rows = source.fetch_to_parquet(plan, str(path))
    table = pq.read_table(path)
    assert table.num_rows == rows
    assert table.schema.equals(KAFKA_SCHEMA)
    return table


def offsets_by_partition(table: pa.Table) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for p, o in zip(table.column("partition").to_pylist(), table.column("offset").to_pylist()):
        out.setdefault(p, []).append(o)
    return {p: sorted(v) for p, v in out.items()}


def values(table: pa.Table) -> list[bytes]:
    rows = sorted(zip(table.column("partition").to_pylist(), table.column("offset").to_pylist(),
                      table.column("value").to_pylist()))
    return [v for _, _, v in rows]


# --------------------------------------------------------------------------------- pure Python
def test_key_is_stable_and_options_are_normalised():
    a = KafkaSource(["b", "a"], "h:1", options={"kafka.security.protocol": "SASL_SSL",
                                                 "sasl.mechanism": "PLAIN", "kafka.fetch.wait.max.ms": 5})
    assert a.key() == "kafka:a,b" == KafkaSource(["a", "b"], "other:2").key()
    assert KafkaSource("x", "h:1").key() == "kafka:x"
    assert a.options == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                         "fetch.wait.max.ms": "5"}
    with pytest.raises(ValueError):
        KafkaSource([], "h:1")
    with pytest.raises(ValueError):
        KafkaSource("x", "h:1", starting_offsets="newest")
    with pytest.raises(ValueError):
        KafkaSource("x", "h:1", starting_offsets={"other": {"0": 1}})


def test_fair_shares():
    assert fair_shares({"a": 10, "b": 0, "c": 3}, 9) == {"a": 6, "b": 0, "c": 3}
    assert fair_shares({"a": 10, "b": 10, "c": 10}, 10) == {"a": 4, "b": 3, "c": 3}
    assert fair_shares({"a": 1, "b": 100}, 50) == {"a": 1, "b": 49}
    assert fair_shares({"a": 5}, 100) == {"a": 5}
    # fewer records than partitions: the longest backlogs first, never more than the budget
    assert fair_shares({"a": 2, "b": 9, "c": 4}, 2) == {"a": 0, "b": 1, "c": 1}


# --------------------------------------------------------------------------------- the broker
def test_three_partitions_one_empty_exact_ranges(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker, 3)
    kafka_broker.produce(topic, [(f"k{i}", json.dumps({"i": i}), 0) for i in range(5)]
                         + [(None, f"p2-{i}".encode(), 2) for i in range(3)])
    src = KafkaSource(topic, kafka_broker.bootstrap)
    t0 = dt.datetime.now(dt.timezone.utc)

    plan = src.plan(None, NO_LIMIT)
    assert plan.start == {topic: {"0": 0, "1": 0, "2": 0}}
    assert plan.end == {topic: {"0": 5, "1": 0, "2": 3}}
    assert plan.info["offsets"] == {topic: {"0": [0, 5], "2": [0, 3]}}     # partition 1: nothing
    assert plan.info["records"] == plan.rows_hint == 8
    assert json.loads(json.dumps(plan.start)) == plan.start               # checkpoint-safe

    full = fetch(src, plan, tmp_path)
    assert offsets_by_partition(full) == {0: [0, 1, 2, 3, 4], 2: [0, 1, 2]}
    rows = sorted(full.to_pylist(), key=lambda r: (r["partition"], r["offset"]))
    assert [r["key"] for r in rows] == [b"k0", b"k1", b"k2", b"k3", b"k4", None, None, None]
    assert [r["value"] for r in rows[:5]] == [json.dumps({"i": i}).encode() for i in range(5)]
    assert [r["value"] for r in rows[5:]] == [b"p2-0", b"p2-1", b"p2-2"]
    assert {r["topic"] for r in rows} == {topic}
    assert {r["timestampType"] for r in rows} == {0}                       # CreateTime
    for r in rows:
        assert t0 - dt.timedelta(minutes=2) < r["timestamp"] < t0 + dt.timedelta(minutes=2)

    # an explicit range inside a partition: exactly offsets 1..3
    sub = Plan(start={topic: {"0": 1}}, end={topic: {"0": 4}}, info={})
    table = fetch(src, sub, tmp_path)
    assert table.column("offset").to_pylist() == [1, 2, 3]
    assert table.column("key").to_pylist() == [b"k1", b"k2", b"k3"]
    # loading the same plan again gives the same rows
    order = [("partition", "ascending"), ("offset", "ascending")]
    assert fetch(src, plan, tmp_path).sort_by(order).equals(full.sort_by(order))


def test_incremental_plans_only_new_then_none(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker, 2)
    kafka_broker.produce(topic, [(None, f"a{i}", i % 2) for i in range(6)])
    src = KafkaSource(topic, kafka_broker.bootstrap)
    first = src.plan(None, NO_LIMIT)
    assert first.end == {topic: {"0": 3, "1": 3}}
    assert fetch(src, first, tmp_path).num_rows == 6

    assert src.plan(first.end, NO_LIMIT) is None                          # nothing new

    kafka_broker.produce(topic, [(None, "b0", 1), (None, "b1", 1)])
    # availableNow: within a run, a source reads up to the ends it saw first
    assert src.plan(first.end, NO_LIMIT) is None
    src.start_run()                                                       # the next run
    second = src.plan(first.end, NO_LIMIT)
    assert second.start == first.end
    assert second.end == {topic: {"0": 3, "1": 5}}
    assert second.info["offsets"] == {topic: {"1": [3, 5]}}
    table = fetch(src, second, tmp_path)
    assert offsets_by_partition(table) == {1: [3, 4]}
    assert values(table) == [b"b0", b"b1"]
    # a position that went through JSON (as the checkpoint stores it)
    assert src.plan(json.loads(json.dumps(second.end)), NO_LIMIT) is None


def test_max_records_spread_over_partitions(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker, 3)
    kafka_broker.produce(topic, [(None, f"p0-{i}", 0) for i in range(10)]
                         + [(None, f"p1-{i}", 1) for i in range(10)]
                         + [(None, f"p2-{i}", 2) for i in range(2)])
    src = KafkaSource(topic, kafka_broker.bootstrap, max_records_per_batch=50)
    plan = src.plan(None, BatchLimits(max_records=12))      # the smaller bound wins
    assert plan.end == {topic: {"0": 5, "1": 5, "2": 2}}
    assert plan.rows_hint == 12 and plan.info["backlog"] == 10

    # bounded by the source's own limit too, and drained without loss or duplicates
    src = KafkaSource(topic, kafka_broker.bootstrap, max_records_per_batch=7)
    seen: list[tuple[int, int]] = []
    position, batches = None, 0
    while (plan := src.plan(position, NO_LIMIT)) is not None:
        batches += 1
        assert plan.rows_hint <= 7
        table = fetch(src, plan, tmp_path)
        assert table.num_rows == plan.rows_hint
        seen += list(zip(table.column("partition").to_pylist(), table.column("offset").to_pylist()))
        position = plan.end
        assert batches < 10
    assert batches == 4                                       # 22 records, 7 at a time
    assert sorted(seen) == [(0, i) for i in range(10)] + [(1, i) for i in range(10)] + [(2, 0), (2, 1)]
    assert position == {topic: {"0": 10, "1": 10, "2": 2}}


def test_starting_offsets(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker, 2)
    kafka_broker.produce(topic, [(None, f"old{i}", i % 2) for i in range(6)])

    earliest = KafkaSource(topic, kafka_broker.bootstrap, starting_offsets="earliest")
    assert earliest.plan(None, NO_LIMIT).end == {topic: {"0": 3, "1": 3}}
    assert earliest.plan(None, NO_LIMIT).start == {topic: {"0": 0, "1": 0}}

    latest = KafkaSource(topic, kafka_broker.bootstrap, starting_offsets="latest")
    assert latest.plan(None, NO_LIMIT) is None              # nothing after "now"
    kafka_broker.produce(topic, [(None, "new0", 0), (None, "new1", 1)])
    latest.start_run()
    plan = latest.plan(None, NO_LIMIT)                      # "latest" was pinned at the first plan
    assert plan.start == {topic: {"0": 3, "1": 3}}
    assert plan.end == {topic: {"0": 4, "1": 4}}
    assert values(fetch(latest, plan, tmp_path)) == [b"new0", b"new1"]

    explicit = KafkaSource(topic, kafka_broker.bootstrap, starting_offsets={topic: {"0": 2, "1": -1}})
    plan = explicit.plan(None, NO_LIMIT)
    assert plan.start == {topic: {"0": 2, "1": 4}}
    assert plan.info["offsets"] == {topic: {"0": [2, 4]}}
    assert values(fetch(explicit, plan, tmp_path)) == [b"old4", b"new0"]
    explicit = KafkaSource(topic, kafka_broker.bootstrap, starting_offsets={topic: {"1": -2}})
    assert explicit.plan(None, NO_LIMIT).start == {topic: {"0": 0, "1": 0}}   # unlisted: earliest


def test_poison_messages_load_as_bytes(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker, 1)
    big = bytes(range(256)) * 4096                                    # 1 MiB, not UTF-8
    poison = [
        (b"k-bad-utf8", b"\xff\xfe\x00\xc3(", 0),
        (b"k-empty", b"", 0),
        (None, b'{"ok": true}', 0),                                       # null key
        (b"k-not-json", b"{not json", 0),
        (b"k-big", big, 0),
        (b"k-null-value", None, 0),                                       # tombstone
    ]
    kafka_broker.produce(topic, poison)
    src = KafkaSource(topic, kafka_broker.bootstrap)
    plan = src.plan(None, NO_LIMIT)
    assert plan.end == {topic: {"0": 6}}
    table = fetch(src, plan, tmp_path)
    rows = sorted(table.to_pylist(), key=lambda r: r["offset"])
    assert [(r["key"], r["value"]) for r in rows] == [(k, v) for k, v, _ in poison]
    assert len(rows[4]["value"]) == 1024 * 1024


def test_transaction_markers_and_aborted_records_are_gaps(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker, 1)
    p = Producer({"bootstrap.servers": kafka_broker.bootstrap, "transactional.id": f"tx-{topic}"})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, value=f"c{i}", partition=0)
    p.commit_transaction(30)                                  # offsets 0-2, marker 3
    p.begin_transaction()
    for i in range(2):
        p.produce(topic, value=f"aborted{i}", partition=0)
    p.flush(30)
    p.abort_transaction(30)                                   # offsets 4-5 aborted, marker 6
    p.begin_transaction()
    p.produce(topic, value="d0", partition=0)
    p.commit_transaction(30)                                  # offset 7, marker 8
    src = KafkaSource(topic, kafka_broker.bootstrap, poll_timeout_s=30)
    plan = src.plan(None, NO_LIMIT)
    assert plan.end == {topic: {"0": 9}}
    t0 = time.monotonic()
    table = fetch(src, plan, tmp_path)
    assert time.monotonic() - t0 < 10                         # the range ends on a marker: no wait
    assert table.column("offset").to_pylist() == [0, 1, 2, 7]
    assert values(table) == [b"c0", b"c1", b"c2", b"d0"]
    assert src.plan(plan.end, NO_LIMIT) is None


def test_partitions_added_later_start_at_earliest(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker, 1)
    kafka_broker.produce(topic, [(None, "a", 0)])
    src = KafkaSource(topic, kafka_broker.bootstrap, starting_offsets="latest")
    first = KafkaSource(topic, kafka_broker.bootstrap).plan(None, NO_LIMIT)
    kafka_broker.add_partitions(topic, 3)
    kafka_broker.produce(topic, [(None, "x1", 1), (None, "x2", 2), (None, "y2", 2)])
    plan = src.plan(first.end, NO_LIMIT)
    assert plan.start == {topic: {"0": 1, "1": 0, "2": 0}}
    assert plan.end == {topic: {"0": 1, "1": 1, "2": 2}}
    assert [(n["partition"], n["from"]) for n in plan.info["new_partitions"]] == [(1, 0), (2, 0)]
    assert values(fetch(src, plan, tmp_path)) == [b"x1", b"x2", b"y2"]


def test_broker_restart_between_plans(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker, 2)
    kafka_broker.produce(topic, [(f"k{i}", f"before{i}", i % 2) for i in range(10)])
    src = KafkaSource(topic, kafka_broker.bootstrap)
    first = src.plan(None, NO_LIMIT)
    before = fetch(src, first, tmp_path)
    kafka_broker.produce(topic, [(None, "unread-before-restart", 0)])

    kafka_broker.restart()

    kafka_broker.produce(topic, [(None, f"after{i}", i % 2) for i in range(4)])
    src.start_run()
    second = src.plan(first.end, NO_LIMIT)
    assert second.start == first.end == {topic: {"0": 5, "1": 5}}
    assert second.end == {topic: {"0": 8, "1": 7}}
    after = fetch(src, second, tmp_path)
    assert offsets_by_partition(after) == {0: [5, 6, 7], 1: [5, 6]}
    got = values(before) + values(after)
    assert sorted(got) == sorted([f"before{i}".encode() for i in range(10)]
                                 + [b"unread-before-restart"] + [f"after{i}".encode() for i in range(4)])
    assert len(set(got)) == len(got) == 15
    assert src.plan(second.end, NO_LIMIT) is None


def test_retention_deleted_start_is_clamped_and_reported(kafka_broker, tmp_path, caplog):
    topic = new_topic(kafka_broker, 1, {"retention.ms": "1000"})
    kafka_broker.produce(topic, [(None, f"v{i}", 0) for i in range(10)])
    deadline = time.monotonic() + 30
    while kafka_broker.watermarks(topic, 0)[0] < 10:            # the broker's retention runs every 1 s
        assert time.monotonic() < deadline, "retention did not delete the records within 30 s"
        time.sleep(0.2)
    kafka_broker.alter_topic(topic, {"retention.ms": "3600000"})
    kafka_broker.produce(topic, [(None, f"w{i}", 0) for i in range(5)])

    src = KafkaSource(topic, kafka_broker.bootstrap)
    with caplog.at_level(logging.WARNING, logger="assay.sources.kafka"):
        plan = src.plan({topic: {"0": 3}}, NO_LIMIT)
    assert plan.start == {topic: {"0": 10}} and plan.end == {topic: {"0": 15}}
    assert plan.info["data_loss"] == [{"topic": topic, "partition": 0, "requested": 3,
                                       "available_from": 10, "lost": 7}]
    assert "retention" in caplog.text
    assert values(fetch(src, plan, tmp_path)) == [f"w{i}".encode() for i in range(5)]


def test_records_deleted_between_plan_and_load(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker, 2)
    kafka_broker.produce(topic, [(None, f"v{i}", 0) for i in range(10)] + [(None, "other", 1)])
    src = KafkaSource(topic, kafka_broker.bootstrap)
    plan = src.plan(None, NO_LIMIT)
    admin = kafka_broker.admin()
    for f in admin.delete_records([TopicPartition(topic, 0, 6)]).values():
        f.result(timeout=30)
    table = fetch(src, plan, tmp_path)
    assert offsets_by_partition(table) == {0: [6, 7, 8, 9], 1: [0]}
    assert src.last_load_report["data_loss"] == [{"topic": topic, "partition": 0, "requested": 0,
                                                  "available_from": 6, "lost": 6}]
    strict = KafkaSource(topic, kafka_broker.bootstrap, fail_on_data_loss=True)
    with pytest.raises(KafkaSourceError, match=rf"{topic}\[0\] offsets 0\.\.9 .*earliest available: 6"):
        strict.fetch_to_parquet(plan, str(tmp_path / "strict.parquet"))
    assert not (tmp_path / "strict.parquet").exists()


def test_undeliverable_range_fails_in_bounded_time(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker, 1)
    kafka_broker.produce(topic, [(None, "only", 0)])
    src = KafkaSource(topic, kafka_broker.bootstrap, poll_timeout_s=1.5)
    beyond = Plan(start={topic: {"0": 0}}, end={topic: {"0": 5}}, info={})
    t0 = time.monotonic()
    with pytest.raises(KafkaSourceError, match=rf"delivered nothing.*{topic}\[0\] offsets 0\.\.4 "
                                               r"\(next expected 1\)"):
        src.fetch_to_parquet(beyond, str(tmp_path / "x.parquet"))
    assert time.monotonic() - t0 < 10
    with pytest.raises(KafkaSourceError, match="does not exist"):
        KafkaSource("no-such-topic-" + topic, kafka_broker.bootstrap).plan(None, NO_LIMIT)


def test_secrets_never_in_errors_or_logs(kafka_broker, caplog):
    secret = "s3cr3t-Pa55-" + uuid.uuid4().hex[:6]
    src = KafkaSource("any", kafka_broker.bootstrap, poll_timeout_s=2, options={
        "kafka.security.protocol": "SASL_PLAINTEXT", "kafka.sasl.mechanism": "PLAIN",
        "kafka.sasl.username": "user", "kafka.sasl.password": secret})
    assert src.options["sasl.password"] == secret                 # passed through to librdkafka
    assert secret not in repr(src) and secret not in src.describe()
    with caplog.at_level(logging.DEBUG, logger="assay.sources.kafka"):
        with pytest.raises(KafkaSourceError) as err:            # the broker does not speak SASL
            src.plan(None, NO_LIMIT)
        bad = KafkaSource("any", kafka_broker.bootstrap, options={"sasl.password": secret,
                                                                   "sasl.oauthbearer.client.secret": secret,
                                                                   "fetch.wait.max.ms": secret})
        with pytest.raises(KafkaSourceError) as err2:           # librdkafka rejects the value
            bad.plan(None, NO_LIMIT)
    assert "metadata" in str(err.value)
    assert "fetch.wait.max.ms" in str(err2.value)
    for text in (str(err.value), str(err2.value), caplog.text):
        assert secret not in text


def test_load_through_spark(kafka_broker, engine, tmp_path):
    spark = engine.spark
    topic = new_topic(kafka_broker, 3)
    big = b"\x00\xff" * 300_000
    kafka_broker.produce(topic, [(b"a", b'{"n": 1}', 0), (None, b"\xff\xfe", 0), (b"c", b"", 1),
                                 (b"d", big, 1)])
    src = KafkaSource(topic, kafka_broker.bootstrap)
    plan = src.plan(None, NO_LIMIT)
    staging = tmp_path / "staging"
    staging.mkdir()
    df = src.load(LoadContext(spark=spark, staging_dir=str(staging), engine=engine), plan)
    assert [(f.name, f.dataType.simpleString()) for f in df.schema.fields] == [
        ("key", "binary"), ("value", "binary"), ("topic", "string"), ("partition", "int"),
        ("offset", "bigint"), ("timestamp", "timestamp"), ("timestampType", "int")]
    rows = sorted(df.collect(), key=lambda r: (r["partition"], r["offset"]))
    assert [(r["partition"], r["offset"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [None if r["key"] is None else bytes(r["key"]) for r in rows] == [b"a", None, b"c", b"d"]
    assert [bytes(r["value"]) for r in rows] == [b'{"n": 1}', b"\xff\xfe", b"", big]
    assert {r["topic"] for r in rows} == {topic}
    assert len(list(staging.iterdir())) == 1                  # one parquet file

    # an empty plan still gives a DataFrame with the schema
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    empty = Plan(start={topic: {"0": 2}}, end={topic: {"0": 2}}, info={})
    df = src.load(LoadContext(spark=spark, staging_dir=str(empty_dir), engine=engine), empty)
    assert df.count() == 0 and len(df.columns) == 7


def test_produce_helper(kafka_broker, tmp_path):
    topic = new_topic(kafka_broker, 2)
    assert produce(kafka_broker.bootstrap, topic, [("k", "v", 1), (None, b"w")]) == 2
    src = KafkaSource(topic, kafka_broker.bootstrap)
    table = fetch(src, src.plan(None, NO_LIMIT), tmp_path)
    assert sorted(table.column("value").to_pylist()) == [b"v", b"w"]
