"""Pipeline definitions in SQL files, in the dialect of Spark Declarative Pipelines:

    CREATE [OR REFRESH] STREAMING TABLE name
      [(CONSTRAINT rule EXPECT (expr) [ON VIOLATION DROP ROW | FAIL UPDATE], ...)]
      [COMMENT '...'] [PARTITIONED BY (col, ...)] [CLUSTER BY (col, ...)] [TBLPROPERTIES (...)]
      AS SELECT ... FROM STREAM(upstream) ...;
    CREATE [OR REFRESH] MATERIALIZED VIEW name [...] AS SELECT ...;
    CREATE TEMPORARY VIEW name AS SELECT ...;
    CREATE [OR REFRESH] STREAMING TABLE name [...];      -- no query: its rows come from a flow
    CREATE FLOW name AS AUTO CDC INTO name FROM STREAM(source) KEYS (...) SEQUENCE BY ...;  (sql_cdc.py)

`STREAM(name)` (or `STREAM name`) reads only the rows appended since the last run; a plain name
reads the whole dataset. The statements become the same definitions as the Python decorators.

SQL is read with sqlglot's Spark dialect: its tokenizer splits statements and finds the clauses
of the CREATE header (quotes and comments are never mistaken for SQL), its parser finds the
references of a query (tables, `STREAM(…)` reads, CTE names, subqueries). The query given to
the engine is the user's own text, with only the spans of the dataset references replaced: a
query is never regenerated from the parse tree, so the engine sees exactly the SQL it was given.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from .definitions import (DROP, FAIL, MATERIALIZED_VIEW, STREAMING_TABLE, TEMPORARY_VIEW, WARN, Dataset,
                          Expectation, Flow, Registry, SourceLocation)
from .errors import GraphError
from .pii import expand_sql
from .quality import rule_problem
from .sql_cdc import is_auto_cdc_flow, load_auto_cdc_flow
from .sql_errors import SqlSyntaxError

DIALECT = "spark"
STREAM_VIEW_PREFIX = "__assay_stream_"
_NAME_TOKENS = (TokenType.VAR, TokenType.IDENTIFIER)
_UNSUPPORTED = ("unsupported statement (expected CREATE STREAMING TABLE, CREATE MATERIALIZED VIEW or CREATE "
                "TEMPORARY VIEW)")


def _tokenize(text: str) -> list[Token]:
    try:
        return Dialect.get_or_raise(DIALECT).tokenize(text)
    except TokenError as exc:  # an unterminated quote or comment
        raise SqlSyntaxError(str(exc).splitlines()[0]) from None


def _parse(text: str) -> exp.Expression:
    try:
        tree = sqlglot.parse_one(_parseable(text), read=DIALECT)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        raise SqlSyntaxError(first.get("description") or str(exc).splitlines()[0], first.get("line") or 1) from None
    except TokenError as exc:
        raise SqlSyntaxError(str(exc).splitlines()[0]) from None
    if tree is None:
        raise SqlSyntaxError("empty statement")
    return tree


def _parseable(text: str) -> str:
    """`text` with the same length and lines, where sqlglot would misread valid Spark SQL:
    `window(...)` right after GROUP BY is taken for a WINDOW clause, so it is renamed for the parse."""
    chars = list(text)
    tokens = _tokenize(text)
    for token, following in zip(tokens, tokens[1:]):
        if token.token_type == TokenType.WINDOW and following.token_type == TokenType.L_PAREN:
            chars[token.start:token.end + 1] = "w" * (token.end + 1 - token.start)
    return "".join(chars)


def _blank(text: str, start: int, end: int) -> str:
    """Replace text[start:end] by spaces, keeping its line breaks (so positions and lines stay)."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


# --- statements --------------------------------------------------------------------------------

def split_statements(text: str) -> list[tuple[int, str]]:
    """Statements separated by ';' outside quotes and comments, each with its first line number."""
    statements, current = [], []
    for token in _tokenize(text):
        if token.token_type == TokenType.SEMICOLON:
            if current:
                statements.append((current[0].line, text[current[0].start:current[-1].end + 1]))
            current = []
        else:
            current.append(token)
    if current:
        statements.append((current[0].line, text[current[0].start:current[-1].end + 1]))
    return statements


def _closing(tokens: list[Token], open_index: int) -> int:
    depth = 0
    for i in range(open_index, len(tokens)):
        depth += (tokens[i].token_type == TokenType.L_PAREN) - (tokens[i].token_type == TokenType.R_PAREN)
        if depth == 0:
            return i
    raise SqlSyntaxError("unbalanced parentheses", tokens[open_index].line)


@dataclass
class _Header:
    expectations: list[Expectation]
    blanked: str                  # the statement with the expectations and LIVE blanked out
    live: bool                    # CREATE LIVE TABLE (a materialized view)
    comment: str | None
    query_start: int | None       # offset of the query after the top-level AS


def _read_header(statement: str, tokens: list[Token]) -> _Header:
    """The parts of a CREATE statement that sqlglot does not parse (CONSTRAINT … EXPECT, LIVE, and
    COMMENT 'it''s' read with a doubled quote), found on its tokens."""
    expectations, blanked, live, comment, query_start = [], statement, False, None, None
    depth, i = 0, 0
    while i < len(tokens):
        token = tokens[i]
        kind = token.token_type
        if kind == TokenType.L_PAREN:
            depth += 1
            if depth == 1:
                i, blanked = _read_elements(statement, tokens, i, expectations, blanked)
                depth = 0
        elif kind == TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and kind == TokenType.ALIAS:
            query_start = token.end + 1
            break
        elif (depth == 0 and kind == TokenType.VAR and token.text.upper() == "LIVE" and i + 1 < len(tokens)
              and tokens[i + 1].token_type == TokenType.TABLE):
            live = True
            blanked = _blank(blanked, token.start, token.end + 1)
        elif depth == 0 and kind == TokenType.COMMENT and comment is None:
            parts, j = [], i + 1
            while j < len(tokens) and tokens[j].token_type == TokenType.STRING:
                adjacent = parts and tokens[j].start == tokens[j - 1].end + 1
                parts.append(("'" if adjacent else "") + tokens[j].text)  # 'it''s': a doubled quote
                j += 1
            comment = "".join(parts)
        i += 1
    return _Header(expectations, blanked, live, comment, query_start)


def _read_elements(statement, tokens, open_index, expectations, blanked) -> tuple[int, str]:
    """Read the expectations of a parenthesised list of the header; returns (closing index, blanked)."""
    close = _closing(tokens, open_index)
    start, depth = open_index + 1, 0
    elements = []
    for i in range(open_index + 1, close + 1):
        kind = tokens[i].token_type
        if i == close or (depth == 0 and kind == TokenType.COMMA):
            if start < i:
                elements.append((start, i))   # tokens[start:i], then the comma or the closing parenthesis
            start = i + 1
        depth += (kind == TokenType.L_PAREN) - (kind == TokenType.R_PAREN)
    for number, (a, b) in enumerate(elements):
        element = tokens[a:b]
        if not (len(element) >= 4 and element[0].token_type == TokenType.CONSTRAINT
                and element[2].text.upper() == "EXPECT"):
            continue  # column definitions: the engine checks them through the query's schema
        name = element[1].text
        if element[3].token_type != TokenType.L_PAREN:
            raise SqlSyntaxError(f"expectation '{name}': EXPECT takes a parenthesised condition", element[2].line)
        rule_close = _closing(element, 3)
        sql = statement[element[3].end + 1:element[rule_close].start].strip()
        violation = " ".join(t.text.upper() for t in element[rule_close + 1:])
        actions = {"": WARN, "ON VIOLATION DROP ROW": DROP, "ON VIOLATION FAIL UPDATE": FAIL}
        if violation not in actions:
            raise SqlSyntaxError(f"expectation '{name}': expected ON VIOLATION DROP ROW or ON VIOLATION FAIL "
                                 f"UPDATE after EXPECT (...), got '{violation}'", element[-1].line)
        rule = Expectation(name, sql, actions[violation])
        problem = rule_problem(rule)      # one complete boolean expression, as in Python
        if problem:
            raise SqlSyntaxError(problem, element[3].line)
        expectations.append(rule)
        # blank the element and one comma beside it, so that the rest still parses
        first, last = element[0].start, element[-1].end + 1
        if number > 0:
            first = tokens[a - 1].start
        elif len(elements) > 1:
            last = tokens[b].end + 1
        blanked = _blank(blanked, first, last)
    return close, blanked


def _kind(create: exp.Create, live: bool) -> str | None:
    props = {type(p) for p in (create.args.get("properties") or exp.Properties()).expressions}
    kind = (create.args.get("kind") or "").upper()
    if kind == "TABLE" and exp.StreamingTableProperty in props:
        return STREAMING_TABLE
    if kind == "TABLE" and live:
        return MATERIALIZED_VIEW
    if kind == "VIEW" and exp.MaterializedProperty in props:
        return MATERIALIZED_VIEW
    if kind == "VIEW" and exp.TemporaryProperty in props:
        return TEMPORARY_VIEW
    return None


def load_sql_file(path: Path, registry: Registry, default_schema: str | None) -> None:
    text = path.read_text()
    rel = os.path.relpath(path)
    try:
        statements = split_statements(text)
    except SqlSyntaxError as exc:
        raise GraphError(f"{rel}: {exc}") from None
    for line, statement in statements:
        where = SourceLocation(rel, line)
        try:
            _load_statement(statement, where, registry, default_schema)
        except SqlSyntaxError as exc:
            raise GraphError(f"{SourceLocation(rel, line + exc.line - 1)}: {exc}") from None


def _load_statement(statement: str, where: SourceLocation, registry: Registry, default_schema: str | None) -> None:
    tokens = _tokenize(statement)
    if tokens[0].token_type in (TokenType.SET, TokenType.USE):
        return
    if tokens[0].token_type != TokenType.CREATE:
        raise GraphError(f"{where}: {_UNSUPPORTED}: {statement[:80]}...")
    if is_auto_cdc_flow(tokens):
        load_auto_cdc_flow(statement, tokens, where, registry)
        return
    header = _read_header(statement, tokens)
    create = _parse(_stream_parens(header.blanked))
    kind = _kind(create, header.live) if isinstance(create, exp.Create) else None
    if kind is None:
        raise GraphError(f"{where}: {_UNSUPPORTED}: {statement[:80]}...")
    table = create.this.this if isinstance(create.this, exp.Schema) else create.this
    parts = [part.name for part in table.parts]
    name, schema_name = parts[-1], ".".join(parts[:-1])
    declared_only = kind == STREAMING_TABLE and header.query_start is None   # filled by CREATE FLOW statements
    if not declared_only and (header.query_start is None or create.expression is None):
        raise GraphError(f"{where}: '{name}' has no AS <query>")
    partition_cols, cluster_by, properties = (), (), {}
    for prop in (create.args.get("properties") or exp.Properties()).expressions:
        if isinstance(prop, exp.PartitionedByProperty):
            partition_cols = tuple(e.name for e in prop.this.expressions)
        elif isinstance(prop, exp.ClusterProperty):
            cluster_by = tuple(e.name for e in prop.expressions)
        elif isinstance(prop, exp.Property) and type(prop) is exp.Property:   # TBLPROPERTIES ('k' = 'v')
            key = prop.this.name if isinstance(prop.this, (exp.Literal, exp.Identifier)) else prop.this.sql(DIALECT)
            properties[key] = prop.args["value"].name
        elif not isinstance(prop, (exp.StreamingTableProperty, exp.MaterializedProperty, exp.TemporaryProperty,
                                   exp.SchemaCommentProperty)):
            raise GraphError(f"{where}: '{name}': {prop.sql(DIALECT)} is not supported in a pipeline definition")
    if declared_only:
        registry.add_dataset(Dataset(name=name, kind=kind, location=where,
                                     schema_name=schema_name or default_schema, comment=header.comment,
                                     partition_cols=partition_cols, cluster_by=cluster_by,
                                     table_properties=properties, expectations=tuple(header.expectations)))
        return
    query = statement[header.query_start:].lstrip()
    try:
        references(query)  # a STREAM() of anything but a name stops here, with the file and line
    except SqlSyntaxError as exc:
        offset = _line_of(statement, len(statement) - len(query)) - 1
        raise SqlSyntaxError(str(exc), exc.line + offset) from None
    query = query.rstrip()
    registry.add_dataset(Dataset(name=name, kind=kind, location=where, schema_name=schema_name or default_schema,
                                 comment=header.comment, partition_cols=partition_cols, cluster_by=cluster_by,
                                 table_properties=properties, expectations=tuple(header.expectations)))
    registry.add_flow(Flow(name=name, target=name, func=None, location=where, sql=query))


# --- references of a query -------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """A relation a query reads: `parts` as written (`gold`, `orders`), `stream` for STREAM(...);
    `start`/`end` delimit the text to replace (for a stream, from STREAM to its closing parenthesis)."""
    parts: tuple[str, ...]
    stream: bool
    start: int
    end: int
    aliased: bool

    @property
    def name(self) -> str:
        return self.parts[-1]


def _stream_parens(text: str) -> str:
    """`FROM STREAM name` / `JOIN STREAM db.name` written as `STREAM(name)`, which sqlglot parses."""
    tokens = _tokenize(text)
    inserts = []
    for i in range(1, len(tokens) - 1):
        if not (tokens[i].token_type == TokenType.VAR and tokens[i].text.upper() == "STREAM"
                and tokens[i - 1].token_type in (TokenType.FROM, TokenType.JOIN)
                and tokens[i + 1].token_type in _NAME_TOKENS):
            continue
        j = i + 1
        while j + 2 < len(tokens) and tokens[j + 1].token_type == TokenType.DOT \
                and tokens[j + 2].token_type in _NAME_TOKENS:
            j += 2
        inserts += [(tokens[i].end + 1, "("), (tokens[j].end + 1, ")")]
    for position, piece in reversed(inserts):
        text = text[:position] + piece + text[position:]
    return text


def _span(identifiers) -> tuple[int, int]:
    spots = [i.meta for i in identifiers if "start" in i.meta]
    if not spots:
        raise SqlSyntaxError("cannot locate a reference in the query")
    return min(s["start"] for s in spots), max(s["end"] for s in spots) + 1


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _cte_names_visible(table: exp.Table) -> set[str]:
    """Names of the CTEs that `table` can refer to (a CTE sees the ones defined before it)."""
    visible, child, node = set(), table, table.parent
    while node is not None:
        if isinstance(node, exp.With):
            names = [cte.alias_or_name for cte in node.expressions]
            position = next((k for k, cte in enumerate(node.expressions) if cte is child), len(names))
            visible.update(names[:position + 1] if node.args.get("recursive") else names[:position])
        elif isinstance(node, exp.Query) and node.args.get("with_") is not None and child is not node.args["with_"]:
            visible.update(cte.alias_or_name for cte in node.args["with_"].expressions)
        child, node = node, node.parent
    return visible


def _stream_argument(node: exp.Expression) -> exp.Expression | None:
    """The name read by a STREAM read, however sqlglot parsed it: a table function (`Table` over an
    `Anonymous` STREAM(...)) in the Spark dialect, or a `Stream` node (as in the Databricks dialect)."""
    if isinstance(node, exp.Stream):
        return node.this.this if isinstance(node.this, exp.Subquery) else node.this
    inner = node.this
    if isinstance(node, exp.Table) and isinstance(inner, exp.Anonymous) and inner.name.upper() == "STREAM":
        args = inner.expressions
        if len(args) != 1 or not isinstance(args[0], (exp.Column, exp.Table, exp.Identifier, exp.Dot)):
            raise SqlSyntaxError(f"STREAM() takes the name of a dataset, got '{inner.sql(DIALECT)}'")
        return args[0]
    return None


def references(sql: str) -> list[Reference]:
    """Every relation the query reads, in the order written: tables (qualified or not) and STREAM
    reads, in subqueries too; CTE names and table functions other than STREAM are not references.
    Positions refer to `_stream_parens(sql)` (which is `sql` unless it has `STREAM name`)."""
    return _read_query(_stream_parens(sql))[0]


def _read_query(text: str):
    """(references, qualified column prefixes) of a query whose STREAM reads have parentheses."""
    tree = _parse(text)
    tokens = _tokenize(text)
    index_at = {t.start: k for k, t in enumerate(tokens)}
    index_ending = {t.end + 1: k for k, t in enumerate(tokens)}
    found = []
    for node in tree.find_all(exp.Table, exp.Stream):
        if any(isinstance(a, exp.Stream) for a in _ancestors(node)):
            continue  # the name inside a Stream node, handled with it
        argument = _stream_argument(node)
        if argument is not None:
            names = sorted(argument.find_all(exp.Identifier) if not isinstance(argument, exp.Identifier)
                           else [argument], key=lambda i: i.meta.get("start", 0))
            first, last = _span(names)
            k, m = index_at[first], index_ending[last]
            while k > 0 and tokens[k - 1].token_type == TokenType.L_PAREN:   # back to STREAM, over "("
                k, m = k - 1, m + 1
            keyword = tokens[k - 1] if k > 0 else None
            if keyword is None or keyword.text.upper() != "STREAM" or m >= len(tokens):
                raise SqlSyntaxError(f"cannot locate the STREAM read of '{names[-1].name}'",
                                     _line_of(text, first))
            following = tokens[m + 1] if m + 1 < len(tokens) else None
            aliased = following is not None and following.token_type in (TokenType.ALIAS, *_NAME_TOKENS)
            found.append(Reference(tuple(i.name for i in names), True, keyword.start, tokens[m].end + 1, aliased))
        elif isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            parts = tuple(part.name for part in node.parts)
            if len(parts) == 1 and parts[0] in _cte_names_visible(node):
                continue
            first, last = _span(node.parts)
            found.append(Reference(parts, False, first, last, bool(node.alias)))
        # other tables are functions (range(10)) or VALUES: not datasets
    return sorted(found, key=lambda r: r.start), _qualifiers(tree)


def _ancestors(node: exp.Expression):
    node = node.parent
    while node is not None:
        yield node
        node = node.parent


def _qualifiers(tree: exp.Expression) -> list[tuple[tuple[str, ...], int, int]]:
    """(qualifier parts, start, end) of every qualified column reference (`orders.id`, `gold.x.id`)."""
    result = []
    for column in tree.find_all(exp.Column):
        qualifier = [column.args[k] for k in ("catalog", "db", "table") if column.args.get(k) is not None]
        if qualifier and all(isinstance(q, exp.Identifier) and "start" in q.meta for q in qualifier):
            result.append((tuple(q.name for q in qualifier), qualifier[0].meta["start"],
                           qualifier[-1].meta["end"] + 1))
    return result


def run_sql_flow(ctx, sql: str):
    """Run a SQL flow's query with its dataset references bound to this run's DataFrames: each
    reference's text is replaced by a temporary view (`STREAM(x)` by the view of x's new rows)."""
    text = _stream_parens(sql)
    try:
        refs, qualifiers = _read_query(text)
    except SqlSyntaxError as exc:
        raise GraphError(f"the query of '{ctx.flow.target}' (at {ctx.flow.location}) cannot be read: {exc} "
                         f"(line {exc.line} of the query)") from None
    edits = {}
    for ref in sorted(refs, key=lambda r: not r.stream):   # streams first, then tables, each in order
        if ref.stream:
            view = STREAM_VIEW_PREFIX + ref.name
            ctx.read_stream(ref.name).createOrReplaceTempView(view)
        elif ctx.has_dataset(ref.name):
            view = ref.name
            ctx.read(ref.name).createOrReplaceTempView(view)
            if ref.parts == (ref.name,):
                continue
        else:
            continue  # not a dataset of this pipeline: a table of the engine's catalog, left as written
        qualified_by = [(start, end) for parts, start, end in qualifiers
                        if parts == ref.parts or (not ref.aliased and parts == (ref.name,))]
        alias = "" if ref.aliased or not qualified_by else f" AS {_quote(ref.name)}"
        edits[(ref.start, ref.end)] = _quote(view) + alias
        if not ref.aliased:
            edits.update({(start, end): _quote(ref.name) for start, end in qualified_by if text[start:end] != ref.name})
    for (start, end), replacement in sorted(edits.items(), reverse=True):
        text = text[:start] + replacement + text[end:]
    return ctx.spark.sql(expand_sql(text))     # pseudonymize(...) → engine built-ins (assay/pii.py)
