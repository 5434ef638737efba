"""Where generated files go: a drop directory on disk, or nowhere (size estimation).

Paths are landing-relative. File names carry the drop and file numbers zero-padded so
that sorting paths gives arrival order across all drops.
"""
from __future__ import annotations

import os
from pathlib import Path


def part_name(slot: int, files_per_drop: int, ext: str) -> str:
    drop, file = divmod(slot, files_per_drop)
    return f"part-{drop:05d}-{file:05d}.{ext}"


def slot_drop(slot: int, files_per_drop: int) -> int:
    return slot // files_per_drop


class Sink:
    """Collects the file list per drop; subclasses decide what happens to the bytes."""

    def __init__(self, drops: int):
        self.files: dict[int, list[str]] = {k: [] for k in range(drops)}
        self.event_bytes = 0
        self.event_lines = 0

    def write(self, drop: int, relpath: str, data, *, events: int | None = None) -> None:
        """data: bytes-like, or an iterable of them written back to back (rendered lazily, so
        a big file never has to exist in memory at once).
        events: number of event records in the file (None for reference data)."""
        parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
        self.files[drop].append(relpath)
        size = self._store(drop, relpath, parts)
        if events is not None:
            self.event_bytes += size
            self.event_lines += events

    def _store(self, drop: int, relpath: str, parts) -> int:
        return sum(len(p) for p in parts)

    def listing(self) -> dict[str, list[str]]:
        return {str(k): sorted(v) for k, v in self.files.items()}


class CountingSink(Sink):
    """Keeps nothing; used to measure bytes per event before a sized run."""


class DirSink(Sink):
    def __init__(self, root: Path, drops: int):
        super().__init__(drops)
        self.root = Path(root)

    def _store(self, drop: int, relpath: str, parts) -> int:
        path = self.root / "drops" / str(drop) / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with open(path, "wb") as f:
            for p in parts:
                size += f.write(p)
        return size

    def path(self, drop: int, relpath: str) -> str:
        return os.fspath(self.root / "drops" / str(drop) / relpath)
