"""Zenith Online (tasks 1-7) written the way the seed writes it: plain PySpark Structured Streaming.

This is the pipeline Assay replaces, kept as the benchmark's baseline: no Assay code at all, only
the PySpark Spark Connect client against an Apache Spark server (a local one from
``scripts/spark.sh start``, or any ``sc://`` address).

- Task 1: the landing folder is read with Spark's streaming file source (the open-source stand-in for
  Databricks Auto Loader) with an explicit schema, ``trigger(availableNow=True)``, a Delta sink and a
  checkpoint under ``_system``.
- Tasks 2-3: batch reads of the customers CSV and the products Parquet, overwritten as Delta.
- Task 4: the pandas UDF ``categorize_region``.
- Task 5: a stream (bronze) - static (products, broadcast; customers) join after
  ``withWatermark("event_dt", "3 minutes").dropDuplicates(["event_id"])``, streamed into silver.
- Tasks 6-7: batch aggregates over silver (salted two-phase aggregation + rank; purchase summary
  with the seed's printed NULL-region check), overwritten as Delta.

ANSI mode stays on (Spark 4's default). The seed parses ``event_timestamp`` with ``to_timestamp``,
which aborts the whole query on the first unparseable value (``CAST_INVALID_INPUT``) in ANSI mode;
this baseline uses ``try_to_timestamp`` instead (a bad value becomes NULL), the one change made to
the seed's code so that it survives dirty data.

Semantics that differ from Assay's pipeline, on purpose (this is what the seed's code does):
Spark drops events behind the watermark instead of keeping them apart, keeps an arbitrary copy of
a duplicate, and has no quarantine (rows with a NULL ``event_dt`` or an unknown ``event_type``
stay in silver).

Usage:
    python bench/baseline/zenith_streaming.py --landing DIR --out DIR [--remote sc://127.0.0.1:15002]
Prints the row counts of every table as one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import pandas as pd
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

WEST_COAST = {"CA", "OR", "WA", "AK", "HI"}
EAST_COAST = {"ME", "NH", "MA", "RI", "CT", "NY", "NJ", "PA", "DE", "MD", "DC", "VA", "NC", "SC", "GA", "FL"}
US_STATES = WEST_COAST | EAST_COAST | {
    "AL", "AZ", "AR", "CO", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "MI", "MN", "MS", "MO", "MT", "NE", "NV",
    "NM", "ND", "OH", "OK", "SD", "TN", "TX", "UT", "VT", "WV", "WI", "WY"}

# Task 1: the explicit schema of the incoming JSON events
USER_EVENT_SCHEMA = StructType([
    StructField("event_id", StringType()),
    StructField("event_timestamp", StringType()),
    StructField("user_id", IntegerType()),
    StructField("event_type", StringType()),
    StructField("product_id", StringType()),
    StructField("session_id", StringType()),
])
# Task 2: customer_id is an integer, the other columns strings
CUSTOMER_SCHEMA = StructType([
    StructField("customer_id", IntegerType()),
    StructField("first_name", StringType()),
    StructField("last_name", StringType()),
    StructField("email", StringType()),
    StructField("location", StringType()),
    StructField("signup_date", StringType()),
])
PRODUCT_SCHEMA = StructType([
    StructField("product_id", StringType()),
    StructField("product_name", StringType()),
    StructField("category", StringType()),
    StructField("price", DoubleType()),
])


# Task 4: a pandas UDF mapping "City, ST" to a region
@F.pandas_udf(StringType())
def categorize_region(locations: pd.Series) -> pd.Series:
    def region(location):
        if not isinstance(location, str) or "," not in location:
            return None
        code = location.rsplit(",", 1)[1].strip().upper()
        if code in WEST_COAST:
            return "West Coast"
        if code in EAST_COAST:
            return "East Coast"
        return "Central" if code in US_STATES else None
    return locations.map(region)


class Paths:
    def __init__(self, landing: str, out: str):
        self.landing, self.out = os.path.abspath(landing), os.path.abspath(out)
        self.user_events = f"{self.landing}/streaming/user_events"
        self.customers = f"{self.landing}/batch/customers"
        self.products = f"{self.landing}/batch/products"
        self.bronze = f"{self.out}/01_bronze"
        self.silver = f"{self.out}/02_silver"
        self.gold = f"{self.out}/03_gold"
        self.checkpoints = f"{self.out}/_system/checkpoints"

    def table(self, layer: str, name: str) -> str:
        return f"{getattr(self, layer)}/{name}"


def bronze_user_events(spark: SparkSession, p: Paths) -> None:
    """Task 1: every new event file, with ingestion time and a parsed event_dt."""
    events = (spark.readStream.format("json")
              .schema(USER_EVENT_SCHEMA)
              .option("maxFilesPerTrigger", 1000)          # Auto Loader's default batch bound
              .load(p.user_events)
              .withColumn("ingestion_timestamp", F.current_timestamp())
              .withColumn("event_dt", F.try_to_timestamp(F.col("event_timestamp"))))
    query = (events.writeStream.format("delta")
             .outputMode("append")
             .option("checkpointLocation", f"{p.checkpoints}/bronze_user_events")
             .trigger(availableNow=True)
             .start(p.table("bronze", "bronze_user_events")))
    query.awaitTermination()


def bronze_reference_tables(spark: SparkSession, p: Paths) -> None:
    """Tasks 2-3: the customer profiles CSV and the product catalogue Parquet, overwritten."""
    customers = spark.read.format("csv").option("header", True).schema(CUSTOMER_SCHEMA).load(p.customers)
    (customers.write.format("delta").mode("overwrite").option("overwriteSchema", True)
     .save(p.table("bronze", "bronze_customer_profiles")))
    products = spark.read.format("parquet").schema(PRODUCT_SCHEMA).load(p.products)
    (products.write.format("delta").mode("overwrite").option("overwriteSchema", True)
     .save(p.table("bronze", "bronze_product_details")))


def silver_sessionized_activity(spark: SparkSession, p: Paths) -> None:
    """Task 5: deduplicate with a 3-minute watermark, enrich with products and customers, stream to silver."""
    events = spark.readStream.format("delta").load(p.table("bronze", "bronze_user_events"))
    products = spark.read.format("delta").load(p.table("bronze", "bronze_product_details"))
    customers = spark.read.format("delta").load(p.table("bronze", "bronze_customer_profiles"))

    deduplicated = events.withWatermark("event_dt", "3 minutes").dropDuplicates(["event_id"])
    enriched = (deduplicated
                .join(F.broadcast(products), "product_id", "inner")
                .join(customers, deduplicated.user_id == customers.customer_id, "left")
                .withColumn("region", categorize_region(F.col("location")))
                .withColumnRenamed("event_type", "action")
                .withColumn("event_date", F.col("event_dt").cast("date")))
    silver = enriched.select(
        "event_id", "event_dt", "event_date", "user_id", "session_id", "action",
        "product_id", "product_name", "category", "price",
        "first_name", "last_name", "email", "location", "region", "ingestion_timestamp")
    query = (silver.writeStream.format("delta")
             .outputMode("append")
             .option("checkpointLocation", f"{p.checkpoints}/silver_sessionized_activity")
             .trigger(availableNow=True)
             .start(p.table("silver", "silver_sessionized_activity")))
    query.awaitTermination()


def gold_daily_product_performance(spark: SparkSession, p: Paths) -> None:
    """Task 6: salted two-phase aggregation per product and day, ranked by revenue in its category."""
    silver = spark.read.format("delta").load(p.table("silver", "silver_sessionized_activity"))
    keys = ["event_date", "product_id", "product_name", "category"]
    salted = (silver.withColumn("salt", F.floor(F.rand() * 5).cast("int"))
              .groupBy(*keys, "salt")
              .agg(F.sum(F.when(F.col("action") == "view", 1).otherwise(0)).alias("views"),
                   F.sum(F.when(F.col("action") == "add_to_cart", 1).otherwise(0)).alias("adds_to_cart"),
                   F.sum(F.when(F.col("action") == "purchase", 1).otherwise(0)).alias("purchases"),
                   F.sum(F.when(F.col("action") == "purchase", F.col("price")).otherwise(0.0)).alias("revenue")))
    totals = (salted.groupBy(*keys)
              .agg(F.sum("views").alias("views"), F.sum("adds_to_cart").alias("adds_to_cart"),
                   F.sum("purchases").alias("purchases"), F.sum("revenue").alias("revenue")))
    ranked = totals.withColumn(
        "revenue_rank", F.rank().over(Window.partitionBy("event_date", "category").orderBy(F.col("revenue").desc())))
    (ranked.write.format("delta").mode("overwrite").option("overwriteSchema", True)
     .partitionBy("event_date").save(p.table("gold", "gold_daily_product_performance")))


def customer_purchase_summary(spark: SparkSession, p: Paths) -> int:
    """Task 7: the NULL-region check, then purchase totals per customer and region."""
    silver = spark.read.format("delta").load(p.table("silver", "silver_sessionized_activity"))
    null_regions = silver.where(F.col("region").isNull()).count()
    print(f"Data quality: {null_regions} events without a customer region", file=sys.stderr)
    summary = (silver.where(F.col("action") == "purchase")
               .groupBy("user_id", "region")
               .agg(F.sum("price").alias("total_purchase_value"),
                    F.count("*").alias("total_purchases"),
                    F.approx_count_distinct("product_id").alias("distinct_products_purchased"),
                    F.max("event_dt").alias("last_purchase_timestamp"))
               .orderBy(F.col("total_purchase_value").desc()))
    (summary.write.format("delta").mode("overwrite").option("overwriteSchema", True)
     .save(p.table("gold", "customer_purchase_summary")))
    return null_regions


TABLES = [("bronze", "bronze_user_events"), ("bronze", "bronze_customer_profiles"),
          ("bronze", "bronze_product_details"), ("silver", "silver_sessionized_activity"),
          ("gold", "gold_daily_product_performance"), ("gold", "customer_purchase_summary")]


def run(spark: SparkSession, p: Paths) -> dict:
    seconds = {}
    for step in (bronze_user_events, bronze_reference_tables, silver_sessionized_activity,
                 gold_daily_product_performance):
        started = time.perf_counter()
        step(spark, p)
        seconds[step.__name__] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    null_regions = customer_purchase_summary(spark, p)
    seconds["customer_purchase_summary"] = round(time.perf_counter() - started, 2)
    counts = {name: spark.read.format("delta").load(p.table(layer, name)).count() for layer, name in TABLES}
    return {"pipeline": "zenith", "rows": counts, "null_region_events": null_regions, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--landing", required=True, help="landing root (streaming/user_events, batch/...)")
    parser.add_argument("--out", required=True, help="storage root for the Delta tables and checkpoints")
    parser.add_argument("--remote", default=os.environ.get("SPARK_REMOTE", "sc://127.0.0.1:15002"),
                        help="Spark Connect address (default: $SPARK_REMOTE or sc://127.0.0.1:15002)")
    args = parser.parse_args(argv)
    spark = SparkSession.builder.remote(args.remote).create()
    try:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        result = run(spark, Paths(args.landing, args.out))
    finally:
        spark.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
