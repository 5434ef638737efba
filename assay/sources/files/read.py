"""Landing files read and parsed by the engine: the rows never pass through the Assay process.

Each planned file is read as text lines (JSON, CSV) or Parquet by the engine, one DataFrame per
file so that its path, size and modification time are literals (the embedded engine has no
`input_file_name()`). There is no record position: neither engine can number a file's lines
without a sort or a second pass whose partitioning may differ (measured: ids from two queries
over the same files disagreed), so ties are broken by a record's content instead (dedupe).

`_rescued_data` is NULL for a row that fit the schema, else a JSON object of what did not:
unknown fields, values that could not be converted to their column's type, or
`{"_corrupt_record": "<raw text>"}` for a record that could not be parsed at all (a line that
is not a JSON object, a CSV row with the wrong number of fields). Rows are flagged with cheap
expressions; the rescue JSON is built only for flagged rows.
"""
from __future__ import annotations

from datetime import datetime, timezone

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from .listing import FileEntry

FILE, MODIFIED, SIZE = "_source_file", "_source_modified", "_source_size"
METADATA = {FILE: "string", MODIFIED: "timestamp", SIZE: "bigint"}
RESCUED = "_rescued_data"
CORRUPT = "_corrupt_record"
_CSV_FIELD = r'("(?:[^"]|"")*"|[^{d}]*)'


def output_schema(schema: StructType, rescue: str | None, include_metadata: bool) -> StructType:
    """The columns a batch of a landing folder has: the declared ones, the rescue column, metadata."""
    from pyspark.sql.types import LongType, TimestampType
    fields = list(schema.fields)
    if rescue:
        fields.append(StructField(rescue, StringType(), True))
    if include_metadata:
        types = {"string": StringType(), "bigint": LongType(), "timestamp": TimestampType()}
        fields += [StructField(name, types[t], True) for name, t in METADATA.items()]
    return StructType(fields)


def _metadata(entry: FileEntry) -> dict[str, Column]:
    modified = datetime.fromtimestamp(entry.mtime_ns / 1e9, tz=timezone.utc)
    return {FILE: F.lit(entry.path), MODIFIED: F.lit(modified).cast("timestamp"),
            SIZE: F.lit(entry.size).cast("bigint")}


def _aliased(columns: dict[str, Column]) -> list[Column]:
    return [column.alias(name) for name, column in columns.items()]


def _union(frames: list[DataFrame]) -> DataFrame:
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _finish(df: DataFrame, schema: StructType, rescue: str | None, include_metadata: bool) -> DataFrame:
    columns = [F.col(f"`{f.name}`") for f in schema.fields]
    if rescue:
        columns.append(F.col(RESCUED).alias(rescue))
    if include_metadata:
        columns += [F.col(name) for name in METADATA]
    return df.select(*columns)


# --- text formats --------------------------------------------------------------------------

def lines(engine, files: list[FileEntry], copies: dict[str, str] | None = None) -> DataFrame:
    """The non-blank lines of the files: value and the files' metadata (a UTF-8 byte-order mark
    that starts a file is not part of its first line). `copies`: files to read from a repaired
    copy instead (invalid UTF-8 replaced), keeping the original's metadata."""
    copies = copies or {}
    df = engine.read_lines([(copies.get(f.path, f.path), _metadata(f)) for f in files])
    return (df.where(F.col("value") != "").select(*METADATA, "value")
            .withColumn("value", F.regexp_replace("value", "^\ufeff", "")))


def parse_json(engine, files: list[FileEntry], schema: StructType, *, rescue: str | None, include_metadata: bool,
               ignore_unknown: bool, copies: dict[str, str] | None = None) -> DataFrame:
    df = json_columns(lines(engine, files, copies), schema, rescue=bool(rescue), ignore_unknown=ignore_unknown,
                      keep=list(METADATA))
    return _finish(df, schema, rescue, include_metadata)


def json_columns(df: DataFrame, schema: StructType, *, rescue: bool, ignore_unknown: bool,
                 keep: list[str]) -> DataFrame:
    """JSON text in column `value` → the declared columns, `_rescued_data` and the `keep` columns."""
    names = [f.name for f in schema.fields]
    df = df.select(F.from_json("value", schema).alias("_t"), F.from_json("value", "map<string,string>").alias("_m"),
                   "value", *keep)
    columns = [F.col(f"_t.`{n}`").alias(n) for n in names]
    if not rescue:
        return df.select(*columns, *keep)
    # Every row: its unknown fields (one lambda over the map; measured 10x cheaper than a lambda that
    # also looks up each key's typed value, which Sail evaluates per entry).
    df = df.select("*", F.map_filter("_m", lambda k, v: ~k.isin(*names)).alias("_u"))
    typed_nonnull = sum((F.col(f"_t.`{n}`").isNotNull().cast("int") for n in names), F.lit(0))
    # More known keys than typed values: a value did not fit its type (or was an explicit null).
    maybe_mismatch = (F.size("_m") - F.size("_u")) > typed_nonnull
    # Built only for those rows (rare): each known field whose typed value is NULL, as its raw text.
    mismatches = F.map_filter(
        F.map_from_arrays(F.array(*[F.lit(n) for n in names]),
                          F.array(*[F.when(F.col(f"_t.`{n}`").isNull(), F.element_at("_m", F.lit(n))) for n in names])),
        lambda k, v: v.isNotNull())
    found = mismatches if ignore_unknown else F.map_concat("_u", mismatches)
    rescued = (F.when(F.col("_m").isNull(), F.to_json(F.struct(F.col("value").alias(CORRUPT))))
               .when(maybe_mismatch, F.nullif(F.to_json(found), F.lit("{}"))))
    if not ignore_unknown:
        # map_concat rebuilds the map: a repeated key keeps its last value on Spark too (its from_json
        # keeps both entries; the Spark engine sets spark.sql.mapKeyDedupPolicy=LAST_WIN).
        rescued = rescued.when(F.size("_u") > 0, F.to_json(F.map_concat("_u")))
    return df.select(*columns, rescued.alias(RESCUED), *keep)


def unknown_json_fields(engine, files: list[FileEntry], known: list[str],
                        copies: dict[str, str] | None = None) -> list[str]:
    """Fields present in the files' JSON objects but not in `known` (one key-only pass)."""
    keys = (lines(engine, files, copies).select(F.explode(F.json_object_keys("value")).alias("k")).distinct()
            .collect())
    return sorted(r["k"] for r in keys if r["k"] not in known)


def _unquote(field: Column) -> Column:
    """A CSV field as text: quotes removed, doubled quotes undone, an empty field NULL."""
    quoted = field.startswith('"') & field.endswith('"') & (F.length(field) >= 2)
    text = F.when(quoted, F.regexp_replace(field.substr(F.lit(2), F.length(field) - 2), '""', '"')).otherwise(field)
    return F.when(text != "", text)


def parse_csv(engine, files: list[FileEntry], headers: dict[str, str | None], schema: StructType, *,
              header: bool, delimiter: str, rescue: str | None, include_metadata: bool,
              ignore_unknown: bool, copies: dict[str, str] | None = None) -> DataFrame:
    """CSV rows parsed in the engine, fields mapped to columns by each file's header line.

    Like Spark's PERMISSIVE mode: a row with the wrong number of fields keeps the fields it
    has (by position) and its raw text lands in `_corrupt_record`. Like Spark, a line equal to
    its file's header is the header, wherever it is. Files are grouped by header so that each
    group is parsed by one expression."""
    import csv
    groups: dict[str | None, list[FileEntry]] = {}
    for f in files:
        groups.setdefault(headers.get(f.path) if header else None, []).append(f)
    parsed = []
    for line, group in groups.items():
        df = lines(engine, group, copies)
        columns = [s.name for s in schema.fields]
        if line is not None:
            columns = [c.strip() for c in next(csv.reader([line], delimiter=delimiter), [])]
            df = df.where(F.col("value") != line)
        parsed.append(_csv_group(df, columns, schema, delimiter, rescue, ignore_unknown))
    return _finish(_union(parsed), schema, rescue, include_metadata)


def _csv_group(df: DataFrame, columns: list[str], schema: StructType, delimiter: str, rescue: str | None,
               ignore_unknown: bool) -> DataFrame:
    import re
    pattern = re.escape(delimiter) + _CSV_FIELD.format(d=re.escape(delimiter))
    # Lines without quotes (most) are split; quoted fields need the quote-aware pattern.
    fields = (F.when(F.instr("value", '"') > 0,
                     F.regexp_extract_all(F.concat(F.lit(delimiter), F.col("value")), F.lit(pattern), 1))
              .otherwise(F.split("value", re.escape(delimiter), -1)))
    df = df.select(fields.alias("_f"), "value", *METADATA)
    position = {name: i for i, name in reversed(list(enumerate(columns)))}
    raw = {}
    for name in [f.name for f in schema.fields] + [c for c in columns if c not in schema.fieldNames()]:
        raw[name] = _unquote(F.get(F.col("_f"), position[name])) if name in position else F.lit(None).cast("string")
    out, mismatches = [], []
    for f in schema.fields:
        if isinstance(f.dataType, StringType):
            out.append(raw[f.name].alias(f.name))
            continue
        typed = raw[f.name].try_cast(f.dataType)
        out.append(typed.alias(f.name))
        mismatches.append((f.name, F.when(raw[f.name].isNotNull() & typed.isNull(), raw[f.name])))
    extras = [(c, raw[c]) for c in columns if c not in schema.fieldNames()] if not ignore_unknown else []
    corrupt = F.size("_f") != len(columns)
    select = [*out, *METADATA]
    if rescue:
        entries = mismatches + extras
        flag = corrupt
        for _, value in entries:
            flag = flag | value.isNotNull()
        found = (F.to_json(F.map_filter(F.map_from_arrays(F.array(*[F.lit(n) for n, _ in entries]),
                                                          F.array(*[v.cast("string") for _, v in entries])),
                                        lambda k, v: v.isNotNull()))
                 if entries else F.lit(None).cast("string"))
        rescued = (F.when(corrupt, F.to_json(F.struct(F.col("value").alias(CORRUPT))))
                   .when(flag, F.nullif(found, F.lit("{}"))))
        select.append(rescued.alias(RESCUED))
    return df.select(*select)


# --- Parquet -------------------------------------------------------------------------------

def parse_parquet(engine, files: list[FileEntry], file_columns: dict[str, list[str] | None], schema: StructType, *,
                  rescue: str | None, include_metadata: bool, ignore_unknown: bool) -> DataFrame:
    """Parquet files by name: declared columns cast to their type, unknown ones rescued. A file
    whose footer could not be read (`file_columns[path] is None`) lands as one corrupt record."""
    readable = [f for f in files if file_columns.get(f.path) is not None]
    spark = engine.spark
    frames = {f.path: spark.read.parquet(f.path) for f in readable}
    parsed = []
    for f in readable:
        present = file_columns[f.path]
        df = frames[f.path]
        out, entries = [], []
        for field in schema.fields:
            if field.name not in present:
                out.append(F.lit(None).cast(field.dataType).alias(field.name))
                continue
            raw = F.col(f"`{field.name}`")
            typed = raw.try_cast(field.dataType)
            out.append(typed.alias(field.name))
            entries.append((field.name, F.when(raw.isNotNull() & typed.isNull(), raw.cast("string"))))
        if not ignore_unknown:
            entries += [(c, F.col(f"`{c}`").cast("string")) for c in present if c not in schema.fieldNames()]
        select = [*out, *_aliased(_metadata(f))]
        if rescue:
            found = (F.to_json(F.map_filter(F.map_from_arrays(F.array(*[F.lit(n) for n, _ in entries]),
                                                              F.array(*[v for _, v in entries])),
                                            lambda k, v: v.isNotNull())) if entries else F.lit(None).cast("string"))
            select.append(F.nullif(found, F.lit("{}")).alias(RESCUED))
        parsed.append(df.select(*select))
    for f in files:
        if f.path not in frames:
            parsed.append(_unreadable(spark, f, schema, rescue))
    return _finish(_union(parsed), schema, rescue, include_metadata)


def _unreadable(spark, entry: FileEntry, schema: StructType, rescue: str | None) -> DataFrame:
    """A file the engine cannot read, kept as one rescued record rather than lost."""
    import json
    row = spark.range(1).select(*[F.lit(None).cast(f.dataType).alias(f.name) for f in schema.fields],
                                *_aliased(_metadata(entry)))
    if rescue:
        row = row.withColumn(RESCUED, F.lit(json.dumps({CORRUPT: f"unreadable file: {entry.path}"})))
    return row
