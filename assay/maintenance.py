"""Table maintenance through delta-rs: compaction, z-ordering by `cluster_by`, vacuum."""
from __future__ import annotations

from dataclasses import dataclass

from . import catalog
from .delta import table as storage
from .spec import PipelineSpec

@dataclass
class MaintenanceResult:
    table: str
    operation: str
    files_added: int
    files_removed: int


def optimize(spec: PipelineSpec, names: list[str] | None = None) -> list[MaintenanceResult]:
    """Z-order tables declared with cluster_by on those columns; compact the others."""
    results = []
    declared = catalog.declared(spec)
    for ref in _selected(spec, names):
        table = storage.open_table(ref.path)
        cluster = declared.get(ref.name, {}).get("cluster_by") if ref.schema == declared.get(ref.name, {}).get(
            "schema") else None
        if cluster:
            metrics = table.optimize.z_order(cluster, writer_properties=storage.WRITER)
            operation = f"z-order by {', '.join(cluster)}"
        else:
            metrics = table.optimize.compact(writer_properties=storage.WRITER)
            operation = "compact"
        results.append(MaintenanceResult(ref.name, operation, metrics.get("numFilesAdded", 0),
                                         metrics.get("numFilesRemoved", 0)))
    return results


def vacuum(spec: PipelineSpec, names: list[str] | None = None, retention_hours: int = 168) -> dict[str, int]:
    """Delete files no longer referenced and older than the retention (default 7 days)."""
    removed = {}
    for ref in _selected(spec, names):
        table = storage.open_table(ref.path)
        removed[ref.name] = len(table.vacuum(retention_hours=retention_hours, dry_run=False,
                                             enforce_retention_duration=retention_hours >= 168))
    return removed


def _selected(spec: PipelineSpec, names: list[str] | None) -> list[catalog.TableRef]:
    refs = [r for r in catalog.tables(spec) if r.name != catalog.EVENT_LOG or (names and r.name in names)]
    if names:
        known = {r.name for r in refs}
        missing = [n for n in names if n not in known]
        if missing:
            from .errors import AssayError
            raise AssayError(f"no table named {', '.join(missing)} in {spec.storage} "
                             f"(tables: {', '.join(sorted(known))})")
        refs = [r for r in refs if r.name in names]
    return refs
