"""`make demo`: generate a Zenith Online data set, run the flagship pipeline on the embedded engine,
and print the answers to its three business questions."""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console

from .catalog import register_views
from .progress import RunDisplay
from .runtime.runner import Runner
from .spec import load_spec

REPO = Path(__file__).resolve().parent.parent
PIPELINE = REPO / "pipelines" / "zenith"
WORK = Path(os.environ.get("ASSAY_DEMO_DIR") or REPO / "demo")    # a test runs it elsewhere
ROWS = int(os.environ.get("ASSAY_DEMO_ROWS", "1000000"))


def main() -> int:
    console = Console(width=None if sys.stdout.isatty() else 160)
    os.environ.setdefault("RUST_LOG", "error")
    from .generator import generate, land_drop

    shutil.rmtree(WORK, ignore_errors=True)
    landing, storage, out = WORK / "landing", WORK / "storage", WORK / "generated"
    console.rule("[bold]Assay demo: Zenith Online analytics")
    started = time.monotonic()
    console.print(f"Generating {ROWS:,} user events (duplicates, late and malformed records included)...")
    generate("zenith", out, rows=ROWS, seed=42, drops=1)
    for path in land_drop(out, landing, 0):
        pass
    console.print(f"  done in {time.monotonic() - started:.1f}s → {landing}")

    spec = load_spec(PIPELINE, storage=str(storage), landing=str(landing))
    runner = Runner(spec)
    run_started = time.monotonic()
    try:
        with RunDisplay(console) as display:
            runner.events.on_progress = display.update
            runner.run()
        console.print(f"Pipeline ran in [bold]{time.monotonic() - run_started:.1f}s[/] on the embedded engine.")
        spark = runner.engine.spark
        register_views(spark, spec)
        for title, sql_file in (("Top 5 products by purchases on the most recent day", "top_products.sql"),
                                ("Daily revenue by category", "daily_revenue_by_category.sql"),
                                ("Top 10 customers by total purchase value", "top_customers.sql")):
            sql = (PIPELINE / "analytics" / sql_file).read_text().strip().rstrip(";")
            result = spark.sql(sql).toArrow()
            console.rule(title)
            from .cli import print_table
            print_table(result.slice(0, 15), "table")
    finally:
        runner.engine.stop()
    console.rule()
    console.print(f"Tables: {storage}\nTry next (from {PIPELINE.relative_to(REPO)}):\n"
                  f"  .venv/bin/assay status  --project pipelines/zenith --storage {storage}\n"
                  f"  .venv/bin/assay history --project pipelines/zenith --storage {storage}\n"
                  f"  .venv/bin/assay query 'SELECT * FROM gold_daily_product_performance LIMIT 10' "
                  f"--project pipelines/zenith --storage {storage}\n"
                  f"  .venv/bin/assay verify zenith --truth {out / 'truth'} --storage {storage}\n"
                  f"Whole demo: {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
