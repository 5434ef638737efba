"""The one door between the public API (`assay.pipelines`) and the code that loads or runs a pipeline.

Decorators only register: they add definitions to the registry of the enclosing `registration`,
and `dp.read*` ask the context of the enclosing `flow_query`. Both are context variables set and
reset only here (as Spark's `graph_element_registration_context`), so no module reaches into
another's globals and nested or concurrent loads cannot leak into each other.
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Any, Iterator

from .definitions import Registry
from .errors import GraphError

_registry: contextvars.ContextVar[Registry | None] = contextvars.ContextVar("assay_registry", default=None)
_flow_context: contextvars.ContextVar[Any] = contextvars.ContextVar("assay_flow_context", default=None)


@contextmanager
def registration(registry: Registry) -> Iterator[Registry]:
    """Definitions made inside (by loading a pipeline's files) go into `registry`."""
    token = _registry.set(registry)
    try:
        yield registry
    finally:
        _registry.reset(token)


def current_registry() -> Registry:
    registry = _registry.get()
    if registry is None:
        raise GraphError("pipeline definitions can only be made while Assay loads a pipeline "
                         "(run them with `assay run`, not by importing the file)")
    return registry


@contextmanager
def flow_query(ctx) -> Iterator[Any]:
    """A flow's query runs inside: `dp.read*`, `dp.spark` and `dp.config` answer from `ctx`."""
    token = _flow_context.set(ctx)
    try:
        yield ctx
    finally:
        _flow_context.reset(token)


def current_flow_context():
    ctx = _flow_context.get()
    if ctx is None:
        raise GraphError("dp.read*, dp.spark and dp.config are only available inside a query function "
                         "while Assay runs the pipeline")
    return ctx
