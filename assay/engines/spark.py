"""Apache Spark through Spark Connect: a remote server (a cluster, Databricks) or a local one.

Engine options (in the engine's ``conf``; every other key is a Spark session setting):

- ``remote`` (or ``spark.remote``): ``sc://host:port[/;params]`` of an existing Spark Connect
  server. Nothing is started locally; stopping the engine only closes the session.
- ``server.<spark key>``: a Spark setting for a local server this engine starts (ignored when
  connecting to a remote server or reusing a running one), e.g. ``server.spark.sql.shuffle.partitions``.
- ``connect_timeout``: seconds to wait for the server to accept a connection (default 30, or
  ``ASSAY_SPARK_CONNECT_TIMEOUT``); then the command stops naming the address.

Without ``remote``, a local server already started by ``python -m assay.engines.spark_server start``
(``scripts/spark.sh start``) on the default port (15002, or ``ASSAY_SPARK_PORT``) is reused and
left running; otherwise the engine starts its own on a free port, saying so on stderr (stopped with
the engine, or when this process dies).

What differs from the embedded engine, and nothing else (docs/engines.md, "Engine notes"):

- session settings that make Spark's results equal Sail's (UTC, zstd, microsecond timestamps,
  last-wins map keys) and keep table folders free of anything but data files;
- Kafka offset ranges are read by Spark's own Kafka batch reader, on the executors;
- a whole table is read from the data files of its current version as listed by delta-rs: the
  Assay process reads the log for its commits anyway, and delta-spark's snapshot of a small table
  costs 1-3 s of Spark jobs per read (measured below).

Batches are committed as on every engine: executors write the files into the table's folder and the
Assay process commits them through delta-rs with the batch's application transaction. delta-spark's
``txnAppId`` writes would work (Spark honours delta-rs' app transactions and the reverse), but they
would make a second commit protocol, and each delta-spark commit first builds the table's snapshot.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time

from .. import fs
from ..errors import AssayError, ConfigError
from .base import Engine
from . import spark_server

log = logging.getLogger(__name__)

REMOTE_KEYS = ("remote", "spark.remote")
SERVER_PREFIX = "server."
CONNECT_TIMEOUT_S = 30.0       # a server that accepts no connection by then is reported, by address

# Above this many data files a whole-table read goes through delta-spark: its snapshot cost is
# then small next to the read, and a plan listing every file would grow large.
LISTED_READ_MAX_FILES = 2000

# Session settings that keep table folders holding data files only. They are Hadoop settings:
# Spark copies session settings into the Hadoop configuration of each job. A remote service may
# refuse some (they are irrelevant there: object stores keep no .crc files), so they are optional.
TIDY_WRITES = {
    "mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",   # no _SUCCESS marker
    # the local file system without its checksum layer: no .part-*.crc beside each file
    "fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
    "fs.file.impl.disable.cache": "true",   # a cached checksumming instance would be reused
}

# Characters Hadoop's Path.toUri() leaves as they are in a path (a cautious subset).
_URI_SAFE = re.compile(r"[A-Za-z0-9/._=+,@~:-]+")

# librdkafka settings (Assay's Kafka options) whose Java client name differs.
_JAVA_KAFKA_NAMES = {"sasl.mechanisms": "sasl.mechanism", "ssl.ca.location": "ssl.truststore.location"}
# librdkafka-only settings the Java client does not know (it would only warn about them).
_LIBRDKAFKA_ONLY = {"sasl.username", "sasl.password", "fetch.wait.max.ms", "enable.partition.eof",
                    "enable.auto.offset.store", "group.id", "enable.auto.commit", "auto.offset.reset",
                    "api.version.request", "broker.version.fallback", "statistics.interval.ms", "debug",
                    "socket.keepalive.enable", "topic.metadata.refresh.interval.ms", "log_level"}
_LOGIN_MODULES = {"PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
                  "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
                  "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule"}


class SparkEngine(Engine):
    name = "spark"
    reads_kafka = True      # Spark's Kafka batch reader, on the executors
    # Its analysis and parse errors: Spark's documented error conditions ([CONDITION] text), and
    # Spark 3's older wording of a missing column. Each names a wording of assay.engine_errors.
    error_patterns = (
        (re.compile(r"\[UNRESOLVED_COLUMN\.\w+\] A column,? (?:variable,? )?or function parameter with name "
                    r"(?P<name>`(?:[^`]|``)*`(?:\.`(?:[^`]|``)*`)*) cannot be resolved\.?"
                    r"(?: Did you mean one of the following\? \[(?P<suggestions>[^\]]*)\])?"), "missing_column"),
        (re.compile(r"cannot resolve '(?P<name>[^']+)' given input columns: \[(?P<suggestions>[^\]]*)\]"),
         "missing_column"),
        (re.compile(r"\[AMBIGUOUS_REFERENCE\] Reference (?P<name>`(?:[^`]|``)*`(?:\.`(?:[^`]|``)*`)*) is ambiguous"
                    r"(?:, could be: \[(?P<candidates>[^\]]*)\])?"), "ambiguous_column"),
        (re.compile(r"\[DATATYPE_MISMATCH\.\w+\] Cannot resolve (?P<expr>\".*?\") due to data type mismatch: "
                    r"(?P<why>.*?)(?:\.? SQLSTATE|;|$)", re.M), "type_mismatch"),
        (re.compile(r"\[CAST_INVALID_INPUT\] The value (?P<value>'.*?') of the type \"\w+\" cannot be cast to "
                    r"\"(?P<to>[^\"]+)\""), "cast"),
        (re.compile(r"\[PARSE_SYNTAX_ERROR\] Syntax error at or near (?P<near>end of input|'[^']*'|\S+)"),
         "syntax_near"),
        (re.compile(r"\[UNRESOLVED_ROUTINE\] Cannot resolve (?:routine|function) `?(?P<fn>[^`\s]+)`?"),
         "unknown_function"),
        (re.compile(r"\[TABLE_OR_VIEW_NOT_FOUND\] The table or view (?P<name>`[^ ]+`) cannot be found"),
         "unknown_table"),
    )
    # Pinned on every session too, not only on the local server: a remote cluster may default to
    # Delta features delta-rs cannot read or write, or to INT96 Parquet timestamps. Delta reads its
    # ``properties.defaults.*`` from the session, so these take effect per session.
    base_conf = {
        **Engine.base_conf,
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.parquet.compression.codec": "zstd",
        # A JSON object with a repeated key: the last value wins, as on the embedded engine (Spark's
        # from_json keeps both entries; rebuilding the map raises DUPLICATED_MAP_KEY by default).
        "spark.sql.mapKeyDedupPolicy": "LAST_WIN",
        **spark_server.DELTA_PROTOCOL_DEFAULTS,
    }

    def __init__(self, conf: dict[str, str]):
        conf = dict(conf)
        remote = None
        for key in REMOTE_KEYS:
            value = conf.pop(key, None)
            remote = remote or (value.strip() if isinstance(value, str) and value.strip() else None)
        self.remote = remote
        timeout = conf.pop("connect_timeout", None)
        self.connect_timeout = _seconds(timeout if timeout is not None else
                                        os.environ.get("ASSAY_SPARK_CONNECT_TIMEOUT") or CONNECT_TIMEOUT_S)
        self.server_conf = {k[len(SERVER_PREFIX):]: v for k, v in conf.items() if k.startswith(SERVER_PREFIX)}
        super().__init__({k: v for k, v in conf.items() if not k.startswith(SERVER_PREFIX)})
        self._server: spark_server.SparkServer | None = None   # set only for a server this engine owns

    def _start_session(self):
        from pyspark.sql.connect.session import SparkSession

        remote = self.remote or self._local_server()
        channel = _channel(remote)
        _wait_until_answering(channel, self.connect_timeout)
        # create(), not getOrCreate(): another session in this process must never be handed ours.
        session = SparkSession.builder.channelBuilder(channel).create()
        _bound_retries(session)                             # before any call: the default retries last 10 min
        for key, value in hadoop_settings().items():        # object stores through hadoop-aws / hadoop-azure
            session.conf.set(key, value)
        for key, value in TIDY_WRITES.items():
            if key in self.conf:
                continue
            try:
                session.conf.set(key, value)
            except Exception as exc:   # a managed service may refuse Hadoop settings: only tidiness is lost
                log.info("the Spark session refused %s: %s", key, str(exc).splitlines()[0])
        return session

    def _local_server(self) -> str:
        port = spark_server.default_port()
        if spark_server.launched_server(port) is not None and spark_server.port_open(port):
            remote = f"sc://{spark_server.HOST}:{port}"
            _say(f"using the local Spark Connect server at {remote}")
            return remote
        server = spark_server.SparkServer(port=spark_server.free_port(), run_dir=spark_server.own_run_dir(),
                                          conf=self.server_conf)
        self._server = server
        # A JVM takes 5-15 s to listen: say what the wait is, and how to avoid it.
        _say(f"starting a local Spark Connect server for this run (5-15 s; one started with "
             f"`python -m assay.engines.spark_server start` on port {port} would be used instead)")
        started = time.monotonic()
        try:
            remote = server.start(watch_pid=os.getpid())
        except BaseException:
            self._stop_session(keep_run_dir=True)      # its log stays until a later start removes it
            raise
        _say(f"local Spark Connect server ready at {remote} in {time.monotonic() - started:.1f} s")
        return remote

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

    # --- the data plane --------------------------------------------------------------------

    def read_table(self, path):
        """The current version of a Delta table: its data files as delta-rs lists them, read by
        Spark. Measured on the reference pipelines' small tables: delta-spark builds a snapshot
        with 2-4 Spark jobs per read (0.5-3.7 s per silver batch on 2 cores); listing the files
        costs milliseconds. Tables with features that change how files are read (deletion vectors,
        column mapping), and large ones, are read by delta-spark."""
        from ..delta.table import add_actions, arrow_schema, data_files, open_table

        table = open_table(path)
        if table is None or not _plain_files(table):
            return super().read_table(path)
        actions = add_actions(table)
        if len(actions) > LISTED_READ_MAX_FILES:
            return super().read_table(path)
        return self.read_delta_files(data_files(path, table, actions), arrow_schema(table),
                                     table.metadata().partition_columns)

    def read_lines(self, files):
        """One text scan of every file, each line given its file's columns through the path Spark
        reports (`_metadata.file_path`). Measured on 25 landing files of 10 MB: 1.7 s, against
        6.9 s for a scan per file unioned (each scan is planned and started on its own). A path
        whose form in Spark cannot be told for certain (characters a URI escapes) is read the
        default way; a line whose path matches none of the planned ones fails the batch loudly."""
        from pyspark.sql import functions as F

        keys = [_spark_file_path(str(path)) for path, _ in files]
        if len(files) < 2 or None in keys:
            return super().read_lines(files)
        found = F.col("_metadata.file_path")
        unplanned = F.raise_error(F.concat(F.lit("Assay: Spark read a file that was not planned: "), found))
        index = F.coalesce(F.create_map(*[p for i, key in enumerate(keys) for p in (F.lit(key), F.lit(i))])[found],
                           unplanned.cast("int"))
        columns = [F.array(*[own[name] for _, own in files])[index].alias(name) for name in files[0][1]]
        return self.spark.read.text([str(path) for path, _ in files]).select(*columns, "value")

    def read_kafka(self, bootstrap_servers, ranges, options, fail_on_data_loss, arrow_schema):
        """The planned offset ranges, read by Spark's Kafka batch reader on the executors.

        ranges: (topic, partition, start, end) of each partition with records, each assigned from
        its start to its end (never "latest": an end past the log's end makes the reader wait ~2 min
        and fail with a misleading data-loss message). Columns and types are `arrow_schema`'s, those
        of the Python consumer's Parquet (key, value, topic, partition, offset, timestamp, timestampType)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        columns = arrow_schema.names
        if not ranges:
            return self.spark.createDataFrame([], from_arrow_schema(arrow_schema))
        assign: dict[str, list[int]] = {}
        starting: dict[str, dict[str, int]] = {}
        ending: dict[str, dict[str, int]] = {}
        for r in ranges:
            assign.setdefault(r.topic, []).append(r.partition)
            starting.setdefault(r.topic, {})[str(r.partition)] = r.start
            ending.setdefault(r.topic, {})[str(r.partition)] = r.end
        reader = (self.spark.read.format("kafka")
                  .option("kafka.bootstrap.servers", bootstrap_servers)
                  .option("assign", json.dumps(assign))
                  .option("startingOffsets", json.dumps(starting))
                  .option("endingOffsets", json.dumps(ending))
                  .option("failOnDataLoss", "true" if fail_on_data_loss else "false"))
        for key, value in java_kafka_options(options).items():
            reader = reader.option(f"kafka.{key}", value)
        return reader.load().select(*columns)


def _spark_file_path(path: str) -> str | None:
    """A file's path as Spark reports it in `_metadata.file_path` (Hadoop's URI form), when that
    form is certain: `file:` before a local path; a URI as given. None for a name with characters
    a URI would escape (a space, `%`, non-ASCII...)."""
    if not _URI_SAFE.fullmatch(path):
        return None
    if fs.is_uri(path):
        return path
    return "file:" + path if path.startswith("/") and ":" not in path else None


def _say(line: str) -> None:
    print(f"spark: {line}", file=sys.stderr, flush=True)


def _seconds(value) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if not seconds > 0:
        raise ConfigError(f"the Spark engine's connect_timeout (or ASSAY_SPARK_CONNECT_TIMEOUT) is a number of "
                          f"seconds above 0, got {value!r}")
    return seconds


def _wait_until_answering(channel, timeout_s: float) -> None:
    """Wait at most `timeout_s` for the server to accept a gRPC connection. Unbounded, a wrong
    address was silent for 10 minutes (the client's retries), then a raw gRPC error."""
    import grpc
    probe = channel.toChannel()
    try:
        grpc.channel_ready_future(probe).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise AssayError(
            f"no Spark Connect server answered at {channel.endpoint} within {timeout_s:g} s (a gRPC "
            f"{'TLS ' if channel.secure else ''}connection was tried until then). Check that the server runs and "
            f"that the host and port are right (--remote, or the spark engine's remote in assay.yml); "
            f"ASSAY_SPARK_CONNECT_TIMEOUT or the engine option connect_timeout waits longer") from None
    finally:
        probe.close()


def _channel(remote: str):
    """The gRPC channel to `remote`, reconnecting at most 5 s apart (gRPC's own backoff grows to
    120 s: after a server restart, calls kept failing without trying for half a minute)."""
    from pyspark.sql.connect.client import DefaultChannelBuilder
    return DefaultChannelBuilder(remote, [("grpc.initial_reconnect_backoff_ms", 500),
                                          ("grpc.min_reconnect_backoff_ms", 500),
                                          ("grpc.max_reconnect_backoff_ms", 5000)])


def _bound_retries(session) -> None:
    """Retry an unreachable server for about two minutes, never more than 5 s apart.

    The client's default backoff grows to 60 s between attempts (10+ minutes in all): a server that
    restarted in 10 s was noticed 2 minutes later (measured), only to learn that the session died
    with it (NO_ACTIVE_SESSION), which no retry cures. A flow then fails and the next run replays
    its batch."""
    try:
        from pyspark.sql.connect.client.retries import DefaultPolicy
        session.client.set_retry_policies([DefaultPolicy(max_retries=28, max_backoff=5000)])
    except Exception as exc:      # another client version: keep its defaults
        log.debug("could not bound the Spark Connect client's retries: %s", exc)


def _plain_files(table) -> bool:
    """Whether a table's rows are exactly its data files' rows under its schema's names."""
    protocol = table.protocol()
    features = set(protocol.reader_features or [])
    if features & {"deletionVectors", "columnMapping", "v2Checkpoint", "typeWidening", "typeWidening-preview"}:
        return False
    mode = (table.metadata().configuration or {}).get("delta.columnMapping.mode", "none")
    return mode in ("none", None) and protocol.min_reader_version <= 3


def java_kafka_options(options: dict[str, str]) -> dict[str, str]:
    """Assay's Kafka options (librdkafka names, as the Python consumer takes them) in the Java
    client's names for Spark's reader: renamed keys, SASL credentials as a JAAS line, and the
    read_committed isolation librdkafka defaults to (the Java client reads uncommitted records)."""
    out: dict[str, str] = {}
    for key, value in options.items():
        if key in _LIBRDKAFKA_ONLY:
            continue
        out[_JAVA_KAFKA_NAMES.get(key, key)] = value
    if options.get("ssl.ca.location") and "ssl.truststore.type" not in options:
        out["ssl.truststore.type"] = "PEM"
    user, password = options.get("sasl.username"), options.get("sasl.password")
    if user is not None and "sasl.jaas.config" not in options:
        mechanism = out.get("sasl.mechanism", "PLAIN").upper()
        module = _LOGIN_MODULES.get(mechanism, _LOGIN_MODULES["PLAIN"])
        out["sasl.jaas.config"] = (f'{module} required username="{_jaas_escape(user)}" '
                                   f'password="{_jaas_escape(password or "")}";')
    out.setdefault("isolation.level", "read_committed")
    return out


def _jaas_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def hadoop_settings() -> dict[str, str]:
    """Hadoop settings for Spark's connectors, from Assay's storage options: S3A for s3:// and s3a://
    (hadoop-aws), ABFS for abfss:// (hadoop-azure). Spark takes them per session."""
    option = fs.option_or_env
    out = {"fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",     # s3:// URIs read by S3A too
           # upload blocks from memory, not local disk: the disk buffer needs Hadoop's checksummed
           # local file system, which TIDY_WRITES turns off to keep table folders tidy
           "fs.s3a.fast.upload.buffer": "bytebuffer", "fs.azure.data.blocks.buffer": "bytebuffer"}
    endpoint = option("aws_endpoint", "aws_endpoint_url")
    if endpoint:
        out["fs.s3a.endpoint"] = endpoint
        if (option("aws_virtual_hosted_style_request") or "false").lower() != "true":
            out["fs.s3a.path.style.access"] = "true"
        if endpoint.startswith("http://"):
            out["fs.s3a.connection.ssl.enabled"] = "false"
    for name, key in (("aws_access_key_id", "fs.s3a.access.key"), ("aws_secret_access_key", "fs.s3a.secret.key"),
                      ("aws_session_token", "fs.s3a.session.token"), ("aws_region", "fs.s3a.endpoint.region")):
        value = option(name) if name != "aws_region" else option("aws_region", "aws_default_region")
        if value:
            out[key] = value
    if option("aws_session_token"):
        out["fs.s3a.aws.credentials.provider"] = "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
    account = option("azure_storage_account_name")
    if account:
        host = f"{account}.dfs.core.windows.net"
        key = option("azure_storage_account_key", "azure_storage_access_key")
        client, secret, tenant = (option("azure_client_id", "azure_storage_client_id"),
                                  option("azure_client_secret", "azure_storage_client_secret"),
                                  option("azure_tenant_id", "azure_storage_tenant_id"))
        if key:
            out[f"fs.azure.account.key.{host}"] = key
        elif client and secret and tenant:
            out[f"fs.azure.account.auth.type.{host}"] = "OAuth"
            out[f"fs.azure.account.oauth.provider.type.{host}"] = \
                "org.apache.hadoop.fs.azurebfs.oauth2.ClientCredsTokenProvider"
            out[f"fs.azure.account.oauth2.client.id.{host}"] = client
            out[f"fs.azure.account.oauth2.client.secret.{host}"] = secret
            out[f"fs.azure.account.oauth2.client.endpoint.{host}"] = \
                f"https://login.microsoftonline.com/{tenant}/oauth2/token"
    return out
