"""Reading a pipeline's tables in the shape of a generator's truth manifest, for `assay verify`."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from . import catalog
from .delta import table as storage
from .spec import PipelineSpec

# Truth tables name a row's origin by file name; pipeline tables keep full lineage.
_ALIASES = {"source_file": "_source_file", "failed_rules": "_failed_rules"}


def table_reader(spec: PipelineSpec):
    def read(name: str) -> pa.Table | None:
        ref = catalog.find(spec, name)
        if ref is None:
            return None
        data = storage.read_arrow(ref.path)
        for alias, column in _ALIASES.items():
            if column in data.column_names and alias not in data.column_names:
                values = data.column(column)
                if alias == "source_file":
                    values = pa.array([None if v is None else os.path.basename(v) for v in values.to_pylist()],
                                      pa.string())
                elif alias == "failed_rules":
                    values = pa.array([None if v is None else sorted(v) for v in values.to_pylist()],
                                      pa.list_(pa.string()))
                data = data.append_column(alias, values)
        return data
    return read


def frame_reader(spec: PipelineSpec, engine):
    """table_reader's tables as the engine's DataFrames (for assay.verify_engine): nothing is read
    into Python; the same aliases, computed by the engine."""
    def read(name: str):
        ref = catalog.find(spec, name)
        if ref is None:
            return None
        from pyspark.sql import functions as F
        data = engine.read_table(ref.path)
        present = set(data.columns)
        if "_source_file" in present and "source_file" not in present:
            data = data.withColumn("source_file", F.regexp_replace(F.col("_source_file"), r"^.*/", ""))
        if "_failed_rules" in present and "failed_rules" not in present:
            data = data.withColumn("failed_rules", F.array_sort(F.col("_failed_rules")))
        return data
    return read


def check_metrics(spec: PipelineSpec, truth_dir: Path) -> list[str]:
    """Compare the counts the truth manifest states with what the event log recorded."""
    manifest = json.loads((Path(truth_dir) / "manifest.json").read_text())
    metrics = manifest.get("metrics", {})
    log = storage.read_arrow(spec.system_dir / catalog.EVENT_LOG)
    problems = []
    if log is None:
        return ["no event log"]
    if "null_region_events" in metrics:
        progress = log.filter(pc.equal(log.column("event_type"), "flow_progress")).sort_by("timestamp").to_pylist()
        runs = [json.loads(r["metrics"]) for r in progress if r["metrics"] and "null_region_events" in r["metrics"]]
        if not runs or runs[-1]["null_region_events"] != metrics["null_region_events"]:
            got = runs[-1]["null_region_events"] if runs else None
            problems.append(f"null_region_events: event log has {got}, truth {metrics['null_region_events']}")
    return problems
