"""A deduplicated table's key index: the 64-bit hashes of the keys its data files hold, so that a
batch finds which of its keys were seen before without joining every row with the whole table.

Why: the state of dedupe is the target itself (one row per key). Joining a batch with all of the
target's keys, order columns and paths costs what the history costs (measured on 11 M rows of
activity logs: 10.8 s for a left join of 0.7 M rows with the target's three columns, against 1.0 s
for a semi-join on an int64 hash plus 2.3 s to read the survivors of the 7 500 hits). A hash hit is
only a candidate (xxhash64 collides, rarely, at scale): the batch still compares with the target's
real rows of the hit keys, so a decision never rests on a hash alone.

A derived cache, never the truth: it holds the hashes of every data file of the target it has
covered, and a batch first catches it up with the files of the target version it compares with
(the version in the batch's plan). Extra hashes (keys of files a crashed attempt added, or rows
removed since) only cost a comparison that finds nothing; a missing hash would keep a duplicate, so
every file the version holds is covered before the index is used. Files a replacement rewrote
(`<attempt>/rewrite/`) hold only rows of files covered when that batch started: they are marked
covered without reading them. The index lives in the flow's checkpoint folder, so a full refresh
resets it; a damaged manifest, or hashes made by another engine (the engines agree on every key type
tests/test_engine_parity.py tries, but a switch rebuilds rather than trusting that), make it rebuild
from the target.

Layout: `manifest.json` {"keys", "engine", "probe": its hash of a fixed value, "parts": [folders],
"covered": [files]},
`parts/<id>/*.parquet` with one bigint column `_assay_h`. The manifest is replaced whole after its parts
are written, so a crash leaves either the old index or the new one (and orphan parts, removed).
"""
from __future__ import annotations

import uuid

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .. import fs
from ..delta.table import arrow_schema, data_files
from . import faults

HASH = "_assay_h"
REWRITE = "/rewrite/"                  # a replacement's copy of rows the table already held
MAX_PARTS = 32                         # then the parts are merged into one


def key_hash(keys) -> "F.Column":
    """The keys' xxhash64 (Spark's, seed 42). Each key goes through coalesce(k, k), the same value:
    the embedded engine's xxhash64 panics ("index out of bounds") when all its inputs are columns
    its Parquet reader took as constants (a file whose key has min = max and no NULL)."""
    return F.xxhash64(*[F.coalesce(F.col(f"`{k}`"), F.col(f"`{k}`")) for k in keys])


class KeyIndex:
    def __init__(self, folder, engine, keys):
        self.folder = fs.as_path(folder)
        self.engine = engine
        self.keys = tuple(keys)

    # --- the manifest -------------------------------------------------------------------------

    def _manifest(self) -> dict | None:
        try:
            manifest = fs.read_json(self.folder / "manifest.json")
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("keys") != list(self.keys) \
                or manifest.get("engine") != self.engine.name or manifest.get("probe") != self._probe():
            return None                       # other keys, or another engine's hashes: rebuild
        return manifest

    def _write_manifest(self, parts: list[str], covered: set[str]) -> None:
        fs.write_json(self.folder / "manifest.json",
                      {"keys": list(self.keys), "engine": self.engine.name, "probe": self._probe(), "parts": parts,
                       "covered": sorted(covered)})
        for child in fs.list_dir(self.folder / "parts"):
            if child.name not in parts:
                fs.delete_tree(child)         # a crashed update's parts, or merged ones

    def _probe(self) -> int:
        """The engine's hash of a fixed value: hashes written by an engine that disagrees are not used."""
        cached = getattr(self.engine, "_assay_hash_probe", None)
        if cached is None:
            probe = self.engine.spark.range(1).select(F.xxhash64(F.lit("assay"), F.lit(42)).alias("h"))
            cached = int(probe.collect()[0]["h"])           # one value
            self.engine._assay_hash_probe = cached
        return cached

    # --- use ----------------------------------------------------------------------------------

    def hashes(self, root, table) -> DataFrame:
        """The index caught up with every data file of `table` (a version of the target at `root`):
        a DataFrame of one column `_assay_h`, a superset of the hashes of the keys that version holds."""
        return self._read(self.catch_up(root, table))

    def catch_up(self, root, table) -> list[str]:
        """Hash the data files of `table` the index does not cover yet; its parts after that."""
        manifest = self._manifest() or {"parts": [], "covered": []}
        prefix, covered = str(root).rstrip("/") + "/", set(manifest["covered"])
        new = [f for f in data_files(root, table) if _relative(f.path, prefix) not in covered]
        return self._take(manifest, new, prefix, arrow_schema(table), table.metadata().partition_columns)

    def add(self, root, files, schema, partition_columns) -> None:
        """Hash the files a batch just committed, into an index that covered every other file of the
        table: each run hashes the files it added, so the next batch finds the index ready (built
        lazily, the first increment after a full run hashed the whole table)."""
        manifest = self._manifest() or {"parts": [], "covered": []}
        self._take(manifest, files, str(root).rstrip("/") + "/", schema, partition_columns)

    def _take(self, manifest: dict, new: list, prefix: str, schema, partition_columns) -> list[str]:
        parts, covered = list(manifest["parts"]), set(manifest["covered"])
        if new:
            rows = self.engine.read_delta_files(new, schema, partition_columns)
            parts.append(self._write_part(rows.select(key_hash(self.keys).alias(HASH))))
            covered |= {_relative(f.path, prefix) for f in new}
        if len(parts) > MAX_PARTS:
            parts = [self._write_part(self._read(parts))]
        if new or parts != manifest["parts"]:
            faults.crash_point(faults.KEY_INDEXED)
            self._write_manifest(parts, covered)
        return parts

    def cover(self, relative_paths) -> None:
        """Files written by a replacement of a batch that used this index: their rows were already
        covered, so they are marked without reading them."""
        manifest = self._manifest()
        rewrites = {p for p in relative_paths if REWRITE in "/" + p}
        if manifest is None or not rewrites:
            return
        self._write_manifest(manifest["parts"], set(manifest["covered"]) | rewrites)

    def _write_part(self, hashes: DataFrame) -> str:
        name = uuid.uuid4().hex[:12]
        self.engine.write_files(hashes, self.folder / "parts" / name)
        return name

    def _read(self, parts: list[str]) -> DataFrame:
        folders = [self.folder / "parts" / p for p in parts]
        files = [f.path for folder in folders for f in fs.walk_files(folder) if f.path.endswith(".parquet")]
        if not files:                         # engines write no file for an empty result
            return self.engine.spark.createDataFrame([], f"{HASH} bigint")
        return self.engine.read_parquet(files).select(HASH)


def _relative(path: str, prefix: str) -> str:
    return path[len(prefix):] if path.startswith(prefix) else path
