"""Sending records to Kafka, for the generator, the benchmarks and the tests (pipelines only read).

`ensure_topic` makes sure the topic exists before anything is sent: brokers often have topic
auto-creation off (the project's own broker does), and a producer to a missing topic only fails
after its delivery timeout. A topic that is missing is created; if the broker refuses, the error
says so at once, with the command that creates it.
"""
from __future__ import annotations

import logging
import shlex
import time
from typing import Any, Iterable, Mapping

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from .. import secrets
from ..errors import AssayError

log = logging.getLogger(__name__)


class KafkaProduceError(AssayError):
    """Records could not be sent: the topic is missing and cannot be created, the broker is out of
    reach, or records were not acknowledged. The message never holds a secret."""
    exit_code = 1


def client_conf(bootstrap: str, options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """librdkafka settings from options (Spark-style `kafka.` prefixes dropped), secret values
    registered so that nothing printed shows them."""
    conf: dict[str, str] = {}
    for key, value in (options or {}).items():
        key = str(key).removeprefix("kafka.")
        if value is not None:
            conf[key] = str(value).lower() if isinstance(value, bool) else str(value)
    conf["bootstrap.servers"] = bootstrap
    secrets.register_options(conf)
    return conf


class _QuietLogger:
    """librdkafka's log lines (secrets masked) at DEBUG: an unreachable broker makes it log
    "Connect to ... failed" many times a second; the user gets one error instead."""

    def log(self, level: int, msg: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s", secrets.redact(msg % args if args else msg))


def _describe(exc: object) -> str:
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    text = (err.str() or err.name()) if isinstance(err, KafkaError) else str(exc)
    return secrets.redact(text)


def create_command(bootstrap: str, topic: str, partitions: int) -> str:
    return (f"kafka-topics.sh --bootstrap-server {shlex.quote(bootstrap)} --create --topic {shlex.quote(topic)} "
            f"--partitions {partitions} --replication-factor 1")


def ensure_topic(bootstrap: str, topic: str, partitions: int = 3, options: Mapping[str, Any] | None = None,
                 timeout_s: float = 30.0) -> bool:
    """Create `topic` (replication 1) unless it exists; True if it was created. Waits until every
    partition has a leader, so that records sent next are not lost to a topic still being born."""
    conf = client_conf(bootstrap, options)
    conf["logger"] = _QuietLogger()
    admin = AdminClient(conf)
    try:
        existing = admin.list_topics(topic, timeout=min(10.0, timeout_s)).topics.get(topic)
    except KafkaException as exc:
        raise KafkaProduceError(f"cannot reach Kafka at {bootstrap} to look up topic '{topic}': "
                                f"{_describe(exc)}") from None
    if existing is not None and existing.error is None:
        return False
    created = True
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=timeout_s,
                            request_timeout=timeout_s)[topic].result(timeout=timeout_s)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if not (isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise KafkaProduceError(
                f"topic '{topic}' does not exist at {bootstrap} and the broker refused to create it "
                f"({_describe(exc)}); create it, then run again:\n  {create_command(bootstrap, topic, partitions)}"
            ) from None
        created = False  # created by someone else meanwhile
    deadline = time.monotonic() + timeout_s
    while True:
        meta = admin.list_topics(topic, timeout=10).topics.get(topic)
        if (meta is not None and meta.error is None and meta.partitions
                and all(p.leader >= 0 and p.error is None for p in meta.partitions.values())):
            return created
        if time.monotonic() > deadline:
            raise KafkaProduceError(f"topic '{topic}' at {bootstrap} has partitions without a leader "
                                    f"{timeout_s:g}s after it was created")
        time.sleep(0.05)


def produce(bootstrap: str, topic: str, records: Iterable[tuple], options: Mapping[str, Any] | None = None,
            timeout_s: float = 60.0) -> int:
    """Send (key, value[, partition]) records and wait until all are acknowledged; the count.

    str keys/values are sent as UTF-8, None as a null key/value. Raises if any record failed.
    """
    conf: dict[str, Any] = {"linger.ms": 5, "acks": "all", "message.max.bytes": 8 * 1024 * 1024,
                            "queue.buffering.max.messages": 200000}
    conf.update(client_conf(bootstrap, options))
    conf["logger"] = _QuietLogger()
    failures: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(_describe(err))

    producer = Producer(conf)
    deadline = time.monotonic() + timeout_s
    sent = 0
    for rec in records:
        key, value = rec[0], rec[1]
        partition = rec[2] if len(rec) > 2 else None
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = int(partition)
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
                if time.monotonic() > deadline:
                    raise KafkaProduceError(f"producing to {topic}: local queue full for {timeout_s:g}s") from None
        sent += 1
        if sent % 10000 == 0:
            producer.poll(0)
    left = producer.flush(max(0.0, deadline - time.monotonic()))
    if left:
        raise KafkaProduceError(f"producing to {topic}: {left} of {sent} records not acknowledged "
                                f"within {timeout_s:g}s")
    if failures:
        raise KafkaProduceError(f"producing to {topic}: {len(failures)} of {sent} records failed, "
                                f"first: {failures[0]}")
    return sent
