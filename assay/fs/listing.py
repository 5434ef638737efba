"""What is in a folder: every file under it (walked locally, listed in parallel on an object
store), its immediate children, and removing it with everything under it.

Object stores have no folders: a "folder" exists while an object exists under its prefix, and
removing a folder deletes every object under it.
"""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from .config import StorageError, is_not_found, short_error, store_for
from .location import Location, as_location
from .objects import FileInfo, object_info

# Sub-prefixes listed at once: measured on SeaweedFS here, 2-4 beat 16 (the server is the bottleneck;
# a cloud store scales further, ASSAY_LIST_THREADS raises it).
LIST_THREADS = int(os.environ.get("ASSAY_LIST_THREADS", "4"))


def walk_files(location) -> Iterator[FileInfo]:
    """Every file under a folder, recursively, in no particular order (sizes and times included)."""
    path = as_location(location)
    if path.is_local:
        if not os.path.isdir(path.local):
            return
        stack = [path.local]
        while stack:
            folder = stack.pop()
            try:
                it = os.scandir(folder)
            except FileNotFoundError:
                continue
            with it:
                for item in it:
                    if item.is_dir(follow_symlinks=False):
                        stack.append(item.path)
                    elif item.is_file():
                        st = item.stat()
                        yield FileInfo(item.path, st.st_size, st.st_mtime_ns)
        return
    yield from _list_remote(path)


def _list_remote(path: Location) -> Iterator[FileInfo]:
    """An object-store listing. The first level is listed with a delimiter and each sub-prefix (a
    landing folder's date or source folders) is listed on its own thread: a store answers a page of
    1 000 keys per request, so a flat listing of 100 000 objects is 100 requests in a row."""
    import obstore
    prefix = path.key + "/" if path.key else None
    store = store_for(path)
    try:
        top = obstore.list_with_delimiter(store, prefix=prefix)
    except Exception as exc:
        if is_not_found(exc):
            return
        raise StorageError(f"listing {path}: {short_error(exc)}") from None
    base = path.root_uri
    for meta in top["objects"]:
        if not meta["path"].endswith("/"):
            yield object_info(base + meta["path"], meta)
    prefixes = top["common_prefixes"]
    if len(prefixes) <= 1:
        for sub in prefixes:
            yield from _list_prefix(store, base, sub)
        return
    with ThreadPoolExecutor(min(LIST_THREADS, len(prefixes))) as pool:
        for found in pool.map(lambda sub: list(_list_prefix(store, base, sub)), prefixes):
            yield from found


def _list_prefix(store, base: str, prefix: str) -> Iterator[FileInfo]:
    """Every object under a prefix, as Arrow batches (cheap to turn into FileInfo)."""
    import obstore
    import pyarrow as pa
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    try:
        stream = obstore.list(store, prefix=prefix, chunk_size=10_000, return_arrow=True)
        for batch in stream:
            rb = pa.record_batch(batch)
            keys = rb.column("path").to_pylist()
            sizes = rb.column("size").to_pylist()
            times = rb.column("last_modified").cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_pylist()
            etags = rb.column("e_tag").to_pylist() if "e_tag" in rb.schema.names else [None] * len(keys)
            for key, size, modified, etag in zip(keys, sizes, times, etags):
                if key.endswith("/"):
                    continue
                yield FileInfo(base + key, int(size), int(modified), etag)
    except Exception as exc:
        if is_not_found(exc):
            return
        raise StorageError(f"listing {base}{prefix}: {short_error(exc)}") from None


def child_names(path: Location) -> list[str]:
    """The immediate children of a folder (files and folders), unsorted: local paths, or the
    object-store keys."""
    if path.is_local:
        if not os.path.isdir(path.local):
            return []
        return [os.path.join(path.local, n) for n in os.listdir(path.local)]
    import obstore
    prefix = path.key + "/" if path.key else None
    try:
        result = obstore.list_with_delimiter(store_for(path), prefix=prefix)
    except Exception as exc:
        if is_not_found(exc):
            return []
        raise StorageError(f"listing {path}: {short_error(exc)}") from None
    names = [p.rstrip("/") for p in result["common_prefixes"]]
    return names + [m["path"] for m in result["objects"] if not m["path"].endswith("/")]


def delete_tree(location) -> None:
    """Remove a folder and everything under it (no error when it is not there)."""
    path = as_location(location)
    if path.is_local:
        shutil.rmtree(path.local, ignore_errors=True)
        return
    if not path.key:
        raise ValueError(f"refusing to delete a whole bucket or container: {path}")
    import obstore
    keys = [f.path[len(path.root_uri):] for f in _list_remote(path)]
    store = store_for(path)
    for start in range(0, len(keys), 1000):
        try:
            obstore.delete(store, keys[start:start + 1000])
        except Exception as exc:
            if not is_not_found(exc):
                raise StorageError(f"deleting under {path}: {short_error(exc)}") from None
