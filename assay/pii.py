"""Pseudonymisation of personal data: keyed HMAC-SHA-256, computed by the engine.

    from assay import pipelines as dp
    dp.pseudonymize(F.trim("user_id"), key="${env:CLICKSTREAM_PII_KEY}", version="v1")
    -- in a SQL flow: pseudonymize(trim(user_id), '${env:CLICKSTREAM_PII_KEY}', 'v1')

gives `v1:<64 lowercase hex digits>` = "v1:" + HMAC-SHA-256(key, UTF-8 bytes of the value), and
NULL for NULL. Plain SHA-256 of an e-mail address is reversed by hashing a dictionary of
addresses; without the key, an HMAC cannot be.

The rows never leave the engine. HMAC (RFC 2104) is two SHA-256 passes over the value framed by
two 64-byte blocks derived from the key:

    HMAC(K, m) = SHA256((K' xor opad) || SHA256((K' xor ipad) || m))

where K' is the key zero-padded to 64 bytes (hashed first when longer). Both blocks are computed
here, once, and handed to the engine as hexadecimal literals; the engine runs only its own
built-ins (`sha2`, `unhex`, `concat`, `encode`), identical on Sail and on Apache Spark, so both
give the same value, which is the value of Python's `hmac` module.

The key is named by reference (`${env:NAME}`), never written in code or assay.yml. The key and
the two blocks (each equivalent to the key) are registered with `assay.secrets`, so every
message, log line and event-log value Assay writes shows `***NAME***` instead. The blocks do
travel inside the query plan to the engine: whoever can read the engine's plans (Spark UI, a
server's debug log) can read them, so restrict those as you restrict the key.

The version prefix makes keys rotatable: values made under `v1` and `v2` never compare equal by
accident, and a table can be re-keyed from the raw values it was built from (docs/datasets.md, Pseudonymisation).
"""
from __future__ import annotations

import hashlib
import os
import re

from . import secrets
from .errors import ConfigError, GraphError

BLOCK = 64                 # SHA-256's block size in bytes
MIN_KEY_BYTES = 32         # a key shorter than the hash's output weakens it
KEY_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
VERSION = re.compile(r"^[A-Za-z0-9_.-]{1,16}$")
SQL_FUNCTION = "pseudonymize"


def _key_bytes(key: str) -> tuple[str, bytes]:
    """The variable's name and the key's bytes, from a `${env:NAME}` reference."""
    if not isinstance(key, str) or not KEY_REF.match(key.strip()):
        # Never echo the argument: a literal key passed by mistake must not be printed.
        raise GraphError("pseudonymize: key must be a reference to an environment variable, written "
                         "'${env:NAME}' (a key is never written in code or assay.yml)")
    name = KEY_REF.match(key.strip()).group(1)
    value = os.environ.get(name)
    if value is None or value == "":
        raise ConfigError(f"pseudonymize: the environment variable {name} (the HMAC key) is not set; set it to a "
                          f"secret of at least {MIN_KEY_BYTES} bytes, e.g. the output of `openssl rand -hex 32`")
    secrets.register(name, value)
    raw = value.encode("utf-8")
    if len(raw) < MIN_KEY_BYTES:
        raise ConfigError(f"pseudonymize: the key in {name} is {len(raw)} bytes long; use at least "
                          f"{MIN_KEY_BYTES} (e.g. `openssl rand -hex 32`)")
    return name, raw


def pad_blocks(key: bytes) -> tuple[bytes, bytes]:
    """HMAC's inner and outer blocks for `key` (RFC 2104)."""
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(BLOCK, b"\x00")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def _check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION.match(version):
        raise GraphError(f"pseudonymize: version must be 1-16 letters, digits, '_', '.' or '-' (it prefixes every "
                         f"value as '<version>:'), got {version!r}")
    return version


def _blocks_hex(key: str) -> tuple[str, str]:
    """The two blocks as hex, registered as secrets under the variable's name."""
    name, raw = _key_bytes(key)
    inner, outer = (block.hex() for block in pad_blocks(raw))
    for label, text in ((f"{name}:ipad", inner), (f"{name}:opad", outer)):
        secrets.register(label, text)
        secrets.register(label, text.upper())
    return inner, outer


def pseudonymize(col, key: str, version: str = "v1"):
    """`<version>:` + HMAC-SHA-256 of the column's UTF-8 text under the key in `${env:NAME}`
    (lowercase hex); NULL stays NULL. `col` is a Column or a column name; trim or lower-case it
    first when equal values may be written differently."""
    from pyspark.sql import Column
    from pyspark.sql import functions as F

    version = _check_version(version)
    inner, outer = _blocks_hex(key)
    value = col if isinstance(col, Column) else F.col(col)
    text = value.cast("string")
    first = F.sha2(F.concat(F.unhex(F.lit(inner)), F.encode(text, "UTF-8")), 256)
    second = F.sha2(F.concat(F.unhex(F.lit(outer)), F.unhex(first)), 256)
    return F.concat(F.lit(f"{version}:"), second)


def sql_expression(argument: str, key: str, version: str = "v1") -> str:
    """The Spark SQL text computing pseudonymize(<argument>, key, version) with built-ins only."""
    version = _check_version(version)
    inner, outer = _blocks_hex(key)
    first = f"sha2(concat(unhex('{inner}'), encode(CAST(({argument}) AS STRING), 'UTF-8')), 256)"
    return f"concat('{version}:', sha2(concat(unhex('{outer}'), unhex({first})), 256))"


# --- the SQL form -------------------------------------------------------------------------

def expand_sql(text: str) -> str:
    """`text` with every `pseudonymize(expr, '${env:NAME}'[, 'version'])` call replaced by the
    built-in expression computing it (the rest of the text is left exactly as written)."""
    if SQL_FUNCTION not in text.lower():
        return text
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.errors import TokenError
    from sqlglot.tokens import TokenType
    try:
        tokens = Dialect.get_or_raise("spark").tokenize(text)
    except TokenError:
        return text                       # unreadable SQL: the engine reports it
    calls = []
    for i, token in enumerate(tokens[:-1]):
        if (token.text.lower() == SQL_FUNCTION and tokens[i + 1].token_type == TokenType.L_PAREN
                and (i == 0 or tokens[i - 1].token_type != TokenType.DOT)):
            calls.append(i)
    if not calls:
        return text
    # Outermost first: an inner call sits in an outer call's first argument and is expanded with it.
    index = calls[0]
    close, commas = _call_extent(tokens, index + 1)
    if close is None:
        return text
    if len(commas) not in (1, 2):
        raise GraphError(f"SQL: {SQL_FUNCTION}(value, '${{env:NAME}}'[, 'version']) takes two or three arguments")
    start, end = tokens[index].start, tokens[close].end + 1
    argument = expand_sql(text[tokens[index + 1].end + 1:tokens[commas[0]].start])
    literals = []
    for a, b in zip(commas, commas[1:] + [close]):
        parts = tokens[a + 1:b]
        if len(parts) != 1 or parts[0].token_type != TokenType.STRING:
            raise GraphError(f"SQL: the key and version of {SQL_FUNCTION}(...) must be string literals, e.g. "
                             f"{SQL_FUNCTION}(email, '${{env:PII_KEY}}', 'v1')")
        literals.append(parts[0].text)
    replacement = sql_expression(argument, *literals)
    return text[:start] + replacement + expand_sql(text[end:])


def _call_extent(tokens, open_index: int) -> tuple[int | None, list[int]]:
    """The index of the parenthesis closing tokens[open_index], and of the top-level commas."""
    from sqlglot.tokens import TokenType
    depth, commas = 0, []
    for j in range(open_index, len(tokens)):
        kind = tokens[j].token_type
        if kind in (TokenType.L_PAREN, TokenType.L_BRACKET):
            depth += 1
        elif kind in (TokenType.R_PAREN, TokenType.R_BRACKET):
            depth -= 1
            if depth == 0:
                return j, commas
        elif kind == TokenType.COMMA and depth == 1:
            commas.append(j)
    return None, commas
