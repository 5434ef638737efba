"""Gold: watch time per user, and per day and region."""
from pyspark.sql import functions as F

from assay import pipelines as dp


@dp.materialized_view(name="gold.gold_user_watch_time", comment="Total watch time and activity span per user.")
def gold_user_watch_time():
    return (dp.read("silver_activity_logs").groupBy("user_id")
            .agg(F.sum("watch_time_seconds").alias("total_watch_time_seconds"), F.count("*").alias("events"),
                 F.min("event_time").alias("first_event_time"), F.max("event_time").alias("last_event_time")))


@dp.materialized_view(name="gold.gold_region_daily_watch_time", partition_cols=["event_date"],
                      comment="Watch time and exact distinct active users per day and region.")
def gold_region_daily_watch_time():
    return (dp.read("silver_activity_logs").groupBy("event_date", "region")
            .agg(F.sum("watch_time_seconds").alias("total_watch_time_seconds"),
                 F.countDistinct("user_id").alias("active_users")))
