"""Load a pipeline's library files (Python and SQL) into a Registry of definitions."""
from __future__ import annotations

import importlib.util
import sys
import traceback
from dataclasses import replace
from pathlib import Path

from .definitions import Registry
from .errors import GraphError
from .registry import registration
from .spec import PipelineSpec
from .sql import load_sql_file


def library_files(spec: PipelineSpec) -> list[tuple[Path, str | None]]:
    files: dict[Path, str | None] = {}
    for library in spec.libraries:
        matched = sorted(spec.root.glob(library.glob))
        for path in matched:
            if path.is_file() and path.suffix in (".py", ".sql"):
                files.setdefault(path, library.schema)
    return list(files.items())


def load_registry(spec: PipelineSpec) -> Registry:
    files = library_files(spec)
    if not files:
        globs = ", ".join(lib.glob for lib in spec.libraries)
        raise GraphError(f"no pipeline code found in {spec.root} (libraries: {globs})")
    registry = Registry()
    sys.path.insert(0, str(spec.root))        # pipeline files import their helper modules
    try:
        with registration(registry):
            for path, schema in files:
                before = set(registry.datasets)
                if path.suffix == ".sql":
                    load_sql_file(path, registry, schema)
                else:
                    _exec_python(path, spec)
                if schema:  # datasets of this library default to its schema
                    for name in set(registry.datasets) - before:
                        ds = registry.datasets[name]
                        if ds.schema_name is None:
                            registry.replace_dataset(replace(ds, schema_name=schema))
    finally:
        sys.path.remove(str(spec.root))
    if registry.errors:
        raise GraphError("; ".join(registry.errors))
    return registry


def _exec_python(path: Path, spec: PipelineSpec) -> None:
    module_name = f"assay_pipeline_{spec.name}_{path.stem}_{abs(hash(str(path))) % 10**8}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except GraphError:
        raise
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        line = frames[-1].lineno if frames else "?"
        raise GraphError(f"{path}:{line}: loading the pipeline file raised {type(exc).__name__}: {exc}") from None
