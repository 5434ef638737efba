"""Silver: each message parsed strictly, malformed ones quarantined with the rules they broke, and
the newest version of every customer (AUTO CDC, SCD type 1, sequenced by updated_at).

Parsing (the contract, README): `Yes`/`No`, `true`/`false` and 0/1 are booleans, anything else
is NULL; money is decimal(10,2) (half-up); updated_at is ISO-8601 with or without a zone, or
`YYYY-MM-DD HH:MM:SS`, no zone meaning UTC; then the defaults. Only try_ functions and casts of
text a pattern has checked: Spark 4's ANSI mode would abort the batch on one bad value.

Versions are ordered by (updated_at, Kafka partition, offset): a customer's messages share a
partition (the key is the customer_id), so two versions with the same updated_at resolve to the
later message instead of stopping the flow. An older version arriving after a newer one never
overwrites it; AUTO CDC counts it (`out_of_order` in the event log).
"""
from pyspark.sql import Column, Window
from pyspark.sql import functions as F

from assay import pipelines as dp

STRICT = ("customer_id STRING, gender STRING, senior_citizen STRING, partner STRING, dependents STRING, "
          "tenure STRING, phone_service STRING, internet_service STRING, contract STRING, monthly_charges STRING, "
          "total_charges STRING, updated_at STRING, first_name STRING, last_name STRING, email STRING")
TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
RULES = {                       # a rule that is not TRUE (NULL included) is broken
    "is_json_object": F.col("_is_object"),
    "has_customer_id": F.col("customer_id").isNotNull() & (F.trim("customer_id") != ""),
    "valid_updated_at": F.col("updated_at").isNotNull(),
}
SEQUENCE = ["updated_at", "kafka_partition", "kafka_offset"]


def flag(text: Column) -> Column:
    word = F.lower(F.trim(text))
    return F.when(word.isin("yes", "true", "1"), F.lit(True)).when(word.isin("no", "false", "0"), F.lit(False))


def money(text: Column) -> Column:
    return F.trim(text).try_cast("decimal(10,2)")


def parse(bronze):
    """Bronze rows → typed columns (before defaults), the rules' verdicts, and Kafka coordinates."""
    text = F.col("value")
    is_object = F.ltrim(text).startswith("{") & F.from_json(text, "map<string,string>").isNotNull()
    m = F.from_json(text, STRICT)
    updated = m["updated_at"]
    df = bronze.select(
        is_object.alias("_is_object"),
        F.when(is_object, m["customer_id"]).alias("customer_id"),
        F.when(is_object, m["gender"]).alias("gender"),
        flag(m["senior_citizen"]).alias("senior_citizen"),
        flag(m["partner"]).alias("partner"),
        flag(m["dependents"]).alias("dependents"),
        F.trim(m["tenure"]).try_cast("int").alias("tenure"),
        flag(m["phone_service"]).alias("phone_service"),
        m["internet_service"].alias("internet_service"),
        m["contract"].alias("contract"),
        money(m["monthly_charges"]).alias("monthly_charges"),
        money(m["total_charges"]).alias("total_charges"),
        F.when(is_object & updated.rlike(TIMESTAMP), F.try_to_timestamp(updated)).alias("updated_at"),
        F.when(is_object, updated).alias("updated_at_text"),
        m["first_name"].alias("first_name"), m["last_name"].alias("last_name"), m["email"].alias("email"),
        F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
        "key", "value", "kafka_timestamp")
    broken = [F.when(~F.coalesce(rule, F.lit(False)), F.lit(name)) for name, rule in sorted(RULES.items())]
    return df.withColumn("_broken", F.filter(F.array(*broken), lambda r: r.isNotNull()))


def with_defaults(df):
    """The contract's defaults; a missing total_charges is monthly_charges × tenure (exact)."""
    tenure = F.coalesce("tenure", F.lit(0))
    return df.select(
        "customer_id",
        F.coalesce("gender", F.lit("Unknown")).alias("gender"),
        F.coalesce("senior_citizen", F.lit(False)).alias("senior_citizen"),
        F.coalesce("partner", F.lit(False)).alias("partner"),
        F.coalesce("dependents", F.lit(False)).alias("dependents"),
        tenure.alias("tenure"),
        F.coalesce("phone_service", F.lit(False)).alias("phone_service"),
        F.coalesce("internet_service", F.lit("No")).alias("internet_service"),
        F.coalesce("contract", F.lit("Month-to-month")).alias("contract"),
        "monthly_charges",
        F.coalesce("total_charges", (F.col("monthly_charges") * tenure).try_cast("decimal(10,2)"))
        .alias("total_charges"),
        "updated_at", "first_name", "last_name", "email",
        F.year("updated_at").alias("year"), F.month("updated_at").alias("month"),
        F.dayofmonth("updated_at").alias("day"), F.hour("updated_at").alias("hour"),
        "kafka_partition", "kafka_offset")


@dp.table(name="silver.silver_customers_quarantine",
          comment="Messages that are not a JSON object, have no customer_id, or whose updated_at does not parse; "
                  "with the rules they broke (failed_rules, sorted) and their Kafka coordinates.")
def silver_customers_quarantine():
    parsed = parse(dp.read_stream("bronze_customers"))
    return parsed.where(F.size("_broken") > 0).select(
        "customer_id", F.col("updated_at_text").alias("updated_at"), F.col("_broken").alias("failed_rules"),
        "key", "value",
        "kafka_partition", "kafka_offset", "kafka_timestamp")


@dp.temporary_view(name="customer_versions", comment="Well-formed versions, typed, after the defaults.")
def customer_versions():
    return with_defaults(parse(dp.read_stream("bronze_customers")).where(F.size("_broken") == 0))


@dp.temporary_view(name="customer_changes", comment="customer_versions, with the lateness figure of each batch.")
def customer_changes():
    changes = dp.read_stream("customer_versions")
    # The seed's 10-minute watermark as a figure: versions more than `late_after` (of updated_at) behind
    # the newest version before them in their Kafka partition, within the micro-batch. Late versions are
    # still applied when they are the newest of their customer: no latest state is ever lost.
    before = Window.partitionBy("kafka_partition").orderBy("kafka_offset") \
        .rowsBetween(Window.unboundedPreceding, -1)
    late_after = F.expr(f"INTERVAL {dp.config('late_after', '10 minutes')}")
    newest_before = changes.select("updated_at", F.max("updated_at").over(before).alias("_newest_before"))
    dp.record_metric("late_versions", newest_before.where(F.col("updated_at") < F.col("_newest_before") - late_after))
    return changes


dp.create_streaming_table(
    "silver.silver_customers", partition_cols=["year", "month", "day", "hour"],
    comment="One row per customer_id: the newest well-formed version (by updated_at), after the defaults.")
dp.create_auto_cdc_flow(
    target="silver_customers", source="customer_changes", keys=["customer_id"], sequence_by=SEQUENCE,
    stored_as_scd_type=1, except_column_list=["kafka_partition", "kafka_offset"])
