"""What a running flow's query reads: a table's rows now, and every file of a folder now. Analysis
answers the same calls with empty DataFrames of the right schema (plan/context.py); these answers
need the engine and the storage, so they live in the runtime."""
from __future__ import annotations

from ..plan.context import FlowContext


class RunReads:
    def __init__(self, services):
        self.services = services
        self.engine = services.engine

    def table(self, name: str):
        """A table's current rows; before its first commit, none, with the schema analysis found."""
        path = self.services.table_path(name)
        if not (path / "_delta_log").exists():
            return self.engine.spark.createDataFrame([], self.services.graph.schema_of(name))
        return self.engine.read_table(path)

    def all_files(self, source):
        """Every file of a folder now, parsed like a streaming batch but tracked nowhere."""
        files = source.list_files()
        if not files:
            return source.analysis_frame(self.engine.spark)
        return source.load_files(self.engine, files, tracked=False)


def run_context(services, flow, **fields) -> FlowContext:
    """The context of a flow's query while it runs: dp.read* return data, not empty frames."""
    return services.context(flow, RunReads(services), **fields)
