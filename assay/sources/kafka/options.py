"""Kafka client settings: librdkafka options from Spark-style keys, and keeping secrets out of
messages and logs (one list of secret key names: assay.secrets)."""
from __future__ import annotations

import logging
import re
from typing import Any, Mapping

from confluent_kafka import KafkaError, KafkaException

from ...errors import FlowError
from ...secrets import is_sensitive_key

log = logging.getLogger("assay.sources.kafka")

# the group.id librdkafka wants to see; it is never joined (assign() only) and nothing is committed
_DUMMY_GROUP = "assay-kafka-source-unused"


class KafkaSourceError(FlowError):
    """A Kafka source could not plan or load a batch; the message never holds a secret."""


def normalize_options(options: Mapping[str, Any] | None) -> dict[str, str]:
    """librdkafka settings: Spark-style ``kafka.``-prefixed keys lose their prefix."""
    out: dict[str, str] = {}
    for key, value in (options or {}).items():
        key = str(key)
        if key.startswith("kafka."):
            key = key[len("kafka."):]
        if value is None:
            continue
        out[key] = value if isinstance(value, str) else (
            str(value).lower() if isinstance(value, bool) else str(value))
    return out


def redact(conf: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a configuration that may be logged: secret values are replaced by ***."""
    return {k: ("***" if is_sensitive_key(k) else v) for k, v in conf.items()}


class _Scrubber:
    """Removes the values of secret settings from any text (librdkafka errors may quote them)."""

    def __init__(self, conf: Mapping[str, Any]):
        self._values = sorted({str(v) for k, v in conf.items() if is_sensitive_key(k) and str(v)},
                              key=len, reverse=True)

    def __call__(self, text: object) -> str:
        text = str(text)
        for value in self._values:
            text = text.replace(value, "***")
        return text


class _ScrubbingLogger:
    """What librdkafka logs goes to this module's logger, with secret values removed.

    At INFO at most, and each distinct line once (its repeats at DEBUG): an unreachable broker
    makes librdkafka log "Connect to ... failed" at ERROR many times a second, which would bury a
    command's output. Failures reach the user as one KafkaSourceError, which quotes the last
    broker errors.
    """

    _DIGITS = re.compile(r"\d+")

    def __init__(self, scrub: _Scrubber):
        self._scrub = scrub
        self._seen: set[str] = set()

    def log(self, level: int, msg: str, *args: Any) -> None:
        text = self._scrub(msg % args if args else msg)
        shape = self._DIGITS.sub("#", text)
        if shape in self._seen:
            level = logging.DEBUG
        else:
            if len(self._seen) < 1000:
                self._seen.add(shape)
            level = min(level, logging.INFO)
        if log.isEnabledFor(level):
            log.log(level, "%s", text)


def _describe_error(exc: object) -> str:
    """A KafkaException/KafkaError as its text ("Failed to get metadata: Local: Broker transport
    failure"), not the repr librdkafka's Python binding prints."""
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    if isinstance(err, KafkaError):
        return err.str() or err.name()
    return str(exc)


# errors of an offsets request that a retry may cure (leadership moving, a broker restarting)
_TRANSIENT = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.OFFSET_NOT_AVAILABLE, KafkaError.REPLICA_NOT_AVAILABLE,
    KafkaError.BROKER_NOT_AVAILABLE, KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
    KafkaError.KAFKA_STORAGE_ERROR, KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
})

#: Spark's Kafka source options (not librdkafka settings) that may be given among the options
SPARK_SOURCE_OPTIONS = ("kafkaConsumer.pollTimeoutMs", "failOnDataLoss")
