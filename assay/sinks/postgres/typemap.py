"""Column types between Delta (Arrow) and PostgreSQL, both ways: the sink creates columns from
the Delta schema and reads them back for verification."""
from __future__ import annotations

import re

import pyarrow as pa

from ...errors import FlowError


def postgres_type(field_: pa.Field, table: str = "") -> str:
    """The PostgreSQL type of an Arrow (Delta) column, as `format_type()` spells it.

    | Arrow / Delta                                   | PostgreSQL                    |
    |-------------------------------------------------|-------------------------------|
    | int8, int16, uint8 (Delta byte, short)          | smallint                      |
    | int32, uint16 (Delta integer)                   | integer                       |
    | int64, uint32 (Delta long)                      | bigint                        |
    | uint64                                          | numeric(20,0)                 |
    | float16, float32 (Delta float)                  | real                          |
    | float64 (Delta double)                          | double precision              |
    | decimal(p, s)                                   | numeric(p,s)                  |
    | string, large_string, string_view               | text                          |
    | bool                                            | boolean                       |
    | date32, date64                                  | date                          |
    | timestamp with a time zone (Delta timestamp)    | timestamp with time zone      |
    | timestamp without time zone (Delta timestamp_ntz)| timestamp without time zone  |

    Anything else (binary, lists, structs, maps, intervals...) raises a FlowError naming the column.
    """
    t = field_.type
    if pa.types.is_dictionary(t):
        return postgres_type(pa.field(field_.name, t.value_type), table)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_uint64(t):
        return "numeric(20,0)"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "real"
    if pa.types.is_float64(t):
        return "double precision"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t):
        return "text"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp without time zone"
    where = f" of {table}" if table else ""
    raise FlowError(f"column '{field_.name}'{where} has type {t}, which has no PostgreSQL mapping "
                    "(supported: integers, floats, decimal(p,s), string, bool, date, timestamp)")


_ARROW_TYPES = {
    "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(), "real": pa.float32(),
    "double precision": pa.float64(), "text": pa.string(), "boolean": pa.bool_(), "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"), "timestamp without time zone": pa.timestamp("us"),
}


def arrow_type(pg_type: str, column: str = "", table: str = "") -> pa.DataType:
    """The Arrow type of a PostgreSQL column type (`format_type()` text): the map above, reversed."""
    if pg_type in _ARROW_TYPES:
        return _ARROW_TYPES[pg_type]
    m = re.fullmatch(r"numeric\((\d+),(\d+)\)", pg_type)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2))
        if precision <= 38:
            return pa.decimal128(precision, scale)
        if precision <= 76:
            return pa.decimal256(precision, scale)
    raise FlowError(f"column '{column}' of {table} has PostgreSQL type {pg_type}, which Assay does not read back")
