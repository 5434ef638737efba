"""A flow's checkpoint: batches planned ahead of processing (offsets) and batches committed.

offsets/N.json is written before batch N touches any table; commits/N.json after every table
of the batch has landed. A batch planned but not committed is replayed with the same plan.
The generation id changes on a full refresh, so Delta application transactions of the old
generation cannot make the new one skip writes. The folder may be local or on an object store
(assay.fs): each file is written whole, never half.
"""
from __future__ import annotations

import uuid
from typing import Callable

from .. import fs
from ..atomic import read_json, write_json_atomic
from ..delta.commit import no_fence


class Checkpoint:
    def __init__(self, folder, fence: Callable[[], None] = no_fence):
        self.folder = fs.as_path(folder)
        self.fence = fence              # the pipeline lock's check: a run that lost it records nothing

    @property
    def generation(self) -> str:
        marker = self.folder / "generation"
        try:
            return fs.read_bytes(marker).decode().strip()
        except FileNotFoundError:
            fs.write_bytes(marker, uuid.uuid4().hex[:12].encode())
            return fs.read_bytes(marker).decode().strip()

    def _latest(self, kind: str) -> int | None:
        ids = [int(p.stem) for p in fs.list_dir(self.folder / kind) if p.suffix == ".json" and p.stem.isdigit()]
        return max(ids) if ids else None

    def last_planned(self) -> tuple[int, dict] | None:
        n = self._latest("offsets")
        return None if n is None else (n, read_json(self.folder / "offsets" / f"{n}.json"))

    def last_committed(self) -> tuple[int, dict] | None:
        n = self._latest("commits")
        return None if n is None else (n, read_json(self.folder / "commits" / f"{n}.json"))

    def write_plan(self, batch: int, data: dict) -> None:
        self.fence()
        write_json_atomic(self.folder / "offsets" / f"{batch}.json", data)

    def write_commit(self, batch: int, data: dict) -> None:
        self.fence()
        write_json_atomic(self.folder / "commits" / f"{batch}.json", data)

    def reset(self) -> None:
        fs.delete_tree(self.folder)
