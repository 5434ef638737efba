"""User activity logs written the way the seeds write them: plain PySpark Structured Streaming.

The benchmark's baseline for the activity-log pipeline (seeds: the InvestCloud streaming ETL
assignment and its setup guide): no Assay code at all, only the PySpark Spark Connect client against
an Apache Spark server (a local one from ``scripts/spark.sh start``, or any ``sc://`` address).

- Bronze: new CSV files through Spark's streaming file source (the open-source stand-in for Auto
  Loader), every value a string, ``_corrupt_record`` for rows with the wrong number of fields. The
  seed's "data quality gate" checks each row; a ``foreachBatch`` writes the valid rows to
  ``bronze_activity_logs`` and the others, with the names of the rules they broke, to
  ``bronze_activity_logs_quarantine`` (both Delta appends made idempotent with Delta's
  ``txnAppId`` / ``txnVersion`` = the query id and the micro-batch id, as Delta's docs advise).
- The geo-IP reference CSV, overwritten as Delta.
- Silver: a stream from bronze, typed, ``withWatermark("event_time", "1 hour")`` +
  ``dropDuplicates(["log_id"])`` (the seed's "global deduplication"; the seed gives no delay, one
  hour is used), the region of the address from a pandas UDF (a range lookup over the geo table),
  streamed into ``silver_activity_logs``.
- Gold: watch time per user, and per day and region with exact distinct users, overwritten.
All with ``trigger(availableNow=True)``, checkpoints under ``_system``, zstd-compressed Parquet.

ANSI mode stays on (Spark 4's default): timestamps are parsed with ``try_to_timestamp`` and numbers
checked with ``try_cast``, since ``to_timestamp`` / ``CAST`` abort the whole query on the first bad
value (``CAST_INVALID_INPUT``).

Semantics that differ from Assay's pipeline, on purpose (this is what the seed's code does):
``dropDuplicates`` keeps an arbitrary copy of a duplicate (Assay: the earliest ``event_time``,
then file and position), rows behind the watermark are dropped, and a later run never replaces a
row already in silver.

Usage:
    python bench/baseline/activity_logs_streaming.py --landing DIR --out DIR [--remote sc://127.0.0.1:15002]
Prints the row counts of every table as one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import time

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

RAW_SCHEMA = StructType([StructField(name, StringType()) for name in (
    "log_id", "user_id", "event_time", "ip_address", "content_id", "action", "watch_time_seconds",
    "_corrupt_record")])
OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"

# The data-quality gate: rule name -> SQL condition a valid row meets (NULL counts as failed)
RULES = {
    "log_id_present": "log_id IS NOT NULL AND trim(log_id) <> ''",
    "user_id_present": "user_id IS NOT NULL AND trim(user_id) <> ''",
    "valid_event_time": "try_to_timestamp(event_time) IS NOT NULL",
    "valid_ip": f"ip_address RLIKE '^({OCTET}\\\\.){{3}}{OCTET}$'",
    "valid_action": "action IN ('play', 'pause', 'seek', 'stop')",
    "valid_watch_time": "watch_time_seconds RLIKE '^[0-9]+$' AND "
                        "try_cast(watch_time_seconds AS BIGINT) BETWEEN 0 AND 86400",
    "well_formed_record": "_corrupt_record IS NULL",
}


class Paths:
    def __init__(self, landing: str, out: str):
        self.landing, self.out = os.path.abspath(landing), os.path.abspath(out)
        self.logs = f"{self.landing}/activity_logs"
        self.geo = f"{self.landing}/reference/geo_ip"
        self.checkpoints = f"{self.out}/_system/checkpoints"

    def table(self, layer: str, name: str) -> str:
        return f"{self.out}/{layer}/{name}"


def failed_rules() -> F.Column:
    checks = [F.when(F.coalesce(F.expr(sql), F.lit(False)), F.lit(None)).otherwise(F.lit(name))
              for name, sql in RULES.items()]
    return F.array_compact(F.array(*checks))


def bronze_activity_logs(spark: SparkSession, p: Paths) -> None:
    """Every new CSV row, checked: valid rows to bronze, the others to the quarantine (foreachBatch)."""
    rows = (spark.readStream.format("csv")
            .option("header", True)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", "_corrupt_record")
            .option("maxFilesPerTrigger", 1000)               # Auto Loader's default batch bound
            .schema(RAW_SCHEMA)
            .load(p.logs)
            .withColumn("source_file", F.col("_metadata.file_path"))
            .withColumn("ingestion_time", F.current_timestamp())
            .withColumn("failed_rules", failed_rules()))
    bronze_path = p.table("bronze", "bronze_activity_logs")
    quarantine_path = p.table("bronze", "bronze_activity_logs_quarantine")

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        batch.persist()
        valid = batch.where(F.size("failed_rules") == 0).drop("failed_rules", "_corrupt_record")
        invalid = batch.where(F.size("failed_rules") > 0)
        for df, path in ((valid, bronze_path), (invalid, quarantine_path)):
            (df.write.format("delta").mode("append")
             .option("txnAppId", "bronze_activity_logs").option("txnVersion", batch_id)
             .save(path))
        batch.unpersist()

    query = (rows.writeStream.foreachBatch(write_batch)
             .option("checkpointLocation", f"{p.checkpoints}/bronze_activity_logs")
             .trigger(availableNow=True)
             .start())
    query.awaitTermination()


def bronze_geo_ip(spark: SparkSession, p: Paths) -> None:
    geo = spark.read.format("csv").option("header", True).schema("network STRING, region STRING").load(p.geo)
    (geo.write.format("delta").mode("overwrite").option("overwriteSchema", True)
     .save(p.table("bronze", "bronze_geo_ip")))


def region_lookup(networks: pd.DataFrame):
    """A pandas UDF giving each IPv4 address the region of the network containing it ('Unknown')."""
    nets = [ipaddress.ip_network(n, strict=False) for n in networks["network"]]
    order = np.argsort([int(n.network_address) for n in nets]) if nets else np.array([], int)
    first = np.array([int(nets[i].network_address) for i in order], np.int64)
    last = np.array([int(nets[i].broadcast_address) for i in order], np.int64)
    regions = networks["region"].to_numpy(object)[order] if nets else np.array([], object)

    @F.pandas_udf(StringType())
    def region_of_ip(ips: pd.Series) -> pd.Series:
        out = np.full(len(ips), "Unknown", dtype=object)
        if len(ips) and len(first):
            octets = ips.str.split(".", expand=True).astype(np.int64).to_numpy()
            address = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
            index = np.searchsorted(first, address, side="right") - 1
            hit = (index >= 0) & (address <= last[np.clip(index, 0, None)])
            out[hit] = regions[index[hit]]
        return pd.Series(out)
    return region_of_ip


def silver_activity_logs(spark: SparkSession, p: Paths) -> None:
    """Typed, globally deduplicated on log_id, with the region of the address, streamed to silver."""
    region_of_ip = region_lookup(spark.read.format("delta").load(p.table("bronze", "bronze_geo_ip")).toPandas())
    logs = spark.readStream.format("delta").load(p.table("bronze", "bronze_activity_logs"))
    typed = logs.select(
        F.trim("log_id").alias("log_id"), F.trim("user_id").alias("user_id"),
        F.try_to_timestamp("event_time").alias("event_time"), "ip_address", "content_id", "action",
        F.col("watch_time_seconds").try_cast("int").alias("watch_time_seconds"), "source_file")
    silver = (typed.withWatermark("event_time", "1 hour")
              .dropDuplicates(["log_id"])
              .withColumn("region", region_of_ip(F.col("ip_address")))
              .withColumn("event_date", F.to_date("event_time")))
    query = (silver.writeStream.format("delta")
             .outputMode("append")
             .option("checkpointLocation", f"{p.checkpoints}/silver_activity_logs")
             .trigger(availableNow=True)
             .start(p.table("silver", "silver_activity_logs")))
    query.awaitTermination()


def gold_tables(spark: SparkSession, p: Paths) -> None:
    silver = spark.read.format("delta").load(p.table("silver", "silver_activity_logs"))
    users = (silver.groupBy("user_id")
             .agg(F.sum("watch_time_seconds").alias("total_watch_time_seconds"), F.count("*").alias("events"),
                  F.min("event_time").alias("first_event_time"), F.max("event_time").alias("last_event_time")))
    (users.write.format("delta").mode("overwrite").option("overwriteSchema", True)
     .save(p.table("gold", "gold_user_watch_time")))
    regions = (silver.groupBy("event_date", "region")
               .agg(F.sum("watch_time_seconds").alias("total_watch_time_seconds"),
                    F.countDistinct("user_id").alias("active_users")))
    (regions.write.format("delta").mode("overwrite").option("overwriteSchema", True)
     .partitionBy("event_date").save(p.table("gold", "gold_region_daily_watch_time")))


TABLES = [("bronze", "bronze_activity_logs"), ("bronze", "bronze_activity_logs_quarantine"),
          ("bronze", "bronze_geo_ip"), ("silver", "silver_activity_logs"),
          ("gold", "gold_user_watch_time"), ("gold", "gold_region_daily_watch_time")]


def run(spark: SparkSession, p: Paths) -> dict:
    seconds = {}
    for step in (bronze_activity_logs, bronze_geo_ip, silver_activity_logs, gold_tables):
        started = time.perf_counter()
        step(spark, p)
        seconds[step.__name__] = round(time.perf_counter() - started, 2)
    counts = {}
    for layer, name in TABLES:
        path = p.table(layer, name)
        # a foreachBatch target that never received a row was never created
        counts[name] = spark.read.format("delta").load(path).count() if os.path.isdir(f"{path}/_delta_log") else 0
    return {"pipeline": "activity_logs", "rows": counts, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--landing", required=True, help="landing root (activity_logs/, reference/geo_ip/)")
    parser.add_argument("--out", required=True, help="storage root for the Delta tables and checkpoints")
    parser.add_argument("--remote", default=os.environ.get("SPARK_REMOTE", "sc://127.0.0.1:15002"),
                        help="Spark Connect address (default: $SPARK_REMOTE or sc://127.0.0.1:15002)")
    args = parser.parse_args(argv)
    spark = SparkSession.builder.remote(args.remote).create()
    try:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        spark.conf.set("spark.sql.parquet.compression.codec", "zstd")      # all Delta files zstd
        result = run(spark, Paths(args.landing, args.out))
    finally:
        spark.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
