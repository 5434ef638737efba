"""Pipeline definitions in SQL files, in the dialect of Spark Declarative Pipelines:

    CREATE [OR REFRESH] STREAMING TABLE name
      [(CONSTRAINT rule EXPECT (expr) [ON VIOLATION DROP ROW | FAIL UPDATE], ...)]
      [COMMENT '...'] [PARTITIONED BY (col, ...)] [CLUSTER BY (col, ...)]
      AS SELECT ... FROM STREAM(upstream) ...;
    CREATE [OR REFRESH] MATERIALIZED VIEW name [...] AS SELECT ...;
    CREATE TEMPORARY VIEW name AS SELECT ...;

`STREAM(name)` reads only the rows appended since the last run; a plain name reads the whole
dataset. The statements become the same definitions as the Python decorators.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .definitions import (DROP, FAIL, MATERIALIZED_VIEW, STREAMING_TABLE, TEMPORARY_VIEW, WARN, Dataset,
                          Expectation, Flow, Registry, SourceLocation)
from .errors import GraphError

_HEAD = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REFRESH\s+|OR\s+REPLACE\s+)?(?P<kind>STREAMING\s+TABLE|MATERIALIZED\s+VIEW|"
    r"(?:TEMPORARY|TEMP)\s+VIEW|LIVE\s+TABLE)\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>[A-Za-z0-9_.`]+)", re.I | re.S)
_CONSTRAINT = re.compile(
    r"CONSTRAINT\s+(?P<name>\w+)\s+EXPECT\s*\((?P<expr>.*)\)\s*(?:ON\s+VIOLATION\s+(?P<action>DROP\s+ROW|FAIL\s+UPDATE))?\s*$",
    re.I | re.S)
_STREAM_REF = re.compile(r"\bSTREAM\s*\(\s*`?([A-Za-z0-9_.]+)`?\s*\)|\bSTREAM\s+`?([A-Za-z_][A-Za-z0-9_.]*)`?", re.I)
_TABLE_REF = re.compile(r"\b(?:FROM|JOIN)\s+`?([A-Za-z_][A-Za-z0-9_.]*)`?", re.I)
_KINDS = {"streaming table": STREAMING_TABLE, "materialized view": MATERIALIZED_VIEW,
          "temporary view": TEMPORARY_VIEW, "temp view": TEMPORARY_VIEW, "live table": MATERIALIZED_VIEW}


def split_statements(text: str) -> list[tuple[int, str]]:
    """Statements separated by ';' outside quotes and comments, each with its first line number."""
    statements, current, line, start_line = [], [], 1, None
    i, quote = 0, None
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
            current.append(ch)
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end == -1 else end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i)
            skipped = text[i:len(text) if end == -1 else end + 2]
            line += skipped.count("\n")
            i = len(text) if end == -1 else end + 2
            continue
        elif ch == ";":
            if "".join(current).strip():
                statements.append((start_line or line, "".join(current).strip()))
            current, start_line = [], None
        else:
            if start_line is None and not ch.isspace():
                start_line = line
            current.append(ch)
        if ch == "\n":
            line += 1
        i += 1
    if "".join(current).strip():
        statements.append((start_line or line, "".join(current).strip()))
    return statements


def _outside_quotes(text: str, start: int = 0):
    """(index, char, depth after it) for every character outside quotes; depth counts parentheses."""
    depth, quote = 0, None
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in ("'", '"', "`"):
            quote = ch
            continue
        depth += (ch == "(") - (ch == ")")
        yield i, ch, depth


def _matching_paren(text: str, start: int) -> int:
    for i, ch, depth in _outside_quotes(text, start):
        if ch == ")" and depth == 0:
            return i
    raise ValueError("unbalanced parentheses")


def _split_top(text: str) -> list[str]:
    """Split on commas that are outside quotes and parentheses."""
    cuts = [i for i, ch, depth in _outside_quotes(text) if ch == "," and depth == 0]
    bounds = zip([-1, *cuts], [*cuts, len(text)])
    return [text[a + 1:b].strip() for a, b in bounds if text[a + 1:b].strip()]


def load_sql_file(path: Path, registry: Registry, default_schema: str | None) -> None:
    text = path.read_text()
    rel = os.path.relpath(path)
    for line, statement in split_statements(text):
        where = SourceLocation(rel, line)
        if re.match(r"^\s*(SET|USE)\b", statement, re.I):
            continue
        head = _HEAD.match(statement)
        if not head:
            raise GraphError(f"{where}: unsupported statement (expected CREATE STREAMING TABLE, CREATE MATERIALIZED "
                             f"VIEW or CREATE TEMPORARY VIEW): {statement[:80]}...")
        kind = _KINDS[re.sub(r"\s+", " ", head.group("kind").lower())]
        full_name = head.group("name").replace("`", "")
        schema_name, _, name = full_name.rpartition(".")
        rest = statement[head.end():]
        expectations, comment, partition_cols, cluster_by = [], None, (), ()
        body = rest.lstrip()
        if body.startswith("("):
            close = _matching_paren(body, 0)
            for element in _split_top(body[1:close]):
                match = _CONSTRAINT.match(element)
                if match:
                    action = (match.group("action") or "").upper()
                    expectations.append(Expectation(match.group("name"), match.group("expr").strip(),
                                                    DROP if action.startswith("DROP") else FAIL if action else WARN))
                # column definitions are accepted and checked by the engine through the query's schema
            body = body[close + 1:]
        as_match = re.search(r"\bAS\b", body, re.I)
        if not as_match:
            raise GraphError(f"{where}: '{name}' has no AS <query>")
        options, query = body[:as_match.start()], body[as_match.end():].strip()
        if m := re.search(r"COMMENT\s+'((?:[^']|'')*)'", options, re.I):
            comment = m.group(1).replace("''", "'")
        if m := re.search(r"PARTITIONED\s+BY\s*\(([^)]*)\)", options, re.I):
            partition_cols = tuple(c.strip(" `") for c in m.group(1).split(","))
        if m := re.search(r"CLUSTER\s+BY\s*\(([^)]*)\)", options, re.I):
            cluster_by = tuple(c.strip(" `") for c in m.group(1).split(","))
        registry.add_dataset(Dataset(name=name, kind=kind, location=where, schema_name=schema_name or default_schema,
                                     comment=comment, partition_cols=partition_cols, cluster_by=cluster_by,
                                     expectations=tuple(expectations)))
        registry.add_flow(Flow(name=name, target=name, func=None, location=where, sql=query))


def run_sql_flow(ctx, sql: str):
    """Run a SQL flow's query with its dataset references bound to this run's DataFrames."""
    def stream_view(match: re.Match) -> str:
        name = (match.group(1) or match.group(2)).rpartition(".")[2]
        view = f"__assay_stream_{name}"
        ctx.read_stream(name).createOrReplaceTempView(view)
        return view

    query = _STREAM_REF.sub(stream_view, sql)
    for ref in dict.fromkeys(m.group(1) for m in _TABLE_REF.finditer(query)):
        name = ref.rpartition(".")[2]
        if not name.startswith("__assay_stream_") and ctx.has_dataset(name):
            ctx.read(name).createOrReplaceTempView(name)
            if ref != name:
                query = re.sub(rf"\b{re.escape(ref)}\b", name, query)
    return ctx.spark.sql(query)
