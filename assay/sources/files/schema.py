"""Schemas users give as DDL strings ("id INT, name STRING") or StructType, resolved once by the engine."""
from __future__ import annotations

from ...errors import FlowError


def parse_schema(schema):
    """Keep what the user gave; `resolve_schema` turns it into a StructType once a session exists."""
    from pyspark.sql.types import StructType
    if isinstance(schema, (str, StructType)):
        return schema
    raise FlowError(f"a schema must be a DDL string or a StructType, got {type(schema).__name__}")


def resolve_schema(spark, schema):
    from pyspark.sql.types import StructType
    if isinstance(schema, StructType) or schema is None:
        return schema
    try:
        return spark.createDataFrame([], schema).schema
    except Exception as exc:
        raise FlowError(f"schema '{schema}' is not valid DDL: {str(exc).splitlines()[0][:300]}") from None
