"""`make bench`: the side-by-side comparison (bench/compare.py), then every other benchmark, one
after the other, printing its figures.

    make bench [SIZE=1GB] [PIPELINE=zenith] [REPS=3] [SYSTEMS=assay-sail,assay-spark,baseline,floor-sail,floor-spark]

SIZE and PIPELINE may list several (SIZE=0.25GB,1GB,4GB PIPELINE=zenith,activity_logs: the scaling
plot). REPS defaults to 3 below 4 GB and 1 from 4 GB up. When SIZE or PIPELINE is given, only the
comparison runs: the request is about that size.
"""
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPARE = ["compare.py", "--pipeline", os.environ.get("PIPELINE") or "zenith",
           "--size", os.environ.get("SIZE") or "1GB"]
COMPARE += ["--reps", os.environ["REPS"]] if os.environ.get("REPS") else []
COMPARE += ["--systems", os.environ["SYSTEMS"]] if os.environ.get("SYSTEMS") else []
BENCHES = [COMPARE, ["bench_kafka_pipeline.py"],
           ["bench_generator.py"], ["bench_listing.py"], ["bench_kafka_source.py"],
           ["bench_pipeline.py", "zenith", "200MB"], ["bench_pipeline.py", "activity_logs", "200MB"],
           ["bench_pipeline.py", "clickstream", "200MB"],
           ["bench_ui.py", "1000"], ["bench_postgres_load.py"],
           ["bench_customers_latency.py", "--interval", "60s", "--probes", "6"]]
if os.environ.get("SIZE") or os.environ.get("PIPELINE"):
    BENCHES = [COMPARE]

failed = 0
for bench in BENCHES:
    print(f"== {' '.join(bench)}", flush=True)
    failed += subprocess.run([sys.executable, str(HERE / bench[0]), *bench[1:]], cwd=HERE.parent).returncode != 0
sys.exit(1 if failed else 0)
