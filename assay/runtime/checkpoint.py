"""A flow's checkpoint: batches planned ahead of processing (offsets) and batches committed.

offsets/N.json is written before batch N touches any table; commits/N.json after every table
of the batch has landed. A batch planned but not committed is replayed with the same plan.
The generation id changes on a full refresh, so Delta application transactions of the old
generation cannot make the new one skip writes.
"""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from ..atomic import read_json, write_json_atomic


class Checkpoint:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @property
    def generation(self) -> str:
        marker = self.folder / "generation"
        if not marker.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / ".generation.tmp"
            tmp.write_text(uuid.uuid4().hex[:12])
            tmp.replace(marker)
        return marker.read_text().strip()

    def _latest(self, kind: str) -> int | None:
        folder = self.folder / kind
        if not folder.exists():
            return None
        ids = [int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()]
        return max(ids) if ids else None

    def last_planned(self) -> tuple[int, dict] | None:
        n = self._latest("offsets")
        return None if n is None else (n, read_json(self.folder / "offsets" / f"{n}.json"))

    def last_committed(self) -> tuple[int, dict] | None:
        n = self._latest("commits")
        return None if n is None else (n, read_json(self.folder / "commits" / f"{n}.json"))

    def write_plan(self, batch: int, data: dict) -> None:
        write_json_atomic(self.folder / "offsets" / f"{batch}.json", data)

    def write_commit(self, batch: int, data: dict) -> None:
        write_json_atomic(self.folder / "commits" / f"{batch}.json", data)

    def reset(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
