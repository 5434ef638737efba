"""The process's storage options (assay.yml `storage_options`), and the object-store clients made
from them: one per bucket or container, made again when the options change."""
from __future__ import annotations

import os
import threading

from ..errors import ConfigError
from .location import AZURE_SCHEMES, GCS_SCHEMES, S3_SCHEMES, SCHEMES, Location, as_location

# Keys that apply to every store (object_store's client options); the others go by prefix.
_CLIENT_KEYS = {"allow_http", "allow_invalid_certificates", "timeout", "connect_timeout", "proxy_url",
                "pool_idle_timeout", "http2_only", "user_agent"}
_PREFIX = {"s3": ("aws_",), "azure": ("azure_",), "gcs": ("google_",)}

_options: dict[str, str] = {}
_stores: dict[str, object] = {}
_lock = threading.Lock()


class StorageError(OSError):
    """An object-store operation failed (the message names the location)."""


def short_error(exc: Exception) -> str:
    """The first line of an object-store error (obstore appends a long debug dump)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def configure(options: dict[str, str] | None) -> None:
    """The process's storage options (assay.yml `storage_options`, object_store's key names, case
    insensitive). Missing keys fall back to the standard environment variables (AWS_*, AZURE_*,
    GOOGLE_*), as delta-rs and the engine read them."""
    global _options
    normalized = {str(k).lower(): str(v) for k, v in (options or {}).items()}
    with _lock:
        if normalized != _options:
            _options = normalized
            _stores.clear()


def options() -> dict[str, str]:
    return dict(_options)


def family(scheme: str) -> str:
    if scheme in S3_SCHEMES:
        return "s3"
    if scheme in AZURE_SCHEMES:
        return "azure"
    if scheme in GCS_SCHEMES:
        return "gcs"
    raise ConfigError(f"unknown storage scheme '{scheme}://' (known: {', '.join(s + '://' for s in SCHEMES)})")


def options_for(kind: str) -> dict[str, str]:
    """The storage options that apply to one store family (s3, azure, gcs)."""
    prefixes = _PREFIX[kind]
    return {k: v for k, v in _options.items() if k.startswith(prefixes) or k in _CLIENT_KEYS}


def delta_options(location) -> dict[str, str] | None:
    """`storage_options` for delta-rs on `location` (None for a local path).

    On S3 a Delta commit is a put of the next log file; delta-rs refuses to commit there unless it
    can make that put exclusive. Assay's pipeline lock already makes each table single-writer, so
    without other settings commits use `AWS_S3_ALLOW_UNSAFE_RENAME` (unsafe only for concurrent
    writers); a store with conditional puts (`aws_conditional_put: etag`) or a DynamoDB locking
    provider (`aws_s3_locking_provider: dynamodb`) given in storage_options is used instead (docs/
    object-storage.md, Delta commits on S3: other writers to the same tables)."""
    path = as_location(location)
    if path.is_local:
        return None
    kind = family(path.scheme)
    out = options_for(kind)
    if kind == "s3" and not any(k in out for k in ("aws_s3_allow_unsafe_rename", "aws_s3_locking_provider",
                                                     "aws_conditional_put", "conditional_put")):
        if not os.environ.get("AWS_S3_LOCKING_PROVIDER") and not os.environ.get("AWS_S3_ALLOW_UNSAFE_RENAME"):
            out["aws_s3_allow_unsafe_rename"] = "true"
    return out


_SECRET_NAME = ("secret", "token", "_key", "password", "sas")


def option_or_env(*names: str) -> str | None:
    """The first of `names` set in storage_options, else in its standard environment variable (a
    credential read from the environment is registered as a secret, so that it is masked like
    ${env:...})."""
    for name in names:
        if _options.get(name):
            return _options[name]
        value = os.environ.get(name.upper())
        if value:
            if any(part in name for part in _SECRET_NAME):
                from .. import secrets
                secrets.register(name.upper(), value)
            return value
    return None


def store_for(path: Location):
    root = path.root_uri
    store = _stores.get(root)
    if store is None:
        from obstore.store import from_url
        kind = family(path.scheme)
        config = {k: v for k, v in options_for(kind).items() if k not in _CLIENT_KEYS and not _delta_only(k)}
        client = {k: v for k, v in _options.items() if k in _CLIENT_KEYS}
        url = root
        if path.scheme in ("s3a",):
            url = "s3://" + path.authority + "/"
        elif path.scheme == "az" or path.scheme == "azure":
            url = f"az://{path.authority}/"
        try:
            store = from_url(url, config=config or None, client_options=client or None)
        except Exception as exc:   # obstore reports bad configuration as generic errors
            raise ConfigError(f"cannot reach {root}: {short_error(exc)}") from None
        with _lock:
            _stores[root] = store
    return store


def _delta_only(key: str) -> bool:
    """Options delta-rs reads that object_store itself does not know."""
    return key in ("aws_s3_allow_unsafe_rename", "aws_s3_locking_provider", "delta_dynamo_table_name") or \
        key.endswith("_dynamodb")


def is_not_found(exc: Exception) -> bool:
    from obstore.exceptions import NotFoundError
    return isinstance(exc, (NotFoundError, FileNotFoundError))
