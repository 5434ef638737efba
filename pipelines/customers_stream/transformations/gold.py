"""Gold: features per customer (upserted into PostgreSQL) and a summary per contract and internet
service (replaced in PostgreSQL in one transaction). No names, no e-mails: PII stays in silver.

Every rounding is half-up to 2 places on exact integers (cents and months), so the values do not
depend on an engine's decimal division: half_up(a, b) = round(a / b) with halves away from zero.
"""
from pyspark.sql import Column
from pyspark.sql import functions as F

from assay import pipelines as dp

KEY_ORDER = ["updated_at", "kafka_partition", "kafka_offset"]


def half_up(numerator: Column, denominator: Column) -> Column:
    """round(numerator / denominator) to a whole number, halves away from zero, on bigints
    (denominator > 0): floor((2|n| + d) / 2d), the floor taken exactly with the remainder."""
    x = F.abs(numerator).cast("bigint") * 2 + denominator.cast("bigint")
    y = denominator.cast("bigint") * 2
    magnitude = ((x - x % y) / y).cast("bigint")          # an exact multiple: the division is exact
    return F.when(numerator < 0, -magnitude).otherwise(magnitude)


def from_cents(cents: Column, precision: int = 10) -> Column:
    return (cents.cast("decimal(38,0)") / F.lit(100)).cast(f"decimal({precision},2)")


def cents(money: Column) -> Column:
    return (money * 100).cast("bigint")


def tenure_band(tenure: Column) -> Column:
    return (F.when(tenure <= 12, "0-12").when(tenure <= 24, "13-24").when(tenure <= 48, "25-48")
            .otherwise("49+"))


@dp.temporary_view(name="customer_feature_changes", comment="Each well-formed version as gold features.")
def customer_feature_changes():
    c = dp.read_stream("customer_versions")
    return c.select(
        "customer_id", "gender", "senior_citizen", "partner", "dependents", "tenure",
        tenure_band(F.col("tenure")).alias("tenure_band"), "phone_service", "internet_service", "contract",
        "monthly_charges", "total_charges",
        from_cents(half_up(cents(F.col("total_charges")), F.greatest("tenure", F.lit(1)))).alias("avg_monthly_spend"),
        (F.col("contract") == "Month-to-month").alias("is_month_to_month"),
        "updated_at", "kafka_partition", "kafka_offset")


dp.create_streaming_table(
    "gold.customer_features", comment="Model features per customer (no PII); upserted into PostgreSQL gold.",
    publish=dp.postgres(keys=["customer_id"]))
dp.create_auto_cdc_flow(
    target="customer_features", source="customer_feature_changes", keys=["customer_id"], sequence_by=KEY_ORDER,
    stored_as_scd_type=1, except_column_list=["kafka_partition", "kafka_offset"])


@dp.materialized_view(name="gold.contract_summary",
                      comment="Customers, average tenure and monthly charges, total charges per contract and "
                              "internet service; replaced in PostgreSQL in one transaction per refresh.",
                      publish=dp.postgres(keys=["contract", "internet_service"], replace="in_place"))
@dp.expect_or_fail("has_customers", "customers > 0")
def contract_summary():
    s = dp.read("silver_customers")
    return (s.groupBy("contract", "internet_service")
            .agg(F.count(F.lit(1)).alias("customers"), F.sum(F.col("tenure").cast("bigint")).alias("_tenure"),
                 F.sum(cents(F.col("monthly_charges"))).alias("_monthly"),
                 F.sum("total_charges").alias("total_charges_sum"))
            .select("contract", "internet_service", "customers",
                    from_cents(half_up(F.col("_tenure") * 100, F.col("customers"))).alias("avg_tenure"),
                    from_cents(half_up(F.col("_monthly"), F.col("customers"))).alias("avg_monthly_charges"),
                    F.col("total_charges_sum").cast("decimal(20,2)").alias("total_charges_sum")))
