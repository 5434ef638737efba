"""Listing a landing folder: which files are there, in arrival order, and which are complete."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TEMP_SUFFIXES = (".tmp", "._COPYING_", ".crc", ".partial", ".inprogress")


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mtime_ns: int


def list_files(root: Path, pattern: str | None = None) -> list[FileEntry]:
    """Every file under `root` but hidden and temporary ones, in arrival order: modification
    time, then path (the order watermarks follow too)."""
    if not root.exists():
        return []
    entries = []
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as it:
            for item in it:
                name = item.name
                if name.startswith((".", "_")) or name.endswith(TEMP_SUFFIXES):
                    continue
                if item.is_dir(follow_symlinks=False):
                    stack.append(item.path)
                elif item.is_file():
                    if pattern and not Path(name).match(pattern):
                        continue
                    st = item.stat()
                    entries.append(FileEntry(item.path, st.st_size, st.st_mtime_ns))
    entries.sort(key=lambda e: (e.mtime_ns, e.path))
    return entries


def unchanged(entry: FileEntry) -> bool:
    """False while a file is still being written (its size or modification time moved)."""
    try:
        st = os.stat(entry.path)
    except FileNotFoundError:
        return False
    return st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns


def first_line(path: str) -> str | None:
    """The first non-blank line of a text file (a CSV header), without a UTF-8 BOM."""
    with open(path, "rb") as handle:
        for raw in handle:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if text != "":                      # the engine skips the same blank lines
                return text[1:] if text.startswith("\ufeff") else text
    return None
