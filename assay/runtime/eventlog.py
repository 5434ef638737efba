"""The event log: a Delta table in the system schema, one row per run event and per flow batch.

Nested details (expectation counts, source offsets, lineage) are JSON strings so that the
table's schema never changes; query them with `get_json_object` or `from_json`.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa

from .. import fs, secrets
from ..delta.table import write_small

SCHEMA = pa.schema([
    ("run_id", pa.string()), ("pipeline", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC")),
    ("event_type", pa.string()), ("flow", pa.string()), ("target", pa.string()), ("batch_id", pa.int64()),
    ("rows_read", pa.int64()), ("rows_written", pa.int64()), ("rows_dropped", pa.int64()),
    ("rows_quarantined", pa.int64()), ("rows_late", pa.int64()), ("rows_duplicate", pa.int64()),
    ("expectations", pa.string()), ("sources", pa.string()), ("inputs", pa.string()), ("outputs", pa.string()),
    ("metrics", pa.string()), ("duration_s", pa.float64()), ("status", pa.string()), ("message", pa.string()),
])

RUN_STARTED, RUN_COMPLETED, RUN_FAILED = "run_started", "run_completed", "run_failed"
FLOW_PROGRESS, FLOW_COMPLETED, FLOW_FAILED = "flow_progress", "flow_completed", "flow_failed"
SOURCE_WARNING = "source_warning"


@dataclass
class Event:
    event_type: str
    flow: str | None = None
    target: str | None = None
    batch_id: int | None = None
    rows_read: int | None = None
    rows_written: int | None = None
    rows_dropped: int | None = None
    rows_quarantined: int | None = None
    rows_late: int | None = None
    rows_duplicate: int | None = None
    expectations: list | None = None
    sources: dict | None = None
    inputs: list | None = None
    outputs: list | None = None
    metrics: dict | None = None
    duration_s: float | None = None
    status: str | None = None
    message: str | None = None
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


class EventLog:
    def __init__(self, path, pipeline: str, run_id: str | None = None):
        self.path = fs.as_path(path)        # a Delta table, local or on an object store
        self.pipeline = pipeline
        self.run_id = run_id or f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"

    def record(self, *events: Event) -> None:
        rows = [self._row(e) for e in events]
        write_small(self.path, pa.Table.from_pylist(rows, schema=SCHEMA))

    def _row(self, event: Event) -> dict:
        def as_json(value):
            return None if value is None else secrets.redact(json.dumps(value, default=str, sort_keys=True))
        return {
            "run_id": self.run_id, "pipeline": self.pipeline, "timestamp": event.timestamp,
            "event_type": event.event_type, "flow": event.flow, "target": event.target, "batch_id": event.batch_id,
            "rows_read": event.rows_read, "rows_written": event.rows_written, "rows_dropped": event.rows_dropped,
            "rows_quarantined": event.rows_quarantined, "rows_late": event.rows_late,
            "rows_duplicate": event.rows_duplicate, "expectations": as_json(event.expectations),
            "sources": as_json(event.sources), "inputs": as_json(event.inputs), "outputs": as_json(event.outputs),
            "metrics": as_json(event.metrics), "duration_s": event.duration_s, "status": event.status,
            "message": secrets.redact(event.message) if event.message else None,
        }

