"""One file at a time, the same calls for a local folder and an object store: its size and time,
reading it, writing it whole, deleting or moving it.

Locally these are plain `os` calls; on an object store, obstore's. Objects are written whole (a put is
atomic), so the write-aside-and-rename of local files is not needed there.
"""
from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

from .config import StorageError, is_not_found, short_error, store_for
from .location import Location, as_location


@dataclass(frozen=True)
class FileInfo:
    """A file (object) found by a listing: its full location, size and modification time."""
    path: str
    size: int
    mtime_ns: int
    etag: str | None = None

    @property
    def st_size(self) -> int:
        return self.size

    @property
    def st_mtime_ns(self) -> int:
        return self.mtime_ns

    @property
    def st_mtime(self) -> float:
        return self.mtime_ns / 1e9


def object_info(location: str, meta) -> FileInfo:
    """An object's FileInfo from its metadata as obstore reports it."""
    return FileInfo(location, int(meta["size"]), _ns(meta["last_modified"]), meta.get("e_tag"))


def _ns(value) -> int:
    """A last-modified instant (datetime) as nanoseconds since the epoch."""
    seconds = int(value.timestamp())
    return seconds * 1_000_000_000 + value.microsecond * 1000


def head(location) -> FileInfo | None:
    path = as_location(location)
    if path.is_local:
        try:
            st = os.stat(path.local)
        except FileNotFoundError:
            return None
        return FileInfo(path.local, st.st_size, st.st_mtime_ns)
    import obstore
    try:
        meta = obstore.head(store_for(path), path.key)
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise StorageError(f"{path}: {short_error(exc)}") from None
    return object_info(str(path), meta)


def head_many(locations, threads: int = 16) -> list[FileInfo | None]:
    """`head` of many files (object stores: in parallel)."""
    paths = [as_location(p) for p in locations]
    if all(p.is_local for p in paths) or len(paths) < 4:
        return [head(p) for p in paths]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(head, paths))


def exists(location) -> bool:
    path = as_location(location)
    if path.is_local:
        return os.path.exists(path.local)
    return head(path) is not None or _any_under(path)


def _any_under(path: Location) -> bool:
    import obstore
    prefix = path.key + "/" if path.key else None
    try:
        stream = obstore.list(store_for(path), prefix=prefix, chunk_size=1)
        for chunk in stream:
            if chunk:
                return True
            break
    except Exception as exc:
        if is_not_found(exc):
            return False
        raise StorageError(f"{path}: {short_error(exc)}") from None
    return False


def is_dir(location) -> bool:
    path = as_location(location)
    return os.path.isdir(path.local) if path.is_local else _any_under(path)


def is_file(location) -> bool:
    path = as_location(location)
    return os.path.isfile(path.local) if path.is_local else head(path) is not None


def read_bytes(location) -> bytes:
    path = as_location(location)
    if path.is_local:
        with open(path.local, "rb") as handle:
            return handle.read()
    import obstore
    try:
        return bytes(obstore.get(store_for(path), path.key).bytes())
    except Exception as exc:
        if is_not_found(exc):
            raise FileNotFoundError(str(path)) from None
        raise StorageError(f"{path}: {short_error(exc)}") from None


def read_range(location, start: int, length: int) -> bytes:
    path = as_location(location)
    if path.is_local:
        with open(path.local, "rb") as handle:
            handle.seek(start)
            return handle.read(length)
    import obstore
    return bytes(obstore.get_range(store_for(path), path.key, start=start, length=length))


def write_bytes(location, data: bytes) -> None:
    """Write a whole file that readers never see half-written: locally aside, fsync, rename; on an
    object store one put (atomic by the store's semantics)."""
    path = as_location(location)
    if path.is_local:
        os.makedirs(os.path.dirname(path.local), exist_ok=True)
        tmp = os.path.join(os.path.dirname(path.local), f".{os.path.basename(path.local)}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path.local)
        fd = os.open(os.path.dirname(path.local), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    import obstore
    try:
        obstore.put(store_for(path), path.key, data)
    except Exception as exc:
        raise StorageError(f"{path}: {short_error(exc)}") from None


def write_json(location, data) -> None:
    write_bytes(location, json.dumps(data, default=str).encode())


def read_json(location):
    return json.loads(read_bytes(location))


def delete(location, missing_ok: bool = True) -> None:
    path = as_location(location)
    if path.is_local:
        try:
            os.unlink(path.local)
        except FileNotFoundError:
            if not missing_ok:
                raise
        return
    import obstore
    try:
        obstore.delete(store_for(path), path.key)
    except Exception as exc:
        if is_not_found(exc):
            if not missing_ok:
                raise FileNotFoundError(str(path)) from None
            return
        raise StorageError(f"{path}: {short_error(exc)}") from None


def move(source, destination) -> None:
    """Move a file (locally an atomic rename; on an object store a copy then a delete, within one
    bucket or container)."""
    src, dst = as_location(source), as_location(destination)
    if src.is_local and dst.is_local:
        os.makedirs(os.path.dirname(dst.local), exist_ok=True)
        os.replace(src.local, dst.local)
        return
    if src.root_uri != dst.root_uri:
        raise StorageError(f"cannot move {src} to {dst}: not in the same bucket or container")
    import obstore
    try:
        obstore.rename(store_for(src), src.key, dst.key, overwrite=True)
    except Exception as exc:
        raise StorageError(f"moving {src} to {dst}: {short_error(exc)}") from None


def makedirs(location) -> None:
    path = as_location(location)
    if path.is_local:
        os.makedirs(path.local, exist_ok=True)


def iter_lines(location, block: int = 64 * 1024) -> Iterator[bytes]:
    """A file's lines (without their line ends), read in blocks: the first lines of a big file on an
    object store cost a few ranged reads, not the whole file."""
    with open_input(location) as handle:
        pending = b""
        while True:
            chunk = handle.read(block)
            if not chunk:
                if pending:
                    yield pending.rstrip(b"\r")
                return
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                yield raw.rstrip(b"\r")


def open_input(location):
    """A binary, seekable file object for reading (pyarrow reads Parquet footers through it with
    ranged requests on an object store)."""
    path = as_location(location)
    if path.is_local:
        return open(path.local, "rb")
    import obstore
    try:
        return _Reader(obstore.open_reader(store_for(path), path.key, buffer_size=256 * 1024))
    except Exception as exc:
        if is_not_found(exc):
            raise FileNotFoundError(str(path)) from None
        raise StorageError(f"{path}: {short_error(exc)}") from None


class _Reader(io.RawIOBase):
    """obstore's ranged reader as a standard binary file (pyarrow and `with` take it)."""

    def __init__(self, reader):
        super().__init__()
        self._reader = reader

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return bytes(self._reader.read(size) if size is not None and size >= 0 else self._reader.read())

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._reader.seek(offset, whence)

    def tell(self) -> int:
        return self._reader.tell()

    def size(self) -> int:
        return self._reader.size

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()
