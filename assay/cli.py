"""The `assay` command."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import native_stderr, secrets
from .command_engine import lent_for, open_engine
from .errors import AssayError, ConfigError
from .units import parse_bytes, parse_seconds

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Assay: medallion lakehouse pipelines, on a laptop in seconds and on Spark unchanged.")


def _consoles() -> tuple[Console, Console]:
    """stdout's and stderr's as they are now. Without a terminal (pipes, CI), wide lines rather than
    tables wrapped at 80 columns."""
    return (Console(width=None if sys.stdout.isatty() else 200),
            Console(stderr=True, width=None if sys.stderr.isatty() else 200))


console, err = _consoles()

ProjectOpt = typer.Option(".", "--project", "-p", help="The pipeline folder (holding assay.yml).")
TargetOpt = typer.Option(None, "--target", "-t", help="A target of assay.yml (dev, prod...).")
StorageOpt = typer.Option(None, "--storage", help="Storage root, instead of assay.yml's (or ASSAY_STORAGE).")
LandingOpt = typer.Option(None, "--landing", help="Landing root, instead of assay.yml's (or ASSAY_LANDING).")
ConfOpt = typer.Option(None, "--conf", help="configuration KEY=VALUE (repeatable).")
EngineOpt = typer.Option(None, "--engine", help="sail (embedded) or spark, instead of assay.yml's.")
RemoteOpt = typer.Option(None, "--remote", help="A Spark Connect server, sc://host:port (implies --engine spark).")


def _spec(project, target, storage, landing, conf, engine=None, remote=None):
    from .spec import conf_pairs, load_spec
    return load_spec(project, target=target, storage=storage, landing=landing, conf=conf_pairs(conf), engine=engine,
                     remote=remote)


def _names(value: Optional[str]) -> set[str]:
    return {n.strip() for n in (value or "").split(",") if n.strip()}


@app.command()
def init(name: str = typer.Argument(..., help="Folder to create; its name is the pipeline's name.")):
    """Create a working project: assay.yml, Python and SQL transformations, sample data."""
    from .scaffold import create_project
    folder = create_project(Path(name))
    console.print(f"Created [bold]{folder}[/]. Next:\n  cd {folder}\n  assay run\n  assay query "
                  "\"SELECT * FROM customer_totals ORDER BY revenue DESC LIMIT 5\"")


@app.command()
def run(project: str = ProjectOpt, target: Optional[str] = TargetOpt, storage: Optional[str] = StorageOpt,
        landing: Optional[str] = LandingOpt, conf: Optional[list[str]] = ConfOpt,
        full_refresh: Optional[str] = typer.Option(None, "--full-refresh", help="Datasets to rebuild from scratch (a,b)."),
        full_refresh_all: bool = typer.Option(False, "--full-refresh-all", help="Rebuild every dataset."),
        refresh: Optional[str] = typer.Option(None, "--refresh", help="Only these datasets (a,b)."),
        continuous: bool = typer.Option(False, "--continuous", help="Keep running until Ctrl-C or SIGTERM."),
        interval: str = typer.Option("60s", "--interval", help="Pause between runs with --continuous."),
        max_files: Optional[int] = typer.Option(None, "--max-files-per-batch", min=1),
        max_bytes: Optional[str] = typer.Option(None, "--max-bytes-per-batch", help="e.g. 128MB"),
        max_records: Optional[int] = typer.Option(None, "--max-records-per-batch", min=1,
                                                  help="Kafka messages / upstream rows per batch"),
        engine: Optional[str] = EngineOpt, remote: Optional[str] = RemoteOpt):
    """Process everything available when the run starts, then stop (or keep going with --continuous)."""
    from .progress import RunDisplay
    from .runtime.continuous import run_rounds
    from .runtime.runner import RunOptions, Runner

    spec = _spec(project, target, storage, landing, conf, engine, remote)
    stop = threading.Event()

    def request_stop(signum, frame):
        if stop.is_set():
            abort()
        stop.set()
        err.print("[yellow]stopping after the current batch (again to abort)[/]")

    def abort(signum=None, frame=None):
        """Ctrl-C (or a second SIGTERM): stop now; the batch in progress is not committed."""
        runner.engine.interrupt()                    # the engine's calls are tried once from now on
        deadline = threading.Timer(ABORT_S, _leave_interrupted)   # however long the engine takes to let go
        deadline.daemon = True
        deadline.start()
        raise Interrupted()

    options = RunOptions(full_refresh=_names(full_refresh), full_refresh_all=full_refresh_all,
                         refresh=_names(refresh) or None, max_files=max_files,
                         max_bytes=parse_bytes(max_bytes) if max_bytes else None, max_records=max_records,
                         stop_requested=stop.is_set)
    pause = parse_seconds(interval)
    from .maintenance import Policy
    upkeep = Policy.from_spec(spec)      # assay.yml maintenance: checked now, applied between rounds
    lent = lent_for(spec)
    runner = Runner(spec, options, engine=lent)
    runner.events.on_warning = lambda message: err.print(f"[yellow]warning:[/] {message}", highlight=False)
    runner.events.on_notice = lambda message: console.print(message, highlight=False, soft_wrap=True)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop if continuous else abort)

    def run_round() -> None:
        with RunDisplay(console) as display:
            runner.events.on_progress = display.update
            summaries = runner.run()
        _say_run_ended(runner.events.run_id, summaries, spec.storage)

    def round_failed(exc: Exception) -> None:
        err.print(f"[red]round failed:[/] {secrets.redact(str(exc))}\n[yellow]retrying in {interval}[/]",
                  highlight=False)
    try:
        if continuous:
            run_rounds(runner, run_round, upkeep=upkeep, interval_s=pause,
                       stop_requested=stop.is_set, round_failed=round_failed)
        else:
            run_round()
    finally:
        if lent is None:
            runner.engine.stop()


def _say_run_ended(run_id: str, summaries, storage) -> None:
    written = sum(s.rows_written for s in summaries)
    stopped = [s.flow for s in summaries if s.status == "stopped"]
    if stopped:
        done = [s.flow for s in summaries if s.status == "done"]
        console.print(f"[yellow]run {run_id} stopped[/]: completed {', '.join(done) or 'none'}; "
                      f"not completed {', '.join(stopped)} (the next run continues them). "
                      f"{written:,} rows written. Storage: {storage}", soft_wrap=True)
    else:
        console.print(f"[green]run {run_id} completed[/]: {len(summaries)} flows, "
                      f"{written:,} rows written. Storage: {storage}", soft_wrap=True)


@app.command("dry-run")
def dry_run(project: str = ProjectOpt, target: Optional[str] = TargetOpt, storage: Optional[str] = StorageOpt,
            landing: Optional[str] = LandingOpt, conf: Optional[list[str]] = ConfOpt,
            engine: Optional[str] = EngineOpt, remote: Optional[str] = RemoteOpt):
    """Validate the whole graph without writing anything."""
    from .runtime.services import analyse
    spec = _spec(project, target, storage, landing, conf, engine, remote)
    with open_engine(spec) as session:
        graph = analyse(spec, session).graph
    console.print(f"[green]pipeline '{spec.name}' is valid[/]: {len(graph.registry.datasets)} datasets, "
                  f"{len(graph.order)} flows, in this order: {', '.join(graph.order)}")


@app.command()
def graph(project: str = ProjectOpt, target: Optional[str] = TargetOpt, conf: Optional[list[str]] = ConfOpt,
          format: str = typer.Option("text", "--format", help="text or json"),
          engine: Optional[str] = EngineOpt, remote: Optional[str] = RemoteOpt):
    """Print the dataflow graph: datasets, what each reads, and how (stream or batch)."""
    from .runtime.services import analyse
    spec = _spec(project, target, None, None, conf, engine, remote)
    with open_engine(spec) as session:
        g = analyse(spec, session).graph
    nodes = []
    for name in g.order:
        flow = g.registry.flows[name]
        analysis = g.analyses[name]
        ds = g.dataset(flow.target)
        sources = [s.args.get("path") or s.args.get("topics") or s.stream_of for s in analysis.sources]
        nodes.append({"flow": name, "target": flow.target, "kind": ds.kind, "schema": g.schema_name(flow.target),
                      "reads": sorted(analysis.static_reads), "streams": sorted(analysis.stream_reads),
                      "sources": [f"{s.kind}:{v}" for s, v in zip(analysis.sources, sources) if s.kind != "delta"],
                      "defined_at": str(flow.location)})
    if format == "json":
        print(json.dumps(nodes, indent=2))
        return
    for node in nodes:
        inputs = [f"stream({n})" for n in node["streams"]] + node["reads"] + node["sources"]
        console.print(f"[bold]{node['schema']}.{node['target']}[/] ({node['kind'].replace('_', ' ')}) "
                      f"← {', '.join(inputs) or '—'}   [dim]{node['defined_at']}[/]", highlight=False)


def _query(spec, sql: str, fmt: str, limit: int | None = None):
    from . import catalog
    with open_engine(spec) as engine:
        refs = catalog.register_views(engine.spark, spec)
        sql = catalog.bind_qualified(engine.spark, spec, refs, sql)     # silver.orders, as the code names it
        try:
            df = engine.spark.sql(sql)
            if limit:
                df = df.limit(limit)
            result = df.toArrow()
        except Exception as exc:
            from .engine_errors import first_line
            raise AssayError(f"query failed: {first_line(str(exc))}") from None
    print_table(result, fmt)


def print_table(result, fmt: str) -> None:
    rows = result.to_pylist()
    if fmt == "json":
        print(json.dumps(rows, default=str))
    elif fmt == "csv":
        import csv
        writer = csv.writer(sys.stdout)
        writer.writerow(result.column_names)
        for row in rows:
            writer.writerow([row[c] for c in result.column_names])
    else:
        table = Table(show_edge=False)
        for name in result.column_names:
            table.add_column(name)
        for row in rows:
            table.add_row(*["" if row[c] is None else str(row[c]) for c in result.column_names])
        console.print(table)
        console.print(f"[dim]{len(rows)} row(s)[/]")


@app.command()
def query(sql: str = typer.Argument(..., help="Spark SQL; tables by name, e.g. SELECT * FROM event_log"),
          project: str = ProjectOpt, target: Optional[str] = TargetOpt, storage: Optional[str] = StorageOpt,
          file: bool = typer.Option(False, "--file", "-f", help="SQL is a path to a .sql file"),
          format: str = typer.Option("table", "--format", help="table, csv or json"),
          engine: Optional[str] = EngineOpt, remote: Optional[str] = RemoteOpt):
    """Run Spark SQL over the pipeline's tables and the event log."""
    spec = _spec(project, target, storage, None, None, engine, remote)
    if file:
        path = Path(sql)
        if not path.exists():
            raise ConfigError(f"no SQL file at {path}")
        sql = path.read_text().strip().rstrip(";")
    _query(spec, sql, format)


@app.command()
def history(project: str = ProjectOpt, target: Optional[str] = TargetOpt, storage: Optional[str] = StorageOpt,
            limit: int = typer.Option(10, "--limit", help="How many runs"),
            format: str = typer.Option("table", "--format"),
            engine: Optional[str] = EngineOpt, remote: Optional[str] = RemoteOpt):
    """Recent runs with their duration and rows, from the event log."""
    spec = _spec(project, target, storage, None, None, engine, remote)
    from .runtime.lock import held
    # A run without an end event was killed (interrupted), unless it is the newest and still holds the lock.
    live = "TRUE" if held(spec.system_dir) else "FALSE"
    sql = f"""
      SELECT run_id, MIN(timestamp) AS started,
             COALESCE(MAX(CASE WHEN event_type IN ('run_completed','run_failed') THEN event_type END),
                      CASE WHEN {live} AND MIN(timestamp) = (SELECT MAX(timestamp) FROM event_log
                                                              WHERE event_type = 'run_started')
                           THEN 'running' ELSE 'interrupted' END) AS outcome,
             ROUND(MAX(CASE WHEN event_type IN ('run_completed','run_failed') THEN duration_s END), 2) AS seconds,
             SUM(CASE WHEN event_type = 'flow_progress' THEN rows_written ELSE 0 END) AS rows_written,
             SUM(CASE WHEN event_type = 'flow_progress' THEN rows_quarantined ELSE 0 END) AS quarantined,
             SUM(CASE WHEN event_type = 'flow_progress' THEN rows_late ELSE 0 END) AS late,
             MAX(CASE WHEN event_type IN ('flow_failed','run_failed') THEN message END) AS error
      FROM event_log GROUP BY run_id ORDER BY started DESC LIMIT {int(limit)}"""
    _require_log(spec)
    _query(spec, sql, format)


@app.command()
def status(project: str = ProjectOpt, target: Optional[str] = TargetOpt, storage: Optional[str] = StorageOpt,
           format: str = typer.Option("table", "--format"),
           engine: Optional[str] = EngineOpt, remote: Optional[str] = RemoteOpt):
    """Each flow's last outcome, rows and data-quality counts, and each table's size."""
    spec = _spec(project, target, storage, None, None, engine, remote)
    _require_log(spec)
    sql = """
      WITH last AS (SELECT flow, MAX(timestamp) AS at FROM event_log
                    WHERE flow IS NOT NULL AND event_type IN ('flow_completed','flow_failed') GROUP BY flow)
      SELECT e.flow, e.target, e.event_type AS last_outcome, e.timestamp AS at, e.rows_written, e.rows_dropped,
             e.rows_quarantined, e.rows_late, e.rows_duplicate, ROUND(e.duration_s, 2) AS seconds,
             CASE WHEN get_json_object(e.metrics, '$.refresh') IS NOT NULL   -- a materialized view's: how, and why
                  THEN concat(get_json_object(e.metrics, '$.refresh'), ': ', get_json_object(e.metrics, '$.reason'))
             END AS refresh, e.message AS error
      FROM event_log e JOIN last l ON e.flow = l.flow AND e.timestamp = l.at ORDER BY e.flow"""
    _query(spec, sql, format)
    if format == "table":
        from . import catalog
        table = Table(show_edge=False, title="tables", title_justify="left")
        from .maintenance import last_maintenance
        upkeep = last_maintenance(spec)
        for column in ("schema", "table", "rows", "last compaction", "last vacuum", "path"):
            table.add_column(column)
        for ref in catalog.tables(spec):
            done = upkeep.get(ref.name, {})
            table.add_row(ref.schema, ref.name, f"{catalog.row_count(ref):,}", done.get("compaction", "—"),
                          done.get("vacuum", "—"), str(ref.path))
        console.print(table)
        from .lag import lag_table
        lag = lag_table(spec)                    # each Kafka partition: committed position, end, lag
        if lag is not None:
            console.print(lag)


@app.command()
def optimize(tables: Optional[list[str]] = typer.Argument(None, help="Tables (default: all)"),
             project: str = ProjectOpt, target: Optional[str] = TargetOpt, storage: Optional[str] = StorageOpt):
    """Compact small files; z-order tables declared with cluster_by on those columns; with no table
    named, also compact the event log and prune old checkpoint records."""
    from .maintenance import optimize as run_optimize
    spec = _spec(project, target, storage, None, None)
    for result in run_optimize(spec, tables or None):
        console.print(f"{result.table}: {result.operation}, {result.files_removed} files → {result.files_added}")
    if not tables:                         # and what runs leave behind: the event log, checkpoint records
        from .maintenance import history
        for done in history(spec):
            console.print(done.line())


@app.command()
def vacuum(tables: Optional[list[str]] = typer.Argument(None, help="Tables (default: all)"),
           project: str = ProjectOpt, target: Optional[str] = TargetOpt, storage: Optional[str] = StorageOpt,
           retention_hours: int = typer.Option(168, "--retention-hours", min=0,
                                               help="Keep unreferenced files younger than this (below 168: no time travel)")):
    """Delete data files that no table version references any more."""
    from .maintenance import vacuum as run_vacuum
    spec = _spec(project, target, storage, None, None)
    for name, count in run_vacuum(spec, tables or None, retention_hours).items():
        console.print(f"{name}: {count} files deleted")


# `assay ui` and `assay report`: assay/ui/commands.py
from .ui.commands import report as _ui_report, ui as _ui  # noqa: E402
app.command("ui")(_ui)
app.command("report")(_ui_report)
from .sinks.commands import postgres_app  # noqa: E402   `assay postgres apply-roles | status`
app.add_typer(postgres_app, name="postgres")

def _require_log(spec) -> None:
    from .catalog import EVENT_LOG
    if not (spec.system_dir / EVENT_LOG / "_delta_log").exists():
        raise AssayError(f"pipeline '{spec.name}' has no event log at {spec.system_dir / EVENT_LOG} yet: run "
                         "`assay run` first")


@app.command()
def generate(pipeline: str = typer.Argument(..., help="zenith, activity_logs, customers_stream or clickstream"),
             out: str = typer.Option(..., "--out", help="Folder for the drops and the truth manifest"),
             landing: Optional[str] = typer.Option(None, "--landing", help="Also land every drop here, in order"),
             rows: Optional[int] = typer.Option(None, "--rows", min=1),
             size: Optional[str] = typer.Option(None, "--size", help="e.g. 50MB, 1GB of landed event files"),
             seed: int = typer.Option(0, "--seed"), drops: int = typer.Option(1, "--drops", min=1),
             knob: Optional[list[str]] = typer.Option(None, "--knob", help="KNOB=VALUE, e.g. duplicate_rate=0.05"),
             kafka: Optional[str] = typer.Option(None, "--kafka", help="Also send the events to this Kafka bootstrap"),
             topic: Optional[str] = typer.Option(None, "--topic", help="Kafka topic (default: the pipeline's)"),
             rate: Optional[str] = typer.Option(None, "--rate", help="Messages per second to Kafka, e.g. 5000/s"),
             partitions: int = typer.Option(3, "--partitions", min=1,
                                            help="Partitions of the Kafka topic, when it must be created")):
    """Write realistic source data with known answers (a truth manifest), to files and optionally Kafka."""
    from .generator import PIPELINES, generate as make
    from .generator import land_drop
    if pipeline not in PIPELINES:
        raise ConfigError(f"unknown pipeline '{pipeline}' (available: {', '.join(sorted(PIPELINES))})")
    if rows is None and size is None:
        rows = 100_000
    knobs = {}
    for item in knob or []:
        key, _, value = item.partition("=")
        knobs[key] = float(value) if value.replace(".", "", 1).isdigit() else value
    started = time.monotonic()
    manifest = make(pipeline, out, rows=rows, size=parse_bytes(size) if size else None, seed=seed, drops=drops,
                    **knobs)
    console.print(f"generated {pipeline}: {manifest.get('rows', rows):,} rows in {drops} drop(s), "
                  f"{time.monotonic() - started:.1f}s → {out} (truth: {Path(out) / 'truth'})")
    if landing:
        for drop in range(drops):
            land_drop(out, landing, drop)
        console.print(f"landed every drop in {landing}")
    if kafka:
        from .generator.to_kafka import parse_rate, send
        name = topic or {"customers_stream": "customers"}.get(pipeline, pipeline)
        sending = time.monotonic()
        sent = send(out, kafka, name, parse_rate(rate), partitions=partitions)
        seconds = time.monotonic() - sending
        console.print(f"sent {sent:,} messages to {name} at {kafka} in {seconds:.1f}s ({sent / seconds:,.0f}/s)")


@app.command()
def verify(pipeline: str = typer.Argument(..., help="The pipeline the truth was generated for"),
           truth: str = typer.Option(..., "--truth", help="The truth folder written by `assay generate`"),
           project: Optional[str] = typer.Option(None, "--project", "-p",
                                                 help="Pipeline folder (default: pipelines/PIPELINE or .)"),
           target: Optional[str] = TargetOpt, storage: Optional[str] = StorageOpt,
           conf: Optional[list[str]] = ConfOpt):
    """Compare the pipeline's tables with a truth manifest, row for row; print a clear diff."""
    from .truth import check_metrics, frame_reader
    from .verify_engine import verify_in_engine
    if project is None:
        project = f"pipelines/{pipeline}" if Path(f"pipelines/{pipeline}/assay.yml").exists() else "."
    spec = _spec(project, target, storage, None, conf)      # --conf postgres.port=… reaches the mirrors
    with open_engine(spec) as engine:   # the comparison runs in the engine
        report = verify_in_engine(truth, engine, frame_reader(spec, engine))
    from .sinks.commands import verify_mirrors
    report.tables += verify_mirrors(spec, truth)         # published tables: their PostgreSQL mirrors too
    console.print(report.render(), highlight=False)
    problems = check_metrics(spec, Path(truth))
    for problem in problems:
        console.print(f"[red]metric mismatch[/]: {problem}")
    if not report.ok or problems:
        raise AssayError(f"{pipeline}: the tables differ from the truth in {truth}")
    console.print(f"[green]{pipeline}: every table matches the truth[/]")


INTERRUPTED = "[yellow]interrupted[/]: the current batch was not committed; the next run resumes it."
ABORT_S = 5.0         # after Ctrl-C, the longest wait for the engine to let go before leaving anyway


class Interrupted(SystemExit):
    """Ctrl-C in `assay run`. Not a KeyboardInterrupt: PySpark's client answers that by asking the
    server to cancel the query, a call that waits while the server is busy or gone (the embedded
    one stops on it) and then raises its own error in place of the interrupt."""

    def __init__(self):
        super().__init__(130)


_leaving = threading.Lock()


def _leave_interrupted() -> None:
    """Say the run was interrupted and exit 130, once: the main thread and the Ctrl-C deadline race."""
    if _leaving.acquire(blocking=False):
        err.print(INTERRUPTED)
        _exit(130)
    threading.Event().wait()      # the other one is leaving


def _exit(code: int) -> None:
    """Leave without interpreter teardown: delta-rs 1.6.6 aborts ("terminate called without an
    active exception") in about half the exits of a process that read a table with
    to_pyarrow_table(). Engines are already stopped by the commands themselves."""
    sys.stdout.flush()
    native_stderr.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    warnings.filterwarnings("ignore", message=".*No Partition Defined for Window.*")
    os.environ.setdefault("RUST_LOG", "error")
    native_stderr.hide_panics()      # a Rust panic's report and backtrace are not the user's business
    _exit(execute())


def execute(args: list[str] | None = None) -> int:
    """Run one command line (default: this process's arguments) and return its exit code, each
    error said on stderr in one paragraph. Ctrl-C in `assay run` leaves the process at once."""
    global console, err
    console, err = _consoles()           # the streams of this command line (a caller may capture them)
    try:
        # An int when Typer turned an exit into a code: --help (0), Ctrl-C during a command (130).
        code = app(args, standalone_mode=False, prog_name="assay")
        if code == 130:
            err.print(INTERRUPTED)
        return code if isinstance(code, int) else 0
    except AssayError as exc:
        err.print(f"[red]error:[/] {secrets.redact(str(exc))}", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print(INTERRUPTED)
        return 130
    except Interrupted:
        _leave_interrupted()
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        if code is not None and not isinstance(code, int):
            err.print(str(code), highlight=False)
        return code if isinstance(code, int) else 0 if code is None else 1
    except typer.Abort:
        err.print("[yellow]aborted[/]")
        return 1
    except typer.TyperException as exc:  # usage errors (Typer vendors click): Typer's own message, exit 2
        if hasattr(exc, "show"):
            exc.show()
        else:
            err.print(f"[red]error:[/] {exc.format_message()}", highlight=False)
        return exc.exit_code
    except BaseException as exc:  # anything unexpected (a Rust panic too): one paragraph, no traceback unless asked for
        if os.environ.get("ASSAY_DEBUG"):
            sys.stderr.write(secrets.redact("".join(traceback.format_exception(exc))))
            return 1
        err.print(f"[red]error:[/] {type(exc).__name__}: {secrets.redact(str(exc))}\n"
                  "(an unexpected error: set ASSAY_DEBUG=1 to see the traceback)", highlight=False)
        return 1


if __name__ == "__main__":
    main()
