"""The dataflow graph: run every query once on empty inputs to learn what it reads and produces,
then validate (unknown datasets or columns, cycles, bad expectation SQL) and order the flows.

Every error names the dataset and the file and line that defined it; all errors of a graph are
reported together.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .definitions import MATERIALIZED_VIEW, STREAMING_TABLE, TEMPORARY_VIEW, Dataset, Flow, Registry
from .engine_errors import translate
from .errors import AssayError, GraphError
from .loader import load_registry
from .plan import autocdc
from .plan import dedupe as dedupe_rules
from .plan.context import FileSources, FlowContext, Pending, SourceSpec, run_query
from .quality import check_sql
from .sinks.declaration import problems as publish_problems
from .sources.files.schema import resolve_schema
from .spec import PipelineSpec


@dataclass
class FlowAnalysis:
    flow: Flow
    schema: object = None                  # StructType of the query's output
    sources: list[SourceSpec] = field(default_factory=list)
    static_reads: set = field(default_factory=set)
    stream_reads: set = field(default_factory=set)

    @property
    def inputs(self) -> list[str]:
        return sorted(self.static_reads | self.stream_reads)


class Graph:
    """A pipeline's analysis: its definitions, each flow's reads and schema, and the order to run them.
    It holds no engine or storage: the runtime's RunServices (runtime/services.py) runs it."""

    def __init__(self, spec: PipelineSpec, registry: Registry):
        self.spec = spec
        self.registry = registry
        self.analyses: dict[str, FlowAnalysis] = {}
        self._schemas: dict[str, object] = {}
        self.order: list[str] = []           # flow names, dependencies first
        # configuration keys read with dp.config (and by the runtime), to catch --conf keys nothing reads
        self.config_keys_read: set[str] = {"kafka.bootstrap_servers"}

    # --- lookups ------------------------------------------------------------------------

    def dataset(self, name: str) -> Dataset:
        return self.registry.datasets[name]

    def schema_name(self, name: str) -> str:
        """The catalog schema `name` is in (its declared one, or the target's default)."""
        return self.spec.schema_for(self.dataset(name).schema_name)

    def schema_of(self, name: str):
        if name not in self._schemas:
            raise Pending(name)
        return self._schemas[name]

    # --- analysis -----------------------------------------------------------------------

    def analyse(self, spark, files: FileSources) -> "Graph":
        """Runs every query on empty DataFrames of `spark`, its file sources from `files` (kept by
        the caller: the runs read the sources analysis resolved)."""
        errors: list[str] = []
        pending = list(self.registry.flows.values())
        for flow in pending:
            if flow.target not in self.registry.datasets:
                errors.append(f"flow '{flow.name}' (at {flow.location}) appends to '{flow.target}', which is not "
                              "declared: add dp.create_streaming_table('" + flow.target + "')")
        pending = [f for f in pending if f.target in self.registry.datasets]
        waiting: dict[str, str] = {}
        while pending:
            progressed = False
            for flow in list(pending):
                ctx = FlowContext(graph=self, flow=flow, spark=spark, files=files)
                try:
                    df = run_query(flow, ctx)
                    if df is None or not hasattr(df, "schema"):
                        raise GraphError(f"the query of '{flow.name}' (at {flow.location}) returned "
                                         f"{type(df).__name__}, not a DataFrame")
                    schema = df.schema
                    if flow.auto_cdc is not None:   # the target's rows are the changes applied by key
                        schema = autocdc.target_schema(df, flow.auto_cdc, autocdc.flow_label(flow))
                except Pending as waiting_for:
                    waiting[flow.name] = waiting_for.name
                    continue
                except AssayError as exc:
                    errors.append(str(exc))
                    pending.remove(flow)
                    continue
                except Exception as exc:  # the engine's analysis error: unknown column, bad SQL...
                    errors.append(translate(str(exc), flow.target, flow.location, self._input_columns(ctx)))
                    pending.remove(flow)
                    continue
                self.analyses[flow.name] = FlowAnalysis(flow, schema, ctx.sources, ctx.static_reads,
                                                        ctx.stream_reads)
                self._schemas.setdefault(flow.target, schema)
                pending.remove(flow)
                waiting.pop(flow.name, None)
                progressed = True
            if not progressed and pending:
                failed_names = {self.registry.flows[n].target for n in waiting} | set()
                cycle = self._describe_cycle(waiting)
                if cycle:
                    errors.append(f"the graph has a cycle: {cycle}")
                else:
                    for flow in pending:
                        dep = waiting.get(flow.name)
                        if dep not in failed_names:
                            errors.append(f"dataset '{flow.target}' (at {flow.location}) cannot be analysed because "
                                          f"'{dep}' failed")
                break
        errors += self._validate(spark)
        if errors:
            raise GraphError(f"{len(errors)} problem(s) in pipeline '{self.spec.name}':\n- " + "\n- ".join(errors))
        self.order = self._topological_order()
        return self

    def _input_columns(self, ctx: FlowContext) -> dict[str, list[str]]:
        """The columns of the datasets a query read before it failed (for the error message)."""
        return {name: [f.name for f in self._schemas[name].fields]
                for name in sorted(ctx.static_reads | ctx.stream_reads) if name in self._schemas}

    def _describe_cycle(self, waiting: dict[str, str]) -> str | None:
        target_flow = {}
        for name in waiting:
            target_flow.setdefault(self.registry.flows[name].target, name)
        for start in waiting:
            seen, node = [], start
            while node in waiting and node not in seen:
                seen.append(node)
                node = target_flow.get(waiting[node], waiting[node])
            if node in seen:
                loop = seen[seen.index(node):] + [node]
                return " → ".join(f"{self.registry.flows[n].target} ({self.registry.flows[n].location})"
                                  if n in self.registry.flows else n for n in loop)
        return None

    def _validate(self, spark) -> list[str]:
        errors = []
        for ds in self.registry.datasets.values():
            flows = self.registry.flows_into(ds.name)
            if not flows:
                errors.append(f"dataset '{ds.name}' (at {ds.location}) has no flow writing to it")
                continue
            schema = self._schemas.get(ds.name)
            if schema is None:
                continue
            columns = [f.name for f in schema.fields]
            for rule in ds.expectations:
                problem = check_sql(spark, schema, rule)
                if problem:
                    errors.append(f"expectation '{rule.name}' of '{ds.name}' (at {ds.location}) is not valid SQL "
                                  f"over its columns: {problem}")
            for col in (*ds.partition_cols, *ds.cluster_by):
                if col not in columns:
                    errors.append(f"'{ds.name}' (at {ds.location}) is partitioned or clustered by '{col}', which its "
                                  f"query does not produce (columns: {', '.join(columns)})")
            if ds.dedupe is not None:
                if ds.kind != STREAMING_TABLE:
                    errors.append(f"dedupe on '{ds.name}' (at {ds.location}): only streaming tables deduplicate")
                else:
                    try:
                        dedupe_rules.resolve(ds.dedupe, columns, ds.name, ds.location)
                    except GraphError as exc:
                        errors.append(str(exc))
            if ds.schema is not None:
                declared = resolve_schema(spark, ds.schema)
                missing = [f.name for f in declared.fields if f.name not in columns]
                if missing:
                    errors.append(f"'{ds.name}' (at {ds.location}) declares column(s) {', '.join(missing)} that its "
                                  f"query does not produce")
            errors += _auto_cdc_problems(ds, flows)
            errors += publish_problems(ds.name, ds.kind, ds.table_properties, str(ds.location), columns)
            for flow in flows:
                analysis = self.analyses.get(flow.name)
                if flow.auto_cdc is not None and flow.auto_cdc.snapshot:
                    continue        # reads whole snapshots, no stream
                if analysis and ds.kind == MATERIALIZED_VIEW and analysis.sources:
                    errors.append(f"materialized view '{ds.name}' (at {flow.location}) reads a stream; use dp.read() "
                                  "or make it a streaming table")
                if analysis and ds.kind == STREAMING_TABLE and not analysis.sources:
                    errors.append(f"streaming table '{ds.name}' (at {flow.location}) reads no stream (dp.read_stream, "
                                  "dp.read_files or dp.read_kafka): make it a materialized view")
        return errors

    def _topological_order(self) -> list[str]:
        writers: dict[str, list[str]] = {}
        for flow in self.registry.flows.values():
            writers.setdefault(flow.target, []).append(flow.name)
        order, done, visiting = [], set(), set()

        def upstream_flows(flow_name: str) -> list[str]:
            result = []
            for name in self.analyses[flow_name].inputs:
                for writer in writers.get(name, []):
                    if self.dataset(name).kind == TEMPORARY_VIEW:
                        result.extend(upstream_flows(writer))
                    else:
                        result.append(writer)
            return result

        def visit(name: str) -> None:
            if name in done:
                return
            visiting.add(name)
            for dep in upstream_flows(name):
                if dep not in visiting:
                    visit(dep)
            visiting.discard(name)
            done.add(name)
            order.append(name)

        for name in self.registry.flows:
            visit(name)
        return [n for n in order if self.dataset(self.registry.flows[n].target).kind != TEMPORARY_VIEW]

    def downstream_of(self, names: set[str]) -> set[str]:
        return {n for n in self.order if set(self.analyses[n].inputs) & names}


def build_graph(spec: PipelineSpec, spark, files: FileSources) -> Graph:
    """Load and analyse the pipeline (runtime/services.py's `analyse` gives the engine's session and file sources)."""
    return Graph(spec, load_registry(spec)).analyse(spark, files)


def _auto_cdc_problems(ds: Dataset, flows: list[Flow]) -> list[str]:
    """An AUTO CDC target: a streaming table written by that one flow, which applies changes by key
    (expectations, dedupe and quarantine act on appended rows, which it has none of)."""
    cdc_flows = [f for f in flows if f.auto_cdc is not None]
    if not cdc_flows:
        return []
    flow = cdc_flows[0]
    where = f"AUTO CDC flow '{flow.name}' (at {flow.location})"
    if ds.kind != STREAMING_TABLE:
        return [f"{where} writes into '{ds.name}', a {ds.kind.replace('_', ' ')}: create the target with "
                "dp.create_streaming_table"]
    problems = []
    if len(flows) > 1:
        others = ", ".join(f"'{f.name}' (at {f.location})" for f in flows if f is not flow)
        problems.append(f"{where}: '{ds.name}' is written by other flows too ({others}); an AUTO CDC target has "
                        "exactly one flow")
    if ds.expectations or ds.dedupe is not None or ds.quarantine:
        problems.append(f"{where}: its target '{ds.name}' (at {ds.location}) declares expectations, dedupe or "
                        "quarantine, which AUTO CDC targets do not support: put them on the source table")
    return problems
