"""Consuming exactly the planned offset ranges into Parquet, for engines without a Kafka reader.

No consumer group is ever joined (`assign()`), nothing is committed to Kafka, and the rows are
written to a Parquet file that the engine reads; Assay never reads them back.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, KafkaError, KafkaException, TopicPartition

from ..base import LoadContext, Plan
from .options import log

#: Spark's Kafka source schema (without headers).
KAFKA_SCHEMA = pa.schema([
    pa.field("key", pa.binary()),
    pa.field("value", pa.binary()),
    pa.field("topic", pa.string()),
    pa.field("partition", pa.int32()),
    pa.field("offset", pa.int64()),
    pa.field("timestamp", pa.timestamp("us", tz="UTC")),
    pa.field("timestampType", pa.int32()),
])

# Spark's startingOffsets codes inside an explicit offsets dict

# rows per parquet row group (and per in-memory buffer of one partition), or fewer when the
# buffered values of a partition reach _GROUP_BYTES (large messages)
_ROW_GROUP = 65536
_GROUP_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class _Range:
    topic: str
    partition: int
    start: int
    end: int


def _offsets_of(position: Any) -> dict[str, dict[int, int]]:
    """A position (JSON: string partition keys) as {topic: {partition(int): offset}}."""
    out: dict[str, dict[int, int]] = {}
    for topic, parts in (position or {}).items():
        out[str(topic)] = {int(p): int(o) for p, o in (parts or {}).items()}
    return out


def _as_position(offsets: Mapping[str, Mapping[int, int]]) -> dict[str, dict[str, int]]:
    return {t: {str(p): int(offsets[t][p]) for p in sorted(offsets[t])} for t in sorted(offsets)}


class RangeReader:
    """What KafkaSource does to load a plan: consume its ranges into one Parquet file."""

    def load(self, ctx: LoadContext, plan: Plan):
        """The engine reads the planned ranges: natively where it has a Kafka reader, else from the
        Parquet file `fetch_to_parquet` writes (bounded, never read back by Assay)."""
        if ctx.engine.reads_kafka:
            return ctx.engine.read_kafka(self.bootstrap_servers, self.ranges(plan), self.options,
                                         self.fail_on_data_loss, KAFKA_SCHEMA)
        path = os.path.join(ctx.staging_dir, "kafka-batch.parquet")
        self.fetch_to_parquet(plan, path)
        return ctx.engine.read_parquet([path])

    @staticmethod
    def ranges(plan: Plan) -> list[_Range]:
        """The (topic, partition, start, end) ranges of a plan that hold records."""
        start, end = _offsets_of(plan.start), _offsets_of(plan.end)
        out = []
        for topic in sorted(end):
            for p in sorted(end[topic]):
                s = start.get(topic, {}).get(p, end[topic][p])
                if end[topic][p] > s:
                    out.append(_Range(topic, p, s, end[topic][p]))
        return out

    def fetch_to_parquet(self, plan: Plan, path: str) -> int:
        """Consume exactly the plan's offset ranges into one parquet file; the rows written.

        A partition is done when the consumer's position reaches the range's end, not after a
        count of messages: offsets may have gaps (transaction markers, aborted or compacted
        records). Fails with the topic, partition and offsets when the broker delivers nothing
        for `poll_timeout_s`. Each row group holds consecutive offsets of one partition.
        """
        todo = self.ranges(plan)
        self.last_load_report = {}
        writer = pq.ParquetWriter(path, KAFKA_SCHEMA, compression="zstd")
        try:
            rows = self._consume(todo, writer) if todo else 0
        except BaseException:
            writer.close()
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        writer.close()          # zero rows: still a file with the schema
        return rows

    def _consume(self, todo: list[_Range], writer: pq.ParquetWriter) -> int:
        parts = {(r.topic, r.partition): _Partition(r) for r in todo}
        pending = dict(parts)
        lost: list[dict] = []
        rows = 0

        def flush(st: _Partition) -> None:
            nonlocal rows
            if st.msgs:
                writer.write_table(st.table(), row_group_size=_ROW_GROUP)
                rows += len(st.msgs)
                st.msgs, st.bytes = [], 0

        def finish(st: _Partition) -> None:
            pending.pop((st.topic, st.partition), None)
            flush(st)
            try:
                consumer.pause([TopicPartition(st.topic, st.partition)])
            except KafkaException:
                pass

        consumer = self._consumer()
        try:
            consumer.assign([TopicPartition(st.topic, st.partition, st.start) for st in parts.values()])
            last_progress = time.monotonic()
            while pending:
                msgs = consumer.consume(num_messages=10000, timeout=0.2)
                progressed = False
                for m in msgs:
                    st = pending.get((m.topic(), m.partition()))
                    if st is None:
                        continue                        # a partition already done
                    if m.error() is not None:
                        progressed |= self._on_consumer_event(consumer, m, st, pending, lost, finish)
                        continue
                    off = m.offset()
                    if off < st.next:
                        continue                        # already have it (re-fetch after a reset)
                    progressed = True
                    if off >= st.end:
                        finish(st)
                        continue
                    st.msgs.append(m)
                    st.bytes += len(m)
                    st.next = off + 1
                    if st.next >= st.end:
                        finish(st)
                    elif len(st.msgs) >= _ROW_GROUP or st.bytes >= _GROUP_BYTES:
                        flush(st)
                if not msgs and pending:
                    # gaps at the tail of a range (markers, aborted records): the position says it
                    try:
                        positions = consumer.position(
                            [TopicPartition(st.topic, st.partition) for st in pending.values()])
                    except KafkaException:
                        positions = []
                    for tpp in positions:
                        st = pending.get((tpp.topic, tpp.partition))
                        if st is not None and tpp.offset >= 0 and tpp.offset >= st.end:
                            finish(st)
                            progressed = True
                now = time.monotonic()
                if progressed:
                    last_progress = now
                elif now - last_progress > self.poll_timeout_s:
                    stuck = ", ".join(
                        f"{st.topic}[{st.partition}] offsets {st.start}..{st.end - 1} "
                        f"(next expected {st.next})" for _, st in sorted(pending.items()))
                    raise self._fail(f"the broker delivered nothing for {self.poll_timeout_s:g}s "
                                     f"while reading {stuck}")
        finally:
            consumer.close()
        if lost:
            self.last_load_report["data_loss"] = lost
        return rows

    def _on_consumer_event(self, consumer, m, st: "_Partition", pending, lost, finish) -> bool:
        """An error or end-of-partition event of a pending partition; True if it made progress."""
        err = m.error()
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            # the consumer is at the end of the log: the gaps up to it are done
            if m.offset() is not None and m.offset() >= st.end:
                finish(st)
                return True
            return False
        if code in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
            self._on_out_of_range(consumer, st, pending, lost, finish)
            return True
        if err.fatal() or not err.retriable():
            raise self._fail(f"reading {st.topic}[{st.partition}] offsets {st.start}..{st.end - 1}", err)
        return False

    def _on_out_of_range(self, consumer, st: "_Partition", pending, lost, finish) -> None:
        """The next planned offset is gone (retention ran between plan and load)."""
        low, high = self._watermarks(consumer, st.topic, st.partition)
        what = (f"{st.topic}[{st.partition}] offsets {st.next}..{st.end - 1} of the plan are no "
                f"longer in Kafka (earliest available: {low}, end: {high})")
        if self.fail_on_data_loss or st.next >= low:
            raise self._fail(f"data loss: {what}")
        log.warning("kafka %s: data loss, loading what is left: %s", self.key(), what)
        lost.append({"topic": st.topic, "partition": st.partition, "requested": st.next,
                     "available_from": low, "lost": min(low, st.end) - st.next})
        if low >= st.end:
            finish(st)
            return
        st.next = low
        # a partition in this error state cannot seek: assign the pending ranges again
        consumer.assign([TopicPartition(s.topic, s.partition, s.next) for _, s in sorted(pending.items())])


class _Partition:
    """The planned range of one partition while it is consumed, and its messages not yet written."""

    __slots__ = ("topic", "partition", "start", "end", "next", "msgs", "bytes")

    def __init__(self, r: _Range):
        self.topic, self.partition, self.start, self.end = r.topic, r.partition, r.start, r.end
        self.next = r.start             # the next offset expected
        self.msgs: list = []            # confluent_kafka Messages, in offset order
        self.bytes = 0                  # the size of their values

    def table(self) -> pa.Table:
        msgs = self.msgs
        n = len(msgs)
        stamps = [m.timestamp() for m in msgs]
        types = [t for t, _ in stamps]
        if all(t == TIMESTAMP_CREATE_TIME for t in types):
            ts = pa.array([v for _, v in stamps], pa.int64())
            kinds = pa.repeat(pa.scalar(0, pa.int32()), n)
        else:
            ts = pa.array([v if t in (TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME) else None
                           for t, v in stamps], pa.int64())
            kinds = pa.array([_TS_TYPE.get(t, -1) for t in types], pa.int32())
        return pa.Table.from_arrays([
            pa.array([m.key() for m in msgs], pa.binary()),
            pa.array([m.value() for m in msgs], pa.binary()),
            pa.repeat(pa.scalar(self.topic, pa.string()), n),
            pa.repeat(pa.scalar(self.partition, pa.int32()), n),
            pa.array([m.offset() for m in msgs], pa.int64()),
            pc.multiply(ts, 1000).cast(pa.timestamp("us", tz="UTC")),
            kinds,
        ], schema=KAFKA_SCHEMA)


# Spark's timestampType: 0 CreateTime, 1 LogAppendTime (-1: none)
_TS_TYPE = {TIMESTAMP_CREATE_TIME: 0, TIMESTAMP_LOG_APPEND_TIME: 1}
