"""What running an analysed graph needs besides the graph: the engine, where each dataset's tables
and each flow's checkpoint are stored, and the file sources. The graph (assay/graph.py) is the
analysis alone; analysis gets the file sources from here, so the runs read the very sources it
resolved."""
from __future__ import annotations

from pathlib import Path

from ..fs import StoragePath, is_uri
from ..graph import Graph, build_graph
from ..plan.context import FlowContext, SourceSpec
from ..spec import PipelineSpec
from .checkpoint import checkpoint_dir


class FileSourceCache:
    """The FileSource of each dp.read_files call, one per flow, folder, format and tracking, made and
    its schema resolved on first use (plan/context.py's FileSources)."""

    def __init__(self, spec: PipelineSpec, engine):
        self.spec, self.engine = spec, engine
        self._sources: dict = {}

    def source(self, flow, spec: SourceSpec, tracked: bool = True):
        from ..sources.files import FileSource
        key = (flow.name, spec.args["path"], spec.args["format"], tracked)
        if key not in self._sources:
            given = str(spec.args["path"])     # a URI or an absolute path as it is, else under the landing root
            root = StoragePath(given) if is_uri(given) or Path(given).is_absolute() else self.spec.landing / given
            options = dict(spec.args["options"])
            source = FileSource(root, spec.args["format"], spec.args["schema"], options,
                                checkpoint_dir(self.spec, flow.name), table=flow.target)
            source.resolve(self.engine.spark)
            self._sources[key] = source
        return self._sources[key]

    def whole_folders(self, flow_name: str, read: str) -> list:
        """The file sources behind a flow's static read `read` ('files:<path>', a folder read whole)."""
        return [s for (f, path, _, tracked), s in self._sources.items()
                if f == flow_name and not tracked and f"files:{path}" == read]


class RunServices:
    """An analysed graph with what running it needs: the engine, the storage paths, the file sources."""

    def __init__(self, graph: Graph, engine, files: FileSourceCache):
        self.graph, self.engine, self.files = graph, engine, files

    @property
    def spark(self):
        return self.engine.spark

    def table_path(self, name: str, suffix: str = "") -> Path:
        return self.graph.spec.table_path(self.graph.schema_name(name), name + suffix)

    def checkpoint_dir(self, flow_name: str) -> Path:
        return checkpoint_dir(self.graph.spec, flow_name)

    def context(self, flow, reads=None, **fields) -> FlowContext:
        """A flow's query context; without `reads`, dp.read* return empty frames (as in analysis)."""
        return FlowContext(graph=self.graph, flow=flow, spark=self.spark, files=self.files, reads=reads, **fields)


def analyse(spec: PipelineSpec, engine) -> RunServices:
    """Load and analyse the pipeline on `engine`; the graph is `.graph`. The session starts before the
    pipeline's modules load: they may define UDFs at import time."""
    files = FileSourceCache(spec, engine)
    return RunServices(build_graph(spec, engine.spark, files), engine, files)
