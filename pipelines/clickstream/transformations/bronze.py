"""Bronze: every landed line, as landed (Auto Loader semantics, `rescue` evolution).

The schema never changes: a field the contract does not know (`utm_source`, `experiment`...) and
a line that is not a JSON object land in `_rescued_data`, so nothing is lost and nothing stops
ingestion. Every contract field is text: a JSON number (epoch-millisecond `ts`, a numeric
`user_id` or `plan`) is read as its text, as Spark's JSON reader does. Raw identifiers stay in
bronze only (restrict it to the pipeline's owners: README, least privilege).
"""
from pyspark.sql import functions as F

from assay import pipelines as dp

RAW_SCHEMA = ("event_id STRING, user_id STRING, email STRING, event_type STRING, page_url STRING, "
              "referrer STRING, device STRING, country STRING, plan STRING, ts STRING")


@dp.table(name="bronze.bronze_clickstream",
          comment="Every clickstream line as landed, with _rescued_data, source file and ingestion time.")
@dp.expect("json_object", "get_json_object(_rescued_data, '$._corrupt_record') IS NULL")   # counted, kept
@dp.expect("known_fields_only", "_rescued_data IS NULL")
def bronze_clickstream():
    return (dp.read_files("clickstream", format="json", schema=RAW_SCHEMA, schema_evolution_mode="rescue")
            .withColumn("ingestion_time", F.current_timestamp()))
