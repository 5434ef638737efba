"""The tables a pipeline has on disk, for `assay query`, `assay status` and `assay verify`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .delta import table as storage
from .spec import PipelineSpec

EVENT_LOG = "event_log"


@dataclass(frozen=True)
class TableRef:
    name: str          # what SQL calls it
    schema: str
    path: Path


def tables(spec: PipelineSpec) -> list[TableRef]:
    """Every Delta table under the storage root's schemas, plus the event log."""
    found = []
    if not spec.storage.exists():
        return found
    for schema_dir in sorted(p for p in spec.storage.iterdir() if p.is_dir()):
        if schema_dir.name == spec.schemas["system"]:
            log = schema_dir / EVENT_LOG
            if (log / "_delta_log").is_dir():
                found.append(TableRef(EVENT_LOG, schema_dir.name, log))
            continue
        for table_dir in sorted(p for p in schema_dir.iterdir() if (p / "_delta_log").is_dir()):
            found.append(TableRef(table_dir.name, schema_dir.name, table_dir))
    return found


def find(spec: PipelineSpec, name: str) -> TableRef | None:
    bare = name.rpartition(".")[2]
    for ref in tables(spec):
        if ref.name == bare:
            return ref
    return None


CATALOG_FILE = "catalog.json"


def record_datasets(spec: PipelineSpec, graph) -> None:
    """What the code declares about each table (comment, partitioning, cluster_by, properties),
    kept beside the tables for maintenance and for readers that do not load the pipeline."""
    from .atomic import write_json_atomic
    entries = {}
    for ds in graph.registry.datasets.values():
        if ds.is_table:
            entries[ds.name] = {"schema": graph.schema_name(ds.name), "kind": ds.kind, "comment": ds.comment,
                                "partition_cols": list(ds.partition_cols), "cluster_by": list(ds.cluster_by),
                                "table_properties": {str(k): str(v) for k, v in ds.table_properties.items()},
                                "defined_at": str(ds.location)}
    write_json_atomic(spec.system_dir / CATALOG_FILE, entries)


def declared(spec: PipelineSpec) -> dict:
    from .atomic import read_json
    path = spec.system_dir / CATALOG_FILE
    return read_json(path) if path.exists() else {}


def register_views(spark, spec: PipelineSpec) -> list[TableRef]:
    """Make every table queryable by its bare name in Spark SQL."""
    refs = tables(spec)
    for ref in refs:
        spark.read.format("delta").load(str(ref.path)).createOrReplaceTempView(ref.name)
    return refs


def bind_qualified(spark, spec: PipelineSpec, refs: list[TableRef], sql: str) -> str:
    """`sql` with tables named as in the pipeline's code (`silver.orders`: a layer of assay.yml or a
    literal schema, `catalog.silver.orders` too) read from their own table, whatever bare names
    collide; bare names are register_views'. A query sqlglot cannot read is left to the engine."""
    from .sql import SqlSyntaxError, _quote, _read_query, _stream_parens
    text = _stream_parens(sql)
    try:
        found, qualifiers = _read_query(text)
    except SqlSyntaxError:
        return sql
    by_schema = {(ref.schema, ref.name): ref for ref in refs}
    edits = {}
    for read in found:
        parts = read.parts[1:] if len(read.parts) == 3 and read.parts[0] == spec.catalog else read.parts
        ref = by_schema.get((spec.schema_for(parts[0]), parts[1])) if len(parts) == 2 and not read.stream else None
        if ref is None:
            continue          # a bare name, or not a table of this storage: the engine resolves it
        view = f"assay_{ref.schema}__{ref.name}"
        spark.read.format("delta").load(str(ref.path)).createOrReplaceTempView(view)
        edits[(read.start, read.end)] = _quote(view) + ("" if read.aliased else f" AS {_quote(ref.name)}")
        edits.update({(start, end): _quote(ref.name) for names, start, end in qualifiers
                      if names in (read.parts, parts)})
    for (start, end), replacement in sorted(edits.items(), reverse=True):
        text = text[:start] + replacement + text[end:]
    return text if edits else sql


def row_count(ref: TableRef) -> int:
    table = storage.open_table(ref.path)
    if table is None:
        return 0
    values = [a.get("num_records") for a in storage.add_actions(table)]
    if all(v is not None for v in values):
        return int(sum(values))
    return table.to_pyarrow_dataset().count_rows()
