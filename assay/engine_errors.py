"""The engine's error messages that users hit most, in Assay's words.

An analysis error of the embedded engine reads like `attribute ObjectName([Identifier("nope")]) is
missing from the schema: cannot resolve attribute`; Spark's reads `[UNRESOLVED_COLUMN.WITH_SUGGESTION]
A column ... with name `nope` cannot be resolved ...`. `translate` says what is wrong in one line
naming the dataset and the file:line that defined it, and keeps the engine's own first line below
it, so nothing the engine said is lost. Texts it does not recognise are passed on as they are.

Each engine declares the texts it prints (`Engine.error_patterns`, in its own module: the unit tests
hold samples of each), naming one of the wordings below; this module knows no engine.
"""
from __future__ import annotations

import functools
import re
from typing import Callable, Mapping, Sequence

Columns = Mapping[str, Sequence[str]] | Sequence[str] | None

_SCALARS = {
    "Int8": "TINYINT", "Int16": "SMALLINT", "Int32": "INT", "Int64": "BIGINT", "UInt8": "SMALLINT",
    "UInt16": "INT", "UInt32": "BIGINT", "UInt64": "DECIMAL(20,0)", "Float16": "FLOAT", "Float32": "FLOAT",
    "Float64": "DOUBLE", "Utf8": "STRING", "LargeUtf8": "STRING", "Utf8View": "STRING", "Boolean": "BOOLEAN",
    "Date32": "DATE", "Date64": "DATE", "Binary": "BINARY", "LargeBinary": "BINARY", "BinaryView": "BINARY",
    "Null": "VOID",
}


def _split_top(text: str, separator: str = ",") -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch in "(<[") - (ch in ")>]")
        if ch == separator and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return [p for p in [*parts, current.strip()] if p]


def sql_type(arrow: str) -> str:
    """An engine's (Arrow) type name in Spark SQL's words: List(non-null Int32) → ARRAY<INT>."""
    t = arrow.strip()
    if m := re.fullmatch(r"(?:Large)?List(?:View)?\((?:non-null )?(.*)\)", t):
        return f"ARRAY<{sql_type(m.group(1))}>"
    if m := re.fullmatch(r"Struct\((.*)\)", t):
        fields = []
        for field in _split_top(m.group(1)):
            name, _, kind = field.partition(":")
            fields.append(f"{name.strip().strip(chr(34))}: {sql_type(kind.replace('non-null ', ''))}")
        return f"STRUCT<{', '.join(fields)}>"
    if t.startswith("Map("):
        return "MAP"
    if m := re.fullmatch(r"Decimal(?:128|256)?\((\d+),\s*(-?\d+)\)", t):
        return f"DECIMAL({m.group(1)},{m.group(2)})"
    if m := re.fullmatch(r"Timestamp\(\w+,\s*(.*)\)", t):
        return "TIMESTAMP_NTZ" if m.group(1).strip() == "None" else "TIMESTAMP"
    return _SCALARS.get(t, t)


def _available(columns: Columns) -> str:
    if not columns:
        return ""
    if isinstance(columns, Mapping):
        known = [f"{name} ({', '.join(cols)})" for name, cols in columns.items() if cols]
        return f"; the columns of its inputs: {'; '.join(known)}" if known else ""
    return f"; the columns are: {', '.join(columns)}"


def _unquote(name: str) -> str:
    return ".".join(part.strip("`") for part in re.findall(r"`(?:[^`]|``)*`|[^.`]+", name))


# --- the wordings: an error in Assay's words, from the groups an engine's pattern captured ------

def _missing_column(m: re.Match, columns: Columns) -> str:
    name = m.group("name")
    if "Identifier(" in name:   # the embedded engine: ObjectName([Identifier("t"), Identifier("nope")])
        name = ".".join(re.findall(r'Identifier\("((?:[^"\\]|\\.)*)"\)', name))
    name = _unquote(name)
    said = f"column '{name}' does not exist"
    suggested = m.groupdict().get("suggestions")
    if columns:
        return said + _available(columns)
    if suggested:
        return said + f"; did you mean one of: {', '.join(_unquote(s.strip()) for s in suggested.split(','))}"
    return said


def _ambiguous_column(m: re.Match, columns: Columns) -> str:
    name = m.group("name")
    if "Identifier(" in name:
        name = ".".join(re.findall(r'Identifier\("((?:[^"\\]|\\.)*)"\)', name))
    name = _unquote(name)
    candidates = m.groupdict().get("candidates")
    where = f" ({', '.join(_unquote(c.strip()) for c in candidates.split(','))})" if candidates else ""
    return (f"column '{name}' is ambiguous: more than one input has it{where}; qualify it with its table or "
            f"alias (t.{name}) or rename it before the join")


def _arithmetic(m: re.Match, columns: Columns) -> str:
    parts = re.fullmatch(r"(.+?) (\+|-|\*|/|%|\|\|) (.+)", m.group("expr").strip())
    if not parts:
        return f"the types do not match in {m.group('expr')}"
    left, op, right = parts.groups()
    return f"the types do not match: cannot compute {sql_type(left)} {op} {sql_type(right)}; cast one side"


def _function_signature(m: re.Match, columns: Columns) -> str:
    types = ", ".join(sql_type(t) for t in _split_top(m.group("args")))
    return f"function {m.group('fn')}() does not accept ({types}); cast the argument(s)"


def _syntax_expected(m: re.Match, columns: Columns) -> str:
    found = m.group("found").strip()
    # "',', or ')'", "any, '\', or '''": quoted tokens (a quote, a comma) or words
    items = re.findall(r"'''|'[^']*'|[A-Za-z][A-Za-z ]*", m.group("expected"))
    expected = [re.sub(r"^or\s+", "", e.strip()) for e in items if e.strip() not in ("", "or")]
    if found == "end of input" and "'''" in expected:
        return "SQL syntax error: a string is not closed (a ' is missing)"
    if "statement" in expected:
        wanted = "a statement (SELECT ...)"
    elif "identifier" in expected or "expression" in expected or len(expected) > 6:
        wanted = "an expression"
    else:
        wanted = ", ".join(expected) or "something else"
    where = "the SQL ends too early" if found == "end of input" else f"unexpected {found!r}"
    return f"SQL syntax error: {where}, expected {wanted}"


def _syntax_near(m: re.Match, columns: Columns) -> str:
    near = m.group("near").strip()
    where = "the SQL ends too early" if near == "end of input" else f"unexpected {near}"
    return f"SQL syntax error: {where}"


def _cast(m: re.Match, columns: Columns) -> str:
    return f"the value {m.group('value')} cannot be cast to {sql_type(m.group('to'))}; use try_cast() to get NULL instead"


def _unknown_function(m: re.Match, columns: Columns) -> str:
    return f"unknown function {m.group('fn')}() (neither a built-in function nor a registered UDF)"


def _unknown_table(m: re.Match, columns: Columns) -> str:
    return (f"table or view '{_unquote(m.group('name'))}' does not exist: it is neither a dataset of this "
            "pipeline nor a table of the engine")


# What an engine's pattern may name as its wording; each reads the named groups of the match.
WORDINGS: dict[str, Callable[[re.Match, Columns], str]] = {
    "missing_column": _missing_column,                # name, suggestions?
    "ambiguous_column": _ambiguous_column,            # name, candidates?
    "arithmetic": _arithmetic,                        # expr (Arrow type names)
    "function_signature": _function_signature,        # fn, args (Arrow type names)
    "non_boolean_filter":                             # type
        lambda m, c: f"a filter condition must be BOOLEAN, this one is {sql_type(m.group('type'))}",
    "function_arguments":                             # fn, wants, got
        lambda m, c: f"function {m.group('fn')}() expects {m.group('wants')}, not {sql_type(m.group('got'))}",
    "type_mismatch":                                  # expr, why
        lambda m, c: f"the types do not match in {m.group('expr')}: {m.group('why').rstrip('.')}",
    "cast": _cast,                                    # value, to
    "syntax_expected": _syntax_expected,              # found, expected
    "syntax_near": _syntax_near,                      # near
    "unknown_function": _unknown_function,            # fn
    "unknown_table": _unknown_table,                  # name
    "union_width":                                    # l, r
        lambda m, c: f"the two sides of a UNION have {m.group('l')} and {m.group('r')} columns; they must have as "
                     "many",
}


@functools.cache
def _rules() -> list[tuple[re.Pattern, Callable[[re.Match, Columns], str]]]:
    """Every engine's patterns, each with its wording: an error is explained whichever engine said it."""
    from .engines import ENGINES, engine_class
    return [(pattern, WORDINGS[wording]) for name in ENGINES for pattern, wording in engine_class(name).error_patterns]


def explain(exc_text: str, columns: Columns = None) -> str:
    """Assay's wording, then the engine's first line on a second line; the engine's first line
    alone when the text is not one Assay knows. `columns`: the columns the query could use (a
    list), or each input's columns (a mapping), when the caller knows them."""
    original = first_line(exc_text)
    for pattern, say in _rules():
        match = pattern.search(exc_text)
        if match:
            return f"{say(match, columns)}\n    engine: {original}"
    return original


def translate(exc_text: str, dataset: str, location, columns: Columns = None) -> str:
    """The engine's error for a dataset's query, in Assay's words, naming the dataset and its file:line."""
    return f"dataset '{dataset}' (at {location}): {explain(exc_text, columns)}"


def first_line(message: str) -> str:
    """The engine's message in one line; for a Python UDF failure, the exception the UDF raised."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    text = lines[0] if lines else message
    if "Traceback" in message or "PythonException" in text:
        raised = [line for line in lines if re.match(r"^[A-Za-z_.]+(Error|Exception|Warning)\b.*:", line)]
        if raised:
            text = f"{text.rstrip('.')}: {raised[-1]}"
    return text[:800]
