"""Rows through COPY, both ways, as CSV written and read by Arrow's C++ code: a batch's Parquet
files streamed into `COPY … FROM STDIN` in bounded record batches, and a whole table read back
with `COPY (SELECT …) TO STDOUT` for verification."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from psycopg import sql

from ...errors import FlowError
from . import catalog
from .config import check_name
from .connection import Database
from .typemap import arrow_type

_CSV = pa_csv.WriteOptions(include_header=False, quoting_style="needed")   # strings always quoted: "" ≠ NULL


def file_path(item: Any) -> tuple[str, dict]:
    """A file of a Delta batch: a path, or an object with `.path` and `.partition_values`."""
    if isinstance(item, (str, Path)):
        return str(item), {}
    path = getattr(item, "path", None)
    if path is None:
        raise FlowError(f"a batch file must be a path or have a .path, got {item!r}")
    return str(path), dict(getattr(item, "partition_values", None) or {})


def open_parquet(path: str) -> pq.ParquetFile:
    if "://" in path:
        import pyarrow.fs as pafs
        filesystem, inner = pafs.FileSystem.from_uri(path)
        return pq.ParquetFile(filesystem.open_input_file(inner))
    return pq.ParquetFile(path)


def _csv_ready(array: pa.Array) -> pa.Array:
    """An array as Arrow's CSV writer formats it the way PostgreSQL reads it back."""
    t = array.type
    if pa.types.is_dictionary(t):
        return _csv_ready(array.dictionary_decode())
    if pa.types.is_timestamp(t) and t.tz:
        # the same UTC instants without the zone: formatted ~10x faster, and read as UTC by
        # PostgreSQL (every transaction sets TimeZone to UTC)
        return array.cast(pa.timestamp(t.unit))
    if getattr(pa.types, "is_string_view", lambda _: False)(t):
        return array.cast(pa.string())
    if pa.types.is_float16(t):
        return array.cast(pa.float32())
    return array


def stream_csv(copy, files: Iterable[Any], columns: list[str], table: str, batch_rows: int) -> int:
    """Write every row of `files` (only `columns`, in that order) into an open COPY; returns the count.

    Bounded memory: one Arrow record batch (`batch_rows` rows) at a time, written as CSV
    by Arrow's C++ writer. Columns a file lacks are NULL; a partition value of a Delta file
    becomes a constant column (PostgreSQL parses its text into the column's type).
    """
    wanted = set(columns)
    rows = 0
    for item in files:
        path, partition_values = file_path(item)
        parquet = open_parquet(path)
        present = set(parquet.schema_arrow.names)
        extra = sorted((present | set(partition_values)) - wanted)
        if extra:
            raise FlowError(f"{path} has column(s) {', '.join(extra)} that {table} lacks in PostgreSQL: "
                            "call ensure_table with the Delta schema first")
        read = [c for c in columns if c in present]
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=read, use_threads=False):
            n = batch.num_rows
            if n == 0:
                continue
            arrays = []
            for c in columns:
                if c in present:
                    arrays.append(_csv_ready(batch.column(c)))
                elif partition_values.get(c) not in (None, ""):    # Delta: "" and null are both null
                    arrays.append(pa.array([str(partition_values[c])] * n, pa.string()))
                else:
                    arrays.append(pa.nulls(n, pa.string()))
            out = pa.BufferOutputStream()
            pa_csv.write_csv(pa.RecordBatch.from_arrays(arrays, names=columns), out, _CSV)
            copy.write(out.getvalue())
            rows += n
    return rows


def read_table(db: Database, name: str, order_by: Iterable[str] = ()) -> pa.Table:
    """The rows of `<schema>.<name>` as an Arrow table typed by the type map (typemap.py) (verification:
    compare it with the Delta table or a truth manifest). One `COPY (SELECT …) TO STDOUT`, read by
    Arrow's CSV reader; the whole table is held in memory."""
    schema, table, qualified = db.qualified(name)
    order = [check_name(c, f"order_by column of {qualified}", FlowError) for c in order_by]
    with db.failures("read", qualified):
        conn = db.connection()
        with conn.transaction():
            conn.execute("SELECT set_config('TimeZone', 'UTC', true)")
            columns = catalog.columns(conn, schema, table)
            if columns is None:
                raise FlowError(f"{qualified} does not exist in PostgreSQL")
            types = {c: arrow_type(t, c, qualified) for c, t in columns}
            selected = [sql.SQL("({} AT TIME ZONE 'UTC')").format(sql.Identifier(c))   # naive UTC text
                        if t == "timestamp with time zone" else sql.Identifier(c) for c, t in columns]
            query = sql.SQL("COPY (SELECT {} FROM {}.{}{}) TO STDOUT (FORMAT csv)").format(
                sql.SQL(", ").join(selected), sql.Identifier(schema), sql.Identifier(table),
                sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(map(sql.Identifier, order))) if order else sql.SQL(""))
            buffer = pa.BufferOutputStream()
            with conn.cursor() as cur, cur.copy(query) as copy:
                for chunk in copy:
                    buffer.write(chunk)
    names = [c for c, _ in columns]
    parse_types = {c: (pa.timestamp("us") if pa.types.is_timestamp(t) else t) for c, t in types.items()}
    data = buffer.getvalue()
    if data.size == 0:
        return pa.table({c: pa.array([], t) for c, t in types.items()})
    read = pa_csv.read_csv(
        pa.BufferReader(data), read_options=pa_csv.ReadOptions(column_names=names),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(column_types=parse_types, true_values=["t"], false_values=["f"],
                                              null_values=[""], strings_can_be_null=True,
                                              quoted_strings_can_be_null=False))
    return pa.table({c: read.column(c).cast(types[c]) for c in names})
