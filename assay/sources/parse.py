"""Parsing staged raw records into the declared schema, rescuing what does not fit.

`_rescued_data` is NULL for a row that fit, else a JSON object of what did not: unknown fields,
values that could not be converted to the column's type, or `{"_corrupt_record": "<raw text>"}`
for a record that could not be parsed at all.

Split of work, chosen by measurement on 1 M JSON lines on Sail: the engine parses and types
every row and flags the rows that need rescuing with cheap expressions (~4 s); the rescue JSON
of the flagged rows (well under 1 %) is built here in Python. Building it in the engine with map
lookups, `filter(array(...))` and `to_json(map_concat(...))` took 46 s, because those run on
every row.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql.types import StringType, StructField, StructType

from .files import CORRUPT, METADATA

UNKNOWN = "_unknown_fields"
NEEDS_RESCUE = "_assay_rescue"
COMPLEX = "_assay_complex"     # JSON rows needing more than unknown fields rescued
_METADATA_TYPES = {"_source_file": "string", "_source_position": "bigint", "_source_modified": "timestamp",
                   "_source_size": "bigint"}


def output_schema(schema: StructType, rescue: str | None, include_metadata: bool) -> StructType:
    fields = list(schema.fields)
    if rescue:
        fields.append(StructField(rescue, StringType(), True))
    if include_metadata:
        from pyspark.sql.types import LongType, TimestampType
        types = {"string": StringType(), "bigint": LongType(), "timestamp": TimestampType()}
        fields += [StructField(name, types[t], True) for name, t in _METADATA_TYPES.items()]
    return StructType(fields)


def unknown_columns(df, fmt: str, schema: StructType, raw_schema) -> list[str]:
    """Columns present in a staged batch but not in the schema (one engine pass for JSON)."""
    from pyspark.sql import functions as F
    names = {f.name for f in schema.fields}
    if fmt == "json":
        keys = (df.select(F.explode(F.map_keys(F.from_json(F.col("value"), "map<string,string>"))).alias("k"))
                .distinct().toArrow().column("k").to_pylist())
        return sorted(k for k in keys if k not in names)
    return sorted(c for c in raw_schema.names if c not in names and c not in METADATA and c not in (CORRUPT, UNKNOWN))


def typed_frame(df, fmt: str, schema: StructType, raw_schema, *, ignore_unknown: bool):
    """One engine pass: typed columns, what the rescue needs, and a flag for rows that need it."""
    from pyspark.sql import functions as F

    names = [f.name for f in schema.fields]
    if fmt == "json":
        raw_map = F.from_json(F.col("value"), "map<string,string>")
        typed = F.from_json(F.col("value"), schema)
        df = df.select(typed.alias("_t"), raw_map.alias("_m"), "value", *METADATA)
        known_present = F.size(F.map_filter(F.col("_m"), lambda k, v: k.isin(*names) & v.isNotNull())) \
            if names else F.lit(0)
        typed_present = sum((F.when(F.col(f"_t.{n}").isNotNull(), 1).otherwise(0) for n in names), F.lit(0))
        complex_ = F.coalesce(F.col("_m").isNull() | (known_present != typed_present), F.lit(True))
        flag = complex_
        if not ignore_unknown:
            flag = flag | (F.size(F.map_filter(F.col("_m"), lambda k, v: ~k.isin(*names))) > 0)
        # A line that is not a JSON object has no map and is rescued whole; rows whose only
        # problem is unknown fields (schema drift: often many) get a vectorised rescue.
        return df.select(*[F.col(f"_t.{n}").alias(n) for n in names], "_m", "value",
                         F.coalesce(flag, F.lit(True)).alias(NEEDS_RESCUE), complex_.alias(COMPLEX), *METADATA)

    present = set(raw_schema.names)
    columns, flag = [], F.lit(False)
    for field in schema.fields:
        if field.name not in present:
            columns.append(F.lit(None).cast(field.dataType).alias(field.name))
            continue
        raw = F.col(f"`{field.name}`")
        if fmt == "csv" and not isinstance(field.dataType, StringType):
            value = F.expr(f"try_cast(`{field.name}` AS {field.dataType.simpleString()})")
            flag = flag | (raw.isNotNull() & value.isNull())
        else:
            value = raw.cast(field.dataType)
        columns.append(value.alias(field.name))
    extras = [c for c in raw_schema.names if c not in names and c not in METADATA and c not in (CORRUPT, UNKNOWN)]
    if not ignore_unknown:
        for c in extras:
            flag = flag | F.col(f"`{c}`").isNotNull()
    if CORRUPT in present:
        flag = flag | F.col(CORRUPT).isNotNull()
    kept_raw = [F.col(f"`{c}`").cast("string").alias(f"_raw_{c}") for c in raw_schema.names
                if c not in METADATA and c != CORRUPT]
    corrupt = F.col(CORRUPT) if CORRUPT in present else F.lit(None).cast("string").alias(CORRUPT)
    return df.select(*columns, *kept_raw, corrupt.alias(CORRUPT), flag.alias(NEEDS_RESCUE), *METADATA)


def finish(staged_dir: Path, out_file: Path, fmt: str, schema: StructType, *, rescue: str | None,
           include_metadata: bool, ignore_unknown: bool) -> None:
    """Read the typed stage, write the final batch: declared columns, rescued data, metadata."""
    names = [f.name for f in schema.fields]
    files = sorted(Path(staged_dir).glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(p) for p in files], promote_options="permissive")
    columns = {n: table.column(n) for n in names}
    if rescue:
        flags = pc.fill_null(table.column(NEEDS_RESCUE), True).to_numpy(zero_copy_only=False)
        if COMPLEX in table.column_names:
            hard = pc.fill_null(table.column(COMPLEX), True).to_numpy(zero_copy_only=False)
        else:
            hard = flags
        rescued = np.full(table.num_rows, None, dtype=object)
        simple = (flags & ~hard).nonzero()[0]
        if len(simple):
            rescued[simple] = unknown_fields_json(table.column("_m").take(simple), names).to_numpy(zero_copy_only=False)
        flagged = (flags & hard).nonzero()[0]
        rescued[flagged] = _rescued_json(table.take(flagged), fmt, names, ignore_unknown)
        columns[rescue] = pa.array(rescued, pa.string())
    if include_metadata:
        for name in METADATA:
            columns[name] = table.column(name)
    pq.write_table(pa.table(columns), out_file, compression="zstd")


_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")]


def _json_string(values) -> pa.Array:
    """Arrow strings as JSON string literals (NULL → null)."""
    for raw, escaped in _ESCAPES:
        values = pc.replace_substring(values, raw, escaped)
    quoted = pc.binary_join_element_wise('"', values, '"', "")
    return pc.fill_null(quoted, "null")


def unknown_fields_json(maps, names: list[str]) -> pa.Array:
    """For map<string,string> rows: a JSON object of the entries whose key is not in `names`."""
    maps = maps.combine_chunks() if isinstance(maps, pa.ChunkedArray) else maps
    offsets = maps.offsets.to_numpy()
    keys, items = maps.keys.slice(offsets[0], offsets[-1] - offsets[0]), maps.items.slice(offsets[0], offsets[-1] - offsets[0])
    parents = pa.array(np.repeat(np.arange(len(maps)), np.diff(offsets)))
    unknown = pc.invert(pc.is_in(keys, value_set=pa.array(names, pa.string())))
    keys, items, parents = keys.filter(unknown), items.filter(unknown), parents.filter(unknown)
    pairs = pc.binary_join_element_wise(_json_string(keys), _json_string(items), ":")
    counts = np.bincount(parents.to_numpy(), minlength=len(maps))
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, pairs), ",")
    return pc.binary_join_element_wise("{", joined, "}", "")


def _rescued_json(rows: pa.Table, fmt: str, names: list[str], ignore_unknown: bool) -> list[str | None]:
    """The rescue JSON of each flagged row (columns converted to Python once, not per value)."""
    known = set(names)
    typed = {n: rows.column(n).to_pylist() for n in names}
    out: list[str | None] = []
    if fmt == "json":
        for i, (raw, line) in enumerate(zip(rows.column("_m").to_pylist(), rows.column("value").to_pylist())):
            if raw is None:
                out.append(json.dumps({CORRUPT: line}, ensure_ascii=False))
                continue
            found = {k: v for k, v in raw if (k not in known and not ignore_unknown)
                     or (k in known and v is not None and typed[k][i] is None)}
            out.append(json.dumps(found, ensure_ascii=False, separators=(",", ":")) if found else None)
        return out
    raw_columns = {c[len("_raw_"):]: rows.column(c).to_pylist() for c in rows.column_names if c.startswith("_raw_")}
    for i, corrupt in enumerate(rows.column(CORRUPT).to_pylist()):
        if corrupt is not None:
            out.append(json.dumps({CORRUPT: corrupt}, ensure_ascii=False))
            continue
        found = {}
        for name, values in raw_columns.items():
            value = values[i]
            if value is None:
                continue
            if name not in known:
                if not ignore_unknown:
                    found[name] = value
            elif typed[name][i] is None:
                found[name] = value
        out.append(json.dumps(found, ensure_ascii=False, separators=(",", ":")) if found else None)
    return out
