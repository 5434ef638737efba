"""Engine-side parsing of staged raw records into the declared schema, rescuing what does not fit.

`_rescued_data` is NULL for a row that fit, else a JSON object of what did not: unknown fields,
values that could not be converted to the column's type, or `{"_corrupt_record": "<raw text>"}`
for a record that could not be parsed at all.
"""
from __future__ import annotations

from pyspark.sql.types import StringType, StructField, StructType

from .files import CORRUPT, METADATA, RESCUED

UNKNOWN = "_unknown_fields"
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


def parse_staged(df, fmt: str, schema: StructType, raw_schema, *, rescue: str | None, include_metadata: bool,
                 ignore_unknown: bool = False):
    from pyspark.sql import functions as F

    names = [f.name for f in schema.fields]
    if fmt == "json":
        raw_map = F.from_json(F.col("value"), "map<string,string>")
        typed = F.from_json(F.col("value"), schema)
        df = df.select(typed.alias("_t"), raw_map.alias("_m"), F.col("value"), *METADATA)
        columns = [F.col(f"_t.{n}").alias(n) for n in names]
        mismatched = [(n, F.col("_m")[n], F.col(f"_t.{n}")) for n in names]
        unknown = F.map_filter(F.col("_m"), lambda k, v: ~k.isin(*names)) if names else F.col("_m")
        corrupt = F.when(F.col("_m").isNull(), F.col("value"))
    else:
        present = set(raw_schema.names)
        columns, mismatched = [], []
        for field in schema.fields:
            if field.name not in present:
                columns.append(F.lit(None).cast(field.dataType).alias(field.name))
                continue
            raw = F.col(field.name)
            value = raw if fmt == "parquet" or isinstance(field.dataType, StringType) else \
                F.expr(f"try_cast(`{field.name}` AS {field.dataType.simpleString()})")
            columns.append(value.cast(field.dataType).alias(field.name))
            if fmt == "csv":
                mismatched.append((field.name, raw, value))
        unknown_cols = [c for c in raw_schema.names if c not in names and c not in METADATA
                        and c not in (CORRUPT, UNKNOWN)]
        unknown = (F.create_map(*[x for c in unknown_cols for x in (F.lit(c), F.col(c).cast("string"))])
                   if unknown_cols else F.lit(None).cast("map<string,string>"))
        corrupt = F.col(CORRUPT) if CORRUPT in present else F.lit(None).cast("string")
    if ignore_unknown:
        unknown = F.lit(None).cast("map<string,string>")

    selected = list(columns)
    if rescue:
        selected.append(_rescued(mismatched, unknown, corrupt).alias(rescue))
    if include_metadata:
        selected += [F.col(c) for c in METADATA]
    return df.select(*selected)


def _rescued(mismatched, unknown, corrupt):
    """A JSON object of the values that did not fit, or NULL."""
    from pyspark.sql import functions as F

    if mismatched:
        bad_names = F.filter(F.array(*[F.when(raw.isNotNull() & typed.isNull(), F.lit(n))
                                       for n, raw, typed in mismatched]), lambda x: x.isNotNull())
        bad_values = F.filter(F.array(*[F.when(raw.isNotNull() & typed.isNull(), raw.cast("string"))
                                        for n, raw, typed in mismatched]), lambda x: x.isNotNull())
        bad = F.map_from_arrays(bad_names, bad_values)
        everything = F.map_concat(F.coalesce(unknown, F.create_map().cast("map<string,string>")), bad)
    else:
        everything = F.coalesce(unknown, F.create_map().cast("map<string,string>"))
    fitted = F.when(F.size(everything) > 0, F.to_json(everything))
    return F.when(corrupt.isNotNull(), F.to_json(F.create_map(F.lit(CORRUPT), corrupt))).otherwise(fitted)
