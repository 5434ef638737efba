"""Apache Kafka and Azure Event Hubs (Kafka protocol) as a source: offsets planned and kept in
Assay's checkpoint, ranges read by the engine (natively, or consumed into Parquet), values
parsed by the engine."""
from .consumer import KAFKA_SCHEMA
from .options import KafkaSourceError, normalize_options, redact
from .read import kafka_columns, make_kafka_source, parse_values
from .source import KafkaSource, fair_shares

__all__ = ["KAFKA_SCHEMA", "kafka_columns", "KafkaSource", "KafkaSourceError", "fair_shares", "make_kafka_source",
           "normalize_options", "parse_values", "redact"]
