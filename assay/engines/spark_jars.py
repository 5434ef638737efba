"""The local Spark Connect server's jars: one cache that `make spark-fetch` (scripts/spark.sh) fills
and the Spark engine reads, resolved once from Maven Central with ``mvn dependency:copy-dependencies``
from the packaged ``spark_pom.xml``, and the Java that runs them. The server itself: spark_server.py."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from ..errors import AssayError

FETCH_LOCK_TIMEOUT_S = 900


class SparkServerError(AssayError):
    """The local Spark Connect server could not be fetched, started or stopped: a message saying
    what to do, never an "unexpected error"."""


# ------------------------------------------------------------------------------------ locations
def cache_dir() -> Path:
    """The one jar cache that `make spark-fetch` (scripts/spark.sh) fills and the Spark engine
    reads: ASSAY_SPARK_CACHE; else, when Assay runs from a source checkout, its .cache/spark;
    else ~/.cache/assay/spark."""
    if os.environ.get("ASSAY_SPARK_CACHE"):
        return Path(os.environ["ASSAY_SPARK_CACHE"]).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "scripts" / "spark.sh").is_file():
        return checkout / ".cache" / "spark"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().resolve() / "assay" / "spark"


def pom_text() -> str:
    return resources.files(__package__).joinpath("spark_pom.xml").read_text(encoding="utf-8")


def pom_sum() -> str:
    return hashlib.sha256(pom_text().encode()).hexdigest()


def jars_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "jars"


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SparkServerError(f"{name} must be a whole number, got {raw!r}") from None


def need(tool: str, why: str, todo: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SparkServerError(f"{tool} is not on PATH; {why}. {todo}")
    return path


def java_executable() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return need("java", "the local Spark Connect server is a Java program",
                 "Install Java 17 or newer (apt-get install openjdk-17-jre-headless) or set JAVA_HOME, or "
                 "give the Spark engine a running server (--remote sc://host:port)")


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    for line in out.splitlines():
        if "version" in line and '"' in line:
            version = line.split('"')[1]
            head = version.split(".")[1] if version.startswith("1.") else version.split(".")[0]
            digits = "".join(ch for ch in head if ch.isdigit())
            return int(digits or 0)
    return 0


# ---------------------------------------------------------------------------------------- fetch
def fetched(cache: Path | None = None) -> bool:
    jars = jars_dir(cache)
    stamp = jars / ".fetched"
    return (stamp.is_file() and stamp.read_text().strip() == pom_sum()
            and any(jars.glob("spark-connect_2.13-*.jar")) and any(jars.glob("delta-spark_*.jar")))


class FileLock:
    """An exclusive flock on a file, waited for with a timeout (parallel sessions fetch once)."""

    def __init__(self, path: Path, timeout_s: float):
        self.path, self.timeout_s, self._fd = path, timeout_s, None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    os.close(self._fd)
                    raise SparkServerError(f"timed out after {self.timeout_s:g}s waiting for the lock "
                                           f"{self.path} (another fetch or start)") from None
                time.sleep(0.5)

    def __exit__(self, *exc):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def fetch(cache: Path | None = None, quiet: bool = False) -> Path:
    """Resolve the server's jars into <cache>/jars once (again only when the pom changes)."""
    cache = cache or cache_dir()
    if fetched(cache):
        return jars_dir(cache)
    mvn = need("mvn", f"the Spark Connect server's jars are not in {jars_dir(cache)} and Maven fetches them "
                       "from Maven Central",
                "Install Maven (apt-get install maven), then run `make spark-fetch` in the Assay checkout "
                "or `python -m assay.engines.spark_server fetch`; or set ASSAY_SPARK_CACHE to the folder "
                "whose jars/ a fetch filled")
    java_executable()
    with FileLock(cache / ".fetch.lock", FETCH_LOCK_TIMEOUT_S):
        if fetched(cache):
            return jars_dir(cache)
        tmp = cache / f"jars.tmp.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        pom = cache / "pom.xml"            # the packaged pom, copied out (works from a wheel too)
        pom.write_text(pom_text(), encoding="utf-8")
        log = cache / "fetch.log"
        if not quiet:
            print("spark_server: resolving Spark Connect + Delta jars from Maven Central "
                  f"(assay/engines/spark_pom.xml) into {jars_dir(cache)} ...", file=sys.stderr)
        with open(log, "w") as out:
            proc = subprocess.run([mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
                                   "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SparkServerError("mvn dependency:copy-dependencies failed (full log: "
                                   f"{log}):\n{tail(log, 40)}")
        if not any(tmp.glob("spark-connect_2.13-*.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            raise SparkServerError(f"no spark-connect jar was resolved (log: {log})")
        (tmp / ".fetched").write_text(pom_sum() + "\n")
        jars = jars_dir(cache)
        shutil.rmtree(jars, ignore_errors=True)
        tmp.rename(jars)
        if not quiet:
            size = sum(p.stat().st_size for p in jars.glob("*.jar"))
            print(f"spark_server: {len(list(jars.glob('*.jar')))} jars, {size / 1e6:.0f} MB in {jars}",
                  file=sys.stderr)
        return jars


def tail(path: Path, lines: int) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])
