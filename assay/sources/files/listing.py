"""Listing a landing folder: which files are there, in arrival order, and which are complete.

The folder is local or on an object store (assay.fs); the rules are the same on both: hidden and
temporary names are skipped (any `.x` or `_x` segment, the suffixes below), and files are ordered
by modification time, then path. On an object store an object is visible only once written whole,
and its last-modified time is the store's."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePosixPath

from ... import fs

TEMP_SUFFIXES = (".tmp", "._COPYING_", ".crc", ".partial", ".inprogress")


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mtime_ns: int


def _skipped(name: str) -> bool:
    return name.startswith((".", "_")) or name.endswith(TEMP_SUFFIXES)


def list_files(root, pattern: str | None = None) -> list[FileEntry]:
    """Every file under `root` but hidden and temporary ones, in arrival order: modification
    time, then path (the order watermarks follow too)."""
    root = fs.as_path(root)
    entries = []
    if root.is_local:
        if not os.path.exists(str(root)):
            return []
        stack = [str(root)]
        while stack:
            folder = stack.pop()
            with os.scandir(folder) as it:
                for item in it:
                    name = item.name
                    if _skipped(name):
                        continue
                    if item.is_dir(follow_symlinks=False):
                        stack.append(item.path)
                    elif item.is_file():
                        if pattern and not PurePosixPath(name).match(pattern):
                            continue
                        st = item.stat()
                        entries.append(FileEntry(item.path, st.st_size, st.st_mtime_ns))
    else:
        base = len(str(root)) + 1
        for info in fs.walk_files(root):
            relative = info.path[base:]
            if any(_skipped(segment) for segment in relative.split("/")):
                continue
            if pattern and not PurePosixPath(relative.rpartition("/")[2]).match(pattern):
                continue
            entries.append(FileEntry(info.path, info.size, info.mtime_ns))
    entries.sort(key=lambda e: (e.mtime_ns, e.path))
    return entries


def complete(entries: list[FileEntry]) -> list[bool]:
    """For each entry, whether its file is complete: locally, still the size and time it was listed
    with (a file being written waits for the next run); on an object store always, since an object
    becomes visible only once written whole (an HTTP request per object would make planning 100 000
    files cost minutes). A store where files grow in place (ADLS Gen2 appends) wants min_file_age."""
    if entries and not fs.as_path(entries[0].path).is_local:
        return [True] * len(entries)
    return still_there(entries)


def unchanged(entry: FileEntry) -> bool:
    """False while a file is still being written (its size or modification time moved)."""
    return still_there([entry])[0]


def still_there(entries: list[FileEntry]) -> list[bool]:
    """For each entry, whether the file is there with the size and time it was listed with
    (object stores: one request per file, in parallel)."""
    infos = fs.head_many([e.path for e in entries])
    return [info is not None and info.size == e.size and info.mtime_ns == e.mtime_ns
            for e, info in zip(entries, infos)]


def first_line(path: str) -> str | None:
    """The first non-blank line of a text file (a CSV header), without a UTF-8 BOM."""
    for raw in fs.iter_lines(path):
        text = raw.decode("utf-8", "replace")
        if text != "":                      # the engine skips the same blank lines
            return text[1:] if text.startswith("\ufeff") else text
    return None
