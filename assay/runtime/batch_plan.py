"""A batch as its flow's checkpoint plans it, ahead of processing.

The record written before the batch runs is all a rerun after a crash gets back, so everything
the batch's rows depend on is in it: what each source reads and, for a deduplicated table, the
target version and the watermark it is compared with. BatchRun reads it from here, and the
commit record is derived from it, so the values go one way: plan → batch → commit.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class BatchPlan:
    batch: int
    record: dict               # as written in the checkpoint (JSON)
    offsets: dict              # what the batch reads, for the event log
    last: bool = False         # the flow ends with this batch (a `once` snapshot flow)

    @property
    def state_version(self) -> int | None:
        """The target's Delta version a deduplicated batch compares its rows with."""
        return self.record.get("state_version")

    @property
    def rows_hint(self) -> int | None:
        """The rows the batch reads, when each of its sources counted them when planning (upstream
        Delta tables do, from their commits' statistics); None when one cannot tell."""
        total = 0
        for planned in self.record.get("plans") or []:
            info = (planned or {}).get("info") or {}
            if info.get("unchanged"):
                continue
            if info.get("rows") is None:
                return None
            total += int(info["rows"])
        return total

    @property
    def previous_max(self) -> datetime | None:
        """The highest event time committed before this batch (the watermark's base)."""
        value = self.record.get("previous_max")
        return datetime.fromisoformat(value) if value else None

    def watermark_after(self, batch_max: datetime | None) -> str | None:
        """The watermark base the next batch starts from, as recorded at commit."""
        highest = max((t for t in (batch_max, self.previous_max) if t is not None), default=None)
        return highest.isoformat() if highest else None
