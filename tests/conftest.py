"""Shared fixtures: one embedded engine per test session, and small projects written from strings."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

pytest_plugins = ["tests.kafka_broker", "tests.spark_server", "tests.object_stores"]

os.environ.setdefault("RUST_LOG", "error")
ROOT = Path(__file__).resolve().parent.parent
ASSAY = [sys.executable, "-m", "assay.cli"]

# The fast tier (`make check`) leaves out what starts a server of its own (a JVM, a broker, a
# database, an object store, a browser) and the tests marked slow; `make test` runs everything.
SERVICE_FIXTURES = {"kafka_broker", "spark_server", "s3_store", "azure_store", "postgres_server", "browser"}
SERVICE_MODULES = {"test_ui_browser", "test_spark_server", "test_spark_exactly_once", "test_engine_parity",
                   "test_baseline_smoke", "test_bench_smoke", "test_object_storage", "test_customers_stream",
                   "test_postgres_sink", "test_publish", "test_kafka_pipeline", "test_kafka_source"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if (SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())) or module in SERVICE_MODULES
                or item.get_closest_marker("kafka")):
            item.add_marker(pytest.mark.service)


@pytest.fixture(scope="session")
def engine():
    from assay.engines import create_engine
    eng = create_engine("sail")
    eng.spark  # start once
    yield eng
    eng.stop()


def write_project(folder: Path, files: dict[str, str], config: str | None = None) -> Path:
    """A pipeline folder: assay.yml (default: storage/landing inside it) plus the given files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "assay.yml").write_text(textwrap.dedent(config or """
        name: t
        storage: ./storage
        landing: ./landing
        schemas: {bronze: 01_bronze, silver: 02_silver, gold: 03_gold, system: _system}
    """))
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def project(tmp_path):
    def make(files: dict[str, str], config: str | None = None) -> Path:
        return write_project(tmp_path / "proj", files, config)
    return make


@pytest.fixture
def run_pipeline(engine):
    """Run a project in-process on the shared engine; returns the flow summaries by flow name."""
    from assay.runtime.runner import RunOptions, Runner
    from assay.spec import load_spec

    def run(folder: Path, **options):
        spec = load_spec(folder)
        return {s.flow: s for s in Runner(spec, RunOptions(**options), engine=engine).run()}
    return run


def table(folder: Path, schema: str, name: str):
    """A table of a project as a list of dicts (None when it does not exist)."""
    from assay.delta import table as storage
    data = storage.read_arrow(folder / "storage" / schema / name)
    return None if data is None else data.to_pylist()


def cli(*args, cwd: Path, timeout: float = 180, env: dict | None = None, check: bool = False):
    result = subprocess.run([*ASSAY, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "RUST_LOG": "error", **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"assay {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def assay_cli(engine):
    """`assay ARGS` run in this process on the session's engine, as cli() runs it in a new one: the
    same CompletedProcess (returncode, stdout, stderr) without a Python start and a server start.
    For what only prints and returns an exit code; whatever needs the process itself (signals,
    crashes, the entry point, environment read at import, other engines) stays with cli()."""
    return lambda *args, cwd, env=None, check=False, timeout=None: run_in_process(
        engine, args, cwd=cwd, env=env, check=check)


def run_in_process(engine, args, cwd: Path, env: dict | None = None, check: bool = False):
    from assay import cli as command
    from assay.command_engine import lend
    out, errors = io.StringIO(), io.StringIO()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}   # `assay run` sets its own
    views = {t.name for t in engine.spark.catalog.listTables() if t.isTemporary}
    saved_env = {k: os.environ.get(k) for k in env or {}}
    here = os.getcwd()
    try:
        os.environ.update(env or {})
        os.chdir(cwd)
        with lend(engine), redirect_stdout(out), redirect_stderr(errors):
            code = command.execute([str(a) for a in args])
    finally:
        os.chdir(here)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for table in engine.spark.catalog.listTables():        # the command's views: the next test sees none
            if table.isTemporary and table.name not in views:
                engine.spark.catalog.dropTempView(table.name)
    result = subprocess.CompletedProcess(["assay", *args], code, out.getvalue(), errors.getvalue())
    if check and code != 0:
        raise AssertionError(f"assay {' '.join(map(str, args))} failed ({code}):\n{result.stdout}\n{result.stderr}")
    return result
