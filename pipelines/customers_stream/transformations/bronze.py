"""Bronze: every message of the `customers` topic, kept as it arrived, with its Kafka coordinates.

Nothing is dropped or parsed strictly here. `value` is the message as text (NULL only when its
bytes are not UTF-8; they are kept in `_rescued_data` as base64). `_rescued_data` is NULL for a
JSON object holding only contract fields, else a JSON object of what did not fit: the unknown
fields, `{"_corrupt_record": "<raw text>"}` for a value that is not a JSON object (a broken line,
a JSON array), `{"_tombstone": true}` for a message without a value.
"""
from pyspark.sql import functions as F

from assay import pipelines as dp

FIELDS = ["customer_id", "gender", "senior_citizen", "partner", "dependents", "tenure", "phone_service",
          "internet_service", "contract", "monthly_charges", "total_charges", "updated_at", "first_name", "last_name",
          "email"]


def json_object(text):
    """The value as a map of field → text (NULL when it is not a JSON object; an array is not one)."""
    fields = F.from_json(text, "map<string,string>")
    return F.when(F.ltrim(text).startswith("{"), fields)


@dp.table(name="bronze.bronze_customers",
          comment="Every message of the customers topic: coordinates, raw value, _rescued_data. Holds names and "
                  "e-mails: readable by the pipeline's owners only (README).")
@dp.expect("json_object", "get_json_object(_rescued_data, '$._corrupt_record') IS NULL")   # counted, kept
@dp.expect("known_fields_only", "_rescued_data IS NULL")
def bronze_customers():
    raw = dp.read_kafka(dp.config("kafka.topic", "customers"), starting_offsets="earliest",
                        options=dp.config("kafka.options"))
    text = F.expr("try_cast(value AS STRING)")          # NULL, not a failed batch, when the bytes are not UTF-8
    fields = json_object(text)
    unknown = F.map_filter(fields, lambda k, v: ~k.isin(*FIELDS))
    rescued = (F.when(F.col("value").isNull(), F.lit('{"_tombstone":true}'))
               .when(text.isNull(), F.to_json(F.struct(
                   F.concat(F.lit("base64:"), F.base64("value")).alias("_corrupt_record"))))
               .when(fields.isNull(), F.to_json(F.struct(text.alias("_corrupt_record"))))
               .when(F.size(unknown) > 0, F.to_json(unknown)))
    return raw.select(F.expr("try_cast(key AS STRING)").alias("key"), text.alias("value"), "topic", "partition",
                      "offset", F.col("timestamp").alias("kafka_timestamp"), rescued.alias("_rescued_data"),
                      F.current_timestamp().alias("ingestion_time"))
