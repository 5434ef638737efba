"""Bronze: every landed CSV row, as landed, in exactly one of two tables.

Rows that break a rule go to bronze_activity_logs_quarantine with the names of every rule they
broke; the others to bronze_activity_logs. Values stay strings here: a value that cannot be
typed is a data-quality finding, not a reason to lose the row.
"""
from pyspark.sql import functions as F

from assay import pipelines as dp

RAW_SCHEMA = ("log_id STRING, user_id STRING, event_time STRING, ip_address STRING, content_id STRING, "
              "action STRING, watch_time_seconds STRING")
OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"

RULES = {
    "log_id_present": "log_id IS NOT NULL AND trim(log_id) <> ''",
    "user_id_present": "user_id IS NOT NULL AND trim(user_id) <> ''",
    "valid_event_time": "try_to_timestamp(event_time) IS NOT NULL",
    "valid_ip": f"ip_address RLIKE '^({OCTET}\\\\.){{3}}{OCTET}$'",
    "valid_action": "action IN ('play', 'pause', 'seek', 'stop')",
    "valid_watch_time": "watch_time_seconds RLIKE '^[0-9]+$' AND "
                        "try_cast(watch_time_seconds AS BIGINT) BETWEEN 0 AND 86400",
    "well_formed_record": "_rescued_data IS NULL",   # a row with the wrong number of fields
}


@dp.table(name="bronze.bronze_activity_logs", quarantine=True,
          comment="Valid activity log rows as landed, with source file, position and ingestion time.")
@dp.expect_all_or_drop(RULES)
def bronze_activity_logs():
    return (dp.read_files("activity_logs", format="csv", schema=RAW_SCHEMA, header=True,
                          schema_evolution_mode="rescue")
            .withColumn("ingestion_time", F.current_timestamp()))


@dp.materialized_view(name="bronze.bronze_geo_ip", comment="IPv4 networks (CIDR) and their region.")
@dp.expect_or_fail("valid_network", "network RLIKE '^[0-9.]+/[0-9]{1,2}$'")
def bronze_geo_ip():
    return dp.read_files("reference/geo_ip", format="csv", schema="network STRING, region STRING", header=True,
                         batch=True).select("network", "region")
