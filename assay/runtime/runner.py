"""`assay run`: load the pipeline, analyse the graph, then run the selected flows in dependency order.

Streaming tables process what their sources held when the flow started (availableNow), batch
after batch; materialized views are recomputed. Each batch is planned ahead in the flow's
checkpoint and committed after its tables, so a crash at any instant is repaired by the next run.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from .. import fs, secrets
from ..definitions import MATERIALIZED_VIEW, STREAMING_TABLE
from ..delta.commit import landed, no_fence
from ..delta.table import open_table, write_small
from ..engines import create_engine
from ..errors import AssayError, FlowError, storage_unwritable
from ..graph import Graph
from ..plan.context import run_query
from ..sources.base import BatchLimits
from ..sources.delta import DEDUPE_MAX_RECORDS
from ..spec import PipelineSpec
from . import faults
from .checkpoint import Checkpoint
from .eventlog import (FLOW_COMPLETED, FLOW_FAILED, FLOW_PROGRESS, RUN_COMPLETED, RUN_FAILED, RUN_STARTED, Event,
                       EventLog)
from .autocdc import SnapshotSource
from .execute import LATE_SUFFIX, QUARANTINE_SUFFIX, BatchResult, BatchRun, RowCounts, batch_mark
from . import view_refresh
from .fingerprint import digest, input_parts
from .lock import PipelineLock
from .publish import Publisher
from .reads import run_context
from .reporting import RunEvents
from .services import RunServices, analyse
from .staging import staging_dir
from .stream_sources import StreamSources, warn_missing_folder


@dataclass
class RunOptions:
    full_refresh: set[str] = field(default_factory=set)
    full_refresh_all: bool = False
    refresh: set[str] | None = None          # None: every flow
    max_files: int | None = None
    max_bytes: int | None = None
    max_records: int | None = None
    stop_requested: Callable[[], bool] = lambda: False


@dataclass(kw_only=True)
class FlowSummary(RowCounts):
    flow: str
    target: str
    kind: str
    batches: int = 0
    status: str = "pending"                  # queued | skipped | running | done | failed | stopped
    started: float | None = None             # monotonic time the flow started
    seconds: float = 0.0
    batch: int | None = None                 # the batch being processed
    error: str | None = None
    refresh: dict | None = None              # a materialized view's: {"refresh": noop|append|full, "reason": ...}

    def add(self, result: RowCounts) -> None:
        self.batches += 1
        super().add(result)

    @property
    def elapsed(self) -> float:
        if self.status == "running" and self.started is not None:
            return time.monotonic() - self.started
        return self.seconds


class Runner:
    def __init__(self, spec: PipelineSpec, options: RunOptions | None = None, engine=None,
                 on_progress: Callable[[FlowSummary], None] | None = None):
        self.spec = spec
        self.options = options or RunOptions()
        self.engine = engine or create_engine(spec.engine, spec.engine_conf)
        # the event log and the caller's callbacks (display, warnings, notices)
        self.events = RunEvents(EventLog(spec.system_dir / "event_log", spec.name), on_progress)
        self.summaries: dict[str, FlowSummary] = {}
        self.publisher = Publisher(self.engine, self.events)   # mirrors into PostgreSQL (dp.postgres), after commits
        self.fence = no_fence                     # the pipeline lock's, while a run holds it

    # --- the run ------------------------------------------------------------------------

    def run(self) -> list[FlowSummary]:
        with _storage_in_words(self.spec.storage), PipelineLock(self.spec.system_dir) as lock:
            self.fence = lock.fence        # checked before every commit and checkpoint record
            self.publisher.start_run()
            started = time.monotonic()
            try:
                self.events.record(Event(RUN_STARTED, metrics={"engine": self.engine.name, "target": self.spec.target}))
                services = self._analyse()
                selected = self._select(services.graph)
                self._queue(services.graph, selected)
                self._full_refresh(services, selected)
                self._run_flows(services, selected)
                self.publisher.finish()               # fails the run naming tables PostgreSQL refused
            except BaseException as exc:         # any failure is in history (an engine panic, a full disk)
                if not isinstance(exc, (KeyboardInterrupt, SystemExit)):   # those: history shows it interrupted
                    self._record_failure(exc, started)
                    self._upkeep()          # failing runs leave events too: a failing schedule must not grow them
                raise
            return self._finish(started)

    def _analyse(self) -> RunServices:
        services = analyse(self.spec, self.engine)
        from ..catalog import record_datasets
        record_datasets(self.spec, services.graph)
        self.spec.check_configuration_used(services.graph.config_keys_read)
        return services

    def _queue(self, graph: Graph, selected: set[str]) -> None:
        for name in graph.order:
            flow = graph.registry.flows[name]
            self.summaries[name] = FlowSummary(flow=name, target=flow.target, kind=graph.dataset(flow.target).kind,
                                               status="queued" if name in selected else "skipped")
            self.events.on_progress(self.summaries[name])

    def _run_flows(self, services: RunServices, selected: set[str]) -> None:
        for name in services.graph.order:
            if name in selected:
                if self.options.stop_requested():
                    break
                self._run_flow(services, name)

    def _finish(self, started: float) -> list[FlowSummary]:
        """Flows a stop request left queued or cut short are "stopped"; the run ends in history."""
        stopped = [s.flow for s in self.summaries.values() if s.status in ("queued", "stopped")]
        for name in stopped:
            self.summaries[name].status = "stopped"
            self.events.on_progress(self.summaries[name])
        self.events.record(Event(RUN_COMPLETED, status="stopped" if stopped else "completed",
                                 duration_s=time.monotonic() - started,
                                 metrics={name: s.rows_written for name, s in self.summaries.items()}))
        self._upkeep()
        return list(self.summaries.values())

    def _upkeep(self) -> None:
        from .history import after_run          # the event log and checkpoints kept from growing per run
        after_run(self.spec, self.events, self.fence)     # never raises: a failure is said, tried next run

    def _record_failure(self, exc: BaseException, started: float) -> None:
        not_run = [s.flow for s in self.summaries.values() if s.status == "queued"]
        _record_quietly(self.events, Event(RUN_FAILED, status="failed", message=_run_failure(exc, self.spec),
                                           duration_s=time.monotonic() - started,
                                           metrics={"flows_not_run": not_run} if not_run else None))

    def _select(self, graph: Graph) -> set[str]:
        names = set(graph.order)
        for requested in (self.options.full_refresh | (self.options.refresh or set())):
            if requested not in graph.registry.datasets:
                raise AssayError(f"--refresh/--full-refresh: '{requested}' is not a dataset of pipeline "
                                 f"'{self.spec.name}' (datasets: {', '.join(sorted(graph.registry.datasets))})")
        if self.options.refresh is None and not self.options.full_refresh:
            return names
        wanted = set(self.options.refresh or set()) | self.options.full_refresh
        return {n for n in names if graph.registry.flows[n].target in wanted}

    def _full_refresh(self, services: RunServices, selected: set[str]) -> None:
        """Reset checkpoints and tables of the refreshed datasets; a marker makes it crash-safe."""
        graph = services.graph
        targets = set(self.options.full_refresh)
        if self.options.full_refresh_all:
            targets = {graph.registry.flows[n].target for n in selected}
        marker_dir = self.spec.system_dir / "full_refresh"
        pending = {p.name for p in marker_dir.glob("*")} if marker_dir.exists() else set()
        for target in sorted(targets | pending):
            if target not in graph.registry.datasets:
                continue
            marker = marker_dir / target
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            for flow in graph.registry.flows_into(target):
                Checkpoint(services.checkpoint_dir(flow.name), self.fence).reset()
            for suffix in ("", QUARANTINE_SUFFIX, LATE_SUFFIX):
                path = services.table_path(target, suffix)
                table = open_table(path)
                if table is not None:
                    import pyarrow as pa
                    empty = pa.schema(table.schema().to_arrow())
                    write_small(path, empty.empty_table(), mode="overwrite",
                                metadata={"assay.operation": "full_refresh"})
            marker.unlink()

    # --- one flow -----------------------------------------------------------------------

    def _run_flow(self, services: RunServices, name: str) -> None:
        graph = services.graph
        flow = graph.registry.flows[name]
        dataset = graph.dataset(flow.target)
        summary = self.summaries[name]
        summary.status, summary.started = "running", time.monotonic()
        self.events.on_progress(summary)
        analysis = graph.analyses[name]

        def failed(message: str, batch: BatchResult | None = None) -> None:
            summary.status, summary.error = "failed", message
            summary.seconds = time.monotonic() - summary.started
            self.events.on_progress(summary)
            # a batch stopped by an expect_or_fail rule: what it read and each rule's counts (none written)
            counts = {"rows_read": batch.rows_read, "expectations": [r.__dict__ for r in batch.rules]} if batch else {}
            self.events.record(Event(FLOW_FAILED, flow=name, target=flow.target, batch_id=summary.batch,
                                     status="failed", message=message, duration_s=summary.seconds,
                                     inputs=analysis.inputs, outputs=[flow.target], **counts))
        stopped_early = False
        try:
            if dataset.kind == MATERIALIZED_VIEW:
                self._refresh_view(services, name)
            elif dataset.kind == STREAMING_TABLE:
                stopped_early = self._run_stream(services, name)
            self.publisher.after_commit(services, name, summary.batch)  # catches PostgreSQL up even when no batch ran
        except AssayError as exc:
            failed(str(exc), getattr(exc, "batch", None))
            raise
        except Exception as exc:
            message = _failure_message(exc, name, flow.location, summary.batch)
            failed(message)
            raise FlowError(message) from exc
        summary.status = "stopped" if stopped_early else "done"
        summary.seconds = time.monotonic() - summary.started
        summary.batch = None
        self.events.on_progress(summary)
        self.events.record(Event(FLOW_COMPLETED, flow=name, target=flow.target, status=summary.status,
                                 **_event_counts(summary), duration_s=summary.seconds, inputs=analysis.inputs,
                                 outputs=self._outputs(dataset, flow.target),
                                 metrics={"batches": summary.batches, "rows_inserted": summary.rows_inserted,
                                          "rows_replaced": summary.rows_replaced, **(summary.refresh or {})}))

    def _outputs(self, dataset, target: str) -> list[str]:
        outputs = [target]
        if dataset.quarantine:
            outputs.append(target + QUARANTINE_SUFFIX)
        if dataset.dedupe is not None and dataset.dedupe.watermark:
            outputs.append(target + LATE_SUFFIX)
        return outputs

    def _refresh_view(self, services: RunServices, name: str) -> None:
        graph = services.graph
        flow = graph.registry.flows[name]
        dataset = graph.dataset(flow.target)
        ckpt = Checkpoint(services.checkpoint_dir(name), self.fence)
        last = self._settle_interrupted_refresh(services, name, ckpt)
        batch = 0 if last is None else last[0] + 1
        for read in sorted(r for r in graph.analyses[name].static_reads if r.startswith("files:")):
            for src in services.files.whole_folders(name, read):
                if not fs.exists(src.root):
                    warn_missing_folder(self.events, flow, src)
        parts = input_parts(services, name)
        fingerprint = digest(parts)
        asked = flow.target in (self.options.refresh or set())
        unchanged = last is not None and last[1].get("inputs") == fingerprint
        if not asked and unchanged and open_table(services.table_path(flow.target)):
            self.summaries[name].refresh = view_refresh.noop(last).metrics()
            return                            # nothing it reads changed since its last refresh
        refresh = view_refresh.ViewRefresh(services, name, ckpt, last, parts, asked, unchanged)
        # Planned ahead with what it is computed from: a crash after the refresh landed must not
        # let a later refresh over newer inputs pass for this one (the batch mark alone cannot tell),
        # nor merge the rows appended up to these input versions twice.
        ckpt.write_plan(batch, {"batch": batch, "inputs": fingerprint, **refresh.record})
        self._batch_started(name, batch)
        ctx = run_context(services, flow)
        started = time.monotonic()
        df, technique = refresh.dataframe(run_query(flow, ctx), ctx)
        result = BatchRun(services, dataset, name, ckpt.generation, batch, "overwrite", self.fence).execute(df)
        result.metrics.update(technique.metrics())
        self.summaries[name].refresh = technique.metrics()
        faults.crash_point(faults.REFRESHED)
        # The fingerprint taken before the query: a change racing the refresh makes the next run refresh.
        ckpt.write_commit(batch, {"batch": batch, "rows": result.rows_written, "inputs": fingerprint,
                                  **refresh.record, "refresh": technique.kind})
        fs.delete_tree(staging_dir(self.spec, name))
        self._progress(services, name, batch, result, {}, time.monotonic() - started, ctx)

    def _settle_interrupted_refresh(self, services: RunServices, name: str, ckpt: Checkpoint):
        """A refresh planned but not recorded: when it landed in the view, record it with the inputs
        it was computed from, so the next step compares the current inputs with those (and refreshes
        as a new batch when they changed). When it did not land, it is simply computed again."""
        planned, last = ckpt.last_planned(), ckpt.last_committed()
        if planned is None or (last is not None and planned[0] <= last[0]):
            return last
        batch, record = planned
        target = services.graph.registry.flows[name].target
        if landed(services.table_path(target), batch_mark(ckpt.generation, name, "target", batch)):
            ckpt.write_commit(batch, {**record, "batch": batch, "rows": None})   # with the input versions it reflects
            return ckpt.last_committed()
        return last

    def _run_stream(self, services: RunServices, name: str) -> bool:
        """Batches until the flow's input holds nothing more; True when a stop request cut it short.
        Each batch is planned in the flow's checkpoint before it runs and recorded after its tables
        committed, so after a crash at any instant the next run replays exactly the planned batch."""
        ckpt = Checkpoint(services.checkpoint_dir(name), self.fence)
        source = self._batch_source(services, name, ckpt)
        while True:
            if self.options.stop_requested():
                return True
            planned, committed = ckpt.last_planned(), ckpt.last_committed()
            committed_id = committed[0] if committed else -1
            if planned and planned[0] > committed_id:
                plan = source.replay(*planned, committed[1] if committed else None)   # the batch a crash interrupted
            else:
                plan = source.plan(committed_id + 1, committed[1] if committed else None)
                if plan is None:
                    return False
                ckpt.write_plan(plan.batch, plan.record)
            self._batch_started(name, plan.batch)
            started = time.monotonic()
            result, ctx = source.run(plan, ckpt.generation)
            ckpt.write_commit(plan.batch, source.commit_record(plan, result))
            self._progress(services, name, plan.batch, result, plan.offsets, time.monotonic() - started, ctx)
            if plan.last:
                return False

    def _batch_source(self, services: RunServices, name: str, ckpt: Checkpoint):
        """What the flow's batches read: snapshots (AUTO CDC FROM SNAPSHOT) or streaming sources."""
        graph = services.graph
        flow = graph.registry.flows[name]
        if flow.auto_cdc is not None and flow.auto_cdc.snapshot:
            return SnapshotSource(services, flow, self.fence)
        limits = BatchLimits(max_files=self.options.max_files or self.spec.batch_max_files,
                             max_bytes=self.options.max_bytes or self.spec.batch_max_bytes,
                             max_records=self.options.max_records or self.spec.batch_max_records
                             or (DEDUPE_MAX_RECORDS if graph.dataset(flow.target).dedupe is not None else None))
        return StreamSources(services, flow, ckpt.folder, limits, self.events, self.fence)

    def _batch_started(self, name: str, batch: int) -> None:
        summary = self.summaries[name]
        summary.batch = batch
        self.events.on_progress(summary)

    def _progress(self, services, name, batch, result: BatchResult, offsets, seconds, ctx) -> None:
        graph = services.graph
        flow = graph.registry.flows[name]
        summary = self.summaries[name]
        summary.add(result)
        self.events.on_progress(summary)
        self.events.record(Event(
            FLOW_PROGRESS, flow=name, target=flow.target, batch_id=batch, **_event_counts(result),
            duration_s=seconds, sources=offsets or None,
            expectations=[r.__dict__ for r in result.rules] or None,
            inputs=sorted(ctx.static_reads | ctx.stream_reads) or graph.analyses[name].inputs,
            outputs=self._outputs(graph.dataset(flow.target), flow.target),
            metrics={**result.metrics, **ctx.metrics, "rows_inserted": result.rows_inserted,
                     "rows_replaced": result.rows_replaced},
            status="ok"))
        self.publisher.after_commit(services, name, batch)


@contextmanager
def _storage_in_words(root):
    """A read-only, forbidden or full storage root in Assay's words (naming it), not an OSError."""
    try:
        yield
    except Exception as exc:
        said = None if isinstance(exc, AssayError) else storage_unwritable(exc, root)
        if said is None:
            raise
        raise said from exc


def _run_failure(exc: BaseException, spec) -> str:
    if isinstance(exc, AssayError):
        return str(exc)
    said = storage_unwritable(exc, spec.storage)
    return str(said) if said is not None else f"{type(exc).__name__}: {exc}"


def _record_quietly(events: RunEvents, event: Event) -> None:
    try:
        events.record(event)
    except Exception:
        pass        # the event log cannot be written either (a full disk): the run's own error still reaches the user


def _failure_message(exc: Exception, name: str, location, batch: int | None) -> str:
    """An engine or user-code failure in one paragraph: which flow, where, which batch, and the
    engine's own first line (secrets masked)."""
    from ..engine_errors import explain
    at_batch = f" in batch {batch}" if batch is not None else ""
    said = explain(secrets.redact(str(exc)))
    kind = "" if "\n    engine:" in said else f"{type(exc).__name__}: "
    return (f"flow '{name}' (defined at {location}) failed{at_batch}: {kind}{said}\nTables and checkpoints are "
            "unchanged for the failed batch; the next run retries it.")


def _event_counts(counts: RowCounts) -> dict:
    """The counts the event log has columns for (inserted/replaced go to metrics)."""
    values = counts.counts()
    return {k: v for k, v in values.items() if k not in ("rows_inserted", "rows_replaced")}
