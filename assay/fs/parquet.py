"""Parquet files read in part or whole, locally or on an object store: footers (no data pages
read: pyarrow asks for byte ranges), schemas, and the small files Assay keeps (checkpoint plans,
a few keys), written whole and atomically."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .location import as_location
from .objects import open_input, read_bytes, write_bytes


def parquet_metadata(location):
    """A Parquet file's footer (no data pages are read)."""
    import pyarrow.parquet as pq
    path = as_location(location)
    if path.is_local:
        return pq.read_metadata(path.local)
    with open_input(path) as handle:
        return pq.read_metadata(handle)


def parquet_metadata_many(locations, threads: int = 16) -> list:
    paths = [as_location(p) for p in locations]
    if all(p.is_local for p in paths) or len(paths) < 4:
        return [parquet_metadata(p) for p in paths]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(parquet_metadata, paths))


def parquet_schema(location):
    import pyarrow.parquet as pq
    path = as_location(location)
    if path.is_local:
        return pq.read_schema(path.local)
    with open_input(path) as handle:
        return pq.read_schema(handle)


def read_parquet(location, columns=None):
    """A small Parquet file whole (checkpoint plans, a few keys)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = as_location(location)
    if path.is_local:
        return pq.read_table(path.local, columns=columns)
    return pq.read_table(pa.BufferReader(read_bytes(path)), columns=columns)


def read_parquet_many(locations, columns=None, threads: int = 16) -> list:
    """Several small Parquet files whole (object stores: in parallel)."""
    paths = [as_location(p) for p in locations]
    if all(p.is_local for p in paths) or len(paths) < 4:
        return [read_parquet(p, columns) for p in paths]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda p: read_parquet(p, columns), paths))


def write_parquet(location, table) -> None:
    """A small Parquet file written whole and atomically (a checkpoint's plan part)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_bytes(location, sink.getvalue().to_pybytes())
