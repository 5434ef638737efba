"""Execution engines. The runtime speaks only the PySpark DataFrame / Spark SQL API through these.

Each engine is a subclass of `base.Engine` in its own module that overrides only what differs;
`create_engine` finds it by name here, and nothing outside this package asks which engine runs.
"""
from __future__ import annotations

from importlib import import_module

from ..errors import ConfigError
from .base import Engine

# name -> (module, class), imported on first use: the embedded engine never loads Spark's launcher.
ENGINES = {"sail": (".sail", "SailEngine"), "spark": (".spark", "SparkEngine")}


def engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        raise ConfigError(f"unknown engine '{name}' (available: {', '.join(ENGINES)})")
    module, cls = ENGINES[name]
    return getattr(import_module(module, __name__), cls)


def create_engine(name: str, conf: dict[str, str] | None = None) -> Engine:
    return engine_class(name)(dict(conf or {}))


__all__ = ["ENGINES", "Engine", "create_engine", "engine_class"]
