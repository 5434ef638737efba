"""What every streaming source does: turn "what is new since the checkpoint" into one batch.

A source never keeps progress itself. The runtime asks it to `plan` the next batch from the
end position of the last committed batch (a JSON-serialisable value it stored in the flow's
checkpoint), writes that plan ahead of processing, and later asks it to `load` exactly that
plan. Loading the same plan twice must give the same rows: that is what makes a rerun after
a crash land the same data, once.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BatchLimits:
    """Upper bounds for one batch; None means unbounded."""
    max_files: int | None = None
    max_bytes: int | None = None
    max_records: int | None = None


@dataclass(frozen=True)
class Plan:
    """One batch of a source: where it starts, where it ends, and what it covers.

    `end` becomes the source's position once the batch commits. `info` is shown in the event
    log (offsets, file names...) and must be JSON-serialisable, like `start` and `end`.
    """
    start: Any
    end: Any
    info: dict
    rows_hint: int | None = None


@dataclass
class LoadContext:
    """What a source may use while loading a planned batch."""
    spark: Any            # the engine's SparkSession (Spark Connect client)
    staging_dir: str      # an empty folder owned by this batch, removed after the commit
    engine: Any = None    # the engine, for reads it does its own way (Delta files, Kafka ranges)


class Source(ABC):
    kind: str = "source"

    @abstractmethod
    def key(self) -> str:
        """A stable identifier of this source within its flow (used to name its checkpoint entry)."""

    @abstractmethod
    def plan(self, position: Any | None, limits: BatchLimits) -> Plan | None:
        """The next batch after `position` (None: never read), or None when nothing is new."""

    @abstractmethod
    def load(self, ctx: LoadContext, plan: Plan):
        """A DataFrame holding exactly the rows of `plan`."""

    def describe(self) -> str:
        return self.key()
