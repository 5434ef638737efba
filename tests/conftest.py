"""Shared fixtures: one embedded engine per test session, and small projects written from strings."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
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
