"""How far each Kafka-reading flow is behind its topics, per partition, for `assay status`.

The flow's position is its checkpoint's last committed batch (where its next batch starts);
the partition's end is the broker's high watermark now. Lag = end − position: the messages
produced that the pipeline has not committed yet. The topics and bootstrap servers come from the
flow's last batch in the event log; the client settings from `configuration.kafka.options` of
assay.yml (the convention of docs/kafka.md), so Event Hubs' SASL settings apply here too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from . import secrets
from .delta import table as storage
from .runtime.checkpoint import Checkpoint, checkpoint_dir


@dataclass
class PartitionLag:
    flow: str
    topic: str
    partition: int
    position: int | None          # the next offset the flow reads (None: never read)
    end: int | None               # the high watermark (None: the broker did not answer)
    error: str | None = None

    @property
    def lag(self) -> int | None:
        if self.end is None:
            return None
        return self.end - (self.position or 0) if self.position is not None else self.end


def _kafka_flows(spec) -> dict[str, dict]:
    """flow → {topics, bootstrap_servers} of its latest batch that read Kafka."""
    log = storage.read_arrow(spec.system_dir / "event_log", columns=["event_type", "flow", "sources", "timestamp"])
    found: dict[str, tuple] = {}
    if log is None:
        return {}
    for row in log.to_pylist():
        if row["event_type"] != "flow_progress" or not row["sources"] or '"kafka:' not in row["sources"]:
            continue
        for key, info in json.loads(row["sources"]).items():
            if key.startswith("kafka:") and isinstance(info, dict) and info.get("bootstrap_servers"):
                if row["flow"] not in found or row["timestamp"] > found[row["flow"]][0]:
                    found[row["flow"]] = (row["timestamp"], info)
    return {flow: info for flow, (_, info) in found.items()}


def _position(spec, flow: str, topics: list[str]) -> dict[str, dict[int, int]]:
    committed = Checkpoint(checkpoint_dir(spec, flow)).last_committed()
    out: dict[str, dict[int, int]] = {}
    for position in (committed[1].get("positions") or []) if committed else []:
        if isinstance(position, dict) and position and set(position) <= set(topics):
            for topic, parts in position.items():
                out.setdefault(topic, {}).update({int(p): int(o) for p, o in (parts or {}).items()})
    return out


def kafka_lag(spec, timeout_s: float = 10.0) -> list[PartitionLag]:
    """Every partition of every topic a flow of the pipeline reads, with its lag."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from .sources.kafka.options import normalize_options
    options = spec.configuration.get("kafka.options")
    options = normalize_options(options if isinstance(options, dict) else {})
    secrets.register_options(options)
    rows: list[PartitionLag] = []
    for flow, info in sorted(_kafka_flows(spec).items()):
        topics = list(info.get("topics") or [])
        position = _position(spec, flow, topics)
        conf = {"group.id": "assay-status", "client.id": "assay-status", **options,
                "bootstrap.servers": info["bootstrap_servers"], "enable.auto.commit": False}
        consumer = None
        try:
            consumer = Consumer(conf)
            metadata = consumer.list_topics(timeout=timeout_s)
            for topic in topics:
                known = metadata.topics.get(topic)
                partitions = sorted(known.partitions) if known is not None and known.error is None else []
                partitions = sorted(set(partitions) | set(position.get(topic, {})))
                for p in partitions:
                    _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s,
                                                             cached=False)
                    rows.append(PartitionLag(flow, topic, p, position.get(topic, {}).get(p), int(high)))
        except (KafkaException, ValueError, TypeError) as exc:
            message = secrets.redact(str(exc))
            for topic in topics:
                for p, offset in sorted(position.get(topic, {}).items()):
                    rows.append(PartitionLag(flow, topic, p, offset, None, message))
        finally:
            if consumer is not None:
                consumer.close()
    return rows


def lag_table(spec):
    """`assay status`'s Kafka table (a rich Table), or None when no flow reads Kafka."""
    from rich.table import Table
    rows = kafka_lag(spec)
    if not rows:
        return None
    table = Table(show_edge=False, title="kafka lag (messages produced, not yet committed)", title_justify="left")
    for column in ("flow", "topic", "partition", "position", "end", "lag"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.flow, r.topic, str(r.partition), "—" if r.position is None else f"{r.position:,}",
                      "?" if r.end is None else f"{r.end:,}",
                      f"? ({r.error})" if r.lag is None else f"{r.lag:,}")
    return table
