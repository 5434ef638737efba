"""Kafka as a flow's source: building the source from `dp.read_kafka` arguments, and parsing
message values by the engine (format="json": the same rescue semantics as landing files)."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ... import secrets
from ...errors import FlowError


def kafka_columns():
    """Spark's Kafka source columns as a Spark schema (the one definition is KAFKA_SCHEMA)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from .consumer import KAFKA_SCHEMA
    return from_arrow_schema(KAFKA_SCHEMA)

# Records per batch when neither dp.read_kafka nor assay.yml bounds it: 2 M small messages once
# made a 2.4 GiB batch; 200 000 keeps a batch in the hundreds of MB even for 1 KiB messages.
DEFAULT_MAX_RECORDS = 200_000
FORMATS = (None, "json")
COORDINATES = ("topic", "partition", "offset", "timestamp")


def make_kafka_source(args: dict, configuration: dict, where: str):
    from .options import KafkaSourceError
    from .source import KafkaSource
    bootstrap = args.get("bootstrap_servers") or configuration.get("kafka.bootstrap_servers")
    if not bootstrap:
        raise FlowError(f"{where} reads Kafka without bootstrap_servers (give it to dp.read_kafka or set "
                        "configuration.kafka.bootstrap_servers in assay.yml)")
    options = dict(args.get("options") or {})
    secrets.register_options(options)
    try:
        # record_initial_positions: a first run that finds nothing after "latest" still commits
        # where "latest" pointed, so the next run reads what arrived in between
        return KafkaSource(args["topics"], bootstrap, options=options, starting_offsets=args["starting_offsets"],
                           max_records_per_batch=args.get("max_records_per_batch") or DEFAULT_MAX_RECORDS,
                           record_initial_positions=True)
    except (ValueError, KafkaSourceError) as exc:
        raise FlowError(f"{where}: {secrets.redact(str(exc))}") from None


def parse_values(raw: DataFrame, fmt: str | None, schema, spark) -> DataFrame:
    """The message values parsed as `fmt` (None: the raw Spark Kafka columns)."""
    if fmt is None:
        return raw
    if fmt not in FORMATS:
        raise FlowError(f"dp.read_kafka: format must be 'json' or omitted, got {fmt!r}")
    from ..files.read import RESCUED, json_columns
    from ..files.schema import resolve_schema
    # NULL when not UTF-8, on every engine: Spark's cast (try_cast too) never checks the bytes.
    text = F.expr("CASE WHEN is_valid_utf8(value) THEN try_cast(value AS STRING) END")
    df = raw.select(text.alias("value"), F.col("value").alias("_assay_raw"), "key", *COORDINATES)
    parsed = json_columns(df, resolve_schema(spark, schema), rescue=True, ignore_unknown=False,
                          keep=["value", "_assay_raw", "key", *COORDINATES])
    # A tombstone (NULL value) and a value that is not UTF-8 are rescued too, never lost.
    rescued = (F.when(F.col("_assay_raw").isNull(), F.lit('{"_tombstone":true}'))
               .when(F.col("value").isNull(), F.to_json(F.struct(
                   F.concat(F.lit("base64:"), F.base64("_assay_raw")).alias("_corrupt_record"))))
               .otherwise(F.col(RESCUED)))
    return parsed.withColumn(RESCUED, rescued).drop("_assay_raw", "value")
