"""Apache Spark through Spark Connect: a remote server (a cluster, Databricks) or a local one.

Engine options (in the engine's ``conf``; every other key is a Spark session setting):

- ``remote`` (or ``spark.remote``): ``sc://host:port[/;params]`` of an existing Spark Connect
  server. Nothing is started locally; stopping the engine only closes the session.
- ``server.<spark key>``: a Spark setting for a local server this engine starts (ignored when
  connecting to a remote server or reusing a running one), e.g. ``server.spark.sql.shuffle.partitions``.

Without ``remote``, a local server already started by ``python -m assay.engines.spark_server start``
(``scripts/spark.sh start``) on the default port (15002, or ``ASSAY_SPARK_PORT``) is reused and
left running; otherwise the engine starts its own on a free port (stopped with the engine, or when
this process dies).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from .. import fs
from .base import Engine
from . import spark_server

log = logging.getLogger(__name__)

REMOTE_KEYS = ("remote", "spark.remote")
SERVER_PREFIX = "server."


class SparkEngine(Engine):
    name = "spark"
    # Pinned on every session too, not only on the local server: a remote cluster may default to
    # Delta features delta-rs cannot read or write, or to INT96 Parquet timestamps. Delta reads its
    # ``properties.defaults.*`` from the session, so these take effect per session.
    base_conf = {
        **Engine.base_conf,
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        **spark_server.DELTA_PROTOCOL_DEFAULTS,
    }

    def __init__(self, conf: dict[str, str]):
        conf = dict(conf)
        remote = None
        for key in REMOTE_KEYS:
            value = conf.pop(key, None)
            remote = remote or (value.strip() if isinstance(value, str) and value.strip() else None)
        self.remote = remote
        self.server_conf = {k[len(SERVER_PREFIX):]: v for k, v in conf.items() if k.startswith(SERVER_PREFIX)}
        super().__init__({k: v for k, v in conf.items() if not k.startswith(SERVER_PREFIX)})
        self._server: spark_server.SparkServer | None = None   # set only for a server this engine owns

    def _start_session(self):
        from pyspark.sql import SparkSession

        remote = self.remote or self._local_server()
        # create(), not getOrCreate(): another session in this process must never be handed ours.
        session = SparkSession.builder.remote(remote).create()
        for key, value in fs.hadoop_settings().items():     # object stores through hadoop-aws / hadoop-azure
            session.conf.set(key, value)
        return session

    def _local_server(self) -> str:
        port = spark_server.default_port()
        if spark_server.launched_server(port) is not None and spark_server.port_open(port):
            remote = f"sc://{spark_server.HOST}:{port}"
            log.info("reusing the local Spark Connect server at %s", remote)
            return remote
        run_dir = Path(tempfile.mkdtemp(prefix="assay-spark-"))
        server = spark_server.SparkServer(port=spark_server.free_port(), run_dir=run_dir,
                                          conf=self.server_conf)
        self._server = server
        try:
            return server.start(watch_pid=os.getpid())
        except BaseException:
            self._stop_session(keep_run_dir=True)
            raise

    def _stop_session(self, keep_run_dir: bool = False) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        try:
            server.stop()
        except Exception as exc:  # it may already be gone; nothing to save
            log.debug("stopping the Spark Connect server: %s", exc)
        if not keep_run_dir:
            shutil.rmtree(server.run_dir, ignore_errors=True)
