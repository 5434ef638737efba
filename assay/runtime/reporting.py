"""Where a run reports what happens: its event log (history) and the caller's callbacks (the terminal).

The runner, the PostgreSQL publisher and the continuous rounds report through one RunEvents,
so none of them holds the Runner; a new round starts a new run id here.
"""
from __future__ import annotations

from typing import Callable

from .eventlog import Event, EventLog


def _ignore(_) -> None:
    pass


class RunEvents:
    def __init__(self, log: EventLog, on_progress: Callable | None = None):
        self.log = log
        self.on_progress: Callable = on_progress or _ignore      # a flow's summary changed (the live display)
        self.on_warning: Callable[[str], None] = _ignore         # something the user should fix (stderr)
        self.on_notice: Callable[[str], None] = _ignore          # a line for the run's output

    @property
    def run_id(self) -> str:
        return self.log.run_id

    def record(self, *events: Event) -> None:
        self.log.record(*events)

    def warning(self, message: str, event: Event) -> None:
        """Said now, and kept in history."""
        self.on_warning(message)
        self.log.record(event)

    def next_run(self) -> None:
        """A new run id, so history shows each round of a continuous run as a run of its own."""
        self.log = EventLog(self.log.path, self.log.pipeline)
