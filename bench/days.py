"""Does day N cost what day 1 costs? One generated stream split into daily drops, one `assay run` per
day on the embedded engine (or Apache Spark), the wall time of each run and of its slowest flows;
the tables are verified against the truth at the end.

Usage: python bench/days.py [--pipeline activity_logs] [--size 1GB] [--drops 4] [--work DIR]
                            [--source DIR]   (the checkout to time; default this one)
                            [--spark]        (each run on Apache Spark, one local server)
                            [--remote URL]   (each run on this Spark Connect server)
                            [--results DIR]  (default bench/results)
                            [--against DIR]  (a second checkout, e.g. an older commit: both run
                                              day by day in turns, each into its own storage, so
                                              that a change of the machine's load hits both alike)
Prints one line per day (per checkout); writes bench/results/days-<pipeline>-<size>-<drops>.json
and .png (run time per day).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline", default="activity_logs")
    parser.add_argument("--size", default="1GB")
    parser.add_argument("--drops", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "assay-bench-days")
    parser.add_argument("--source", type=Path, default=REPO, help="the checkout whose assay is timed")
    parser.add_argument("--against", type=Path, default=None, help="a second checkout, run in turns")
    parser.add_argument("--spark", action="store_true",
                        help="run each day on Apache Spark (one local Spark Connect server for all days)")
    parser.add_argument("--remote", default=None, help="run each day on this Spark Connect server instead")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and the plot go")
    args = parser.parse_args()
    if args.remote:
        days(args, ["--remote", args.remote])
    elif args.spark:
        with spark_server(args.work) as remote:
            days(args, ["--remote", remote])
    else:
        days(args, [])


@contextmanager
def spark_server(work: Path):
    from assay.engines import spark_server as launcher
    run_dir = work / "spark-server"
    shutil.rmtree(run_dir, ignore_errors=True)
    server = launcher.SparkServer(port=launcher.free_port(), run_dir=run_dir,
                                  cache=Path(os.environ.get("ASSAY_SPARK_CACHE") or REPO / ".cache" / "spark"))
    try:
        yield server.start(timeout_s=300, watch_pid=os.getpid())
    finally:
        server.stop()


def days(args, run_args: list[str]) -> None:
    gen = args.work / f"gen-{args.pipeline}-{args.size}-{args.drops}"
    # clickstream pseudonymises with an HMAC key read from the environment, the generator's truth
    # too: a throwaway one kept with the generated data, so that a rerun reuses both.
    key_file = gen.parent / f"{gen.name}.pii-key"
    if args.pipeline == "clickstream" and "CLICKSTREAM_PII_KEY" not in os.environ:
        if not key_file.exists():
            shutil.rmtree(gen, ignore_errors=True)        # generated with another key
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_hex(32))
        os.environ["CLICKSTREAM_PII_KEY"] = key_file.read_text().strip()
    if not (gen / "truth").exists():
        shutil.rmtree(gen, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "assay.cli", "generate", args.pipeline, "--out", str(gen),
                        "--size", args.size, "--drops", str(args.drops)], check=True, cwd=REPO)
    sources = [args.source] + ([args.against] if args.against else [])
    runs = {source: args.work / f"run-{i}" for i, source in enumerate(sources)}
    for run_dir in runs.values():
        shutil.rmtree(run_dir, ignore_errors=True)
    from assay.generator import land_drop
    print(f"{args.pipeline} {args.size} in {args.drops} days; " +
          " against ".join(f"code at {s}" for s in sources))
    walls: dict[Path, list[float]] = {s: [] for s in sources}
    for day in range(args.drops):
        for source, run_dir in runs.items():
            land_drop(gen, run_dir / "landing", day)
            wall, slowest = run_day(source, args.pipeline, run_dir, run_args)
            walls[source].append(wall)
            label = f"[{source.name}] " if len(sources) > 1 else ""
            print(f"{label}day {day}: {wall:6.1f} s   ({slowest})", flush=True)
    verdicts = {}
    for source, run_dir in runs.items():
        verdicts[source] = verdict(source, args.pipeline, gen, run_dir)
        print(f"{source}: last day / first day = {walls[source][-1] / walls[source][0]:.2f}; {verdicts[source]}")
    name = f"days-{args.pipeline}-{args.size}-{args.drops}" + ("-spark" if run_args else "")
    results = args.results
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(
        {"pipeline": args.pipeline, "size": args.size, "days": args.drops, "machine": platform.node(),
         "runs": [{"source": str(s), "walls": walls[s], "verify": verdicts[s]} for s in sources]}, indent=1))
    print(f"wrote {results / f'{name}.json'} and {draw(results / f'{name}.png', args, walls)}")


def draw(png: Path, args, walls: dict[Path, list[float]]) -> Path:
    """Run time per day, one line per checkout, with day 1 × 1.15 (the bar) drawn for each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for source, values in walls.items():
        line, = ax.plot(range(1, len(values) + 1), values, marker="o", label=f"code at {source.name}")
        ax.axhline(values[0] * 1.15, color=line.get_color(), linestyle=":", linewidth=1)
    ax.set(xlabel="day", ylabel="assay run (s)", ylim=(0, None),
           title=f"{args.pipeline}: {args.drops} days of {args.size} total, one run a day (dotted: day 1 × 1.15)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return png


def env_for(source: Path) -> dict:
    return {**os.environ, "RUST_LOG": "error", "PYTHONPATH": str(source)}


def run_day(source: Path, pipeline: str, run_dir: Path, run_args: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "assay.cli", "run", "-p", str(source / "pipelines" / pipeline),
                          "--landing", str(run_dir / "landing"), "--storage", str(run_dir / "storage"), *run_args],
                         cwd=source, env=env_for(source), capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - started
    flows = {m[0]: float(m[1]) for m in re.findall(r"done\s+(\S+)\s.*?([\d.]+)s$", out, re.M)}
    return wall, ", ".join(f"{name} {s:.1f}" for name, s in sorted(flows.items(), key=lambda f: -f[1])[:3])


def verdict(source: Path, pipeline: str, gen: Path, run_dir: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "assay.cli", "verify", pipeline, "--truth", str(gen / "truth"),
                             "-p", str(source / "pipelines" / pipeline), "--storage", str(run_dir / "storage")],
                            cwd=source, env=env_for(source), capture_output=True, text=True)
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-500:]


if __name__ == "__main__":
    main()
