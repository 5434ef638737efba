"""`CREATE FLOW … AS AUTO CDC INTO …` in SQL files, read on sqlglot's tokens (its parser has no
grammar for it), into the same definition as `dp.create_auto_cdc_flow`:

    CREATE FLOW name AS AUTO CDC [ONCE] INTO target
    FROM STREAM(source)
    KEYS (key, ...)
    [IGNORE NULL UPDATES]
    [APPLY AS DELETE WHEN condition]
    [APPLY AS TRUNCATE WHEN condition]
    SEQUENCE BY expression
    [COLUMNS column, ... | COLUMNS * EXCEPT (column, ...)]
    [STORED AS SCD TYPE 1 | SCD TYPE 2]
    [TRACK HISTORY ON column, ... | TRACK HISTORY ON * EXCEPT (column, ...)]

Conditions and the sequence expression are kept as the user wrote them (the engine reads them).
"""
from __future__ import annotations

from sqlglot.tokens import Token, TokenType

from .definitions import Registry, SourceLocation, auto_cdc_definition
from .pipelines import register_auto_cdc_flow
from .sql_errors import SqlSyntaxError

_NAMES = (TokenType.VAR, TokenType.IDENTIFIER)
# clause → the words that open it (checked at parenthesis depth 0)
_CLAUSES = {"KEYS": ("KEYS",), "IGNORE": ("IGNORE", "NULL", "UPDATES"), "DELETE": ("APPLY", "AS", "DELETE", "WHEN"),
            "TRUNCATE": ("APPLY", "AS", "TRUNCATE", "WHEN"), "SEQUENCE": ("SEQUENCE", "BY"),
            "COLUMNS": ("COLUMNS",), "STORED": ("STORED", "AS"), "TRACK": ("TRACK", "HISTORY", "ON")}


def is_auto_cdc_flow(tokens: list[Token]) -> bool:
    return len(tokens) > 2 and tokens[0].token_type == TokenType.CREATE and tokens[1].text.upper() == "FLOW"


def _opens(tokens: list[Token], i: int, words: tuple[str, ...]) -> bool:
    return [t.text.upper() for t in tokens[i:i + len(words)]] == list(words)


def _expect(tokens: list[Token], i: int, *words: str) -> int:
    for word in words:
        if i >= len(tokens) or tokens[i].text.upper() != word:
            got = tokens[i].text if i < len(tokens) else "the end of the statement"
            raise SqlSyntaxError(f"CREATE FLOW … AS AUTO CDC: expected {word}, got '{got}'",
                                 tokens[min(i, len(tokens) - 1)].line)
        i += 1
    return i


def _name(tokens: list[Token], i: int, what: str) -> tuple[str, int]:
    """A possibly qualified name (`gold.dim_users`) starting at token i."""
    if i >= len(tokens) or tokens[i].token_type not in _NAMES:
        raise SqlSyntaxError(f"CREATE FLOW … AS AUTO CDC: expected the {what}", tokens[min(i, len(tokens) - 1)].line)
    parts = [tokens[i].text]
    i += 1
    while i + 1 < len(tokens) and tokens[i].token_type == TokenType.DOT and tokens[i + 1].token_type in _NAMES:
        parts.append(tokens[i + 1].text)
        i += 2
    return ".".join(parts), i


def _column_list(tokens: list[Token], line: int) -> tuple[str | None, list[str]]:
    """`a, b` / `(a, b)` → (None, [a, b]); `* EXCEPT (a, b)` → ('except', [a, b])."""
    mode = None
    if tokens and tokens[0].token_type == TokenType.STAR:
        if len(tokens) < 2 or tokens[1].token_type != TokenType.EXCEPT:
            raise SqlSyntaxError("expected * EXCEPT (column, ...)", line)
        mode, tokens = "except", tokens[2:]
    if tokens and tokens[0].token_type == TokenType.L_PAREN and tokens[-1].token_type == TokenType.R_PAREN:
        tokens = tokens[1:-1]
    names = []
    for k, token in enumerate(tokens):
        if k % 2 == 0 and token.token_type in _NAMES:
            names.append(token.text)
        elif k % 2 == 1 and token.token_type == TokenType.COMMA:
            continue
        else:
            raise SqlSyntaxError(f"expected a list of column names, got '{token.text}'", token.line)
    if not names:
        raise SqlSyntaxError("expected a list of column names", line)
    return mode, names


def load_auto_cdc_flow(statement: str, tokens: list[Token], where: SourceLocation, registry: Registry) -> None:
    i = 2
    name, i = _name(tokens, i, "flow's name")
    i = _expect(tokens, i, "AS", "AUTO", "CDC")
    once = i < len(tokens) and tokens[i].text.upper() == "ONCE"
    i = _expect(tokens, i + once, "INTO")
    target, i = _name(tokens, i, "target table")
    i = _expect(tokens, i, "FROM")
    if i < len(tokens) and tokens[i].text.upper() == "STREAM":
        parenthesised = i + 1 < len(tokens) and tokens[i + 1].token_type == TokenType.L_PAREN
        source, j = _name(tokens, i + 1 + parenthesised, "source (STREAM(name))")
        i = _expect(tokens, j, ")") if parenthesised else j
    else:
        raise SqlSyntaxError("AUTO CDC reads its source as a stream: FROM STREAM(source)",
                             tokens[min(i, len(tokens) - 1)].line)
    # split the rest into clauses at their opening words
    starts, depth = [], 0
    for k in range(i, len(tokens)):
        kind = tokens[k].token_type
        depth += (kind == TokenType.L_PAREN) - (kind == TokenType.R_PAREN)
        if depth == 0:
            for clause, words in _CLAUSES.items():
                if _opens(tokens, k, words):
                    starts.append((k, clause, len(words)))
                    break
    if not starts or starts[0][0] != i:
        got = tokens[i].text if i < len(tokens) else "the end of the statement"
        raise SqlSyntaxError(f"CREATE FLOW … AS AUTO CDC: expected KEYS (...) after the source, got '{got}'",
                             tokens[min(i, len(tokens) - 1)].line)
    clauses: dict[str, tuple[list[Token], str, int]] = {}
    for n, (k, clause, width) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(tokens)
        if clause in clauses:
            raise SqlSyntaxError(f"CREATE FLOW … AS AUTO CDC: the {' '.join(_CLAUSES[clause])} clause is given twice",
                                 tokens[k].line)
        body = tokens[k + width:end]
        text = statement[body[0].start:body[-1].end + 1].strip() if body else ""
        clauses[clause] = (body, text, tokens[k].line)

    def columns(clause: str):
        body, _, line = clauses[clause]
        return _column_list(body, line)

    if "KEYS" not in clauses or "SEQUENCE" not in clauses:
        raise SqlSyntaxError("CREATE FLOW … AS AUTO CDC needs KEYS (...) and SEQUENCE BY ...", tokens[0].line)
    key_mode, keys = columns("KEYS")
    if key_mode:
        raise SqlSyntaxError("KEYS takes a list of columns", clauses["KEYS"][2])
    if "IGNORE" in clauses and clauses["IGNORE"][0]:
        raise SqlSyntaxError("IGNORE NULL UPDATES takes no columns here", clauses["IGNORE"][2])
    for clause in ("DELETE", "TRUNCATE", "SEQUENCE"):
        if clause in clauses and not clauses[clause][1]:
            raise SqlSyntaxError(f"{' '.join(_CLAUSES[clause])} needs an expression", clauses[clause][2])
    sequence = clauses["SEQUENCE"][1]
    scd = 1
    if "STORED" in clauses:
        body, text, line = clauses["STORED"]
        words = text.upper().split()
        if words[:2] != ["SCD", "TYPE"] or len(words) != 3 or words[2] not in ("1", "2"):
            raise SqlSyntaxError(f"expected STORED AS SCD TYPE 1 or STORED AS SCD TYPE 2, got 'STORED AS {text}'", line)
        scd = int(words[2])
    column_list = except_list = track = track_except = None
    if "COLUMNS" in clauses:
        mode, names = columns("COLUMNS")
        column_list, except_list = (None, names) if mode else (names, None)
    if "TRACK" in clauses:
        mode, names = columns("TRACK")
        track, track_except = (None, names) if mode else (names, None)
    cdc = auto_cdc_definition(where, source=source.rpartition(".")[2], keys=keys, sequence_by=sequence,
                              scd_type=scd, ignore_null_updates="IGNORE" in clauses,
                              apply_as_deletes=clauses["DELETE"][1] if "DELETE" in clauses else None,
                              apply_as_truncates=clauses["TRUNCATE"][1] if "TRUNCATE" in clauses else None,
                              column_list=column_list, except_column_list=except_list,
                              track_history_column_list=track, track_history_except_column_list=track_except)
    register_auto_cdc_flow(registry, target, cdc, name, where, once)

