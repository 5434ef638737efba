"""The pipeline's Delta tables as the UI shows them: size, schema, partitioning and clustering,
Delta history, first rows. Read through delta-rs only (no engine), cached per table until its
Delta log changes."""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import os
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .. import catalog, secrets
from ..spec import PipelineSpec
from .declared import declared_datasets

QUARANTINE_SUFFIX, LATE_SUFFIX = "_quarantine", "_late"
FAILED_RULES = "_failed_rules"
MAX_TEXT = 2000         # characters of one text value sent to the page; the rest is cut, with a marker


def shortened(text: str) -> str:
    """Text longer than MAX_TEXT: its start and how long the whole value is. Secrets are masked
    before the cut, which could otherwise leave part of one unmasked."""
    if len(text) <= MAX_TEXT:
        return text
    return f"{secrets.redact(text)[:MAX_TEXT]}… [truncated: {len(text):,} characters in all]"


def jsonable(value):
    """A value of a row as JSON can carry it (no NaN, no bytes, no Decimal), long text cut."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        return shortened(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
            return value.isoformat().replace("+00:00", "Z")
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data, cut = bytes(value), MAX_TEXT * 3 // 4
        if len(data) > cut:
            return f"base64:{base64.b64encode(data[:cut]).decode()}… [truncated: {len(data):,} bytes in all]"
        return "base64:" + base64.b64encode(data).decode()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


def table_rows(data: pa.Table) -> dict:
    columns = data.column_names
    return {"columns": columns, "types": [str(f.type) for f in data.schema],
            "rows": [[jsonable(row[c]) for c in columns] for row in data.to_pylist()]}


def layer_of(spec: PipelineSpec, schema: str) -> str:
    for layer, name in spec.schemas.items():
        if name == schema:
            return layer
    return schema


def _log_stamp(path: Path):
    try:
        st = os.stat(path / "_delta_log")
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


class Tables:
    def __init__(self, spec: PipelineSpec):
        self.spec = spec
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple] = {}

    def declared(self) -> dict:
        return declared_datasets(self.spec)

    def refs(self) -> list[catalog.TableRef]:
        return catalog.tables(self.spec)

    def find(self, name: str) -> catalog.TableRef | None:
        for ref in self.refs():
            if ref.name == name:
                return ref
        return None

    def role(self, ref: catalog.TableRef, declared: dict) -> tuple[str, str | None]:
        """(kind, parent dataset) of a table: declared kind, quarantine, late, event_log or table."""
        if ref.name == catalog.EVENT_LOG and ref.schema == self.spec.schemas["system"]:
            return "event_log", None
        entry = declared.get(ref.name)
        if entry and entry.get("schema", ref.schema) == ref.schema:
            return entry.get("kind", "table"), None
        for suffix, kind in ((QUARANTINE_SUFFIX, "quarantine"), (LATE_SUFFIX, "late")):
            if ref.name.endswith(suffix) and ref.name[:-len(suffix)] in declared:
                return kind, ref.name[:-len(suffix)]
        return "table", None

    def summary(self, ref: catalog.TableRef, declared: dict | None = None) -> dict:
        """Size, rows, files, partitioning, clustering of one table; cached until its log changes."""
        declared = self.declared() if declared is None else declared
        stamp = _log_stamp(ref.path)
        with self._lock:
            cached = self._cache.get(ref.path)
        if cached and cached[0] == stamp:
            base = cached[1]
        else:
            base = self._load(ref)
            with self._lock:
                self._cache[ref.path] = (stamp, base)
        kind, parent = self.role(ref, declared)
        entry = declared.get(ref.name if parent is None else parent, {})
        own = declared.get(ref.name, {}) if parent is None else {}
        return {**base, "name": ref.name, "schema": ref.schema, "layer": layer_of(self.spec, ref.schema),
                "kind": kind, "parent": parent,
                "cluster_by": list(own.get("cluster_by") or []),
                "comment": own.get("comment") or base.get("description"),
                "defined_at": entry.get("defined_at"),
                "declared_properties": dict(own.get("table_properties") or {})}

    def _load(self, ref: catalog.TableRef) -> dict:
        from deltalake import DeltaTable
        table = DeltaTable(str(ref.path))
        actions = pa.table(table.get_add_actions(flatten=True))
        records = actions.column("num_records").to_pylist() if "num_records" in actions.column_names else []
        if records and all(v is not None for v in records):
            rows = int(sum(records))
        else:
            rows = table.to_pyarrow_dataset().count_rows()
        sizes = actions.column("size_bytes").to_pylist() if "size_bytes" in actions.column_names else []
        modified = None
        if "modification_time" in actions.column_names and actions.num_rows:
            latest = pc.max(actions.column("modification_time")).as_py()
            if isinstance(latest, (int, float)):      # milliseconds since the epoch
                latest = dt.datetime.fromtimestamp(latest / 1000, tz=dt.timezone.utc)
            modified = jsonable(latest) if latest is not None else None
        meta = table.metadata()
        return {"path": os.path.relpath(ref.path, self.spec.storage), "version": table.version(),
                "rows": rows, "size_bytes": int(sum(s or 0 for s in sizes)), "files": actions.num_rows,
                "partition_cols": list(meta.partition_columns), "properties": dict(meta.configuration or {}),
                "description": meta.description, "modified": modified}

    def detail(self, ref: catalog.TableRef, preview: int = 20, history: int = 50) -> dict:
        from deltalake import DeltaTable
        info = self.summary(ref)
        table = DeltaTable(str(ref.path))
        schema = pa.schema(table.schema().to_arrow())
        info["columns"] = [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]
        info["history"] = [_history_entry(h) for h in table.history(history)]
        info["preview"] = table_rows(table.to_pyarrow_dataset().head(preview))
        return info

    def rows(self, ref: catalog.TableRef, limit: int = 100, rule: str | None = None) -> dict:
        """The first `limit` rows; with `rule`, only rows whose _failed_rules lists it."""
        from deltalake import DeltaTable
        dataset = DeltaTable(str(ref.path)).to_pyarrow_dataset()
        if rule is None or FAILED_RULES not in dataset.schema.names:
            data = dataset.head(limit)
            return {**table_rows(data), "truncated": data.num_rows >= limit, "rule": None}
        found, taken = [], 0
        for batch in dataset.to_batches():
            rules = batch.column(FAILED_RULES)
            flat = pc.list_flatten(rules)
            parents = pc.list_parent_indices(rules)
            hit = pc.unique(pc.filter(parents, pc.equal(flat, rule)))
            if len(hit):
                chosen = batch.take(hit.slice(0, limit - taken))
                found.append(chosen)
                taken += chosen.num_rows
            if taken >= limit:
                break
        data = pa.Table.from_batches(found, schema=dataset.schema) if found else dataset.schema.empty_table()
        return {**table_rows(data), "truncated": taken >= limit, "rule": rule}


def _history_entry(entry: dict) -> dict:
    out = {"version": entry.get("version"), "operation": entry.get("operation"),
           "parameters": jsonable(entry.get("operationParameters") or {}),
           "metrics": jsonable(entry.get("operationMetrics") or {})}
    stamp = entry.get("timestamp")
    if isinstance(stamp, (int, float)):
        out["timestamp"] = jsonable(dt.datetime.fromtimestamp(stamp / 1000, tz=dt.timezone.utc))
    known = {"version", "operation", "operationParameters", "operationMetrics", "timestamp", "engineInfo",
             "clientVersion"}
    extra = {k: jsonable(v) for k, v in entry.items() if k not in known}
    if extra:
        out["metadata"] = extra
    return out
