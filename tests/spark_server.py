"""pytest plugin: a real local Apache Spark 4.2 Spark Connect server (with Delta) for the whole session.

Load it with ``pytest_plugins = ["tests.spark_server"]`` (or ``-p tests.spark_server``) and ask for
the session fixture ``spark_server``: it is the server's ``sc://127.0.0.1:PORT`` (a ``str``), with
``.server`` (the ``assay.engines.spark_server.SparkServer``) and ``.log_tail()``. The jars come from
Maven Central into the repository's ``.cache/spark`` (what ``scripts/spark.sh fetch`` fills), the
server runs on a free loopback port with its run folder in the session's temporary directory, dies
with the test session if it is killed, and is stopped afterwards. Nothing is mocked or skipped: if
Java, Maven or the jars are missing, the fixture fails with the reason and the server's log tail.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from assay.engines import spark_server as launcher

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 180      # the JVM listens in ~8 s here; a loaded machine gets room


def cache() -> Path:
    """The jar cache the tests share with scripts/spark.sh (ASSAY_SPARK_CACHE overrides)."""
    return Path(os.environ.get("ASSAY_SPARK_CACHE") or ROOT / ".cache" / "spark")


class SparkRemote(str):
    """``sc://127.0.0.1:PORT`` of a running server, carrying the server for logs and lifecycle."""

    server: launcher.SparkServer

    def __new__(cls, server: launcher.SparkServer):
        obj = super().__new__(cls, server.remote)
        obj.server = server
        return obj

    @property
    def port(self) -> int:
        return self.server.port

    def log_tail(self, lines: int = 60) -> str:
        return self.server.log_tail(lines)


def start_server(run_dir: Path, conf: dict[str, str] | None = None) -> SparkRemote:
    """Fetch the jars if needed and start a server on a free port, stopped when this process dies."""
    server = launcher.SparkServer(port=launcher.free_port(), run_dir=run_dir, cache=cache(), conf=conf or {})
    try:
        server.start(timeout_s=START_TIMEOUT_S, watch_pid=os.getpid())
    except launcher.SparkServerError as exc:
        raise RuntimeError(f"starting the Spark Connect server failed: {exc}") from None
    return SparkRemote(server)


@pytest.fixture(scope="session")
def spark_server(tmp_path_factory):
    remote = start_server(tmp_path_factory.mktemp("spark"))
    try:
        yield remote
    finally:
        remote.server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used the server shows the tail of the server's log."""
    outcome = yield
    report = outcome.get_result()
    remote = getattr(item, "funcargs", {}).get("spark_server")
    if report.failed and isinstance(remote, SparkRemote):
        report.sections.append(("spark connect server log (tail)", remote.log_tail(40)))
