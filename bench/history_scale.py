"""What a long history costs: RUNS runs of a 3-flow pipeline in the event log and the checkpoints,
then `assay status`, `assay history`, the UI's run list and run (flows) documents, a flow's
checkpoint lookup and one more event's commit, timed before and after the history upkeep
(assay/runtime/history.py: event-log compaction and checkpoint, checkpoint records pruned).

The history is simulated in process, not run: each run's events are built by EventLog as a run
records them (run_started, per flow a flow_progress and a flow_completed, run_completed) and,
as `assay run` writes them, each event is one data file of the event log. To be cheap the files
are committed to the Delta log 500 at a time, with a Delta checkpoint at the end: the table a
reader opens is the one 80 000 single-event commits make (delta-rs checkpoints every 100
commits by itself, so a reader of either replays a checkpoint and a few commits). Each flow's
checkpoint gets one plan and one record per run, written as `Checkpoint` writes them but
without the pruning (as before it existed). Then, in process, each measure is taken before the
upkeep, the upkeep is run once (the one-off compaction of the whole history), each measure is
taken again, and STEADY more runs are recorded through EventLog one commit per event, each
ending with the upkeep check as `assay run` does, to show the steady state.

Usage: python bench/history_scale.py [--runs 10000] [--steady 20] [--repeat 1] [--cap 300]
Each measure runs in a process of its own (this script), timed inside it after its set-up, and is
given up after --cap seconds.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

FLOWS = ("orders_raw", "orders", "daily_revenue")
PIPELINE = textwrap.dedent('''
    from pyspark.sql import functions as F
    from assay import pipelines as dp

    @dp.table(name="bronze.orders_raw")
    def orders_raw():
        return dp.read_files("orders", format="json", schema="id STRING, amount DOUBLE")

    @dp.table(name="silver.orders")
    @dp.expect_or_drop("positive_amount", "amount > 0")
    def orders():
        return dp.read_stream("orders_raw")

    @dp.materialized_view(name="gold.daily_revenue")
    def daily_revenue():
        return dp.read("orders").groupBy("id").agg(F.sum("amount").alias("revenue"))
''')


def run_events(index: int, start: datetime):
    """One run's events, as the runner records them."""
    from assay.runtime.eventlog import Event
    t = start
    events = [Event("run_started", metrics={"engine": "sail", "target": "dev"}, timestamp=t)]
    for n, flow in enumerate(FLOWS):
        t += timedelta(seconds=0.5)
        read = 1000 + (index * 37 + n) % 500
        dropped = index % 7 if flow == "orders" else 0
        counts = dict(rows_read=read, rows_written=read - dropped, rows_dropped=dropped, rows_quarantined=0,
                      rows_late=0, rows_duplicate=index % 3)
        expectations = [{"name": "positive_amount", "action": "drop", "passed": read - dropped,
                         "failed": dropped}] if flow == "orders" else None
        events.append(Event("flow_progress", flow=flow, target=flow, batch_id=index, **counts, duration_s=0.4,
                            sources={f"files:json:/landing/{flow}": {"files": 1, "bytes": 54321}},
                            expectations=expectations, inputs=[f"files:/landing/{flow}"], outputs=[flow],
                            metrics={"rows_inserted": read - dropped, "rows_replaced": 0}, status="ok", timestamp=t))
        events.append(Event("flow_completed", flow=flow, target=flow, status="done", **counts, duration_s=0.5,
                            inputs=[f"files:/landing/{flow}"], outputs=[flow],
                            metrics={"batches": 1, "rows_inserted": read - dropped, "rows_replaced": 0}, timestamp=t))
    events.append(Event("run_completed", status="completed", duration_s=2.0, timestamp=t,
                        metrics={flow: 1000 for flow in FLOWS}))
    return events


def write_history(project: Path, runs: int) -> float:
    """The event log (one file per event) and each flow's checkpoint (one plan, one record per run)."""
    from deltalake import DeltaTable, write_deltalake
    from deltalake.transaction import AddAction
    from deltalake import Schema
    from assay.runtime.checkpoint import Checkpoint
    from assay.runtime.eventlog import SCHEMA, EventLog
    started = time.perf_counter()
    system = project / "storage" / "_system"
    path = system / "event_log"
    write_deltalake(str(path), SCHEMA.empty_table(), mode="append")     # the table, as the first record makes it
    first = datetime(2025, 1, 1, tzinfo=timezone.utc)

    def one_run(index: int) -> list[AddAction]:
        log = EventLog(path, "bench", run_id=f"{first + timedelta(hours=index):%Y%m%dT%H%M%S}-{index:06x}")
        adds = []
        for event in run_events(index, first + timedelta(hours=index)):
            name = f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
            table = pa.Table.from_pylist([log._row(event)], schema=SCHEMA)
            pq.write_table(table, path / name, compression="zstd", compression_level=3)
            stats = {"numRecords": 1, "minValues": {"timestamp": event.timestamp.isoformat()},
                     "maxValues": {"timestamp": event.timestamp.isoformat()}, "nullCount": {}}
            adds.append(AddAction(name, (path / name).stat().st_size, {}, int(time.time() * 1000), True,
                                  json.dumps(stats)))
        return adds

    pending: list[AddAction] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for adds in pool.map(one_run, range(runs), chunksize=50):
            pending += adds
            if len(pending) >= 500:
                DeltaTable(str(path)).create_write_transaction(pending, mode="append", schema=Schema.from_arrow(SCHEMA))
                pending = []
    if pending:
        DeltaTable(str(path)).create_write_transaction(pending, mode="append", schema=Schema.from_arrow(SCHEMA))
    DeltaTable(str(path)).create_checkpoint()
    for flow in FLOWS:                  # as Checkpoint writes them, less the fsync of each, and never pruned
        folder = system / "checkpoints" / flow
        for kind in ("offsets", "commits"):
            (folder / kind).mkdir(parents=True)
            for batch in range(runs):
                (folder / kind / f"{batch}.json").write_text(
                    json.dumps({"batch": batch, "sources": {"files": {"position": batch + 1}}}))
        Checkpoint(folder).generation
    return time.perf_counter() - started


def timed(fn, repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cli(project: Path, *args: str) -> None:
    from typer.testing import CliRunner
    from assay.cli import app
    result = CliRunner().invoke(app, [*args, "-p", str(project)], catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"assay {' '.join(args)} failed: {result.output}")


MEASURES = ("assay query SELECT 1 (engine start, for scale)", "assay history", "assay status",
            "UI /api/runs, cold (whole log read)", "UI /api/runs, warm", "UI /api/runs/<run> (its flows)",
            "UI /api/graph (latest run's flows)", "checkpoint last planned + last committed",
            "one event recorded (a run writes ~8)")


def measure(project: Path, name: str, repeat: int) -> float:
    """One measure, timed in this process after its set-up (the engine's first start, the UI's
    declared graph) so that only what the history costs is counted."""
    from assay.runtime.checkpoint import Checkpoint
    from assay.runtime.eventlog import Event, EventLog
    from assay.spec import load_spec
    from assay.ui.api import Lake
    spec = load_spec(project)
    if name.startswith("assay"):
        cli(project, "query", "SELECT 1 AS x")       # the engine's first start in this process: not measured
        args = {"assay history": ("history", "--format", "json"), "assay status": ("status",)}.get(
            name, ("query", "SELECT 1 AS x"))
        return timed(lambda: cli(project, *args), repeat)
    if name.startswith("UI /api/runs, cold"):
        return timed(lambda: Lake(spec).runs(), repeat)
    if name.startswith("UI"):
        lake = Lake(spec)
        lake.declared()                              # the declared graph (an engine session): not the log's cost
        latest = lake.runs(limit=1)["runs"][0]["run_id"]
        fn = {"UI /api/runs, warm": lambda: lake.runs(), "UI /api/runs/<run> (its flows)": lambda: lake.run(latest),
              "UI /api/graph (latest run's flows)": lambda: lake.graph()}[name]
        return timed(fn, repeat * 5)
    if name.startswith("checkpoint"):
        folder = spec.system_dir / "checkpoints" / FLOWS[1]
        return timed(lambda: (Checkpoint(folder).last_planned(), Checkpoint(folder).last_committed()), repeat * 5)
    log = EventLog(spec.system_dir / "event_log", "bench")
    return timed(lambda: log.record(Event("source_warning", message="x")), repeat * 3)


def measures(project: Path, repeat: int, cap: float) -> dict[str, float | None]:
    """Each measure in a process of its own (this script, --measure), given up after `cap` seconds
    (None): without the upkeep some take minutes."""
    import subprocess
    out: dict[str, float | None] = {}
    for name in MEASURES:
        try:
            proc = subprocess.run([sys.executable, __file__, "--measure", str(project), name, "--repeat", str(repeat)],
                                  capture_output=True, text=True, timeout=cap)
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                raise SystemExit(f"{name}: failed\n{proc.stderr[-2000:]}")
            out[name] = float(lines[-1])
        except subprocess.TimeoutExpired:
            out[name] = None
    return out


def describe(project: Path) -> str:
    from deltalake import DeltaTable
    system = project / "storage" / "_system"
    table = DeltaTable(str(system / "event_log"))
    on_disk = len(list((system / "event_log").glob("*.parquet")))
    records = sum(len(list((system / "checkpoints" / f / k).glob("*.json"))) for f in FLOWS for k in ("offsets", "commits"))
    return (f"event log: {len(table.file_uris()):,} data files in the table ({on_disk:,} on disk until vacuumed), "
            f"version {table.version():,}; checkpoint records: {records:,} in {len(FLOWS)} flows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steady", type=int, default=20, help="runs recorded one commit per event after the upkeep")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions of each measure (median)")
    parser.add_argument("--cap", type=float, default=300, help="seconds after which a measure is given up")
    parser.add_argument("--measure", nargs=2, metavar=("PROJECT", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("RUST_LOG", "error")
    if args.measure:
        with contextlib.redirect_stdout(io.StringIO()):
            seconds = measure(Path(args.measure[0]), args.measure[1], args.repeat)
        print(seconds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "history_scale"
        (project / "transformations").mkdir(parents=True)
        (project / "assay.yml").write_text("name: history_scale\nstorage: ./storage\nlanding: ./landing\n"
                                           "schemas: {bronze: 01_bronze, silver: 02_silver, gold: 03_gold, "
                                           "system: _system}\n")
        (project / "transformations" / "shop.py").write_text(PIPELINE)
        seconds = write_history(project, args.runs)
        print(f"{args.runs:,} runs simulated in {seconds:.0f} s; {describe(project)}")
        before = measures(project, args.repeat, args.cap)

        from assay.maintenance import history
        from assay.spec import load_spec
        started = time.perf_counter()
        done = history(load_spec(project))
        upkeep = time.perf_counter() - started
        print(f"upkeep once (the whole history at once): {upkeep:.1f} s: " + "; ".join(d.line() for d in done))
        print(f"after: {describe(project)}")
        after = measures(project, args.repeat, args.cap)

        width = max(len(k) for k in before)
        print(f"\n{'':{width}}  {'no upkeep':>10}  {'upkeep':>10}")
        def shown(value):
            return f"> {args.cap:.0f} s" if value is None else f"{value * 1000:.0f}ms"
        for key in before:
            print(f"{key:{width}}  {shown(before[key]):>10}  {shown(after[key]):>10}")

        steady_runs(project, args.runs, args.steady)


def steady_runs(project: Path, runs: int, steady: int) -> None:
    """STEADY more runs, each recorded one commit per event and ended by the upkeep check."""
    from types import SimpleNamespace
    from assay.runtime import history
    from assay.runtime.eventlog import EventLog
    from assay.runtime.reporting import RunEvents
    from deltalake import DeltaTable
    if not steady:
        return
    system = project / "storage" / "_system"
    spec = SimpleNamespace(system_dir=system)
    first = datetime.now(timezone.utc)
    per_run, checks, files = [], [], []
    for index in range(runs, runs + steady):
        events = RunEvents(EventLog(system / "event_log", "bench"))
        started = time.perf_counter()
        for event in run_events(index, first + timedelta(seconds=index - runs)):
            events.record(event)
        recorded = time.perf_counter()
        history.after_run(spec, events)
        per_run.append(recorded - started)
        checks.append(time.perf_counter() - recorded)
        files.append(len(DeltaTable(str(system / "event_log")).file_uris()))
    print(f"\n{steady} more runs, one commit per event ({len(run_events(0, first))} events a run): recording a run "
          f"median {statistics.median(per_run) * 1000:.0f} ms; its end's upkeep check median "
          f"{statistics.median(checks) * 1000:.0f} ms, max {max(checks) * 1000:.0f} ms (when it compacted); "
          f"event-log data files after each run: min {min(files)}, max {max(files)}")


if __name__ == "__main__":
    main()
