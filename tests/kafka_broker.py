"""pytest plugin: a real single-node Kafka broker (scripts/kafka.sh) for the whole session.

Load it with ``pytest_plugins = ["tests.kafka_broker"]`` (or ``-p tests.kafka_broker``) and ask
for the session fixture ``kafka_broker``. Nothing is mocked and nothing is skipped: if Java,
Maven or the jars are missing, the fixture fails with the reason and the broker's log tail.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "kafka.sh"

START_TIMEOUT_S = 90       # the script waits up to 60 s for metadata; formatting comes first
FETCH_TIMEOUT_S = 900      # first resolution of the jars from Maven Central
OP_TIMEOUT_S = 30          # topic creation, produce + flush


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KafkaBroker:
    """A broker started by scripts/kafka.sh on 127.0.0.1:port with its own data folder."""

    def __init__(self, port: int, data_dir: Path):
        self.port = port
        self.data_dir = Path(data_dir)
        self.bootstrap = f"127.0.0.1:{port}"
        self.running = False

    # ----------------------------------------------------------------------- lifecycle
    def _script(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        env = dict(os.environ, KAFKA_DATA_DIR=str(self.data_dir), KAFKA_WATCH_PID=str(os.getpid()))
        try:
            return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, text=True,
                                  capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"`kafka.sh {' '.join(args)}` did not finish in {timeout:g}s\n"
                               f"{e.stdout or ''}{e.stderr or ''}\n{self.log_tail()}") from None

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> str:
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}\n"
                               f"--- broker log tail ---\n{self.log_tail()}")
        return proc.stdout.strip()

    def fetch(self) -> None:
        self._check(self._script("fetch", timeout=FETCH_TIMEOUT_S), "kafka.sh fetch (Maven)")

    def start(self) -> None:
        out = self._check(self._script("start", str(self.port), timeout=START_TIMEOUT_S),
                          f"starting Kafka on {self.bootstrap}")
        if self.bootstrap not in out:
            raise RuntimeError(f"kafka.sh start printed {out!r}, expected {self.bootstrap}")
        self.running = True

    def stop(self) -> None:
        self._check(self._script("stop", str(self.port), timeout=60), f"stopping Kafka on {self.bootstrap}")
        self.running = False

    def restart(self) -> None:
        """Stop and start the same broker (same port, same data): its data must survive."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        log = self.data_dir / "broker.log"
        try:
            text = log.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no broker log at {log})"
        return "\n".join(text[-lines:])

    # ----------------------------------------------------------------------- clients
    def admin(self):
        from confluent_kafka.admin import AdminClient
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topic(self, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> str:
        """Create a topic and wait until every partition has a leader."""
        from confluent_kafka.admin import NewTopic
        admin = self.admin()
        futures = admin.create_topics([NewTopic(name, partitions, 1, config=dict(config or {}))],
                                      operation_timeout=OP_TIMEOUT_S, request_timeout=OP_TIMEOUT_S)
        futures[name].result(timeout=OP_TIMEOUT_S)
        deadline = time.monotonic() + OP_TIMEOUT_S
        while True:
            md = admin.list_topics(name, timeout=10).topics.get(name)
            if (md is not None and md.error is None and len(md.partitions) == partitions
                    and all(p.leader >= 0 and p.error is None for p in md.partitions.values())):
                return name
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} has no leader for all {partitions} partitions "
                                   f"after {OP_TIMEOUT_S}s\n{self.log_tail()}")
            time.sleep(0.05)

    def add_partitions(self, name: str, total: int) -> None:
        from confluent_kafka.admin import NewPartitions
        admin = self.admin()
        admin.create_partitions([NewPartitions(name, total)],
                                operation_timeout=OP_TIMEOUT_S)[name].result(timeout=OP_TIMEOUT_S)
        deadline = time.monotonic() + OP_TIMEOUT_S
        while len(admin.list_topics(name, timeout=10).topics[name].partitions) < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} does not show {total} partitions")
            time.sleep(0.05)

    def alter_topic(self, name: str, config: dict[str, str]) -> None:
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
        resource = ConfigResource("TOPIC", name, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()])
        admin = self.admin()        # keep the client alive until the futures are resolved
        for f in admin.incremental_alter_configs([resource]).values():
            f.result(timeout=OP_TIMEOUT_S)

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "assay-tests-unused"})
        try:
            return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
        finally:
            c.close()

    def produce(self, topic: str, records: Iterable[tuple[Any, Any, int | None]],
                timeout_s: float = OP_TIMEOUT_S) -> int:
        """Send (key, value, partition) records (None partition: the partitioner picks), flushed."""
        from confluent_kafka import Producer
        failures: list[str] = []
        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 2,
                             "message.max.bytes": 8 * 1024 * 1024})
        n = 0
        for key, value, partition in records:
            kwargs: dict[str, Any] = {"key": key, "value": value,
                                      "on_delivery": lambda err, _m: err and failures.append(str(err))}
            if partition is not None:
                kwargs["partition"] = partition
            producer.produce(topic, **kwargs)
            n += 1
            producer.poll(0)
        left = producer.flush(timeout_s)
        if left or failures:
            raise RuntimeError(f"produce to {topic}: {left} unacknowledged, failures: {failures[:3]}\n"
                               f"{self.log_tail(20)}")
        return n


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    broker = KafkaBroker(_free_port(), tmp_path_factory.mktemp("kafka"))
    broker.fetch()          # instant when .cache/kafka/libs is up to date with the pom
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used the broker shows the tail of the broker's log."""
    outcome = yield
    report = outcome.get_result()
    broker = getattr(item, "funcargs", {}).get("kafka_broker")
    if report.failed and isinstance(broker, KafkaBroker):
        report.sections.append(("kafka broker log (tail)", broker.log_tail(40)))
