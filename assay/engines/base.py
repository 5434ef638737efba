"""What every engine provides; each engine module overrides only what differs."""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path

log = logging.getLogger(__name__)


class Engine(ABC):
    name = "engine"
    # Whether read_kafka reads planned Kafka offset ranges in the engine; else the Kafka source
    # consumes them in Python into a Parquet file that the engine reads.
    reads_kafka = False
    # The engine's error texts Assay words itself: (compiled pattern, a wording of assay.engine_errors).
    error_patterns: tuple = ()
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

    def interrupt(self) -> None:
        """The run is being abandoned (Ctrl-C): every later call to the server is tried once. The
        client retries an unreachable server for minutes, and the embedded server is gone or busy
        after an interrupt: releasing the session hung for 2+ minutes."""
        if self._spark is not None:
            try:
                self._spark.client.set_retry_policies([])
            except Exception as exc:   # another client version: its retries stay
                log.debug("could not drop the Spark Connect client's retries: %s", exc)

    def stop(self) -> None:
        if self._spark is not None:
            self.interrupt()          # releasing the session is a courtesy: one try, never minutes
            try:
                self._spark.stop()
            except Exception as exc:  # the server may already be gone; nothing to save
                log.debug("stopping the session: %s", exc)
            self._spark = None
        self._stop_session()

    # --- the data plane: what the runtime asks of an engine ----------------------------------
    # Rows stay in the engine: these return DataFrames or write files; nothing is collected.

    def read_delta_files(self, files, arrow_schema, partition_columns=()):
        """The rows of some data files of a Delta table (an increment), by the table's schema.

        Files are read by name, never by time travel; partition values come from the log."""
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        schema = from_arrow_schema(arrow_schema)
        if not files:
            return self.spark.createDataFrame([], schema)
        data_schema = type(schema)([f for f in schema.fields if f.name not in partition_columns])
        groups: dict[tuple, list[str]] = {}
        for f in files:
            groups.setdefault(tuple(sorted((f.partition_values or {}).items())), []).append(f.path)
        frames = []
        for partition, paths in groups.items():
            df = self.spark.read.schema(data_schema).parquet(*paths)
            values = dict(partition)
            frames.append(df.select(*[F.lit(values.get(f.name)).cast(f.dataType).alias(f.name)
                                      if f.name in partition_columns else F.col(f"`{f.name}`")
                                      for f in schema.fields]))
        result = frames[0]
        for df in frames[1:]:
            result = result.unionByName(df)
        return result

    def is_invalid_utf8(self, exc: Exception) -> bool:
        """Whether a read failed on bytes that are not UTF-8 (the runtime then reads repaired copies).
        Spark's text reader replaces them with U+FFFD, so by default no failure is one."""
        return False

    def read_table(self, path: str | Path):
        """The current version of a whole Delta table (a batch read; never time travel)."""
        return self.spark.read.format("delta").load(str(path))

    def read_lines(self, files: list[tuple[str, dict]]):
        """The lines of text files as one DataFrame: `value`, then each file's own columns.

        files: (path to read, {column name: literal Column}), the same names for every file.
        Default: one read per file with its columns as literals (the embedded engine has no
        `input_file_name()` or `_metadata`)."""
        frames = [self.spark.read.text(str(path)).select(*[c.alias(n) for n, c in columns.items()], "value")
                  for path, columns in files]
        result = frames[0]
        for df in frames[1:]:
            result = result.unionByName(df)
        return result

    def read_parquet(self, paths, schema=None):
        reader = self.spark.read if schema is None else self.spark.read.schema(schema)
        return reader.parquet(*[str(p) for p in paths])

    def read_kafka(self, bootstrap_servers: str, ranges, options: dict[str, str], fail_on_data_loss: bool,
                   arrow_schema):
        """Planned Kafka offset ranges read by the engine itself (engines whose `reads_kafka` is true)."""
        raise NotImplementedError(f"the {self.name} engine has no Kafka reader")

    def write_files(self, df, path: str | Path, partition_by=()) -> None:
        """Write a DataFrame as Parquet files under `path` (one engine execution); directories
        `col=value` for each partition column, which the files then do not contain."""
        writer = df.write.mode("append").option("compression", "zstd")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.parquet(str(path))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
