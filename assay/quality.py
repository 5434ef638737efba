"""Expectations: checking a rule's SQL at analysis time, and engine messages in one line.

Verdicts, routing and counts are computed by the engine in the batch's write (runtime/routing.py).
"""
from __future__ import annotations

import re

from .definitions import Expectation


def check_sql(spark, schema, expectation: Expectation) -> str | None:
    """None if the rule is valid SQL over `schema`, else the engine's message in Assay's words."""
    from pyspark.sql import functions as F
    try:
        spark.createDataFrame([], schema).select(F.expr(expectation.sql).alias("ok")).schema
        return None
    except Exception as exc:  # the engine's analysis error, said in Assay's words
        from .engine_errors import explain
        return explain(str(exc), [f.name for f in schema.fields])


def first_line(message: str) -> str:
    """The engine's message in one line; for a Python UDF failure, the exception the UDF raised."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    text = lines[0] if lines else message
    if "Traceback" in message or "PythonException" in text:
        raised = [line for line in lines if re.match(r"^[A-Za-z_.]+(Error|Exception|Warning)\b.*:", line)]
        if raised:
            text = f"{text.rstrip('.')}: {raised[-1]}"
    return text[:800]
