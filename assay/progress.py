"""Live progress of a run: one line per flow with its state, batches and rows (Rich)."""
from __future__ import annotations

import os
import threading
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .runtime.runner import FlowSummary

HEARTBEAT_S = float(os.environ.get("ASSAY_PROGRESS_EVERY", "10"))   # seconds between lines without a terminal
_STYLE = {"queued": "dim", "skipped": "dim", "running": "yellow", "done": "green", "failed": "red",
          "stopped": "yellow"}


class RunDisplay:
    def __init__(self, console: Console):
        self.console = console
        self.flows: dict[str, FlowSummary] = {}
        self._printed: dict[str, tuple] = {}
        self.started = time.monotonic()
        self.live = Live(get_renderable=self._render, console=console, refresh_per_second=4, transient=False) \
            if console.is_terminal else None
        self._done = threading.Event()

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        else:
            threading.Thread(target=self._heartbeat, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        if self.live:
            self.live.refresh()
            self.live.__exit__(*exc)

    def _heartbeat(self, every_s: float = HEARTBEAT_S) -> None:
        """Without a terminal, a long batch still shows it is alive: its flow's line every few seconds."""
        while not self._done.wait(every_s):
            for summary in list(self.flows.values()):
                if summary.status == "running":
                    self.console.print(self._line(summary), highlight=False, soft_wrap=True)

    def update(self, summary: FlowSummary) -> None:
        self.flows[summary.flow] = summary
        if self.live:
            return
        # Without a terminal: one line per flow event, a batch starting (batches= counts those committed)
        # or the flow ending; the heartbeat shows a long batch is alive.
        if summary.status == "running":
            seen = ("running", summary.batch) if summary.batch is not None else None
        else:
            seen = (summary.status,) if summary.status in ("done", "failed", "stopped") else None
        if seen is not None and self._printed.get(summary.flow) != seen:
            self._printed[summary.flow] = seen
            self.console.print(self._line(summary), highlight=False, soft_wrap=True)

    def _line(self, s: FlowSummary) -> str:
        extra = f" batch={s.batch}" if s.status == "running" and s.batch is not None else ""
        extra += f" replaced={s.rows_replaced}" if s.rows_replaced else ""
        extra += f" dropped={s.rows_dropped}" if s.rows_dropped else ""
        extra += f" quarantined={s.rows_quarantined}" if s.rows_quarantined else ""
        extra += f" late={s.rows_late}" if s.rows_late else ""
        extra += f" duplicates={s.rows_duplicate}" if s.rows_duplicate else ""
        if s.status == "done" and s.batches == 0:       # its sources held nothing new (a view: inputs unchanged)
            return f"{s.status:>8}  {s.flow:<40} nothing new {s.elapsed:.1f}s"
        return (f"{s.status:>8}  {s.flow:<40} batches={s.batches} read={s.rows_read} "
                f"inserted={s.rows_inserted}{extra} {s.elapsed:.1f}s")

    def _render(self) -> Table:
        table = Table(title=f"assay run  {time.monotonic() - self.started:.1f}s", title_justify="left",
                      show_edge=False, pad_edge=False)
        for column in ("flow", "kind", "state", "batch", "read", "inserted", "replaced", "dropped", "quarantined",
                       "late", "duplicates", "seconds"):
            table.add_column(column, justify="left" if column in ("flow", "kind", "state") else "right")
        for s in self.flows.values():
            style = _STYLE.get(s.status, "")
            batch = f"{s.batch} ({s.batches} done)" if s.status == "running" and s.batch is not None else str(s.batches)
            state = "nothing new" if s.status == "done" and s.batches == 0 else s.status
            table.add_row(s.flow, s.kind.replace("_", " "), f"[{style}]{state}[/]", batch,
                          f"{s.rows_read:,}", f"{s.rows_inserted:,}", f"{s.rows_replaced:,}", f"{s.rows_dropped:,}",
                          f"{s.rows_quarantined:,}", f"{s.rows_late:,}", f"{s.rows_duplicate:,}", f"{s.elapsed:.1f}")
        return table
