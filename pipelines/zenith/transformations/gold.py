"""Gold (tasks 6-7): business aggregates, recomputed from silver on every run."""
from pyspark.sql import Window
from pyspark.sql import functions as F

from assay import pipelines as dp


@dp.materialized_view(name="gold.gold_daily_product_performance", partition_cols=["event_date"],
                      comment="Views, adds to cart, purchases and revenue per product and day, ranked in category.")
def gold_daily_product_performance():
    silver = dp.read("silver_sessionized_activity")
    buckets = int(dp.config("salt_buckets", "5"))
    keys = ["event_date", "product_id", "product_name", "category"]
    # Task 6: salt the key so that a hot product's rows spread over several tasks, then sum the parts.
    salted = (silver.withColumn("salt", F.floor(F.rand(seed=17) * buckets).cast("int"))
              .groupBy(*keys, "salt")
              .agg(F.sum(F.when(F.col("action") == "view", 1).otherwise(0)).alias("views"),
                   F.sum(F.when(F.col("action") == "add_to_cart", 1).otherwise(0)).alias("adds_to_cart"),
                   F.sum(F.when(F.col("action") == "purchase", 1).otherwise(0)).alias("purchases"),
                   F.sum(F.when(F.col("action") == "purchase", F.col("price")).otherwise(0.0)).alias("revenue")))
    totals = salted.groupBy(*keys).agg(
        F.sum("views").cast("bigint").alias("views"), F.sum("adds_to_cart").cast("bigint").alias("adds_to_cart"),
        F.sum("purchases").cast("bigint").alias("purchases"), F.sum("revenue").alias("revenue"))
    in_category = Window.partitionBy("event_date", "category").orderBy(F.col("revenue").desc())
    return totals.withColumn("revenue_rank", F.rank().over(in_category))


@dp.materialized_view(name="gold.customer_purchase_summary",
                      comment="Purchase totals per customer and region, largest first.")
def customer_purchase_summary():
    silver = dp.read("silver_sessionized_activity")
    # Task 7's data-quality check: events whose customer region is unknown, recorded in the event log.
    dp.record_metric("null_region_events", silver.where(F.col("region").isNull()))
    return (silver.where(F.col("action") == "purchase")
            .groupBy("user_id", "region")
            .agg(F.sum("price").alias("total_purchase_value"),
                 F.count("*").alias("total_purchases"),
                 F.approx_count_distinct("product_id").alias("distinct_products_purchased"),
                 F.max("event_dt").alias("last_purchase_timestamp"))
            .orderBy(F.col("total_purchase_value").desc()))
