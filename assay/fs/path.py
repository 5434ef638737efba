"""StoragePath: a local path or an object-store URI with the part of pathlib's API the runtime uses
(`/`, `name`, `exists()`, `iterdir()`, `rglob()`, `read_text()`, ...), so code reads the same for both."""
from __future__ import annotations

import fnmatch
import io
import posixpath
from pathlib import Path
from typing import Iterator

from .listing import child_names, walk_files
from .location import Location
from .objects import delete, exists, head, is_dir, is_file, move, open_input, read_bytes, write_bytes


class StoragePath(Location):
    """A local path or an object-store URI, with the part of pathlib's API the runtime uses."""

    __slots__ = ()

    # I/O, through this package

    def exists(self) -> bool:
        return exists(self)

    def is_dir(self) -> bool:
        return is_dir(self)

    def is_file(self) -> bool:
        return is_file(self)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        if self.local is not None:
            Path(self.local).mkdir(parents=parents, exist_ok=exist_ok)

    def iterdir(self) -> Iterator["StoragePath"]:
        return iter(list_dir(self))

    def glob(self, pattern: str) -> Iterator["StoragePath"]:
        if "**" in pattern:
            return self.rglob(pattern.split("**/", 1)[-1])
        return iter([p for p in list_dir(self) if fnmatch.fnmatchcase(p.name, pattern)])

    def rglob(self, pattern: str) -> Iterator["StoragePath"]:
        return iter([self._with(f.path) if self.local is not None else StoragePath(f.path)
                     for f in walk_files(self) if fnmatch.fnmatchcase(posixpath.basename(f.path), pattern)])

    def read_bytes(self) -> bytes:
        return read_bytes(self)

    def read_text(self, encoding: str = "utf-8") -> str:
        return read_bytes(self).decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        write_bytes(self, data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        write_bytes(self, text.encode(encoding))

    def touch(self, exist_ok: bool = True) -> None:
        if self.local is not None:
            Path(self.local).parent.mkdir(parents=True, exist_ok=True)
            Path(self.local).touch(exist_ok=exist_ok)
        elif not (exist_ok and exists(self)):
            write_bytes(self, b"")

    def unlink(self, missing_ok: bool = False) -> None:
        delete(self, missing_ok=missing_ok)

    def replace(self, target) -> "StoragePath":
        move(self, target)
        return StoragePath(target)

    rename = replace

    def stat(self):
        info = head(self)
        if info is None:
            raise FileNotFoundError(str(self))
        return info

    def open(self, mode: str = "rb", encoding: str | None = None):
        if mode not in ("rb", "r"):
            raise ValueError("StoragePath.open reads only; write with write_bytes/write_text")
        handle = open_input(self)
        return handle if mode == "rb" else io.TextIOWrapper(handle, encoding=encoding or "utf-8")


def as_path(location) -> StoragePath:
    return location if isinstance(location, StoragePath) else StoragePath(location)


def list_dir(location) -> list[StoragePath]:
    """The immediate children of a folder (files and folders), sorted by name."""
    path = as_path(location)
    return sorted(path._with(name) for name in child_names(path))
