"""Where a file is: a local path or an object-store URI, parsed and joined without any I/O.

`s3://bucket/prefix` (also `s3a://`), `abfss://container@account.dfs.core.windows.net/path`,
`az://container/path` (`azure://`, `abfs://`) or `gs://bucket/prefix`; anything else is a local path.
"""
from __future__ import annotations

import os
import posixpath
from pathlib import Path, PurePosixPath

from ..errors import ConfigError

S3_SCHEMES = ("s3", "s3a")
AZURE_SCHEMES = ("az", "azure", "abfs", "abfss", "adl")
GCS_SCHEMES = ("gs",)
SCHEMES = S3_SCHEMES + AZURE_SCHEMES + GCS_SCHEMES


def is_uri(text: str) -> bool:
    scheme, sep, _ = str(text).partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


class Location:
    """A local path or an object-store URI: parsing, joining and naming, no I/O (StoragePath adds it)."""

    __slots__ = ("scheme", "authority", "key", "local")

    def __init__(self, location: str | os.PathLike | "Location"):
        if isinstance(location, Location):
            self.scheme, self.authority, self.key, self.local = (location.scheme, location.authority,
                                                                 location.key, location.local)
            return
        text = os.fspath(location) if not isinstance(location, str) else location
        if text.startswith("file://"):
            text = text[len("file://"):]
        scheme, sep, rest = text.partition("://")
        if sep and scheme.lower() in SCHEMES:
            authority, _, key = rest.partition("/")
            if not authority:
                raise ConfigError(f"{text}: an object-store location needs a bucket or container")
            self.scheme, self.authority = scheme.lower(), authority
            self.key = _normalize_key(key)
            self.local = None
        elif sep and "/" not in scheme:
            raise ConfigError(f"{text}: unknown storage scheme '{scheme}://' "
                              f"(known: {', '.join(s + '://' for s in SCHEMES)}, or a local path)")
        else:
            self.scheme, self.authority, self.key = "", "", ""
            self.local = os.path.abspath(os.path.expanduser(text))

    # identity and pure path operations

    @property
    def is_local(self) -> bool:
        return self.local is not None

    @property
    def root_uri(self) -> str:
        return f"{self.scheme}://{self.authority}/"

    def __str__(self) -> str:
        if self.local is not None:
            return self.local
        return self.root_uri + self.key if self.key else self.root_uri.rstrip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __fspath__(self) -> str:
        if self.local is None:
            raise TypeError(f"{self} is an object-store location: use assay.fs, not local file functions")
        return self.local

    def __eq__(self, other) -> bool:
        if isinstance(other, Location):
            return str(self) == str(other)
        if isinstance(other, (str, os.PathLike)):
            try:
                return str(self) == str(Location(other))
            except (ConfigError, TypeError):
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other) -> bool:
        return str(self) < str(other)

    def _with(self, key_or_path: str) -> "Location":
        clone = object.__new__(type(self))
        clone.scheme, clone.authority = self.scheme, self.authority
        if self.local is not None:
            clone.key, clone.local = "", os.path.normpath(key_or_path)
        else:
            clone.key, clone.local = _normalize_key(key_or_path), None
        return clone

    def __truediv__(self, other) -> "Location":
        other = os.fspath(other) if not isinstance(other, str) else other
        if self.local is not None:
            return self._with(os.path.join(self.local, other))
        if is_uri(other):
            return type(self)(other)
        return self._with(posixpath.join(self.key, other) if self.key else other)

    def joinpath(self, *parts) -> "Location":
        result = self
        for part in parts:
            result = result / part
        return result

    @property
    def name(self) -> str:
        return os.path.basename(self.local) if self.local is not None else posixpath.basename(self.key)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> "Location":
        if self.local is not None:
            return self._with(os.path.dirname(self.local))
        return self._with(posixpath.dirname(self.key))

    @property
    def parts(self) -> tuple[str, ...]:
        if self.local is not None:
            return Path(self.local).parts
        return (self.root_uri, *[p for p in self.key.split("/") if p])

    def with_name(self, name: str) -> "Location":
        return self.parent / name

    def with_suffix(self, suffix: str) -> "Location":
        return self.with_name(self.stem + suffix)

    def resolve(self) -> "Location":
        return self._with(os.path.realpath(self.local)) if self.local is not None else self

    def absolute(self) -> "Location":
        return self

    def is_absolute(self) -> bool:
        return True

    def as_posix(self) -> str:
        return str(self)

    def relative_to(self, other) -> PurePosixPath:
        base = Location(other)
        if not self.is_relative_to(base):
            raise ValueError(f"{self} is not under {base}")
        if self.local is not None:
            return PurePosixPath(Path(self.local).relative_to(base.local).as_posix())
        return PurePosixPath(self.key[len(base.key):].lstrip("/") or ".")

    def is_relative_to(self, other) -> bool:
        base = Location(other)
        if self.local is not None or base.local is not None:
            return (self.local is not None and base.local is not None
                    and Path(self.local).is_relative_to(base.local))
        if (self.scheme, self.authority) != (base.scheme, base.authority):
            return False
        return not base.key or self.key == base.key or self.key.startswith(base.key + "/")


def as_location(location) -> Location:
    return location if isinstance(location, Location) else Location(location)


def _normalize_key(key: str) -> str:
    parts: list[str] = []
    for part in key.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)
