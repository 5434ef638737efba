"""Silver (tasks 4-5): deduplicated, enriched, conformed user activity."""
import pandas as pd
from pyspark.sql import functions as F

from assay import pipelines as dp

WEST_COAST = {"CA", "OR", "WA", "AK", "HI"}
EAST_COAST = {"ME", "NH", "MA", "RI", "CT", "NY", "NJ", "PA", "DE", "MD", "DC", "VA", "NC", "SC", "GA", "FL"}
US_STATES = WEST_COAST | EAST_COAST | {
    "AL", "AZ", "AR", "CO", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "MI", "MN", "MS", "MO", "MT", "NE", "NV",
    "NM", "ND", "OH", "OK", "SD", "TN", "TX", "UT", "VT", "WV", "WI", "WY"}


def region_of(location) -> str | None:
    """'City, ST' → West Coast / East Coast / Central; None when empty or not a US state code."""
    if not isinstance(location, str) or "," not in location:
        return None
    code = location.rsplit(",", 1)[1].strip().upper()
    if code in WEST_COAST:
        return "West Coast"
    if code in EAST_COAST:
        return "East Coast"
    return "Central" if code in US_STATES else None


# Task 4: a vectorised pandas UDF over a Series of locations.
@F.pandas_udf("string")
def categorize_region(locations: pd.Series) -> pd.Series:
    return locations.map(region_of)


@dp.table(name="silver.silver_sessionized_activity", quarantine=True,
          comment="One row per event (deduplicated on event_id, 3-minute watermark), enriched with product, "
                  "customer and region.")
@dp.expect_all_or_drop({
    "valid_event_id": "event_id IS NOT NULL",
    "valid_event_time": "event_dt IS NOT NULL",
    "valid_event_type": "action IN ('view', 'add_to_cart', 'purchase')",
})
@dp.expect("known_region", "region IS NOT NULL")
@dp.dedupe(keys=["event_id"], event_time="event_dt", watermark="3 minutes")
def silver_sessionized_activity():
    events = dp.read_stream("bronze_user_events")           # only the events new since the last run
    # Static sides: the whole current tables, without their own lineage columns.
    products = dp.read("bronze_product_details").select("product_id", "product_name", "category", "price")
    customers = dp.read("bronze_customer_profiles").select(
        "customer_id", "first_name", "last_name", "email", "location")
    # The left join first: the embedded engine (Sail 0.7.2) builds a join that follows another join
    # from its left side, here every event in one partition (measured 8.1 s against 3.6 s at 1 GB).
    enriched = (events
                .join(customers, events.user_id == customers.customer_id, "left")
                .join(F.broadcast(products), "product_id", "inner")   # the small side is broadcast
                .withColumn("region", categorize_region(F.col("location")))
                .withColumnRenamed("event_type", "action")
                .withColumn("event_date", F.to_date("event_dt")))
    return enriched.select(
        "event_id", "event_dt", "event_date", "user_id", "session_id", "action",
        "product_id", "product_name", "category", "price",
        "first_name", "last_name", "email", "location", "region",
        "ingestion_timestamp", "_source_file", "_source_modified")
