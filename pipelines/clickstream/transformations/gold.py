"""Gold: page activity per day and page (clustered), and the users' profile history (SCD type 2)."""
from pyspark.sql import functions as F

from assay import pipelines as dp


def _count(event_type: str):
    return F.sum(F.when(F.col("event_type") == event_type, 1).otherwise(0)).cast("bigint")


@dp.materialized_view(name="gold.fact_page_views_daily", cluster_by=["event_date", "page_url"],
                      comment="Page views, clicks, purchases and exact distinct users per day and page.")
@dp.expect_all_or_fail({"has_event_date": "event_date IS NOT NULL",
                        "counts_not_negative": "page_views >= 0 AND clicks >= 0 AND purchases >= 0"})
@dp.expect("has_page_url", "page_url IS NOT NULL")
def fact_page_views_daily():
    return (dp.read("silver_clickstream").groupBy("event_date", "page_url")
            .agg(_count("page_view").alias("page_views"), _count("click").alias("clicks"),
                 _count("purchase").alias("purchases"), F.countDistinct("user_key").alias("unique_users")))


@dp.temporary_view(name="user_changes", comment="Silver's events of known users: the changes dim_users applies.")
def user_changes():
    return (dp.read_stream("silver_clickstream").where(F.col("user_key").isNotNull())
            .select("user_key", "email_key", "device", "country", "plan", "event_ts", "event_id"))


# AUTO CDC targets take no expectations: silver's rules, and the filter above, check what reaches it.
dp.create_streaming_table("gold.dim_users", comment="Users' device, country and plan over time (SCD type 2).")
dp.create_auto_cdc_flow(
    target="dim_users", source="user_changes", keys=["user_key"],
    sequence_by=["event_ts", "event_id"],              # event time; event_id orders a user's simultaneous events
    stored_as_scd_type=2,
    column_list=["user_key", "email_key", "device", "country", "plan"],
    track_history_column_list=["device", "country", "plan"])   # an e-mail change updates the current row
