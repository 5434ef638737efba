"""A streaming flow's sources (files, Kafka topics, upstream tables) as the runner's batch loop drives them.

A batch reads each source from the position the last committed batch reached up to the end its
plan fixed; its rows are loaded into a staging folder of the batch, queried, and written by
BatchRun (AutoCdcRun for an AUTO CDC flow).
"""
from __future__ import annotations

from datetime import datetime

from .. import fs
from ..delta.table import current_version
from ..errors import FlowError
from ..plan.context import FlowContext, run_query
from ..sources.base import BatchLimits, LoadContext, Plan
from ..sources.delta import DeltaSource
from . import faults
from .autocdc import AutoCdcRun
from .batch_plan import BatchPlan
from .eventlog import SOURCE_WARNING, Event
from .execute import BatchResult, BatchRun
from .reads import run_context
from .reporting import RunEvents
from .staging import staging_dir


class StreamSources:
    def __init__(self, services, flow, folder, limits: BatchLimits, events: RunEvents, fence):
        self.services, self.graph, self.flow, self.engine = services, services.graph, flow, services.engine
        self.dataset = self.graph.dataset(flow.target)
        self.specs = self.graph.analyses[flow.name].sources
        self.sources = [self._make_source(spec) for spec in self.specs]
        self.once_done = folder / "once_done"    # a once flow read its input to the end
        self.limits, self.events, self.fence = limits, events, fence
        self.plans: list[Plan] = []              # the current batch's, one per source

    def plan(self, batch: int, committed: dict | None) -> BatchPlan | None:
        """The next batch, from the positions the last commit reached; None when no source has more."""
        if self.flow.once and self.once_done.exists():
            return None           # a once flow ran to the end of its input: again only after a full refresh
        positions = committed["positions"] if committed else [None] * len(self.sources)
        plans = [src.plan(pos, self.limits) for src, pos in zip(self.sources, positions)]
        self._report_source_warnings()
        if all(p is None for p in plans):
            if self.flow.once:
                self.once_done.touch()
            return None
        self.plans = [p if p is not None else Plan(start=pos, end=pos, info={"unchanged": True})
                      for p, pos in zip(plans, positions)]
        record = {"batch": batch, "plans": [p.__dict__ for p in self.plans],
                  "state_version": current_version(self.services.table_path(self.flow.target))
                  if self.dataset.dedupe is not None else None,
                  "previous_max": committed.get("watermark_max") if committed else None,
                  "planned_at": datetime.utcnow().isoformat() + "Z"}
        return self._batch(batch, record)

    def replay(self, batch: int, record: dict, committed: dict | None) -> BatchPlan:
        """The batch a crash interrupted, as it was planned."""
        self.plans = [Plan(**p) if p else None for p in record["plans"]]
        return self._batch(batch, record)

    def _batch(self, batch: int, record: dict) -> BatchPlan:
        return BatchPlan(batch, record, offsets={src.key(): p.info for src, p in zip(self.sources, self.plans)})

    def run(self, plan: BatchPlan, generation: str) -> tuple[BatchResult, FlowContext]:
        staging = staging_dir(self.graph.spec, self.flow.name) / f"source-{plan.batch}"
        try:
            result, ctx = self._attempt(plan, generation, staging)
        except Exception as exc:
            if not self.engine.is_invalid_utf8(exc) or not self._repair_encoding():
                raise
            result, ctx = self._attempt(plan, generation, staging)   # once more, reading the repaired copies
        faults.crash_point(faults.COMMITTED)
        fs.delete_tree(staging)       # the loaded copies: a rerun loads its plan again
        return result, ctx

    def commit_record(self, plan: BatchPlan, result: BatchResult) -> dict:
        return {"batch": plan.batch, "positions": [p.end for p in self.plans],
                "watermark_max": plan.watermark_after(result.watermark_max), "rows": result.rows_written}

    def _attempt(self, plan: BatchPlan, generation: str, staging):
        fs.delete_tree(staging)
        loaded = {}
        for index, (src, source_plan) in enumerate(zip(self.sources, self.plans)):
            folder = staging / f"source{index}"
            folder.mkdir(parents=True)
            if source_plan.info.get("unchanged"):
                loaded[index] = self._empty_like(self.specs[index])
            else:
                loaded[index] = src.load(LoadContext(self.engine.spark, str(folder), self.engine), source_plan)
        ctx = run_context(self.services, self.flow, loaded=loaded)
        df = run_query(self.flow, ctx)
        run = (AutoCdcRun(self.services, self.dataset, self.flow, generation, plan.batch, self.fence)
               if self.flow.auto_cdc is not None
               else BatchRun(self.services, self.dataset, self.flow.name, generation, plan.batch, "append", self.fence))
        return run.execute(df, plan), ctx

    def _repair_encoding(self) -> bool:
        """Landing files with invalid UTF-8 stopped the batch: keep repaired copies, say so."""
        repaired = []
        for src, source_plan in zip(self.sources, self.plans):
            if hasattr(src, "repair_encoding") and not source_plan.info.get("unchanged"):
                repaired += src.repair_encoding(self.engine, source_plan)
        for path in repaired:
            message = (f"{path} is not valid UTF-8: flow '{self.flow.name}' reads a copy with the invalid bytes "
                       "replaced by U+FFFD (as Spark's text reader does); the file itself is left as it is")
            self.events.warning(message, Event(SOURCE_WARNING, flow=self.flow.name, status="warning",
                                               message=message))
        return bool(repaired)

    def _report_source_warnings(self) -> None:
        name = self.flow.name
        for src in self.sources:
            if getattr(src, "folder_missing", False):     # else the flow "completes" reading nothing, silently
                src.folder_missing = False
                warn_missing_folder(self.events, self.flow, src)
            for item in getattr(src, "overwritten", [])[:]:
                message = (f"{item['file']} was rewritten in place after flow '{name}' read it "
                           f"({item['read_size']:,} → {item['size_now']:,} bytes); it is not read again "
                           "(read_files(..., allow_overwrites=True) to read rewritten files)")
                self.events.warning(message, Event(SOURCE_WARNING, flow=name, status="warning", message=message,
                                                   sources={src.key(): item}))
            if hasattr(src, "overwritten"):
                src.overwritten.clear()

    def _empty_like(self, spec):
        """What an unchanged source gives the query: no rows, with the source's columns."""
        ctx = self.services.context(self.flow)   # empty frames
        if spec.kind == "delta":
            return ctx.read_stream(spec.stream_of)
        if spec.kind == "files":
            return self.services.files.source(self.flow, spec).analysis_frame(self.engine.spark)
        return ctx.read_kafka(**spec.args)

    def _make_source(self, spec):
        if spec.kind == "delta":
            return DeltaSource(spec.stream_of, self.services.table_path(spec.stream_of))
        if spec.kind == "files":
            return self.services.files.source(self.flow, spec)
        if spec.kind == "kafka":
            from ..sources.kafka import make_kafka_source
            return make_kafka_source(spec.args, self.graph.spec.configuration,
                                     f"flow '{self.flow.name}' (at {self.flow.location})")
        raise FlowError(f"unknown source kind {spec.kind}")


def warn_missing_folder(events, flow, src) -> None:
    """A landing folder that does not exist reads as empty: said on every run that reads it."""
    message = (f"the landing folder {src.root} does not exist: flow '{flow.name}' (table {flow.target}) read "
               "nothing from it. Check `landing` in assay.yml, --landing, ASSAY_LANDING and the path given to "
               "read_files")
    events.warning(message, Event(SOURCE_WARNING, flow=flow.name, status="warning", message=message,
                                  sources={src.key(): {"missing_folder": str(src.root)}}))
