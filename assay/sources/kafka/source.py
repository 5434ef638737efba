"""Apache Kafka as an Assay source: offsets live in Assay's checkpoint, never in Kafka.

A batch is a set of offset ranges, one per partition: `plan` reads the partitions' watermarks
and decides the ranges, `load` consumes exactly those ranges (with `assign()`, no consumer
group is ever joined, nothing is committed to Kafka) into one parquet file with the columns of
Spark's Kafka source: key, value (binary), topic, partition, offset, timestamp, timestampType.

Positions are JSON: ``{"<topic>": {"<partition>": <next offset>, ...}, ...}``.

Values are never parsed here: invalid UTF-8, empty values, null keys or large values load as
they are, and parsing belongs to the flow that reads the batch.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ..base import BatchLimits, LoadContext, Plan, Source
from .consumer import RangeReader, _as_position, _offsets_of
from .options import (_DUMMY_GROUP, _TRANSIENT, SPARK_SOURCE_OPTIONS, KafkaSourceError, _describe_error, _Scrubber,
                      _ScrubbingLogger, log, normalize_options, redact)

SPARK_EARLIEST, SPARK_LATEST = -2, -1


def fair_shares(available: Mapping[Any, int], budget: int) -> dict[Any, int]:
    """Split `budget` records over partitions with `available` records each, max-min fairly.

    Every partition gets the same share, except those with less available, whose leftover is
    spread over the others. When the budget is smaller than the number of partitions with data,
    the partitions that have the most waiting go first (ties: by key), so nothing starves.
    """
    shares = {k: 0 for k in available}
    pending = sorted((k for k, n in available.items() if n > 0), key=lambda k: (available[k], k))
    left = max(0, int(budget))
    while pending and left > 0:
        each = left // len(pending)
        if each == 0:
            # fewer records than partitions: one each to the partitions with the most waiting
            for k in sorted(pending, key=lambda k: (-(available[k] - shares[k]), k))[:left]:
                shares[k] += 1
            break
        nxt = []
        for k in pending:
            give = min(each, available[k] - shares[k])
            shares[k] += give
            left -= give
            if shares[k] < available[k]:
                nxt.append(k)
        pending = nxt
    return shares


class KafkaSource(RangeReader, Source):
    """Topics of a Kafka cluster, read by offset ranges kept in Assay's checkpoint.

    Args:
        topics: one topic or a list of topics.
        bootstrap_servers: "host:port[,host:port...]".
        options: librdkafka settings passed through (security.protocol, sasl.mechanism,
            sasl.username, sasl.password, ssl.*...). Spark-style keys ("kafka.sasl.mechanism")
            are accepted. Values of keys naming a password/secret/token are never logged.
            Spark's source options "kafkaConsumer.pollTimeoutMs" and "failOnDataLoss" are
            taken from here too (they set `poll_timeout_s` and `fail_on_data_loss`).
        starting_offsets: where partitions never read before start: "earliest", "latest", or
            {"topic": {"partition": offset}} where offset -2 means earliest and -1 latest
            (Spark's codes); partitions not listed start at the earliest offset.
        max_records_per_batch: upper bound of records per batch (with BatchLimits.max_records,
            the smaller one wins), spread fairly over the partitions.
        poll_timeout_s: how long a metadata/offsets request, or a load that makes no progress,
            may wait for the broker before failing.
        fail_on_data_loss: if data of a planned range was deleted (retention) before `load`,
            fail instead of loading what is left. Plans themselves never fail on it: a start
            below the earliest available offset is moved up and reported in `Plan.info`.
        record_initial_positions: when a first plan finds nothing after a "latest" start,
            return an empty plan (start == end == the pinned offsets) instead of None, so that
            a checkpoint keeps where "latest" pointed. The runtime sets it: its sources live for
            one run, and without it the next run would pin "latest" again, later, and skip what
            arrived in between. Without it, "latest" is pinned for this object's lifetime.
    """

    kind = "kafka"

    def __init__(
        self,
        topics: str | list[str],
        bootstrap_servers: str,
        options: dict[str, str] | None = None,
        starting_offsets: str | dict = "earliest",
        max_records_per_batch: int | None = None,
        poll_timeout_s: float = 30.0,
        fail_on_data_loss: bool = False,
        record_initial_positions: bool = False,
    ):
        names = [topics] if isinstance(topics, str) else list(topics)
        names = [t.strip() for t in names]
        if not names or any(not t for t in names):
            raise ValueError("KafkaSource needs at least one non-empty topic name")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate topics in {names}")
        if not bootstrap_servers:
            raise ValueError("KafkaSource needs bootstrap_servers")
        if isinstance(starting_offsets, str):
            if starting_offsets not in ("earliest", "latest"):
                raise ValueError("starting_offsets must be 'earliest', 'latest' or a dict of offsets")
        elif isinstance(starting_offsets, Mapping):
            unknown = set(starting_offsets) - set(names)
            if unknown:
                raise ValueError(f"starting_offsets names topics not read by this source: {sorted(unknown)}")
        else:
            raise ValueError("starting_offsets must be 'earliest', 'latest' or a dict of offsets")
        options = dict(options or {})
        spark_options = {k: options.pop(k) for k in SPARK_SOURCE_OPTIONS if k in options}
        if "kafkaConsumer.pollTimeoutMs" in spark_options:
            try:
                poll_timeout_s = float(spark_options["kafkaConsumer.pollTimeoutMs"]) / 1000.0
            except (TypeError, ValueError):
                raise ValueError("kafkaConsumer.pollTimeoutMs must be a number of milliseconds, got "
                                 f"{spark_options['kafkaConsumer.pollTimeoutMs']!r}") from None
        if "failOnDataLoss" in spark_options:
            flag = str(spark_options["failOnDataLoss"]).strip().lower()
            if flag not in ("true", "false"):
                raise ValueError(f"failOnDataLoss must be true or false, got {spark_options['failOnDataLoss']!r}")
            fail_on_data_loss = flag == "true"
        if max_records_per_batch is not None and max_records_per_batch < 1:
            raise ValueError("max_records_per_batch must be >= 1")
        if poll_timeout_s <= 0:
            raise ValueError("poll_timeout_s must be > 0")

        self.topics = sorted(names)
        self.bootstrap_servers = bootstrap_servers
        self.options = normalize_options(options)
        self.starting_offsets = starting_offsets
        self.max_records_per_batch = max_records_per_batch
        self.poll_timeout_s = float(poll_timeout_s)
        self.fail_on_data_loss = fail_on_data_loss
        self.record_initial_positions = record_initial_positions
        self._scrub = _Scrubber(self.options)
        self._pinned: dict[tuple[str, int], int] = {}
        self._run_end: dict[tuple[str, int], int] = {}
        #: what the last load found (data deleted between plan and load...), for the event log
        self.last_load_report: dict = {}

    def start_run(self) -> None:
        """Forget the ends seen so far: the next plan may read what arrived since (a new run)."""
        self._run_end.clear()

    # ------------------------------------------------------------------------------ identity
    def key(self) -> str:
        return "kafka:" + ",".join(self.topics)

    def describe(self) -> str:
        return f"kafka {','.join(self.topics)} @ {self.bootstrap_servers}"

    def __repr__(self) -> str:
        return self._scrub(
            f"KafkaSource(topics={self.topics!r}, bootstrap_servers={self.bootstrap_servers!r}, "
            f"options={redact(self.options)!r}, starting_offsets={self.starting_offsets!r}, "
            f"max_records_per_batch={self.max_records_per_batch!r})")

    # ------------------------------------------------------------------------------ clients
    def _consumer_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"client.id": "assay", "fetch.wait.max.ms": "100",
                                # bigger fetches: ~2x the throughput of the 1 MiB default
                                "max.partition.fetch.bytes": "4194304",
                                # librdkafka wants one; it is never joined (assign() only) and
                                # nothing is committed. May be overridden (group ACLs).
                                "group.id": _DUMMY_GROUP}
        conf.update(self.options)
        conf.update({
            # the checkpoint owns the offsets: no group membership, no commits, no silent resets
            "bootstrap.servers": self.bootstrap_servers,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "enable.partition.eof": True,
            "logger": _ScrubbingLogger(self._scrub),
            "error_cb": self._on_error,
        })
        return conf

    def _on_error(self, err: KafkaError) -> None:
        text = self._scrub(_describe_error(err))
        if text not in self._errors:
            self._errors.append(text)
        del self._errors[:-5]

    def _serve_errors(self, consumer: Consumer) -> None:
        """Run the error callbacks librdkafka has queued (they say why a request failed)."""
        try:
            consumer.poll(0)
        except (KafkaException, RuntimeError):
            pass

    def _consumer(self) -> Consumer:
        self._errors: list[str] = []
        try:
            return Consumer(self._consumer_conf())
        except (KafkaException, ValueError, TypeError) as e:
            raise KafkaSourceError(f"cannot create a Kafka consumer for {self.describe()}: "
                                   f"{self._scrub(e)} (options: {self._scrub(redact(self.options))})") from None

    def _broker_errors(self) -> str:
        errors = getattr(self, "_errors", [])
        return f"; broker errors: {' | '.join(errors)}" if errors else ""

    def _fail(self, what: str, exc: object | None = None) -> KafkaSourceError:
        detail = f": {self._scrub(_describe_error(exc))}" if exc is not None else ""
        return KafkaSourceError(f"{what} ({self.describe()}){detail}{self._broker_errors()}")

    # ------------------------------------------------------------------------------ plan
    def _partitions(self, consumer: Consumer) -> dict[str, list[int]]:
        try:
            md = consumer.list_topics(timeout=self.poll_timeout_s)
        except KafkaException as e:
            self._serve_errors(consumer)
            raise self._fail(f"cannot read the cluster's metadata within {self.poll_timeout_s:g}s", e) from None
        out: dict[str, list[int]] = {}
        for topic in self.topics:
            tmd = md.topics.get(topic)
            if tmd is None or (tmd.error is not None
                               and tmd.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                raise self._fail(f"topic {topic!r} does not exist")
            if tmd.error is not None:
                raise self._fail(f"metadata of topic {topic!r}", tmd.error)
            out[topic] = sorted(tmd.partitions)
        return out

    def _watermarks(self, consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
        """(low, high) of a partition. Transient errors (a leader moving, a broker restarting:
        "Not leader for partition" right after a restart) are retried until `poll_timeout_s`."""
        deadline = time.monotonic() + self.poll_timeout_s
        pause = 0.05
        while True:
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=False,
                    timeout=max(0.1, deadline - time.monotonic()))
                return int(low), int(high)
            except KafkaException as e:
                err = e.args[0] if e.args else None
                transient = isinstance(err, KafkaError) and (err.code() in _TRANSIENT or err.retriable())
                if not transient or time.monotonic() + pause >= deadline:
                    self._serve_errors(consumer)
                    raise self._fail(f"cannot read the offsets of {topic}[{partition}]", e) from None
                log.info("kafka %s: %s[%d] offsets: %s, retrying", self.key(), topic, partition,
                         self._scrub(_describe_error(e)))
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    def _initial_offset(self, topic: str, partition: int, low: int, high: int) -> int:
        spec = self.starting_offsets
        if spec == "latest":
            return high
        if isinstance(spec, Mapping):
            parts = spec.get(topic) or {}
            wanted = parts.get(str(partition), parts.get(partition, SPARK_EARLIEST))
            wanted = int(wanted)
            if wanted == SPARK_LATEST:
                return high
            if wanted == SPARK_EARLIEST:
                return low
            if wanted < 0:
                raise KafkaSourceError(f"starting offset {wanted} of {topic}[{partition}] is not valid")
            return wanted
        return low

    def _starts_at_latest(self, topic: str, partition: int) -> bool:
        """Whether a partition never read starts at its end ("latest", or Spark's code -1)."""
        spec = self.starting_offsets
        if isinstance(spec, Mapping):
            parts = spec.get(topic) or {}
            return int(parts.get(str(partition), parts.get(partition, SPARK_EARLIEST))) == SPARK_LATEST
        return spec == "latest"

    def plan(self, position: Any | None, limits: BatchLimits) -> Plan | None:
        known = _offsets_of(position)
        consumer = self._consumer()
        try:
            layout = self._partitions(consumer)
            starts: dict[str, dict[int, int]] = {}
            highs: dict[tuple[str, int], int] = {}
            data_loss: list[dict] = []
            offset_reset: list[dict] = []
            new_partitions: list[dict] = []
            pinned_latest: list[str] = []
            for topic in self.topics:
                seen = known.get(topic)
                starts[topic] = {}
                for p in layout[topic]:
                    low, high = self._watermarks(consumer, topic, p)
                    # availableNow: a run reads up to the end each partition had at its first plan
                    high = min(high, self._run_end.setdefault((topic, p), high))
                    if seen is None:
                        # pinned at the first plan: "latest" must not move on while no batch
                        # has committed (a None plan leaves no position in the checkpoint)
                        start = self._pinned.setdefault(
                            (topic, p), self._initial_offset(topic, p, low, high))
                        if self._starts_at_latest(topic, p):
                            pinned_latest.append(f"{topic}[{p}]")
                    elif p in seen:
                        start = seen[p]
                    else:
                        start = low           # a partition added since the last batch
                        new_partitions.append({"topic": topic, "partition": p, "from": low})
                    if start < low:
                        data_loss.append({"topic": topic, "partition": p, "requested": start,
                                          "available_from": low, "lost": low - start})
                        start = low
                    elif start > high:
                        # the log is shorter than our position: topic recreated or truncated
                        offset_reset.append({"topic": topic, "partition": p, "requested": start,
                                             "high_watermark": high})
                        start = high
                    starts[topic][p] = start
                    highs[(topic, p)] = high
                # partitions we knew that are gone from the metadata keep their position
                for p, off in (seen or {}).items():
                    if p not in starts[topic]:
                        starts[topic][p] = off
        finally:
            consumer.close()

        available = {(t, p): max(0, highs[(t, p)] - starts[t][p]) for (t, p) in highs}
        total = sum(available.values())
        if total == 0:
            if data_loss or offset_reset:
                log.warning("kafka %s: nothing new; data lost before the position: %s %s",
                            self.key(), data_loss, offset_reset)
            if pinned_latest and self.record_initial_positions:
                # Nothing to read yet, but where "latest" points now must outlive this run: a None
                # plan stores no position, and the next run would pin "latest" again, later,
                # skipping what arrived in between. An empty batch commits the pinned offsets.
                return Plan(start=_as_position(starts), end=_as_position(starts), rows_hint=0, info={
                    "topics": list(self.topics), "bootstrap_servers": self.bootstrap_servers,
                    "offsets": {}, "records": 0, "backlog": 0,
                    "pinned_latest": _as_position(starts)})
            return None
        caps = [c for c in (limits.max_records if limits else None, self.max_records_per_batch)
                if c is not None]
        take = fair_shares(available, min(caps)) if caps else available

        ends = {t: dict(parts) for t, parts in starts.items()}
        ranges: dict[str, dict[str, list[int]]] = {}
        for (t, p), n in sorted(take.items()):
            if n > 0:
                ends[t][p] = starts[t][p] + n
                ranges.setdefault(t, {})[str(p)] = [starts[t][p], ends[t][p]]
        records = sum(take.values())
        info: dict[str, Any] = {
            "topics": list(self.topics),
            "bootstrap_servers": self.bootstrap_servers,
            "offsets": ranges,
            "records": records,
            "backlog": total - records,
        }
        if data_loss:
            info["data_loss"] = data_loss
            log.warning("kafka %s: offsets deleted before they were read (retention), "
                        "moved to the earliest available: %s", self.key(), data_loss)
        if offset_reset:
            info["offset_reset"] = offset_reset
            log.warning("kafka %s: positions beyond the end of the log, moved back: %s",
                        self.key(), offset_reset)
        if new_partitions:
            info["new_partitions"] = new_partitions
        return Plan(start=_as_position(starts), end=_as_position(ends), info=info, rows_hint=records)
