"""What `dp.read*` return inside a query function: during analysis, empty DataFrames with the
right schema; during a batch, the batch's data."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import GraphError
from ..registry import flow_query
from ..sql import run_sql_flow


class Pending(Exception):
    """The query read a dataset whose schema is not known yet (it is analysed later)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


@dataclass
class SourceSpec:
    """A streaming input a flow's query asked for, in call order."""
    kind: str                 # delta | files | kafka
    args: dict
    stream_of: str | None = None   # for delta: the upstream dataset


class FileSources(Protocol):
    """Where dp.read_files gets its source. The runtime provides it (runtime/services.py): a
    source's schema is resolved against its flow's checkpoint, once, and the runs read the very
    sources analysis resolved."""

    def source(self, flow, spec: SourceSpec, tracked: bool = True):
        """The FileSource of `flow`'s read `spec`, its schema resolved; `tracked=False`: a folder read whole."""


def run_query(flow, ctx: "FlowContext"):
    """A flow's query, its dp.read* answered by `ctx` (empty frames in analysis, data in a run)."""
    with flow_query(ctx):
        if flow.sql is not None:
            return run_sql_flow(ctx, flow.sql)
        return flow.func()


@dataclass
class FlowContext:
    """Shared by analysis and execution; the `graph` provides dataset lookups, `files` the file
    sources. While a flow runs, `reads` (the runtime's) returns data; without it, every read is
    an empty DataFrame of the right schema (analysis)."""
    graph: Any
    flow: Any
    spark: Any
    files: FileSources
    reads: Any = None
    loaded: dict = field(default_factory=dict)       # source index → DataFrame (execution)
    sources: list = field(default_factory=list)      # SourceSpecs in call order
    static_reads: set = field(default_factory=set)
    stream_reads: set = field(default_factory=set)
    metrics: dict = field(default_factory=dict)      # dp.record_metric values (execution)

    @property
    def analysing(self) -> bool:
        return self.reads is None

    def has_dataset(self, name: str) -> bool:
        return name in self.graph.registry.datasets

    def _dataset(self, name: str):
        ds = self.graph.registry.datasets.get(name)
        if ds is None:
            known = ", ".join(sorted(self.graph.registry.datasets))
            raise GraphError(f"flow '{self.flow.name}' (at {self.flow.location}) reads '{name}', which is not a "
                             f"dataset of this pipeline (datasets: {known})")
        return ds

    def read(self, name: str):
        ds = self._dataset(name)
        self.static_reads.add(name)
        if ds.kind == "temporary_view":
            return self._view(name)
        if self.analysing:
            return self.spark.createDataFrame([], self.graph.schema_of(name))
        return self.reads.table(name)

    def _view(self, name: str):
        """A temporary view is its query, run in the reading flow's context (its reads count there)."""
        return run_query(self.graph.registry.flows_into(name)[0], self)

    def read_stream(self, name: str):
        ds = self._dataset(name)
        if ds.kind == "temporary_view":
            return self._view(name)
        if ds.kind != "streaming_table":
            raise GraphError(f"flow '{self.flow.name}' (at {self.flow.location}) reads '{name}' as a stream, but it "
                             f"is a {ds.kind.replace('_', ' ')}: only streaming tables can be read incrementally; "
                             "use dp.read()")
        self.stream_reads.add(name)
        return self._source(SourceSpec("delta", {"name": name}, stream_of=name),
                            lambda: self.spark.createDataFrame([], self.graph.schema_of(name)))

    def read_files(self, path, fmt, schema, options):
        options = dict(options)
        batch = bool(options.pop("batch", False))
        spec = SourceSpec("files", {"path": path, "format": fmt, "schema": schema, "options": options})
        if batch:  # every file currently in the folder, each run (for reference data)
            source = self.files.source(self.flow, spec, tracked=False)
            self.static_reads.add(f"files:{path}")
            if self.analysing:
                return source.analysis_frame(self.spark)
            return self.reads.all_files(source)
        return self._source(spec, lambda: self.files.source(self.flow, spec).analysis_frame(self.spark))

    def record_metric(self, name: str, value) -> None:
        if self.analysing:
            return
        if hasattr(value, "count") and hasattr(value, "schema"):
            value = value.count()
        self.metrics[name] = value

    def read_kafka(self, topics, bootstrap_servers, starting_offsets, options, max_records_per_batch,
                   format=None, schema=None):
        from ..sources.kafka import kafka_columns, parse_values
        spec = SourceSpec("kafka", {"topics": topics, "bootstrap_servers": bootstrap_servers,
                                    "starting_offsets": starting_offsets, "options": options,
                                    "max_records_per_batch": max_records_per_batch, "format": format,
                                    "schema": schema})
        if format is not None and schema is None:
            raise GraphError(f"flow '{self.flow.name}' (at {self.flow.location}): dp.read_kafka(format=...) needs "
                             "schema=\"col TYPE, ...\"")
        raw = self._source(spec, lambda: self.spark.createDataFrame([], kafka_columns()))
        return parse_values(raw, format, schema, self.spark)

    def _source(self, spec: SourceSpec, analysis_frame):
        index = len(self.sources)
        self.sources.append(spec)
        if self.analysing:
            return analysis_frame()
        return self.loaded[index]

    def config(self, key: str, default=None):
        self.graph.config_keys_read.add(key)
        return self.graph.spec.configuration.get(key, default)
