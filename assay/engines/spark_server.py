"""A local Apache Spark Spark Connect server with Delta Lake, fetched from Maven Central.

Assay's Spark engine talks to Spark through Spark Connect only. When no remote server is given it
starts one here: the jars listed in ``spark_pom.xml`` (Spark 4.2 Connect + delta-spark + the Kafka
connector + hadoop-aws/azure) are resolved once with ``mvn dependency:copy-dependencies`` into a
cache (spark_jars.py), and ``java -cp 'jars/*' org.apache.spark.sql.connect.service.SparkConnectServer`` runs on
127.0.0.1 with the settings Assay relies on (UTC, Delta, plain Delta protocol features that
delta-rs reads and writes, microsecond Parquet timestamps, the project's Python for UDFs).

Command line (``scripts/spark.sh`` is a thin wrapper that keeps the cache in the repository)::

    python -m assay.engines.spark_server fetch            resolve the jars (idempotent, cached)
    python -m assay.engines.spark_server start [PORT]     start on 127.0.0.1:PORT (default 15002)
    python -m assay.engines.spark_server stop [PORT]      SIGTERM, then SIGKILL after a timeout
    python -m assay.engines.spark_server status [PORT]    exit 0 and print the address when running
    python -m assay.engines.spark_server log [PORT]       the tail of the server's log

``start`` also takes ``--conf key=value`` (repeatable) for extra Spark settings. Environment:

    ASSAY_SPARK_PORT              the default PORT, and the port the Spark engine looks at for a
                                  running server to reuse (default 15002, Spark Connect's own)
    ASSAY_SPARK_CACHE             where jars/ and run folders live (default: a source checkout's
                                  .cache/spark, which ``make spark-fetch`` fills; else
                                  ~/.cache/assay/spark)
    ASSAY_SPARK_RUN_DIR           run folder (log, pid, settings); default <cache>/run-PORT
    ASSAY_SPARK_MEMORY            JVM heap, e.g. 4g (default 2g)
    ASSAY_SPARK_CORES             local[N] worker threads (default: every core, ``*``)
    ASSAY_SPARK_SHUFFLE_PARTITIONS  spark.sql.shuffle.partitions (default 4)
    ASSAY_SPARK_PYTHON            Python for UDF workers (default: the interpreter running this)
    ASSAY_SPARK_START_TIMEOUT     seconds to wait for the port (default 120)
    ASSAY_SPARK_STOP_TIMEOUT      seconds between SIGTERM and SIGKILL (default 30)
    ASSAY_SPARK_WATCH_PID         stop the server when that process ends (test sessions)
    ASSAY_SPARK_CDS               0 to start without the class-data archive (below)
    ASSAY_SPARK_JAVA_OPTIONS      extra JVM flags, space-separated (e.g. -XX:+UseG1GC)
    JAVA_HOME                     the Java 17+ to use (default: ``java`` on PATH)
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import processes
from .spark_jars import (FileLock, SparkServerError, cache_dir, env_int, fetch, java_executable, java_major, pom_sum,
                         tail)

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
DEFAULT_PORT = 15002                 # Spark Connect's own default port
HOST = "127.0.0.1"
MARKER = "-Dassay.spark.run="        # identifies our JVM in /proc/<pid>/cmdline (recycled-pid guard)

# Java 17+ module flags Spark's own launcher adds (org.apache.spark.launcher.JavaModuleOptions).
JAVA_MODULE_OPTIONS = [
    "-XX:+IgnoreUnrecognizedVMOptions",
    "--add-modules=jdk.incubator.vector",
    *(f"--add-opens={m}=ALL-UNNAMED" for m in (
        "java.base/java.lang", "java.base/java.lang.invoke", "java.base/java.lang.reflect",
        "java.base/java.io", "java.base/java.net", "java.base/java.nio", "java.base/java.util",
        "java.base/java.util.concurrent", "java.base/java.util.concurrent.atomic",
        "java.base/jdk.internal.ref", "java.base/sun.nio.ch", "java.base/sun.nio.cs",
        "java.base/sun.security.action", "java.base/sun.util.calendar",
        "java.security.jgss/sun.security.krb5")),
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.type=pooled",
]

# Delta table features that delta-rs (the runtime's maintenance and commit path) cannot read or
# write correctly: pinned off, since a cluster or a newer Delta may switch some on by default.
DELTA_PROTOCOL_DEFAULTS = {
    "spark.databricks.delta.properties.defaults.columnMapping.mode": "none",
    "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
    "spark.databricks.delta.properties.defaults.enableRowTracking": "false",
    "spark.databricks.delta.properties.defaults.enableInCommitTimestamps": "false",
    "spark.databricks.delta.properties.defaults.enableTypeWidening": "false",
    "spark.databricks.delta.properties.defaults.checkpointPolicy": "classic",
}


def default_port() -> int:
    return env_int("ASSAY_SPARK_PORT", DEFAULT_PORT)


# -------------------------------------------------------------------------------------- helpers
def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def launched_server(port: int) -> int | None:
    """The pid of a server this module started on ``port`` (any cache or run folder), if it runs."""
    needle = f"-Dspark.connect.grpc.binding.port={port} "
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        cmd = _cmdline(int(entry.name)) + " "
        if SERVER_CLASS in cmd and MARKER in cmd and needle in cmd and processes.alive(int(entry.name)):
            return int(entry.name)
    return None


# A server the Spark engine starts for one process runs in <tmp>/assay-spark-<owner pid>-<random>.
# A killed run cannot remove its folder (45 were left after 46 kills): the next start does, once
# the owner is gone and the server in it has stopped.
RUN_DIR_PREFIX = "assay-spark-"
LEGACY_RUN_DIR_AGE_S = 3600      # folders named without an owner (older Assay): removed after an hour


def own_run_dir() -> Path:
    """A new run folder owned by this process, after removing those of processes that are gone."""
    remove_stale_run_dirs()
    return Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-"))


def remove_stale_run_dirs(parent: Path | None = None) -> list[Path]:
    """Remove the run folders whose owner process has ended and whose server no longer runs."""
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}*"):
        owner, dash, _ = folder.name[len(RUN_DIR_PREFIX):].partition("-")
        try:
            if dash and owner.isdigit():
                if processes.alive(int(owner)):
                    continue
            elif time.time() - folder.stat().st_mtime < LEGACY_RUN_DIR_AGE_S:
                continue
            if not folder.is_dir() or SparkServer(port=0, run_dir=folder).pid() is not None:
                continue                  # its server is still stopping (the owner's watcher ends it)
        except OSError:
            continue                      # removed meanwhile by another start
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def server_settings(port: int, run_dir: Path, python: str, conf: dict[str, str] | None = None) -> dict[str, str]:
    """Every Spark setting the server starts with (``conf`` wins)."""
    settings = {
        "spark.master": f"local[{os.environ.get('ASSAY_SPARK_CORES', '*') or '*'}]",
        "spark.app.name": "assay-spark-connect",
        # loopback only: the gRPC endpoint, the driver and its block manager; no web UI
        "spark.connect.grpc.binding.address": HOST,
        "spark.connect.grpc.binding.port": str(port),
        "spark.connect.grpc.port.maxRetries": "0",
        "spark.driver.host": HOST,
        "spark.driver.bindAddress": HOST,
        "spark.ui.enabled": "false",
        # Delta Lake
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.databricks.delta.snapshotPartitions": "2",        # small tables: 13-17 s -> 2-3 s
        "spark.databricks.delta.write.txnVersion.autoReset.enabled": "true",
        **DELTA_PROTOCOL_DEFAULTS,
        # one instant everywhere, and timestamps delta-rs reads (INT96 breaks far dates)
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.shuffle.partitions": str(env_int("ASSAY_SPARK_SHUFFLE_PARTITIONS", 4)),
        # pandas UDFs run in this Python (it has pandas and pyarrow, and the client's version)
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": python,
        # what the server writes on its own stays in the run folder (scratch: SPARK_LOCAL_DIRS)
        "spark.sql.warehouse.dir": str(run_dir / "warehouse"),
    }
    settings.update(conf or {})
    return settings


LOG4J2 = """\
# written by assay.engines.spark_server: warnings and errors, plus the server's own start line
status = warn
appender.out.type = Console
appender.out.name = STDERR
appender.out.target = SYSTEM_ERR
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = %d{yyyy-MM-dd'T'HH:mm:ss.SSS} %p %c{1}: %m%n%ex
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = STDERR
logger.connect.name = org.apache.spark.sql.connect.service.SparkConnectServer
logger.connect.level = INFO
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = ERROR
logger.parquet.name = org.apache.parquet
logger.parquet.level = ERROR
logger.kafka.name = org.apache.kafka
logger.kafka.level = ERROR
"""


# ------------------------------------------------------------------------------ class-data sharing
# The JVM loads and verifies ~15 000 classes at every start. The first server stopped cleanly
# leaves a class-data archive of them (Java's dynamic CDS, -XX:ArchiveClassesAtExit) in the cache;
# later starts map it (-XX:SharedArchiveFile). Measured here: 9.2-9.3 s -> 5.2-7.0 s to a listening
# port. An archive that does not match the jars or the Java is ignored by the JVM (it starts
# without it), and each one is named by the pom and the Java version anyway.
def _cds_key(java: str) -> str:
    version = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    return hashlib.sha256((pom_sum() + version).encode()).hexdigest()[:16]


def cds_flags(cache: Path, java: str) -> list[str]:
    """The JVM flags that use the archive, or that write it at exit when there is none yet."""
    if os.environ.get("ASSAY_SPARK_CDS", "1").strip() == "0":
        return []
    key = _cds_key(java)
    final = cache / f"spark-cds-{key}.jsa"
    writing = _archives_being_written()
    for partial in cache.glob(f"spark-cds-{key}.jsa.*"):    # written at the exit of an earlier server
        if str(partial) in writing:
            continue
        if final.exists() or partial.stat().st_size == 0:
            partial.unlink(missing_ok=True)
        else:
            os.replace(partial, final)
    quiet = "-Xlog:cds*=error"          # the dump lists every class it skips, as warnings
    if final.exists():
        return [f"-XX:SharedArchiveFile={final}", "-Xshare:auto", quiet]
    return [quiet, f"-XX:ArchiveClassesAtExit={cache / f'spark-cds-{key}.jsa.{os.getpid()}-{time.time_ns()}'}"]


def _archives_being_written() -> set[str]:
    """Archive paths that a live JVM will write when it exits (from /proc/<pid>/cmdline)."""
    flag = "-XX:ArchiveClassesAtExit="
    paths = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            for arg in _cmdline(int(entry.name)).split(" "):
                if arg.startswith(flag):
                    paths.add(arg[len(flag):])
    return paths


# ---------------------------------------------------------------------------------------- server
@dataclass
class SparkServer:
    """One local Spark Connect server: a port on 127.0.0.1 and a run folder (log, pid, settings)."""

    port: int = field(default_factory=default_port)
    run_dir: Path | None = None
    cache: Path | None = None
    conf: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.cache = Path(self.cache) if self.cache else cache_dir()
        if self.run_dir is None:
            env_run = os.environ.get("ASSAY_SPARK_RUN_DIR")
            self.run_dir = Path(env_run) if env_run else self.cache / f"run-{self.port}"
        self.run_dir = Path(self.run_dir).resolve()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def remote(self) -> str:
        return f"sc://{self.address}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "spark.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "server.log"

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_file, lines)

    def pid(self) -> int | None:
        """The pid of our server for this run folder, if it is alive (guards against a recycled pid)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not processes.alive(pid):
            return None
        cmd = _cmdline(pid)
        if f"{MARKER}{self.run_dir} " not in cmd + " " or SERVER_CLASS not in cmd:
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None and port_open(self.port)

    # ------------------------------------------------------------------------------ start
    def command(self, jars: Path, python: str) -> list[str]:
        heap = os.environ.get("ASSAY_SPARK_MEMORY", "2g").strip() or "2g"
        props = [f"-D{k}={v}" for k, v in server_settings(self.port, self.run_dir, python, self.conf).items()]
        java = java_executable()
        extra = os.environ.get("ASSAY_SPARK_JAVA_OPTIONS", "").split()
        return [java, f"-Xmx{heap}", *JAVA_MODULE_OPTIONS, *cds_flags(self.cache, java), *extra,
                "-Djava.awt.headless=true", "-Duser.timezone=UTC",
                f"-Dlog4j2.configurationFile={self.run_dir / 'log4j2.properties'}",
                f"{MARKER}{self.run_dir}", *props,
                "-cp", f"{jars}/*", SERVER_CLASS]

    def start(self, timeout_s: float | None = None, watch_pid: int | None = None) -> str:
        """Start the server (or find it already running) and return its ``sc://`` address."""
        java = java_executable()
        major = java_major(java)
        if major < 17:
            raise SparkServerError(f"Spark 4 needs Java 17 or newer; {java} -version says {major}")
        jars = fetch(self.cache)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        timeout = timeout_s if timeout_s is not None else env_int("ASSAY_SPARK_START_TIMEOUT", 120)
        # one start at a time per run folder: a second caller waits, then finds the server running
        with FileLock(self.run_dir / ".start.lock", timeout + 30):
            return self._start_locked(jars, timeout, watch_pid)

    def _start_locked(self, jars: Path, timeout: float, watch_pid: int | None) -> str:
        if self.pid() is not None:
            return self.remote
        if port_open(self.port):
            raise SparkServerError(f"{self.address} is already in use by another process")
        (self.run_dir / "log4j2.properties").write_text(LOG4J2)
        (self.run_dir / "tmp").mkdir(exist_ok=True)
        python = os.environ.get("ASSAY_SPARK_PYTHON") or sys.executable
        env = dict(os.environ, PYSPARK_PYTHON=python, PYSPARK_DRIVER_PYTHON=python,
                   SPARK_LOCAL_IP=HOST, SPARK_LOCAL_DIRS=str(self.run_dir / "tmp"),
                   # The thin pyspark-client has no Spark distribution. Its Python workers that run
                   # foreachBatch / streaming listeners import pyspark.sql.connect, which (with no
                   # __main__ file) takes itself for a doctest run and exits unless SPARK_HOME is set.
                   SPARK_HOME=str(self.run_dir))
        env.pop("SPARK_REMOTE", None)         # a client setting; the server must run locally
        cmd = self.command(jars, python)
        (self.run_dir / "command.txt").write_text("\n".join(cmd) + "\n")
        with open(self.log_file, "a") as log:
            log.write(f"==== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} start {self.address}\n")
            log.flush()
            proc = subprocess.Popen(cmd, cwd=self.run_dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._proc = proc
        self.pid_file.write_text(f"{proc.pid}\n")
        watch = watch_pid if watch_pid is not None else env_int("ASSAY_SPARK_WATCH_PID", 0)
        if watch:
            self._watch(watch, proc.pid)

        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise SparkServerError(f"the Spark Connect server exited during startup (exit "
                                       f"{proc.returncode}; log: {self.log_file}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise SparkServerError(f"the Spark Connect server did not listen on {self.address} "
                                       f"within {timeout:g}s (log: {self.log_file}):\n{tail}")
            time.sleep(0.2)
        return self.remote

    def _watch(self, watched: int, server: int) -> None:
        """Stop the server when the process that asked for it is gone (a killed test session)."""
        code = (
            "import os, signal, sys, time\n"
            "watched, server, marker, grace = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])\n"
            "def alive(p):\n"
            "    try:\n"
            "        os.kill(p, 0)\n"
            "    except OSError:\n"
            "        return False\n"
            "    try:\n"
            "        return open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'\n"
            "    except OSError:\n"
            "        return False\n"
            "def ours():\n"
            "    try:\n"
            "        return marker in open(f'/proc/{server}/cmdline', 'rb').read().decode(errors='replace')\n"
            "    except OSError:\n"
            "        return False\n"
            "while alive(watched) and alive(server):\n"
            "    time.sleep(2)\n"
            "if alive(server) and ours():\n"
            "    os.kill(server, signal.SIGTERM)\n"
            "    end = time.monotonic() + grace\n"
            "    while alive(server) and time.monotonic() < end:\n"
            "        time.sleep(0.5)\n"
            "    if alive(server) and ours():\n"
            "        os.kill(server, signal.SIGKILL)\n"
        )
        grace = str(env_int("ASSAY_SPARK_STOP_TIMEOUT", 30))
        subprocess.Popen([sys.executable, "-c", code, str(watched), str(server), f"{MARKER}{self.run_dir}", grace],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True)

    # ------------------------------------------------------------------------------- stop
    def stop(self, timeout_s: float | None = None) -> bool:
        """SIGTERM (Spark's shutdown hooks run), SIGKILL after the timeout. False if none was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        timeout = timeout_s if timeout_s is not None else env_int("ASSAY_SPARK_STOP_TIMEOUT", 30)
        _signal(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            print(f"spark_server: server {pid} ignored SIGTERM for {timeout:g}s, killing it", file=sys.stderr)
            _signal(pid, signal.SIGKILL)
            _wait_gone(pid, 10)
        self.pid_file.unlink(missing_ok=True)
        proc, self._proc = getattr(self, "_proc", None), None
        if proc is not None and proc.pid == pid:
            try:                   # our own child: reap it
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        return True

    def status(self) -> str:
        pid = self.pid()
        state = f"running pid={pid}" if pid is not None else "stopped"
        return f"{state} remote={self.remote} run={self.run_dir}"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while processes.alive(pid):
        try:                       # reap it when it is our own child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if time.monotonic() > deadline:
            return not processes.alive(pid)
        time.sleep(0.1)
    return True


# --------------------------------------------------------------------------------- command line
def _parse_conf(items: list[str]) -> dict[str, str]:
    conf = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SparkServerError(f"--conf takes key=value, got {item!r}")
        conf[key.strip()] = value
    return conf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assay.engines.spark_server",
                                     description="A local Apache Spark Spark Connect server (with Delta) "
                                                 "on 127.0.0.1, from Maven Central jars.")
    parser.add_argument("command", choices=["fetch", "start", "stop", "status", "log"])
    parser.add_argument("port", nargs="?", type=int, default=None,
                        help="default: $ASSAY_SPARK_PORT or 15002")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra Spark setting for start (repeatable)")
    parser.add_argument("--lines", type=int, default=80, help="lines of log to show")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch())
            return 0
        server = SparkServer(port=args.port or default_port(), conf=_parse_conf(args.conf))
        if args.command == "start":
            print(server.start())
        elif args.command == "stop":
            print(f"stopped {server.remote}" if server.stop() else f"no server running for {server.run_dir}")
        elif args.command == "status":
            print(server.status())
            return 0 if server.pid() is not None else 3
        elif args.command == "log":
            print(server.log_tail(args.lines))
        return 0
    except SparkServerError as exc:
        print(f"spark_server: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
