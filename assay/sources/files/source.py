"""A landing folder read incrementally, with Databricks Auto Loader's semantics.

- Each file is discovered once and recorded in the flow's checkpoint; files that arrive later
  are picked up by the next run. A file rewritten in place is not read again unless
  `allow_overwrites=True`; it is reported once (a warning and an event-log entry). Temporary
  names (`.x`, `_x`, `*.tmp`, `*._COPYING_`) and files whose size or modification time changes
  while they are listed are left for a later batch.
- One listing per run: a run processes what was there when it started (availableNow), in
  bounded batches; files landing meanwhile wait for the next run.
- The plan of a batch (its files, a CSV file's header, a Parquet file's columns) is written
  ahead in the checkpoint; the engine then reads and parses exactly those files (read.py).
"""
from __future__ import annotations

import csv
import posixpath
from datetime import datetime, timezone

import pyarrow as pa

from ... import fs
from ...atomic import read_json, write_json_atomic
from ...errors import FlowError
from ...units import parse_bytes, parse_seconds
from ..base import BatchLimits, LoadContext, Plan, Source
from . import read
from .evolution import EvolutionState, _arrow_to_sql, apply_hints, check_mode, infer_ddl, new_columns_found
from .listing import FileEntry, complete, first_line, list_files
from .schema import parse_schema, resolve_schema

FORMATS = ("json", "csv", "parquet")
OPTIONS = {"header", "schema_hints", "schema_evolution_mode", "max_files_per_batch", "max_bytes_per_batch",
           "allow_overwrites", "include_metadata", "rescued_data_column", "delimiter", "min_file_age",
           "recursive", "glob"}
MERGE_AFTER = 64          # plans of committed batches read one by one before they are merged into one file
_PLAN_SCHEMA = pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                          ("header", pa.string()), ("columns", pa.list_(pa.string()))])


class FileSource(Source):
    kind = "files"

    def __init__(self, root, fmt: str, schema, options: dict, checkpoint_dir, table: str | None = None):
        if fmt not in FORMATS:
            raise FlowError(f"read_files: format must be one of {', '.join(FORMATS)}, got '{fmt}'")
        unknown = set(options) - OPTIONS
        if unknown:
            raise FlowError(f"read_files({root}): unknown option(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(OPTIONS))})")
        self.root = fs.as_path(root)      # a local folder or an object-store URI
        self.format = fmt
        self.schema = parse_schema(schema) if schema is not None else None
        self.options = options
        self.header = bool(options.get("header", True))
        self.delimiter = str(options.get("delimiter", ","))
        self.allow_overwrites = bool(options.get("allow_overwrites", False))
        self.include_metadata = bool(options.get("include_metadata", True))
        self.rescue = options.get("rescued_data_column", read.RESCUED)
        self.min_age_s = parse_seconds(options.get("min_file_age", 0))
        self.pattern = options.get("glob")
        self.limits = BatchLimits(max_files=options.get("max_files_per_batch"),
                                  max_bytes=parse_bytes(options["max_bytes_per_batch"])
                                  if options.get("max_bytes_per_batch") else None)
        self.state_dir = checkpoint_dir / "sources" / self.key_slug()
        self.flow = fs.as_path(checkpoint_dir).name       # checkpoints are per flow: <system>/checkpoints/<flow>
        self.table = table or self.flow
        self._seen: dict | None = None
        self._pending: list[FileEntry] | None = None
        self.evolution_mode = check_mode(options.get("schema_evolution_mode", "addNewColumns"), str(root))
        self.schema_hints = options.get("schema_hints")
        self.evolution = EvolutionState(self.state_dir)
        self.overwritten: list[dict] = []          # files rewritten in place since they were read (this run)
        self.folder_missing = False                # the landing folder does not exist (this run's listing)

    def resolve(self, spark) -> None:
        """The effective schema: given (or inferred from the files, with hints), plus recorded new columns."""
        from pyspark.sql.types import StructType
        if self.schema is None:
            sample = [e.path for e in self.list_files()]
            if not sample:
                raise FlowError(f"read_files({self.root}): no schema given and no file to infer one from; give "
                                "schema=\"col TYPE, ...\" or land a file first")
            columns = apply_hints(infer_ddl(self.format, sample, self.header, self.delimiter), self.schema_hints)
        else:
            given = resolve_schema(spark, self.schema)
            columns = apply_hints([(f.name, f.dataType.simpleString()) for f in given.fields], self.schema_hints)
        known = {name for name, _ in columns}
        columns += [(n, t) for n, t in self.evolution.added() if n not in known]
        ddl = ", ".join(f"`{name}` {sql}" for name, sql in columns)
        self.schema = resolve_schema(spark, ddl) if columns else StructType([])

    # --- identity and planning ---------------------------------------------------------

    def key(self) -> str:
        return f"files:{self.format}:{self.root}"

    def key_slug(self) -> str:
        return "files-" + "".join(c if c.isalnum() else "_" for c in str(self.root))[-80:]

    def _identity(self, entry: FileEntry):
        return (entry.path, entry.size, entry.mtime_ns) if self.allow_overwrites else entry.path

    def _part(self, seq: int) -> fs.StoragePath:
        return self.state_dir / f"files-{seq:08d}.parquet"

    def _load_seen(self, position: int | None) -> dict:
        """Files planned by batches up to `position` (the plans are written ahead of processing):
        the latest merge of committed plans, then the plans after it."""
        position = position or 0
        listed = self._state_files()
        base = max((n for kind, n in listed if kind == "seen" and n <= position), default=0)
        parts = ([self._merged(base)] if base else []) + [self._part(seq) for seq in range(base + 1, position + 1)]
        try:
            tables = fs.read_parquet_many(parts, columns=["path", "size", "mtime_ns"])
        except FileNotFoundError:
            raise self._unknown_files(next(p.name for p in parts if not p.exists())) from None
        seen: dict = {}
        for table in tables:
            for row in table.to_pylist():
                entry = FileEntry(row["path"], row["size"], row["mtime_ns"])
                seen[self._identity(entry)] = entry
        if position - base > MERGE_AFTER:
            self._merge(position, tables, listed)
        return seen

    def _merged(self, upto: int) -> fs.StoragePath:
        return self.state_dir / f"seen-{upto:08d}.parquet"

    def _state_files(self) -> list[tuple[str, int]]:
        """The plans (`files`, batch) and merges (`seen`, last batch) in the state folder."""
        if not fs.exists(self.state_dir):
            return []
        found = []
        for child in fs.list_dir(self.state_dir):
            kind, _, number = child.name.removesuffix(".parquet").partition("-")
            if kind in ("files", "seen") and number.isdigit() and child.name.endswith(".parquet"):
                found.append((kind, int(number)))
        return found

    def _merge(self, position: int, tables: list, listed: list[tuple[str, int]]) -> None:
        """One file for the plans of committed batches 1..position, so that a run reads a few files,
        not one per batch ever run (10 000 runs: 10 000 reads, GETs on an object store). Written
        before what it replaces is deleted: a crash in between leaves both, and the merge is read."""
        fs.write_parquet(self._merged(position), pa.concat_tables(tables))
        for kind, n in listed:
            if (kind == "files" and n <= position) or (kind == "seen" and n < position):
                fs.delete(self._merged(n) if kind == "seen" else self._part(n))

    def _unknown_files(self, missing: str) -> FlowError:
        """Committed batches whose file lists are not under this folder's checkpoint: mostly the landing
        folder moved (a copied project, another --landing or ASSAY_LANDING), since the checkpoint keeps
        what was read under the folder's path; else the checkpoint was edited."""
        restart = (f"`assay run --full-refresh {self.table}` (with the tables that stream from it) starts over "
                   f"from the files now in {self.root}: it empties those tables, so rows read from landing files "
                   "deleted since are lost")
        if not self.state_dir.exists():
            read = [str(r) for r in self._other_roots()]
            before = f"from {', '.join(read)}" if read else "from another folder"
            return FlowError(
                f"flow '{self.flow}' read its landing files {before}, and now reads {self.root}"
                f"{'' if fs.exists(self.root) else ', which does not exist'}: its checkpoint lists the files "
                "read by path, so it cannot continue in another folder. If the landing folder moved (a copied "
                "project, --landing, ASSAY_LANDING), point landing back at the folder it read; to read the new "
                f"folder as a new source, {restart}.")
        return FlowError(f"the checkpoint of flow '{self.flow}' ({self.key()}) is missing {missing} in {self.state_dir}: "
                         "it was edited, so which landing files were read is unknown. "
                         f"{restart[0].upper()}{restart[1:]}.")

    def _other_roots(self) -> list:
        """The landing folders this flow's checkpoint holds file lists of, other than this one."""
        roots = []
        for folder in fs.list_dir(self.state_dir.parent):
            if folder.name.startswith("files-") and folder != self.state_dir:
                source = folder / "source.json"
                if source.exists():
                    roots.append(read_json(source)["root"])
                elif (folder / "files-00000001.parquet").exists():   # written before source.json was
                    paths = fs.read_parquet(folder / "files-00000001.parquet", columns=["path"]).column(0)
                    roots.append(posixpath.dirname(paths[0].as_py()) if len(paths) else folder.name)
        return roots

    def list_files(self) -> list[FileEntry]:
        return list_files(self.root, self.pattern)

    def plan(self, position: int | None, limits: BatchLimits) -> Plan | None:
        if self._seen is None:
            self._seen = self._load_seen(position)
        if self._pending is None:
            # One listing per run (availableNow): files landing during the run wait for the next.
            listed = self.list_files()
            self.folder_missing = not listed and not fs.exists(self.root)     # a typo'd or moved landing path
            self._pending = self._new_files(listed)
        max_files = _smallest(self.limits.max_files, limits.max_files)
        max_bytes = _smallest(self.limits.max_bytes, limits.max_bytes)
        now_ns = datetime.now(timezone.utc).timestamp() * 1e9
        chosen: list[FileEntry] = []
        total = 0
        for entry in _quiet(e for e in self._pending
                            if not (self.min_age_s and now_ns - e.mtime_ns < self.min_age_s * 1e9)):
            if chosen and ((max_files and len(chosen) >= max_files) or (max_bytes and total + entry.size > max_bytes)):
                break
            chosen.append(entry)
            total += entry.size
        if not chosen:
            return None
        taken = {e.path for e in chosen}
        self._pending = [e for e in self._pending if e.path not in taken]
        seq = (position or 0) + 1
        self._write_plan(seq, chosen)
        self._seen.update((self._identity(e), e) for e in chosen)
        return Plan(start=position, end=seq, rows_hint=None,
                    info={"files": len(chosen), "bytes": total, "first": chosen[0].path, "last": chosen[-1].path})

    def _new_files(self, listed: list[FileEntry]) -> list[FileEntry]:
        """Files not read yet; a file rewritten in place since it was read is reported once."""
        new = []
        by_path = {e.path: e for e in self._seen.values()} if not self.allow_overwrites else {}
        for entry in listed:
            if self._identity(entry) not in self._seen:
                new.append(entry)
                continue
            old = by_path.get(entry.path)
            if old is not None and (old.size, old.mtime_ns) != (entry.size, entry.mtime_ns):
                self._report_overwrite(old, entry)
        return new

    def _report_overwrite(self, old: FileEntry, new: FileEntry) -> None:
        marker = self.state_dir / "overwritten.json"
        reported = read_json(marker) if marker.exists() else []
        key = [new.path, new.size, new.mtime_ns]
        if key in reported:
            return
        write_json_atomic(marker, reported + [key])
        self.overwritten.append({"file": new.path, "read_size": old.size, "size_now": new.size})

    def _write_plan(self, seq: int, chosen: list[FileEntry]) -> None:
        """The batch's files, with what the engine needs to parse them: a CSV file's header, the
        columns of a Parquet file (None when its footer cannot be read)."""
        headers = [self._header(e) if self.format == "csv" else None for e in chosen]
        columns = [self._parquet_columns(e) if self.format == "parquet" else None for e in chosen]
        table = pa.table({"path": [e.path for e in chosen], "size": [e.size for e in chosen],
                          "mtime_ns": [e.mtime_ns for e in chosen], "header": headers, "columns": columns},
                         schema=_PLAN_SCHEMA)
        fs.write_parquet(self._part(seq), table)
        if seq == 1:       # names the folder in errors once the landing path changes (_unknown_files)
            write_json_atomic(self.state_dir / "source.json", {"root": str(self.root), "format": self.format})

    def _header(self, entry: FileEntry) -> str | None:
        """A CSV file's header line, as the engine will see it (its first non-blank line)."""
        return first_line(entry.path) if self.header else None

    def _header_columns(self, line: str | None) -> list[str]:
        return [c.strip() for c in next(csv.reader([line], delimiter=self.delimiter), [])] if line else []

    @staticmethod
    def _parquet_columns(entry: FileEntry) -> list[str] | None:
        try:
            return fs.parquet_schema(entry.path).names
        except (OSError, pa.ArrowInvalid):
            return None

    def planned(self, plan: Plan) -> tuple[list[FileEntry], dict, dict]:
        rows = fs.read_parquet(self._part(plan.end)).to_pylist()
        files = [FileEntry(r["path"], r["size"], r["mtime_ns"]) for r in rows]
        return files, {r["path"]: r["header"] for r in rows}, {r["path"]: r["columns"] for r in rows}

    # --- loading -----------------------------------------------------------------------

    def load(self, ctx: LoadContext, plan: Plan):
        if self._seen is None:        # not planned by this run: a batch an earlier run planned but never committed
            self._replan_as_now(plan)
        return self.load_files(ctx.engine, *self.planned(plan))

    def _replan_as_now(self, plan: Plan) -> None:
        """A batch that never committed (an expect_or_fail, a crash) reads its files as they are now, so
        a bad file fixed in place is read fixed: its plan records them as they are now, so they are not
        taken for files rewritten after being read (nor read twice with allow_overwrites)."""
        files, _, _ = self.planned(plan)
        infos = fs.head_many([f.path for f in files])
        now = [FileEntry(f.path, i.size, i.mtime_ns) if i is not None else f for f, i in zip(files, infos)]
        if now != files:
            self._write_plan(plan.end, now)

    def load_files(self, engine, files: list[FileEntry], headers: dict | None = None, columns: dict | None = None,
                   tracked: bool = True):
        """The rows of `files`, parsed by the engine (headers/columns: what the plan recorded)."""
        if not files:
            return self.analysis_frame(engine.spark)
        if headers is None and self.format == "csv":
            headers = {f.path: self._header(f) for f in files}
        if columns is None and self.format == "parquet":
            columns = {f.path: self._parquet_columns(f) for f in files}
        if tracked and self.evolution_mode in ("addNewColumns", "failOnNewColumns"):
            self._check_new_columns(engine, files, headers, columns)
        common = dict(rescue=self.rescue, include_metadata=self.include_metadata,
                      ignore_unknown=self.evolution_mode == "none")
        copies = self._repaired()
        if self.format == "json":
            return read.parse_json(engine, files, self.schema, copies=copies, **common)
        if self.format == "csv":
            return read.parse_csv(engine, files, headers, self.schema, header=self.header, delimiter=self.delimiter,
                                  copies=copies, **common)
        return read.parse_parquet(engine, files, columns, self.schema, **common)

    def _check_new_columns(self, engine, files, headers, columns) -> None:
        known = self.schema.fieldNames()
        if self.format == "json":
            found = read.unknown_json_fields(engine, files, known, self._repaired())
            sql_type = lambda name: "STRING"
        else:
            seen = ({path: self._header_columns(line) for path, line in headers.items()} if self.format == "csv"
                    else columns)
            found = sorted({c for cols in seen.values() if cols for c in cols if c not in known})
            sql_type = (lambda name: "STRING") if self.format == "csv" else (
                lambda name: _arrow_to_sql(next(fs.parquet_schema(f.path).field(name).type for f in files
                                                if columns.get(f.path) and name in columns[f.path])))
        new_columns_found(self.evolution_mode, self.key(), found, self.evolution, sql_type)

    # --- files the engine cannot read ----------------------------------------------------

    def _repaired(self) -> dict[str, str]:
        marker = self.state_dir / "repaired.json"
        return read_json(marker) if marker.exists() else {}

    def repair_encoding(self, engine, plan: Plan) -> list[str]:
        """The embedded engine stops a whole read at the first invalid UTF-8 byte. Find the planned
        files it cannot read (one read each) and keep a copy of each with the invalid bytes
        replaced by U+FFFD (as Spark's text reader does), read from then on in their place. The
        only place where file contents pass through the Assay process, bounded to broken files.
        Returns the files repaired."""
        if self.format == "parquet":
            return []
        files, _, _ = self.planned(plan)
        copies = self._repaired()
        fixed = []
        for entry in files:
            if entry.path in copies:
                continue
            try:
                engine.spark.read.text(entry.path).count()
                continue
            except Exception as exc:          # the engine's read error; only encoding is ours to fix
                if not engine.is_invalid_utf8(exc):
                    raise
            copy = self.state_dir / "repaired" / f"{len(copies):06d}-{posixpath.basename(entry.path)}"
            _write_replacing_invalid_utf8(entry.path, copy)
            copies[entry.path] = str(copy)
            fixed.append(entry.path)
        if fixed:
            write_json_atomic(self.state_dir / "repaired.json", copies)
        return fixed

    def analysis_frame(self, spark):
        """An empty DataFrame with the columns a batch will have (for graph validation)."""
        if self.schema is None:
            raise FlowError(f"read_files({self.root}): give a schema (DDL string or StructType)")
        return spark.createDataFrame([], read.output_schema(self.schema, self.rescue, self.include_metadata))


def _write_replacing_invalid_utf8(source: str, destination, chunk: int = 1 << 20) -> None:
    import codecs
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    out = []
    with fs.open_input(source) as reader:
        while block := reader.read(chunk):
            out.append(decoder.decode(block))
        out.append(decoder.decode(b"", final=True))
    fs.write_bytes(destination, "".join(out).encode("utf-8"))


def _quiet(entries, chunk: int = 256):
    """The entries whose files still have the size and time they were listed with (a file still
    being written waits for the next run), checked a chunk at a time (listing.complete)."""
    pending: list[FileEntry] = []
    for entry in entries:
        pending.append(entry)
        if len(pending) >= chunk:
            yield from (e for e, ok in zip(pending, complete(pending)) if ok)
            pending = []
    if pending:
        yield from (e for e, ok in zip(pending, complete(pending)) if ok)


def _smallest(*values):
    given = [v for v in values if v]
    return min(given) if given else None
