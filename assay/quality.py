"""Expectations: checking a rule's SQL at analysis time.

Verdicts, routing and counts are computed by the engine in the batch's write (runtime/routing.py).
"""
from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.tokens import TokenType

from .definitions import Expectation

_DIALECT = "spark"
_CONDITIONS = ("a comparison, AND/OR/NOT, IS [NOT] NULL, IN, BETWEEN, LIKE/RLIKE, EXISTS, TRUE/FALSE "
               "or a boolean function")
_PARTS = {"expression": "right-hand side", "high": "upper bound"}


def rule_problem(rule: Expectation) -> str | None:
    """None if the rule is one complete boolean expression, else a sentence naming the rule and what
    is wrong with it. Checked when the pipeline is loaded, strictly: the embedded engine's parser
    ignored a trailing operator (`amount > 0 OR`) and the verdict casts any result to boolean, so a
    rule could silently differ from what was written."""
    def problem(why: str) -> str:
        return f"expectation '{rule.name}' ({rule.sql}) is not one complete boolean expression: {why}"

    if not isinstance(rule.sql, str) or not rule.sql.strip():
        return f"expectation '{rule.name}' needs a SQL boolean expression, got {rule.sql!r}"
    dialect = Dialect.get_or_raise(_DIALECT)
    try:
        tokens = dialect.tokenize(rule.sql)
        if any(t.token_type == TokenType.SEMICOLON for t in tokens):
            return problem("it holds a ';' (a rule is one expression, not statements)")
        trees = [t for t in dialect.parser().parse(tokens, rule.sql) if t is not None]
    except ParseError as exc:
        error = exc.errors[0] if exc.errors else {}
        # "Required keyword: 'expression' missing for <class '...Or'>" → "OR lacks its right-hand side"
        why = re.sub(r"<class '[\w.]+\.(\w+)'>", lambda m: m.group(1).upper(), error.get("description", str(exc)))
        why = re.sub(r"^Required keyword: '(\w+)' missing for (\w+)$",
                     lambda m: f"{m.group(2)} lacks its {_PARTS.get(m.group(1), m.group(1))}", why)
        return problem(f"it does not parse at `{error.get('highlight', '?')}` (column {error.get('col', '?')}): {why}")
    except SqlglotError as exc:     # an unterminated quote or comment
        return problem(f"it does not parse: {str(exc).splitlines()[0]}")
    if len(trees) != 1:
        return problem("it holds several expressions")
    wrong = _not_a_condition(annotate_types(trees[0], dialect=_DIALECT))
    if wrong is None:
        return None
    text = wrong.sql(_DIALECT)
    if isinstance(wrong, exp.Alias):
        return problem(f"`{wrong.alias}` after `{wrong.this.sql(_DIALECT)}` reads as a name for it (an alias)")
    if isinstance(wrong, exp.Column):
        return problem(f"`{text}` is a column, not a condition (for a boolean column write `{text} IS TRUE`)")
    return problem(f"`{text}` is not a condition ({_CONDITIONS})")


def _not_a_condition(node: exp.Expression) -> exp.Expression | None:
    """The first part of a type-annotated rule that is not a condition, or None. Operands of AND, OR
    and NOT must be conditions too. A function call whose type sqlglot does not know is left to the
    engine (analysis checks that the rule's result is boolean)."""
    node = node.unnest()
    if isinstance(node, exp.Alias):      # `amount > 0 foo`: typed as its operand, yet not what was meant
        return node
    if isinstance(node, (exp.Connector, exp.Not)):
        return next((w for w in map(_not_a_condition, node.iter_expressions()) if w is not None), None)
    if node.is_type(exp.DataType.Type.BOOLEAN):
        return None
    if isinstance(node, exp.Func) and node.is_type(exp.DataType.Type.UNKNOWN):
        return None
    return node


def check_sql(spark, schema, expectation: Expectation) -> str | None:
    """None if the rule is valid SQL over `schema` with a boolean result, else the engine's message
    in Assay's words."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType
    try:
        result = spark.createDataFrame([], schema).select(F.expr(expectation.sql).alias("ok")).schema["ok"]
    except Exception as exc:  # the engine's analysis error, said in Assay's words
        from .engine_errors import explain
        return explain(str(exc), [f.name for f in schema.fields])
    if not isinstance(result.dataType, BooleanType):   # the verdict would cast it: say so instead
        return f"its result is {result.dataType.simpleString()}, not boolean"
    return None

