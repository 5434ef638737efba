"""Live progress of a run: one line per flow with its state, batches and rows (Rich)."""
from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .runtime.runner import FlowSummary

_STYLE = {"queued": "dim", "skipped": "dim", "running": "yellow", "done": "green", "failed": "red"}


class RunDisplay:
    def __init__(self, console: Console):
        self.console = console
        self.flows: dict[str, FlowSummary] = {}
        self._printed: dict[str, tuple] = {}
        self.started = time.monotonic()
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=False) \
            if console.is_terminal else None

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def update(self, summary: FlowSummary) -> None:
        self.flows[summary.flow] = summary
        if self.live:
            self.live.update(self._render())
            return
        # Without a terminal: one line per change of state or batch count.
        seen = (summary.status, summary.batches)
        if summary.status in ("running", "done", "failed") and self._printed.get(summary.flow) != seen:
            self._printed[summary.flow] = seen
            self.console.print(self._line(summary), highlight=False, soft_wrap=True)

    def _line(self, s: FlowSummary) -> str:
        extra = f" dropped={s.rows_dropped}" if s.rows_dropped else ""
        extra += f" quarantined={s.rows_quarantined}" if s.rows_quarantined else ""
        extra += f" late={s.rows_late}" if s.rows_late else ""
        extra += f" duplicates={s.rows_duplicate}" if s.rows_duplicate else ""
        return (f"{s.status:>8}  {s.flow:<40} batches={s.batches} read={s.rows_read} written={s.rows_written}"
                f"{extra} {s.seconds:.1f}s")

    def _render(self) -> Table:
        table = Table(title=f"assay run  {time.monotonic() - self.started:.1f}s", title_justify="left",
                      show_edge=False, pad_edge=False)
        for column in ("flow", "kind", "state", "batches", "read", "written", "dropped", "quarantined", "late",
                       "duplicates", "seconds"):
            table.add_column(column, justify="left" if column in ("flow", "kind", "state") else "right")
        for s in self.flows.values():
            style = _STYLE.get(s.status, "")
            table.add_row(s.flow, s.kind.replace("_", " "), f"[{style}]{s.status}[/]", str(s.batches),
                          f"{s.rows_read:,}", f"{s.rows_written:,}", f"{s.rows_dropped:,}", f"{s.rows_quarantined:,}",
                          f"{s.rows_late:,}", f"{s.rows_duplicate:,}", f"{s.seconds:.1f}")
        return table
