"""The engine an `assay` command runs on: its own, started and stopped by the command, or one lent
by the process the command runs in (a test session's engine, shared by every command it runs in
process), which the command uses and leaves running."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

_lent = None


@contextmanager
def lend(engine) -> Iterator[None]:
    """Commands run inside this block use `engine` where it can run their pipeline as their own would."""
    global _lent
    previous, _lent = _lent, engine
    try:
        yield
    finally:
        _lent = previous


def lent_for(spec):
    """The lent engine, when it is the engine the pipeline names and the pipeline sets none of its
    settings (engine_conf, a --remote server): else None, and the command starts its own."""
    if _lent is not None and _lent.name == spec.engine and not spec.engine_conf:
        return _lent
    return None


@contextmanager
def open_engine(spec):
    """The engine for one command: the lent one (left running), or a new one stopped at the end."""
    lent = lent_for(spec)
    if lent is not None:
        yield lent
        return
    from .engines import create_engine
    with create_engine(spec.engine, spec.engine_conf) as engine:
        yield engine
