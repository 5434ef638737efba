"""Side by side on one machine: Assay on the embedded engine, Assay on Apache Spark, the seeds' own
Spark pipeline (bench/baseline/), and the engine floor on each engine, over the same generated data.

Usage (`make bench` runs it; SIZE, PIPELINE, REPS and SYSTEMS there are these flags):
    python bench/compare.py [--pipeline zenith[,activity_logs]] [--size 1GB[,4GB...]] [--reps 3]
                            [--systems assay-sail,assay-spark,baseline,floor-sail,floor-spark]
                            [--remote sc://host:port] [--work DIR] [--keep] [--verify/--no-verify]

Per pipeline and size:
1. The stream is generated as 100 drops of one event file each (seed 7); drops 0-98 are landed
   (hard links, modification times in drop order), drop 99 is kept for the increment.
2. Repetitions alternate the systems: in each one every system runs in turn on a fresh storage
   root. Assay and the baseline run three times: the full run (99 drops), a run with nothing new
   (no-op), and a run after landing drop 99 (the next 1 % of the stream). The floor (read the raw
   event files, write them unchanged as Delta, bench/floor.py) runs once.
3. Every run is a whole process measured by bench/measure.py: wall time and the peak RSS of its
   process tree, plus the Spark Connect server's tree (the JVM and its Python workers) for the
   systems on Spark. Each measured Spark run gets a freshly started local server (its start is not
   timed, and reported apart), so that no run inherits another's heap; --remote uses a given server
   instead and never restarts it. The 1-minute load average is recorded before every run.
4. After the first repetition's full run and its increment, every system's tables are counted and
   the gold tables compared key by key with Assay-on-the-embedded-engine's (bench/outputs.py).

Prints, per size, the median and spread (min-max) of wall time, input MB/s and rows/s, and peak
RSS, each as a ratio to the baseline and to the floor on the same engine; then the increment
against the no-op and the full run; then the output comparison. Writes
bench/results/compare-<pipeline>-<size>.json, and bench/plot.py draws every result file present
(bench/results/compare.png). Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
import outputs  # noqa: E402
from measure import run as measured  # noqa: E402

FORMATS = {"zenith": "json", "activity_logs": "csv"}
EVENTS = {"zenith": "streaming/user_events", "activity_logs": "activity_logs"}
BASELINES = {"zenith": "zenith_streaming.py", "activity_logs": "activity_logs_streaming.py"}
SYSTEMS = ["assay-sail", "assay-spark", "baseline", "floor-sail", "floor-spark"]
LABELS = {"assay-sail": "Assay, embedded", "assay-spark": "Assay on Spark", "baseline": "Spark baseline",
          "floor-sail": "floor, embedded", "floor-spark": "floor, Spark"}
ENGINE = {"assay-sail": "sail", "assay-spark": "spark", "baseline": "spark", "floor-sail": "sail",
          "floor-spark": "spark"}
DROPS, SEED = 100, 7


def log(message: str) -> None:
    print(message, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def size_bytes(size: str) -> int:
    from assay.generator.knobs import parse_size
    return parse_size(size)


# ------------------------------------------------------------------------------------------ data
def generate(pipeline: str, size: str, gen: Path, verify: bool, drops: int = DROPS) -> dict:
    """Generate the stream, or reuse the one already in `gen` for the same pipeline, size and seed."""
    from assay.generator import generate as generate_stream
    manifest_path = gen / "truth" / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if (manifest["pipeline"], manifest["size"], manifest["seed"], manifest["drops"]) == (
                pipeline, size, SEED, drops) and (manifest["tables"] or not verify):
            log(f"{pipeline} {size}: reusing the stream generated in {gen}")
            return manifest
    shutil.rmtree(gen, ignore_errors=True)
    started = time.perf_counter()
    manifest = generate_stream(pipeline, gen, size=size, seed=SEED, drops=drops, files_per_drop=1, truth=verify)
    log(f"{pipeline} {size}: generated {manifest['event_lines']:,} event lines, "
        f"{manifest['event_bytes'] / 1e6:,.0f} MB in {time.perf_counter() - started:.0f}s")
    return manifest


def land(gen: Path, landing: Path, manifest: dict, drop: int, mtime: float) -> list[Path]:
    """Make drop `drop`'s files appear in the landing folder (a hard link, a copy across file
    systems), each at once, with the given modification time (arrival order = drop order)."""
    landed = []
    for rel in sorted(manifest["files"][str(drop)]):
        src, dst = gen / "drops" / str(drop) / rel, landing / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.parent / f".{dst.name}.landing"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, dst)
        landed.append(dst)
    return landed


def count_rows(path: Path, csv: bool) -> int:
    """Records of an event file: its non-empty lines (less the header line of a CSV file)."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"
    return lines - (1 if csv and lines else 0)


class Landing:
    """The landing folder: drops 0-98 always there, drop 99 landed for the increment and taken back."""

    def __init__(self, pipeline: str, gen: Path, root: Path, manifest: dict):
        self.pipeline, self.gen, self.root, self.manifest = pipeline, gen, root, manifest
        self.drops = manifest["drops"]
        shutil.rmtree(root, ignore_errors=True)
        base = time.time() - 10 * self.drops
        csv = FORMATS[pipeline] == "csv"
        self.full = {"bytes": 0, "rows": 0, "files": 0}
        for drop in range(self.drops - 1):
            for path in land(gen, root, manifest, drop, base + 10 * drop):
                if str(path.relative_to(root)).startswith(EVENTS[pipeline] + "/"):
                    self.full["bytes"] += path.stat().st_size
                    self.full["rows"] += count_rows(path, csv)
                    self.full["files"] += 1
        last = [gen / "drops" / str(self.drops - 1) / rel for rel in manifest["files"][str(self.drops - 1)]]
        self.increment = {"bytes": sum(p.stat().st_size for p in last),
                          "rows": sum(count_rows(p, csv) for p in last), "files": len(last)}
        self._last: list[Path] = []

    @property
    def events(self) -> Path:
        return self.root / EVENTS[self.pipeline]

    def add_last_drop(self) -> None:
        self._last = land(self.gen, self.root, self.manifest, self.drops - 1, time.time())

    def remove_last_drop(self) -> None:
        for path in self._last:
            path.unlink(missing_ok=True)
        self._last = []


# ---------------------------------------------------------------------------------------- spark
class Spark:
    """Spark Connect servers for the measured Spark runs: a fresh local one per run (default), or
    one given address kept for every run."""

    def __init__(self, work: Path, remote: str | None):
        self.work, self.remote, self.starts = work, remote, []
        self.heap = os.environ.get("ASSAY_SPARK_MEMORY", "2g")

    @contextmanager
    def server(self):
        from assay.engines import spark_server as launcher
        if self.remote:
            port = int(self.remote.rsplit(":", 1)[1].split("/")[0])
            pid = launcher.launched_server(port)      # None for a server elsewhere: its RSS is not ours to see
            yield self.remote, (lambda: [pid] if pid else [])
            return
        cache = Path(os.environ.get("ASSAY_SPARK_CACHE") or REPO / ".cache" / "spark")
        run_dir = self.work / "spark-server"
        shutil.rmtree(run_dir, ignore_errors=True)
        server = launcher.SparkServer(port=launcher.free_port(), run_dir=run_dir, cache=cache)
        started = time.perf_counter()
        remote = server.start(timeout_s=300, watch_pid=os.getpid())
        self.starts.append(round(time.perf_counter() - started, 2))
        pid = server.pid()
        try:
            yield remote, (lambda: [pid] if pid else [])
        finally:
            server.stop()
            shutil.rmtree(run_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------- a run
def command(system: str, pipeline: str, landing: Landing, storage: Path, remote: str | None) -> list[str]:
    py = sys.executable
    if system.startswith("assay-"):
        cmd = [py, "-m", "assay.cli", "run", "-p", str(REPO / "pipelines" / pipeline), "--landing",
               str(landing.root), "--storage", str(storage)]
        return cmd + (["--remote", remote] if remote else [])
    if system == "baseline":
        return [py, str(HERE / "baseline" / BASELINES[pipeline]), "--landing", str(landing.root), "--out",
                str(storage), "--remote", remote]
    cmd = [py, str(HERE / "floor.py"), FORMATS[pipeline], str(landing.events), str(storage / "floor"),
           "--engine", ENGINE[system]]
    return cmd + (["--remote", remote] if remote else [])


def one_run(system: str, kind: str, cmd: list[str], logs: Path, extra_pids, rep: int) -> dict:
    before = load()
    m = measured(cmd, cwd=REPO, env={"RUST_LOG": "error"}, extra_pids=extra_pids)
    out = logs / f"{system}-{kind}-rep{rep}.log"
    out.write_text(m.output)
    record = {"system": system, "kind": kind, "rep": rep, "seconds": round(m.seconds, 2),
              "peak_rss_mb": round(m.peak_rss_mb), "load_before": before, "load_after": load(),
              "ok": m.returncode == 0}
    if m.returncode:
        record["error"] = m.output[-2000:]
        log(f"  {system} {kind} FAILED (exit {m.returncode}); log: {out}\n{m.output[-1500:]}")
    else:
        log(f"  {LABELS[system]:<16} {kind:<9} {m.seconds:8.1f} s  {m.peak_rss_mb:7,.0f} MB  load {before:.1f}")
    if system == "baseline" and m.returncode == 0:
        try:
            reported = json.loads(m.output.strip().splitlines()[-1])
            record["steps_s"] = reported.get("seconds")
        except (ValueError, IndexError):
            pass
    return record


def flow_seconds(storage: Path) -> dict[str, float]:
    """Seconds per flow of the storage's latest run, from Assay's event log."""
    from assay.delta.table import read_arrow
    rows = [r for r in read_arrow(storage / "_system" / "event_log").to_pylist()
            if r["event_type"] == "flow_completed"]
    if not rows:
        return {}
    latest = max(r["run_id"] for r in rows)
    return {r["flow"]: round(r["duration_s"], 2) for r in rows if r["run_id"] == latest}


def run_system(system: str, pipeline: str, landing: Landing, work: Path, spark: Spark, rep: int,
               snapshot: dict | None, verify_truth: Path | None) -> list[dict]:
    """One repetition of one system: full, no-op and increment (the floor: one run)."""
    storage = work / "storage" / system
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(storage, ignore_errors=True)
    storage.mkdir(parents=True)
    kinds = ["full"] if system.startswith("floor") else ["full", "noop", "increment"]
    records = []
    try:
        for kind in kinds:
            if kind == "increment":
                landing.add_last_drop()
            if ENGINE[system] == "spark":
                with spark.server() as (remote, pids):
                    record = one_run(system, kind, command(system, pipeline, landing, storage, remote), logs, pids,
                                     rep)
            else:
                record = one_run(system, kind, command(system, pipeline, landing, storage, None), logs,
                                 lambda: [], rep)
            record["input"] = landing.increment if kind == "increment" else (
                landing.full if kind == "full" else {"bytes": 0, "rows": 0, "files": 0})
            if system.startswith("assay") and record["ok"]:
                record["flows_s"] = flow_seconds(storage)
            records.append(record)
            if not record["ok"]:
                break
            if snapshot is not None and not system.startswith("floor") and kind in ("full", "increment"):
                snapshot.setdefault(kind, {})[system] = {"rows": outputs.row_counts(storage),
                                                         "gold": outputs.read_gold(storage, pipeline)}
        if verify_truth is not None and system.startswith("assay") and records[-1]["ok"] and len(records) == 3:
            checked = subprocess.run([sys.executable, "-m", "assay.cli", "verify", pipeline, "--truth",
                                      str(verify_truth), "--storage", str(storage), "-p",
                                      str(REPO / "pipelines" / pipeline)], cwd=REPO, capture_output=True, text=True)
            records[-1]["verify"] = "OK" if checked.returncode == 0 else "FAILED"
            if checked.returncode:
                (logs / f"{system}-verify-rep{rep}.log").write_text(checked.stdout + checked.stderr)
    finally:
        landing.remove_last_drop()
        shutil.rmtree(storage, ignore_errors=True)      # disk stays in check at 10 GB
    return records


# ------------------------------------------------------------------------------------- summaries
def summarise(runs: list[dict], systems: list[str]) -> dict:
    out = {}
    for system in systems:
        for kind in ("full", "noop", "increment"):
            ok = [r for r in runs if r["system"] == system and r["kind"] == kind and r["ok"]]
            if not ok:
                continue
            secs = [r["seconds"] for r in ok]
            rss = [r["peak_rss_mb"] for r in ok]
            inp = ok[0]["input"]
            entry = {"n": len(ok), "seconds": statistics.median(secs), "seconds_min": min(secs),
                     "seconds_max": max(secs), "peak_rss_mb": statistics.median(rss), "rss_min": min(rss),
                     "rss_max": max(rss), "load": [r["load_before"] for r in ok]}
            if inp["bytes"]:
                entry["mb_per_s"] = round(inp["bytes"] / 1e6 / entry["seconds"], 2)
                entry["rows_per_s"] = round(inp["rows"] / entry["seconds"])
            flows = [r["flows_s"] for r in ok if r.get("flows_s")]
            if flows:
                entry["flows_s"] = {f: statistics.median(x[f] for x in flows if f in x) for f in flows[0]}
            steps = [r["steps_s"] for r in ok if r.get("steps_s")]
            if steps:
                entry["steps_s"] = {f: statistics.median(x[f] for x in steps if f in x) for f in steps[0]}
            if any("verify" in r for r in ok):
                entry["verify"] = [r["verify"] for r in ok if "verify" in r]
            out.setdefault(system, {})[kind] = entry
    return out


def floor_of(system: str) -> str:
    return f"floor-{ENGINE[system]}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def print_table(pipeline: str, size: str, summary: dict, landing: Landing, systems: list[str]) -> None:
    full = {s: summary.get(s, {}).get("full") for s in systems}
    base = full.get("baseline")
    mb, rows = landing.full["bytes"] / 1e6, landing.full["rows"]
    log(f"\n{pipeline} {size}: full run over {landing.full['files']} files, {mb:,.0f} MB, {rows:,} rows "
        f"(median of the repetitions; [min-max]; x = ratio)")
    log(f"{'system':<17}{'wall s':>8} {'[min-max]':<15}{'MB/s':>7}{'rows/s':>10}{'peak MB':>9} {'[min-max]':<13}"
        f"{'t/base':>7}{'t/floor':>8}{'thr/base':>9}{'RSS/base':>9}{'RSS/floor':>10}")
    for s in systems:
        f = full.get(s)
        if not f:
            log(f"{LABELS[s]:<17} (no successful run)")
            continue
        fl = full.get(floor_of(s))
        log(f"{LABELS[s]:<17}{f['seconds']:>8.1f} {'[%.1f-%.1f]' % (f['seconds_min'], f['seconds_max']):<15}"
            f"{f.get('mb_per_s', 0):>7.1f}{f.get('rows_per_s', 0):>10,}{f['peak_rss_mb']:>9,.0f} "
            f"{'[%d-%d]' % (f['rss_min'], f['rss_max']):<13}"
            f"{ratio(f['seconds'], base and base['seconds']):>7}{ratio(f['seconds'], fl and fl['seconds']):>8}"
            f"{ratio(base and base['seconds'], f['seconds']):>9}"
            f"{ratio(f['peak_rss_mb'], base and base['peak_rss_mb']):>9}"
            f"{ratio(f['peak_rss_mb'], fl and fl['peak_rss_mb']):>10}")
    log("(t/base, t/floor: wall time over the baseline's and over the floor's on the same engine; thr/base: "
        "throughput over the baseline's; RSS: peak memory of the process tree, the Spark server included)")
    log(f"\nincrement: the next drop, 1/{landing.drops} of the stream ({landing.increment['bytes'] / 1e6:,.1f} MB, "
        f"{landing.increment['rows']:,} rows) after the full run, against a run with nothing new")
    log(f"{'system':<17}{'full s':>8}{'no-op s':>9}{'+1% s':>8}{'no-op+3%':>10}{'+1% peak MB':>13}  verify")
    for s in systems:
        e = summary.get(s, {})
        if "increment" in e and "noop" in e and "full" in e:
            log(f"{LABELS[s]:<17}{e['full']['seconds']:>8.1f}{e['noop']['seconds']:>9.1f}"
                f"{e['increment']['seconds']:>8.1f}{e['noop']['seconds'] + 0.03 * e['full']['seconds']:>10.1f}"
                f"{e['increment']['peak_rss_mb']:>13,.0f}  {'/'.join(e['increment'].get('verify', ['-']))}")
    for s in systems:
        e = summary.get(s, {}).get("full", {})
        if e.get("flows_s"):
            log(f"{LABELS[s]} per flow (s): " + ", ".join(f"{k} {v:.1f}" for k, v in e["flows_s"].items()))
        if e.get("steps_s"):
            log(f"{LABELS[s]} per step (s): " + ", ".join(f"{k} {v:.1f}" for k, v in e["steps_s"].items()))


def compare_outputs(pipeline: str, snapshot: dict) -> dict:
    """Row counts of every system's tables and the gold tables against Assay embedded's."""
    report = {}
    for kind, systems in snapshot.items():
        reference = "assay-sail" if "assay-sail" in systems else next(iter(systems))
        entry = {"rows": {s: v["rows"] for s, v in systems.items()}, "gold": {}}
        for other in systems:
            if other != reference:
                entry["gold"][other] = outputs.compare_gold(systems[reference]["gold"], systems[other]["gold"],
                                                            pipeline)
        entry["reference"] = reference
        report[kind] = entry
    return report


def print_outputs(pipeline: str, report: dict) -> None:
    for kind, entry in report.items():
        log(f"\noutput after the {'full run' if kind == 'full' else 'increment'} (first repetition): rows per table")
        systems = list(entry["rows"])
        names = sorted({n for r in entry["rows"].values() for n in r})
        log(f"{'table':<42}" + "".join(f"{LABELS[s]:>18}" for s in systems))
        for name in names:
            log(f"{name:<42}" + "".join(f"{entry['rows'][s].get(name, '-'):>18,}"
                                         if isinstance(entry['rows'][s].get(name), int) else f"{'-':>18}"
                                         for s in systems))
        for other, diff in entry["gold"].items():
            log(f"gold, {LABELS[entry['reference']]} against {LABELS[other]}:")
            for line in outputs.render_gold(diff, "assay" if other == "baseline" else entry["reference"], other):
                log(line)
    log("where the semantics differ, by design:")
    for note in outputs.SEMANTICS[pipeline]:
        log(f"  - {note}")


# ------------------------------------------------------------------------------------------ main
def machine() -> dict:
    mem = next((int(line.split()[1]) // 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return {"cpus": os.cpu_count(), "memory_mb": mem, "python": platform.python_version(),
            "commit": commit.stdout.strip() or None, "spark_heap": os.environ.get("ASSAY_SPARK_MEMORY", "2g")}


def one_size(pipeline: str, size: str, args, systems: list[str]) -> dict:
    work = args.work / f"{pipeline}-{size}"
    gen = work / "gen"
    verify = args.verify if args.verify is not None else size_bytes(size) <= size_bytes("1GB")
    manifest = generate(pipeline, size, gen, verify, args.drops)
    landing = Landing(pipeline, gen, work / "landing", manifest)
    spark = Spark(work, args.remote)
    reps = args.reps or (3 if size_bytes(size) < size_bytes("4GB") else 1)
    runs: list[dict] = []
    snapshot: dict = {}
    started = time.time()
    for rep in range(1, reps + 1):
        log(f"{pipeline} {size}: repetition {rep} of {reps} (load {load():.1f})")
        for system in systems:
            runs += run_system(system, pipeline, landing, work, spark, rep, snapshot if rep == 1 else None,
                               gen / "truth" if verify and rep == 1 else None)
    summary = summarise(runs, systems)
    report = compare_outputs(pipeline, {k: v for k, v in snapshot.items()})
    result = {"pipeline": pipeline, "size": size, "reps": reps, "drops": landing.drops, "systems": systems,
              "input": landing.full,
              "increment_input": landing.increment, "machine": machine(), "spark_server_start_s": spark.starts,
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
              "minutes": round((time.time() - started) / 60, 1), "summary": summary, "runs": runs,
              "outputs": report, "semantics": outputs.SEMANTICS[pipeline]}
    print_table(pipeline, size, summary, landing, systems)
    if spark.starts:
        log(f"Spark Connect server start (not in the times above): median {statistics.median(spark.starts):.1f} s "
            f"over {len(spark.starts)} starts; heap {spark.heap}")
    print_outputs(pipeline, report)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default="zenith", help="zenith, activity_logs, or both (comma-separated)")
    parser.add_argument("--size", default="1GB", help="one size or several, e.g. 0.25GB,1GB,4GB")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 from 4 GB up)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--remote", default=None, help="use this Spark Connect server for every Spark run")
    parser.add_argument("--drops", type=int, default=DROPS,
                        help="files the stream is cut into (default 100: the increment is the next 1 %%)")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "assay-bench-compare")
    parser.add_argument("--keep", action="store_true", help="keep the generated data and logs")
    parser.add_argument("--verify", dest="verify", action="store_true", default=None,
                        help="generate the truth and verify Assay's tables (default: up to 1 GB)")
    parser.add_argument("--no-verify", dest="verify", action="store_false")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)} (known: {', '.join(SYSTEMS)})")
    pipelines = [p.strip() for p in args.pipeline.split(",") if p.strip()]
    for pipeline in pipelines:
        if pipeline not in FORMATS:
            parser.error(f"unknown pipeline {pipeline!r} (known: {', '.join(FORMATS)})")
    args.results.mkdir(parents=True, exist_ok=True)
    failed = False
    for pipeline in pipelines:
        for size in [s.strip() for s in args.size.split(",") if s.strip()]:
            result = one_size(pipeline, size, args, systems)
            out = args.results / f"compare-{pipeline}-{size}.json"
            out.write_text(json.dumps(result, indent=1, default=str) + "\n")
            log(f"results: {out}")
            failed |= any(not r["ok"] for r in result["runs"])
    if not args.no_plot:
        import plot
        for path in plot.draw(args.results):
            log(f"plot: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
