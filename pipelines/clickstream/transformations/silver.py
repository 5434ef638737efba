"""Silver: typed, pseudonymised, checked, late rows apart, one row per event_id.

Order: rules (failing rows to silver_clickstream_quarantine), then lateness (10-minute
watermark on event_ts, late rows to silver_clickstream_late), then deduplication on event_id.
The raw user_id and email never reach silver: only their keyed HMACs.
"""
from pyspark.sql import Column
from pyspark.sql import functions as F

from assay import pipelines as dp

EVENT_TYPES = ("page_view", "click", "add_to_cart", "signup", "purchase", "logout")
EPOCH_MILLIS = r"^[0-9]{1,15}$"
ISO_ZULU = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$"
SPACE_UTC = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"

RULES = {
    "valid_event_id": "event_id IS NOT NULL",
    "valid_event_ts": "event_ts IS NOT NULL",
    "valid_event_type": "event_type IN ({})".format(", ".join(f"'{t}'" for t in EVENT_TYPES)),
}


def event_timestamp(ts: Column) -> Column:
    """The UTC instant of `ts` in one of the three formats, else NULL. Only try_ functions and
    casts of text a pattern has checked: Spark 4's ANSI mode aborts a query on a failing cast."""
    return (F.when(ts.rlike(EPOCH_MILLIS), F.timestamp_millis(ts.try_cast("bigint")))
            .when(ts.rlike(ISO_ZULU) | ts.rlike(SPACE_UTC), F.try_to_timestamp(ts)))


def keyed(value: Column) -> Column:
    """HMAC-SHA-256 of a value (blank → NULL), computed by the engine. The key is named by its
    environment variable (assay.yml `pii_key_env`), never written anywhere; rotate the variable and
    `pii_key_version` together (README, "Rotating the key")."""
    key = "${env:" + dp.config("pii_key_env", "CLICKSTREAM_PII_KEY") + "}"
    return dp.pseudonymize(F.nullif(value, F.lit("")), key=key, version=dp.config("pii_key_version", "v1"))


@dp.table(name="silver.silver_clickstream", quarantine=True,
          comment="One row per event_id (first arrival kept), pseudonymised user and e-mail keys, UTC event time.")
@dp.expect_all_or_drop(RULES)
@dp.expect("has_user", "user_key IS NOT NULL")            # anonymous events: counted, kept
@dp.dedupe(keys=["event_id"], event_time="event_ts", watermark="10 minutes",
           order_by=["_source_modified", "_source_file"])
def silver_clickstream():
    raw = dp.read_stream("bronze_clickstream")
    ts = event_timestamp(F.col("ts"))
    return raw.select(
        "event_id",
        keyed(F.trim("user_id")).alias("user_key"),
        keyed(F.lower(F.trim("email"))).alias("email_key"),
        "event_type", "page_url", "referrer", "device", "country", "plan",
        ts.alias("event_ts"), F.to_date(ts).alias("event_date"),
        "_source_file", "_source_modified")
