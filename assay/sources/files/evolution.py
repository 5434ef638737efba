"""Schemas of landing folders: inference, hints, and what happens when new columns appear.

Modes (option `schema_evolution_mode`, as in Auto Loader):
- addNewColumns (default): a batch with columns the schema lacks stops with a message naming
  them; they are recorded in the checkpoint and the next run reads them (same batch, replayed).
- rescue: the schema never changes; unknown fields go to `_rescued_data`.
- failOnNewColumns: stop, and keep stopping until the schema is changed in code.
- none: unknown fields are ignored.
"""
from __future__ import annotations

import json
from itertools import islice

from ... import fs
from ...errors import FlowError, SchemaChanged
from ...atomic import read_json, write_json_atomic

MODES = ("addNewColumns", "rescue", "failOnNewColumns", "none")
SAMPLE_FILES = 10
SAMPLE_LINES = 1000
_JSON_TYPES = {bool: "BOOLEAN", int: "BIGINT", float: "DOUBLE", str: "STRING"}


def check_mode(mode: str, where: str) -> str:
    if mode not in MODES:
        raise FlowError(f"read_files({where}): schema_evolution_mode must be one of {', '.join(MODES)}, got '{mode}'")
    return mode


def infer_ddl(fmt: str, files: list[str], header: bool, delimiter: str) -> list[tuple[str, str]]:
    """(column, SQL type) pairs from a sample of files; strings where values disagree."""
    columns: dict[str, str] = {}
    for path in files[:SAMPLE_FILES]:
        if fmt == "parquet":
            for field in fs.parquet_schema(path):
                columns.setdefault(field.name, _arrow_to_sql(field.type))
        elif fmt == "csv":
            first = next(iter(fs.iter_lines(path)), b"").decode("utf-8", "replace").lstrip("\ufeff")
            import csv
            names = next(csv.reader([first], delimiter=delimiter)) if header else []
            for name in names:
                columns.setdefault(name.strip(), "STRING")
        else:
            for i, raw in enumerate(islice(fs.iter_lines(path), SAMPLE_LINES)):
                line = raw.decode("utf-8", "replace")
                try:
                    record = json.loads(line[1:] if i == 0 and line.startswith("\ufeff") else line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    for key, value in record.items():
                        found = _JSON_TYPES.get(type(value), "STRING")
                        known = columns.get(key)
                        if known is None:
                            columns[key] = found
                        elif known != found:
                            columns[key] = "DOUBLE" if {known, found} == {"BIGINT", "DOUBLE"} else "STRING"
    return list(columns.items())


def _arrow_to_sql(arrow_type) -> str:
    import pyarrow as pa
    mapping = [(pa.types.is_boolean, "BOOLEAN"), (pa.types.is_int8, "TINYINT"), (pa.types.is_int16, "SMALLINT"),
               (pa.types.is_int32, "INT"), (pa.types.is_int64, "BIGINT"), (pa.types.is_float32, "FLOAT"),
               (pa.types.is_float64, "DOUBLE"), (pa.types.is_timestamp, "TIMESTAMP"), (pa.types.is_date, "DATE"),
               (pa.types.is_string, "STRING"), (pa.types.is_large_string, "STRING")]
    for check, sql in mapping:
        if check(arrow_type):
            return sql
    if pa.types.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision},{arrow_type.scale})"
    return "STRING"


def apply_hints(columns: list[tuple[str, str]], hints: str | None) -> list[tuple[str, str]]:
    """`schema_hints="price DOUBLE, id BIGINT"` pins those columns' types (and adds missing ones)."""
    if not hints:
        return columns
    pinned = {}
    for part in hints.split(","):
        bits = part.strip().split(None, 1)
        if len(bits) != 2:
            raise FlowError(f"schema_hints: '{part.strip()}' is not 'column TYPE'")
        pinned[bits[0].strip("`")] = bits[1].strip()
    result = [(name, pinned.pop(name, sql)) for name, sql in columns]
    return result + list(pinned.items())


class EvolutionState:
    """Columns added to a source's schema by earlier runs, kept in its checkpoint."""

    def __init__(self, folder):
        self.path = fs.as_path(folder) / "schema.json"

    def added(self) -> list[tuple[str, str]]:
        try:
            return [tuple(item) for item in read_json(self.path)["added"]]
        except FileNotFoundError:
            return []

    def record(self, columns: list[tuple[str, str]]) -> None:
        write_json_atomic(self.path, {"added": [list(c) for c in self.added() + columns]})


def new_columns_found(mode: str, source_key: str, found: list[str], state: EvolutionState, sql_type) -> None:
    """Act on columns present in the data but not in the schema, per the evolution mode."""
    if not found or mode in ("rescue", "none"):
        return
    names = ", ".join(sorted(found))
    if mode == "failOnNewColumns":
        raise SchemaChanged(f"{source_key}: new column(s) {names} appeared and schema_evolution_mode is "
                            "failOnNewColumns: add them to the schema (or choose rescue) and run again")
    state.record([(name, sql_type(name)) for name in sorted(found)])
    raise SchemaChanged(f"{source_key}: new column(s) {names} appeared; they are recorded and the next run "
                        "reads them (schema_evolution_mode=addNewColumns). Run again to continue.")
