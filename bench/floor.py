"""The engine's floor for a landing folder: read the raw files and write them as one Delta table,
with nothing else (no rules, no positions, no rescue). What a pipeline's bronze is measured against.

Usage: python bench/floor.py FORMAT LANDING_DIR OUT_TABLE [--engine sail|spark] [--remote sc://...]
FORMAT: json (text + from_json with the declared schema) or csv (text split on commas into the declared
columns, header lines dropped: the embedded engine's own CSV reader stops at the first malformed row,
and the generated data has some on purpose).
"""
from __future__ import annotations

import argparse
import glob
import os
import time

SCHEMAS = {
    "json": "event_id STRING, event_timestamp STRING, user_id INT, event_type STRING, product_id STRING, "
            "session_id STRING",
    "csv": "log_id STRING, user_id STRING, event_time STRING, ip_address STRING, content_id STRING, action STRING, "
           "watch_time_seconds STRING",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("format", choices=sorted(SCHEMAS))
    parser.add_argument("landing")
    parser.add_argument("out")
    parser.add_argument("--engine", default="sail")
    parser.add_argument("--remote")
    args = parser.parse_args()
    os.environ.setdefault("RUST_LOG", "error")
    from pyspark.sql import functions as F

    from assay.engines import create_engine
    conf = {"remote": args.remote} if args.remote else {}
    with create_engine(args.engine, conf) as engine:
        spark = engine.spark
        files = sorted(glob.glob(os.path.join(args.landing, "**", f"*.{args.format}"), recursive=True))
        started = time.perf_counter()
        if args.format == "json":
            df = spark.read.text(files).select(F.from_json("value", SCHEMAS["json"]).alias("r")).select("r.*")
        else:
            names = [c.split()[0] for c in SCHEMAS["csv"].split(", ")]
            fields = F.split("value", ",", -1)
            df = (spark.read.text(files).where(~F.col("value").startswith(names[0] + ","))
                  .select(*[F.get(fields, i).alias(n) for i, n in enumerate(names)]))
        df.write.format("delta").mode("overwrite").save(args.out)
        print(f"floor {args.format}: {len(files)} files in {time.perf_counter() - started:.2f}s")


if __name__ == "__main__":
    main()
