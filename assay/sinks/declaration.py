"""What a dataset declares about its PostgreSQL mirror, and whether that declaration holds.

Python (`publish=dp.postgres(keys=[...])`) and SQL (`TBLPROPERTIES ('assay.publish' = 'postgres',
'assay.publish.keys' = 'id')`) both end as table properties. They are checked with the graph,
so `assay dry-run` names a wrong one (table, property, value, file:line) before any commit;
the runtime reads them again, and so do the commands that do not load the pipeline (from
catalog.json).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..definitions import MATERIALIZED_VIEW, STREAMING_TABLE
from ..errors import GraphError

PUBLISH, KEYS, TABLE, REPLACE = "assay.publish", "assay.publish.keys", "assay.publish.table", "assay.publish.replace"
PROPERTIES = (PUBLISH, KEYS, TABLE, REPLACE)
TARGET = "postgres"                         # the only place a table is published to
REPLACE_METHODS = ("swap", "in_place")
# Names that reach SQL (schemas, tables, columns, roles): letters, digits, underscores, not
# starting with a digit, at most 63 bytes (PostgreSQL silently truncates longer names). The
# declared table and keys are checked here, so a bad one fails dry-run, not the first publish.
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Mirror:
    """A dataset mirrored into PostgreSQL, as its table properties declare it (dp.postgres)."""
    dataset: str
    table: str                 # the PostgreSQL table, in the configured schema
    keys: tuple[str, ...]
    kind: str                  # streaming_table | materialized_view
    replace: str = "swap"      # how a materialized view is replaced


def postgres_properties(keys: tuple[str, ...], table: str | None, replace: str | None) -> dict:
    """The table properties of `dp.postgres(...)`; GraphError when an argument is not what it takes."""
    for key in keys:
        if not isinstance(key, str) or not key:
            raise GraphError(f"dp.postgres: keys must be column names, got {key!r}")
    if replace not in (None, *REPLACE_METHODS):
        raise GraphError(f"dp.postgres: replace must be 'swap' or 'in_place', got {replace!r}")
    props = {PUBLISH: TARGET}
    if keys:
        props[KEYS] = ",".join(keys)
    if table:
        props[TABLE] = table
    if replace:
        props[REPLACE] = replace
    return props


def with_publish(table_properties: dict | None, publish: dict | None) -> dict:
    """A decorator's table properties with its `publish=` argument merged in."""
    if publish is None:
        return dict(table_properties or {})
    if not isinstance(publish, dict) or PUBLISH not in publish:
        raise GraphError(f"publish= takes dp.postgres(keys=[...]), got {publish!r}")
    return {**dict(table_properties or {}), **publish}


def problems(dataset: str, kind: str, properties: dict, where: str = "", columns: list[str] | None = None) -> list[str]:
    """Everything wrong with a dataset's publish declaration (empty when it declares none or a
    sound one). `columns`: the dataset's, when known, to check the keys against."""
    declared = {k: v for k, v in properties.items() if k == PUBLISH or k.startswith(PUBLISH + ".")}
    if not declared:
        return []
    at = f"'{dataset}'" + (f" (at {where})" if where else "")
    found = [f"{at}: unknown property '{k}' = {v!r}; a publish declaration takes {', '.join(PROPERTIES)}"
             for k, v in declared.items() if k not in PROPERTIES]
    target = declared.get(PUBLISH)
    if target is None:
        return found + [f"{at}: {', '.join(sorted(declared))} without '{PUBLISH}' = '{TARGET}', which publishing needs"]
    if target != TARGET:
        found.append(f"{at}: {PUBLISH} = {target!r}; the only target is '{TARGET}'")
    if kind not in (STREAMING_TABLE, MATERIALIZED_VIEW):
        return found + [f"{at} is a {kind.replace('_', ' ')}: only tables can be published"]
    keys = _keys(declared)
    if kind == STREAMING_TABLE and not keys:
        found.append(f"{at} is published to PostgreSQL without keys: a streaming table is upserted by key, write "
                     f"dp.postgres(keys=[...]) or '{KEYS}' = 'col, ...'")
    bad = [k for k in keys if not NAME.match(k)]
    if bad:
        found.append(f"{at}: {KEYS} = {declared[KEYS]!r}: {', '.join(map(repr, bad))} cannot be a PostgreSQL column "
                     "(letters, digits and underscores, not starting with a digit, at most 63 characters)")
    if columns is not None:
        missing = [k for k in keys if k not in columns and k not in bad]
        if missing:
            found.append(f"{at}: {KEYS} = {declared[KEYS]!r}: {', '.join(map(repr, missing))} is not a column of the "
                         f"table (columns: {', '.join(columns)})")
    table = declared.get(TABLE)
    if table is not None and not NAME.match(str(table)):
        found.append(f"{at}: {TABLE} = {table!r} cannot be a PostgreSQL table name (letters, digits and "
                     "underscores, not starting with a digit, at most 63 characters)")
    replace = declared.get(REPLACE)
    if replace is not None and replace not in REPLACE_METHODS:
        found.append(f"{at}: {REPLACE} = {replace!r}; it must be 'swap' or 'in_place'")
    return found


def mirror_of(dataset: str, kind: str, properties: dict, where: str = "") -> Mirror | None:
    """The mirror a dataset declares, None when it declares none; GraphError when it is wrong."""
    wrong = problems(dataset, kind, properties, where)
    if wrong:
        raise GraphError("\n".join(wrong))
    if properties.get(PUBLISH) is None:
        return None
    return Mirror(dataset, str(properties.get(TABLE) or dataset), _keys(properties), kind,
                  str(properties.get(REPLACE) or "swap"))


def _keys(properties: dict) -> tuple[str, ...]:
    return tuple(k.strip() for k in str(properties.get(KEYS) or "").split(",") if k.strip())
