"""Conditional writes, what the pipeline lock is built on (runtime/lock.py): create an object only
if nothing is there, replace it only if it is still the version read. obstore has them on every
store (S3 If-None-Match / If-Match, Azure and GCS equivalents); locally, O_EXCL (the lock uses
flock for updates)."""
from __future__ import annotations

import os

from .config import StorageError, is_not_found, short_error, store_for
from .location import as_location
from .objects import read_bytes


class PreconditionFailed(Exception):
    """A conditional write lost: the object exists (create) or changed (update)."""


def put_if_absent(location, data: bytes) -> str | None:
    """Create the object only if nothing is there (S3 If-None-Match, Azure/GCS equivalents; a local
    file with O_EXCL). Returns the new ETag (None locally); raises PreconditionFailed if it exists."""
    path = as_location(location)
    if path.is_local:
        os.makedirs(os.path.dirname(path.local), exist_ok=True)
        try:
            fd = os.open(path.local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise PreconditionFailed(str(path)) from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return None
    import obstore
    from obstore.exceptions import AlreadyExistsError, PreconditionError
    try:
        return obstore.put(store_for(path), path.key, data, mode="create").get("e_tag")
    except (AlreadyExistsError, PreconditionError):
        raise PreconditionFailed(str(path)) from None
    except Exception as exc:
        raise StorageError(f"{path}: conditional create: {short_error(exc)}") from None


def put_if_match(location, data: bytes, etag: str) -> str | None:
    """Replace the object only if it is still the version `etag` (S3 If-Match, Azure/GCS
    equivalents). Returns the new ETag; raises PreconditionFailed if someone else changed it."""
    path = as_location(location)
    if path.is_local:
        raise ValueError("put_if_match is for object stores; local files are locked with flock")
    import obstore
    from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError
    try:
        return obstore.put(store_for(path), path.key, data, mode={"e_tag": etag}).get("e_tag")
    except (PreconditionError, AlreadyExistsError, NotFoundError):
        raise PreconditionFailed(str(path)) from None
    except Exception as exc:
        raise StorageError(f"{path}: conditional update: {short_error(exc)}") from None


def get_with_etag(location) -> tuple[bytes, str | None] | None:
    """The object's bytes and ETag, or None when it does not exist."""
    path = as_location(location)
    if path.is_local:
        try:
            return read_bytes(path), None
        except FileNotFoundError:
            return None
    import obstore
    try:
        result = obstore.get(store_for(path), path.key)
        return bytes(result.bytes()), result.meta.get("e_tag")
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise StorageError(f"{path}: {short_error(exc)}") from None
