"""Expectations: named SQL boolean rules with an action (warn, drop, fail) and optional quarantine.

The engine adds the per-row verdicts as columns in the same pass as the flow's query; the
runtime then counts and routes rows from the staged result. A rule that evaluates to NULL
counts as failed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from .definitions import DROP, FAIL, WARN, Expectation

FAILED_RULES = "_failed_rules"        # kept in quarantine tables: the rules a row broke
DROP_FLAG = "_assay_drop"
FAIL_FLAG = "_assay_fail"
INTERNAL = (FAILED_RULES, DROP_FLAG, FAIL_FLAG)


def with_verdicts(df, expectations: tuple[Expectation, ...]):
    """`df` plus the list of rules each row broke and whether the row must be dropped or fail the flow."""
    from pyspark.sql import functions as F

    if not expectations:
        return df
    oks = [F.coalesce(F.expr(e.sql).cast("boolean"), F.lit(False)) for e in expectations]
    broken = F.filter(F.array(*[F.when(~ok, F.lit(e.name)) for ok, e in zip(oks, expectations)]),
                      lambda x: x.isNotNull())

    def any_broken(action: str):
        flags = [~ok for ok, e in zip(oks, expectations) if e.action == action]
        if not flags:
            return F.lit(False)
        combined = flags[0]
        for flag in flags[1:]:
            combined = combined | flag
        return combined

    return (df.withColumn(FAILED_RULES, broken)
              .withColumn(DROP_FLAG, any_broken(DROP))
              .withColumn(FAIL_FLAG, any_broken(FAIL)))


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


@dataclass
class RuleCount:
    name: str
    action: str
    passed: int
    failed: int


def count_rules(staged: pa.Table, expectations: tuple[Expectation, ...]) -> list[RuleCount]:
    if not expectations:
        return []
    total = staged.num_rows
    flat = pc.list_flatten(staged.column(FAILED_RULES)) if total else pa.array([], pa.string())
    counts = {item["values"].as_py(): item["counts"].as_py() for item in pc.value_counts(flat)} if len(flat) else {}
    return [RuleCount(e.name, e.action, total - counts.get(e.name, 0), counts.get(e.name, 0)) for e in expectations]


def split(staged: pa.Table, expectations: tuple[Expectation, ...]) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(kept rows, dropped rows with FAILED_RULES, rows that broke a `fail` rule)."""
    if not expectations:
        empty = staged.slice(0, 0)
        return staged, empty, empty
    drop = pc.fill_null(staged.column(DROP_FLAG), False)
    fail = pc.fill_null(staged.column(FAIL_FLAG), False)
    kept = staged.filter(pc.invert(drop)).drop_columns([FAILED_RULES, DROP_FLAG, FAIL_FLAG])
    dropped = staged.filter(drop).drop_columns([DROP_FLAG, FAIL_FLAG])
    # A quarantined row lists the rules that removed it; `warn` rules are only counted.
    warn_only = {e.name for e in expectations if e.action == WARN}
    if warn_only and dropped.num_rows:
        reasons = [[r for r in rules if r not in warn_only] for rules in dropped.column(FAILED_RULES).to_pylist()]
        index = dropped.column_names.index(FAILED_RULES)
        dropped = dropped.set_column(index, FAILED_RULES, pa.array(reasons, pa.list_(pa.string())))
    failed = staged.filter(fail).drop_columns([DROP_FLAG, FAIL_FLAG])
    return kept, dropped, failed


def describe_failure(flow: str, failed: pa.Table, expectations: tuple[Expectation, ...]) -> str:
    fail_rules = [e for e in expectations if e.action == FAIL]
    first = failed.slice(0, 1).to_pylist()[0]
    broken = [r for r in fail_rules if r.name in (first.get(FAILED_RULES) or [])]
    rule = broken[0] if broken else fail_rules[0]
    shown = {k: v for k, v in first.items() if not k.startswith("_assay") and k != FAILED_RULES}
    sample = ", ".join(f"{k}={v!r}" for k, v in list(shown.items())[:12])
    return (f"expectation '{rule.name}' ({rule.sql}) failed on {failed.num_rows} row(s) of flow '{flow}'; "
            f"its action is FAIL, so nothing of this batch was written and the next run retries it. "
            f"First failing row: {sample}")
