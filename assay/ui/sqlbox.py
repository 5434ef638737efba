"""The read-only SQL box: `assay query` semantics (Spark SQL over every table by its bare name and
the event log), refusing anything that is not a query, twice:

1. sqlglot parses the text in the Spark dialect: exactly one statement, a query (SELECT, set
   operations, VALUES), with no DDL, DML, command, `INTO`, path-based table (`parquet.`/x``), or
   function that reaches outside the lake (`reflect`, `java_method`, `read_files`...), and every
   table it names is a table of the lake or one of its own CTEs.
2. The engine gets the text only as a subquery, `SELECT * FROM (<text>) LIMIT n`: its own
   parser rejects anything but a query there, so a statement that slipped past (1) still never
   runs.
"""
from __future__ import annotations

import logging
import threading
import time

from ..errors import AssayError

MAX_ROWS = 1000
MAX_CHARS = 100_000
# Functions that reach the JVM, the file system or the network rather than the lake's tables.
FORBIDDEN_FUNCTIONS = {"reflect", "java_method", "try_reflect", "read_files", "read_kafka", "read_statestore",
                       "read_state_metadata"}
# Table-valued functions that only make rows.
ALLOWED_TABLE_FUNCTIONS = {"range", "explode", "explode_outer", "inline", "inline_outer", "posexplode",
                           "posexplode_outer", "stack", "json_tuple"}


class RejectedQuery(AssayError):
    """The SQL box accepts one read-only query."""


def check_query(sql: str, tables: set[str]) -> str:
    """The text to run, or RejectedQuery saying why it is not a read-only query over `tables`."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    text = (sql or "").strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise RejectedQuery("type a query, e.g. SELECT * FROM event_log LIMIT 10")
    if len(text) > MAX_CHARS:
        raise RejectedQuery(f"the query is longer than {MAX_CHARS:,} characters")
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)        # sqlglot warns when it falls back to a raw Command
    try:
        statements = [s for s in sqlglot.parse(text, read="spark") if s is not None]
    except ParseError as exc:
        raise RejectedQuery(f"not a valid query: {str(exc).splitlines()[0]}") from None
    finally:
        logger.setLevel(level)
    if len(statements) != 1:
        raise RejectedQuery(f"one query at a time (found {len(statements)} statements)")
    tree = statements[0]
    if not isinstance(tree, (exp.Query, exp.Values)):
        raise RejectedQuery(f"only queries are allowed (SELECT ...); this is a {_kind(tree)} statement")
    forbidden = [exp.DDL, exp.DML, exp.Command, exp.Into]
    for name in ("Set", "Use", "Cache", "Uncache", "Refresh", "LoadData", "Copy", "Pragma", "Transaction",
                 "Commit", "Rollback", "Analyze", "Merge", "Describe", "Drop", "Create", "Alter", "Insert",
                 "Update", "Delete", "TruncateTable", "Grant", "Revoke"):
        if hasattr(exp, name):
            forbidden.append(getattr(exp, name))
    for node in tree.walk():
        node = node[0] if isinstance(node, tuple) else node
        if isinstance(node, tuple(forbidden)):
            raise RejectedQuery(f"only queries are allowed: found {_kind(node)} inside the query")
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    known = {t.lower() for t in tables}
    for table in tree.find_all(exp.Table):
        target = table.this
        if isinstance(target, (exp.Anonymous, exp.Func)):
            name = (target.name if isinstance(target, exp.Anonymous) else target.sql_name()).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise RejectedQuery(f"table function {name}() is not allowed in the SQL box")
            continue
        if table.args.get("db") or table.args.get("catalog"):
            raise RejectedQuery(f"tables are named without a schema or path here: {table.sql(dialect='spark')} "
                                f"(tables: {', '.join(sorted(tables)) or 'none yet'})")
        if not isinstance(target, exp.Identifier):
            raise RejectedQuery(f"unsupported table reference {table.sql(dialect='spark')}")
        if target.name.lower() not in known and target.name.lower() not in ctes:
            raise RejectedQuery(f"no table named {target.name} (tables: {', '.join(sorted(tables)) or 'none yet'})")
    for func in tree.find_all(exp.Func):
        name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
        if name in FORBIDDEN_FUNCTIONS:
            raise RejectedQuery(f"function {name}() is not allowed in the SQL box")
    return text


def _kind(node) -> str:
    if type(node).__name__ == "Command":
        return str(node.this).upper()
    return type(node).__name__.upper()


def wrap(text: str, limit: int) -> str:
    """The checked text as a subquery: the engine's parser accepts only a query there. The newline
    before the closing parenthesis keeps a trailing `-- comment` from swallowing it."""
    return f"SELECT * FROM (\n{text}\n) AS assay_sql_box LIMIT {int(limit)}"


class SqlBox:
    """Runs checked queries on one engine session, one at a time, over views of every table."""

    def __init__(self, spec, engine_factory, lock=None):
        self.spec = spec
        self._engine_factory = engine_factory
        self._lock = lock or threading.RLock()
        self._registered: dict[str, tuple] = {}

    def tables(self) -> dict:
        from .. import catalog
        return {ref.name: ref for ref in catalog.tables(self.spec)}

    def run(self, sql: str, limit: int = 200) -> dict:
        limit = max(1, min(int(limit or 200), MAX_ROWS))
        refs = self.tables()
        text = check_query(sql, set(refs))
        with self._lock:
            engine = self._engine_factory()
            spark = engine.spark
            self._register(spark, refs)
            started = time.monotonic()
            try:
                result = spark.sql(wrap(text, limit + 1)).toArrow()
            except Exception as exc:
                from ..engine_errors import first_line
                raise RejectedQuery(f"query failed: {first_line(str(exc))}") from None
            seconds = time.monotonic() - started
        from .tables import table_rows
        truncated = result.num_rows > limit
        data = table_rows(result.slice(0, limit))
        return {**data, "truncated": truncated, "limit": limit, "seconds": seconds}

    def _register(self, spark, refs: dict) -> None:
        """A view per table by its bare name, re-made when the table's folder changed."""
        import os
        for name, ref in refs.items():
            try:
                st = os.stat(ref.path / "_delta_log")
                stamp = (str(ref.path), st.st_ino)
            except FileNotFoundError:
                continue
            if self._registered.get(name) != stamp:
                spark.read.format("delta").load(str(ref.path)).createOrReplaceTempView(name)
                self._registered[name] = stamp
