"""Small control files (checkpoints, plans, catalog) never left half-written: locally written aside,
fsynced and renamed; on an object store one put (assay.fs)."""
from __future__ import annotations

from . import fs


def write_json_atomic(path, data) -> None:
    fs.write_json(path, data)


def read_json(path):
    return fs.read_json(path)
