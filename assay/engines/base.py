"""What every engine provides; each engine module overrides only what differs."""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path

log = logging.getLogger(__name__)


class Engine(ABC):
    name = "engine"
    # Session settings both engines need: UTC everywhere so timestamps mean one instant.
    base_conf = {"spark.sql.session.timeZone": "UTC"}

    def __init__(self, conf: dict[str, str]):
        self.conf = {**self.base_conf, **conf}
        self._spark = None

    @abstractmethod
    def _start_session(self):
        """Start (or connect to) the engine and return a SparkSession."""

    def _stop_session(self) -> None:
        pass

    @property
    def spark(self):
        if self._spark is None:
            self._spark = self._start_session()
            for key, value in self.conf.items():
                self._spark.conf.set(key, value)
        # DDL strings and pandas UDFs resolve through the thread's active session; another session
        # stopped in this process (or a new thread) leaves none, so make ours active when it is missing.
        activate = getattr(type(self._spark), "_set_default_and_active_session", None)
        if activate is not None:
            activate(self._spark)
        return self._spark

    def stop(self) -> None:
        if self._spark is not None:
            try:
                self._spark.stop()
            except Exception as exc:  # the server may already be gone; nothing to save
                log.debug("stopping the session: %s", exc)
            self._spark = None
        self._stop_session()

    # --- data movement the runtime needs ---------------------------------------------------

    def read_delta(self, path: str | Path, version: int | None = None):
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(str(path))

    def read_parquet(self, paths: list[str]):
        return self.spark.read.parquet(*[str(p) for p in paths])

    def stage(self, df, path: str | Path) -> None:
        """Materialise a DataFrame as Parquet files in `path` (one engine execution)."""
        df.write.mode("overwrite").parquet(str(path))

    def empty(self, schema):
        return self.spark.createDataFrame([], schema)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
