"""`make bench`: every benchmark, one after the other, printing its figures."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [["bench_generator.py"], ["bench_listing.py"], ["bench_kafka_source.py"],
           ["bench_pipeline.py", "zenith", "200MB"], ["bench_pipeline.py", "activity_logs", "200MB"],
           ["bench_pipeline.py", "clickstream", "200MB"],
           ["bench_ui.py", "1000"], ["bench_postgres_load.py"],
           ["bench_customers_latency.py", "--interval", "60s", "--probes", "6"]]

failed = 0
for bench in BENCHES:
    print(f"== {' '.join(bench)}", flush=True)
    failed += subprocess.run([sys.executable, str(HERE / bench[0]), *bench[1:]], cwd=HERE.parent).returncode != 0
sys.exit(1 if failed else 0)
