"""The embedded engine: Sail's Spark Connect server, started in this process (no JVM)."""
from __future__ import annotations

import logging
import os

from .. import fs
from .base import Engine, EngineCaps

log = logging.getLogger(__name__)


class SailEngine(Engine):
    name = "sail"
    # Sail 0.7.2 accepts txnAppId/txnVersion and ignores them: Assay commits every batch itself.
    caps = EngineCaps(in_process=True)

    def __init__(self, conf: dict[str, str]):
        super().__init__(conf)
        self._server = None

    def _start_session(self):
        # Sail logs every session at INFO on stderr; keep the terminal for Assay's own progress.
        os.environ.setdefault("RUST_LOG", "error")
        # Object stores: Sail reads them through the same object_store crate, configured from the
        # environment (assay.yml storage_options, README: Object storage).
        os.environ.update(fs.engine_environment())
        from pysail.spark import SparkConnectServer
        from pyspark.sql import SparkSession

        self._server = SparkConnectServer(ip="127.0.0.1", port=0)
        self._server.start(background=True)
        host, port = self._server.listening_address
        # create(), not getOrCreate(): another session in this process must never be handed ours.
        return SparkSession.builder.remote(f"sc://{host}:{port}").create()

    def _stop_session(self) -> None:
        if self._server is not None:
            try:
                self._server.stop()
            except Exception as exc:
                log.debug("stopping Sail: %s", exc)
            self._server = None
