"""Declared deduplication with a watermark, enforced across batches and runs against state kept in Delta.

Semantics (identical on every engine, and independent of how files were grouped into batches):
- Arrival order is the order of source files by (`_source_modified`, `_source_file`); without
  those columns, the whole batch is one arrival unit.
- Watermark of a file = (largest event time of every earlier-arrived row) − delay. A row whose
  event time is below its file's watermark is late: it goes to `<table>_late`, counted, not lost.
- Among the other rows, one survives per key: the smallest by the order columns (event time,
  then `_source_file` by default), then by the row's other columns, so that ties never depend
  on the engine or on how files were split. A later batch whose row beats the one kept earlier
  replaces it (the target files holding the old row are rewritten without it).

The state is the target table itself (one row per key: the survivor), read as of the version
recorded in the batch's plan, so a batch recomputed after a crash decides exactly as the first
attempt did. The engine decides every row's route (runtime/routing.py); rows never leave it.

Formulation chosen by measurement (docs/development.md, Design facts): only keys duplicated inside the
batch are ranked with `row_number()` (a count per key finds them in 0.5 s for 5 M rows on the
embedded engine; ranking every row took 7-12 s; `dropDuplicates` on a key subset 36.9 s).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..definitions import Dedupe
from ..errors import GraphError
from ..units import parse_seconds

ARRIVAL = ("_source_modified", "_source_file")
DEFAULT_TIEBREAK = ("_source_file",)


@dataclass(frozen=True)
class DedupePlan:
    keys: tuple[str, ...]
    order: tuple[str, ...]
    event_time: str | None
    delay_s: float | None
    arrival: tuple[str, ...]


def resolve(spec: Dedupe, columns: list[str], dataset: str, location) -> DedupePlan:
    """Check the declaration against the flow's output columns and fill in the defaults."""
    missing = [c for c in (*spec.keys, *( [spec.event_time] if spec.event_time else [] ), *(spec.order_by or ()))
               if c not in columns]
    if missing:
        raise GraphError(f"dedupe of '{dataset}' (at {location}) names column(s) {', '.join(missing)} that the "
                         f"query does not produce (it has: {', '.join(columns)})")
    if spec.order_by:
        order = tuple(spec.order_by)
    else:
        order = tuple(([spec.event_time] if spec.event_time else [])
                      + [c for c in DEFAULT_TIEBREAK if c in columns])
    if not order:
        raise GraphError(f"dedupe of '{dataset}' (at {location}) needs an order to choose the surviving row "
                         "deterministically: give event_time, order_by, or keep _source_file")
    delay = None
    if spec.watermark is not None:
        try:
            delay = parse_seconds(spec.watermark)
        except ValueError as exc:
            raise GraphError(f"dedupe of '{dataset}' (at {location}): watermark {exc}") from None
    arrival = ARRIVAL if all(c in columns for c in ARRIVAL) else ()
    return DedupePlan(tuple(spec.keys), order, spec.event_time, delay, arrival)


