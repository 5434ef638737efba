"""A flow's checkpoint: batches planned ahead of processing (offsets) and batches committed.

offsets/N.json is written before batch N touches any table; commits/N.json after every table
of the batch has landed. A batch planned but not committed is replayed with the same plan.
The generation id changes on a full refresh, so Delta application transactions of the old
generation cannot make the new one skip writes. The folder may be local or on an object store
(assay.fs): each file is written whole, never half.

Only the newest KEEP records of each kind are kept: a run reads nothing but the last planned and
the last committed batch (a replay needs the plan of the batch a crash interrupted and the record
of the batch before it), so older records are history nobody reads, and each listing to find the
latest would otherwise grow with every batch ever run. Recording batch N deletes the records of
batch N - KEEP; `prune()` removes any older ones left behind (a crash between the two, or a
folder written before records were pruned).
"""
from __future__ import annotations

import uuid
from typing import Callable

from .. import fs
from ..atomic import read_json, write_json_atomic
from ..delta.commit import no_fence


KEEP = 10                               # records of each kind kept (offsets/, commits/); at least 2
KINDS = ("offsets", "commits")


def checkpoint_dir(spec, flow_name: str):
    """A flow's checkpoint folder, under the pipeline's system folder."""
    return spec.system_dir / "checkpoints" / flow_name


class Checkpoint:
    def __init__(self, folder, fence: Callable[[], None] = no_fence, keep: int | None = None):
        self.folder = fs.as_path(folder)
        self.fence = fence              # the pipeline lock's check: a run that lost it records nothing
        keep = KEEP if keep is None else keep       # 0: keep every record
        if keep == 1 or keep < 0:       # a replay reads the last plan and the commit before it
            raise ValueError("a checkpoint keeps at least 2 records of each kind (0: all)")
        self.keep = keep

    @property
    def generation(self) -> str:
        marker = self.folder / "generation"
        try:
            return fs.read_bytes(marker).decode().strip()
        except FileNotFoundError:
            fs.write_bytes(marker, uuid.uuid4().hex[:12].encode())
            return fs.read_bytes(marker).decode().strip()

    def _ids(self, kind: str) -> list[int]:
        return [int(p.stem) for p in fs.list_dir(self.folder / kind) if p.suffix == ".json" and p.stem.isdigit()]

    def _latest(self, kind: str) -> int | None:
        ids = self._ids(kind)
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
        if self.keep and batch >= self.keep:
            # The records of batch N - KEEP, after batch N's: two deletes, no listing. A full
            # refresh restarts the ids at 0 in an emptied folder, so this never reaches a newer one.
            for kind in KINDS:
                fs.delete(self.folder / kind / f"{batch - self.keep}.json")

    def prune(self) -> int:
        """Delete the records older than the newest `keep` of each kind (what a crash or an older
        version left behind); the newest planned and committed batches are always kept. Returns
        how many files were deleted."""
        if not self.keep:
            return 0
        newest = max((self._latest(kind) or -1) for kind in KINDS)
        below = newest - self.keep + 1            # the ids kept: below .. newest
        old = [(kind, n) for kind in KINDS for n in self._ids(kind) if n < below]
        if old:
            self.fence()
            for kind, n in old:
                fs.delete(self.folder / kind / f"{n}.json")
        return len(old)

    def reset(self) -> None:
        fs.delete_tree(self.folder)
