"""pytest plugin: a real PostgreSQL cluster (scripts/postgres.sh) for the whole session.

Load it with ``pytest_plugins = ["tests.postgres_server"]`` (or ``-p tests.postgres_server``)
and ask for the session fixture ``postgres_server``. Nothing is mocked and nothing is skipped:
if PostgreSQL is missing, the fixture installs Debian's package (as root) or fails with the
reason; a server that does not start fails with its log tail. The cluster listens on 127.0.0.1
only, lives in a temporary folder, and is stopped and removed at the end of the session.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "postgres.sh"

INSTALL_TIMEOUT_S = 900     # apt-get on a fresh machine
START_TIMEOUT_S = 90        # initdb + start (the script itself waits up to 60 s)
STOP_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A cluster started by scripts/postgres.sh on 127.0.0.1:port with its own run folder."""

    def __init__(self, port: int, run_dir: Path):
        self.port = port
        self.run_dir = Path(run_dir)
        self.host = "127.0.0.1"
        self.superuser = "postgres"
        self.running = False

    # ----------------------------------------------------------------------- lifecycle
    def _script(self, *args: str, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = dict(os.environ, POSTGRES_RUN_DIR=str(self.run_dir), POSTGRES_WATCH_PID=str(os.getpid()),
                        **(env or {}))
        try:
            return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=full_env, text=True,
                                  capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"`postgres.sh {' '.join(args)}` did not finish in {timeout:g}s\n"
                               f"{e.stdout or ''}{e.stderr or ''}\n{self.log_tail()}") from None

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> str:
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}\n"
                               f"--- postgres log tail ---\n{self.log_tail()}")
        return proc.stdout.strip()

    def install(self) -> None:
        self._check(self._script("install", timeout=INSTALL_TIMEOUT_S), "postgres.sh install (apt-get)")

    def start(self) -> None:
        out = self._check(self._script("start", str(self.port), timeout=START_TIMEOUT_S),
                          f"starting PostgreSQL on {self.host}:{self.port}")
        if f"{self.host}:{self.port}" not in out:
            raise RuntimeError(f"postgres.sh start printed {out!r}, expected {self.host}:{self.port}")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` ends sessions and rolls back; `immediate` is a crash (recovery at start)."""
        self._check(self._script("stop", str(self.port), timeout=STOP_TIMEOUT_S, env={"POSTGRES_STOP_MODE": mode}),
                    f"stopping PostgreSQL on {self.host}:{self.port} ({mode})")
        self.running = False

    def restart(self, mode: str = "fast") -> None:
        """Stop and start the same cluster (same port, same data): its data must survive."""
        self.stop(mode)
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        log = self.run_dir / "postgres.log"
        try:
            text = log.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no server log at {log})"
        return "\n".join(text[-lines:])

    # ----------------------------------------------------------------------- clients
    @property
    def password(self) -> str:
        return (self.run_dir / "superuser.password").read_text().strip()

    def conninfo(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> dict:
        """Keyword arguments for psycopg.connect (and the keys of an assay.yml `postgres:` mapping)."""
        user = user or self.superuser
        if password is None and user == self.superuser:
            password = self.password
        return {"host": self.host, "port": self.port, "dbname": dbname, "user": user, "password": password}

    def connect(self, dbname: str = "postgres", user: str | None = None, password: str | None = None,
                autocommit: bool = True):
        import psycopg
        return psycopg.connect(**self.conninfo(dbname, user, password), autocommit=autocommit, connect_timeout=10)

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database (one per test keeps tests apart); dropped with the cluster."""
        from psycopg import sql
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name


@pytest.fixture(scope="session")
def postgres_server():
    # a folder the server's (non-root) OS user can reach: pytest's own tmp is private to root
    run_dir = Path(tempfile.mkdtemp(prefix="assay-pg-"))
    run_dir.chmod(0o755)
    server = PostgresServer(_free_port(), run_dir)
    try:
        server.install()        # instant when PostgreSQL is already installed
        server.start()
        yield server
    finally:
        try:
            if server.running:
                server.stop("immediate")    # throwaway: no shutdown checkpoint to wait for
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used the server shows the tail of the server's log."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("postgres_server")
    if report.failed and isinstance(server, PostgresServer):
        report.sections.append(("postgres server log (tail)", server.log_tail(40)))
