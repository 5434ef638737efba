"""Execution engines. The runtime speaks only the PySpark DataFrame / Spark SQL API through these."""
from __future__ import annotations

from ..errors import ConfigError
from .base import Engine


def create_engine(name: str, conf: dict[str, str] | None = None) -> Engine:
    if name == "sail":
        from .sail import SailEngine
        return SailEngine(conf or {})
    if name == "spark":
        from .spark import SparkEngine
        return SparkEngine(conf or {})
    raise ConfigError(f"unknown engine '{name}' (available: sail, spark)")
