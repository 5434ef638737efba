"""A landing folder read incrementally, with Databricks Auto Loader's semantics.

- Each file is discovered once and recorded in the flow's checkpoint; files that arrive later
  are picked up by the next batch. A file rewritten in place is not read again unless
  `allow_overwrites=True`. Temporary names (`.x`, `_x`, `*.tmp`, `*._COPYING_`) and files whose
  size or modification time changes while they are listed are left for a later batch.
- Records are split by pyarrow and parsed by the engine: a malformed line never stops
  ingestion; it lands with its raw text in `_rescued_data` (JSON: `{"_corrupt_record": ...}`),
  and so do unknown fields and values that do not fit the schema.
- Every row carries `_source_file`, `_source_position` (0-based record index in the file, blank
  lines not counted), `_source_modified` and `_source_size`.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import FlowError
from ..units import parse_bytes, parse_seconds
from .base import BatchLimits, LoadContext, Plan, Source
from .evolution import EvolutionState, _arrow_to_sql, apply_hints, check_mode, infer_ddl, new_columns_found
from .schema import parse_schema, resolve_schema

RESCUED = "_rescued_data"
CORRUPT = "_corrupt_record"
METADATA = {"_source_file": pa.string(), "_source_position": pa.int64(),
            "_source_modified": pa.timestamp("us", tz="UTC"), "_source_size": pa.int64()}
FORMATS = ("json", "csv", "parquet")
OPTIONS = {"header", "schema_hints", "schema_evolution_mode", "max_files_per_batch", "max_bytes_per_batch",
           "allow_overwrites", "include_metadata", "rescued_data_column", "delimiter", "min_file_age",
           "recursive", "glob"}
TEMP_SUFFIXES = (".tmp", "._COPYING_", ".crc", ".partial", ".inprogress")


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mtime_ns: int


class FileSource(Source):
    kind = "files"

    def __init__(self, root: str | Path, fmt: str, schema, options: dict, checkpoint_dir: Path):
        if fmt not in FORMATS:
            raise FlowError(f"read_files: format must be one of {', '.join(FORMATS)}, got '{fmt}'")
        unknown = set(options) - OPTIONS
        if unknown:
            raise FlowError(f"read_files({root}): unknown option(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(OPTIONS))})")
        self.root = Path(root)
        self.format = fmt
        self.schema = parse_schema(schema) if schema is not None else None
        self.options = options
        self.header = bool(options.get("header", True))
        self.delimiter = str(options.get("delimiter", ","))
        self.allow_overwrites = bool(options.get("allow_overwrites", False))
        self.include_metadata = bool(options.get("include_metadata", True))
        self.rescue = options.get("rescued_data_column", RESCUED)
        self.min_age_s = parse_seconds(options.get("min_file_age", 0))
        self.pattern = options.get("glob")
        self.limits = BatchLimits(max_files=options.get("max_files_per_batch"),
                                  max_bytes=parse_bytes(options["max_bytes_per_batch"])
                                  if options.get("max_bytes_per_batch") else None)
        self.state_dir = checkpoint_dir / "sources" / self.key_slug()
        self._seen: set | None = None
        self._pending: list[FileEntry] | None = None
        default_mode = "addNewColumns"
        self.evolution_mode = check_mode(options.get("schema_evolution_mode", default_mode), str(root))
        self.schema_hints = options.get("schema_hints")
        self.evolution = EvolutionState(self.state_dir)

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

    def _load_seen(self, position: int | None) -> set:
        """Files planned by batches up to `position` (the plans are written ahead of processing)."""
        seen: set = set()
        for seq in range(1, (position or 0) + 1):
            part = self.state_dir / f"files-{seq:08d}.parquet"
            if not part.exists():
                raise FlowError(f"checkpoint of {self.key()} is missing {part.name}: the checkpoint folder was "
                                "edited; run the table with --full-refresh")
            for row in pq.read_table(part).to_pylist():
                seen.add(self._identity(FileEntry(row["path"], row["size"], row["mtime_ns"])))
        return seen

    def list_files(self) -> list[FileEntry]:
        if not self.root.exists():
            return []
        entries = []
        stack = [str(self.root)]
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
                        if self.pattern and not Path(name).match(self.pattern):
                            continue
                        st = item.stat()
                        entries.append(FileEntry(item.path, st.st_size, st.st_mtime_ns))
        # Arrival order: modification time, then path (the order dedupe watermarks follow too).
        entries.sort(key=lambda e: (e.mtime_ns, e.path))
        return entries

    def plan(self, position: int | None, limits: BatchLimits) -> Plan | None:
        if self._seen is None:
            self._seen = self._load_seen(position)
        max_files = _smallest(self.limits.max_files, limits.max_files)
        max_bytes = _smallest(self.limits.max_bytes, limits.max_bytes)
        now_ns = datetime.now(timezone.utc).timestamp() * 1e9
        # One listing serves the batches of a run until it is used up: listing 100 000 files costs ~1 s.
        if not self._pending:
            self._pending = [e for e in self.list_files() if self._identity(e) not in self._seen]
        chosen: list[FileEntry] = []
        total = 0
        for entry in self._pending:
            if self._identity(entry) in self._seen:
                continue
            if self.min_age_s and now_ns - entry.mtime_ns < self.min_age_s * 1e9:
                continue
            if not _unchanged(entry):
                continue  # still being written: the next batch takes it
            if chosen and ((max_files and len(chosen) >= max_files) or (max_bytes and total + entry.size > max_bytes)):
                break
            chosen.append(entry)
            total += entry.size
        if not chosen:
            self._pending = None
            return None
        taken = {e.path for e in chosen}
        self._pending = [e for e in self._pending if e.path not in taken]
        seq = (position or 0) + 1
        self.state_dir.mkdir(parents=True, exist_ok=True)
        table = pa.table({"path": [e.path for e in chosen], "size": [e.size for e in chosen],
                          "mtime_ns": [e.mtime_ns for e in chosen]})
        tmp = self.state_dir / f".files-{seq:08d}.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.state_dir / f"files-{seq:08d}.parquet")
        self._seen.update(self._identity(e) for e in chosen)
        return Plan(start=position, end=seq, rows_hint=None,
                    info={"files": len(chosen), "bytes": total, "first": chosen[0].path, "last": chosen[-1].path})

    def planned_files(self, plan: Plan) -> list[FileEntry]:
        rows = pq.read_table(self.state_dir / f"files-{plan.end:08d}.parquet").to_pylist()
        return [FileEntry(r["path"], r["size"], r["mtime_ns"]) for r in rows]

    # --- loading -----------------------------------------------------------------------

    def load(self, ctx: LoadContext, plan: Plan):
        return self.load_files(ctx, self.planned_files(plan))

    def load_files(self, ctx: LoadContext, files: list[FileEntry], tracked: bool = True):
        from .parse import unknown_columns
        staged = Path(ctx.staging_dir) / "raw.parquet"
        raw_schema = self.write_raw(files, staged)
        df = ctx.spark.read.parquet(str(staged))
        if tracked and self.evolution_mode in ("addNewColumns", "failOnNewColumns"):
            found = unknown_columns(df, self.format, self.schema, raw_schema)
            new_columns_found(self.evolution_mode, self.key(), found, self.evolution,
                              lambda name: "STRING" if self.format != "parquet" else
                              _arrow_to_sql(raw_schema.field(name).type))
        from .parse import finish, typed_frame
        typed_dir = Path(ctx.staging_dir) / "typed"
        typed_frame(df, self.format, self.schema, raw_schema, ignore_unknown=self.evolution_mode == "none") \
            .write.mode("overwrite").parquet(str(typed_dir))
        final = Path(ctx.staging_dir) / "parsed.parquet"
        finish(typed_dir, final, self.format, self.schema, rescue=self.rescue, include_metadata=self.include_metadata,
               ignore_unknown=self.evolution_mode == "none")
        return ctx.spark.read.parquet(str(final))

    def analysis_frame(self, spark):
        """An empty DataFrame with the columns a batch will have (for graph validation)."""
        from .parse import output_schema
        if self.schema is None:
            raise FlowError(f"read_files({self.root}): give a schema (DDL string or StructType); schema "
                            "inference is not supported yet")
        return spark.createDataFrame([], output_schema(self.schema, self.rescue, self.include_metadata))

    def write_raw(self, files: list[FileEntry], dest: Path) -> pa.Schema:
        """Split every planned file into raw records (+ metadata) in one Parquet file.

        Files of one batch may differ in columns (CSV headers, Parquet drift): columns are
        aligned by name, missing ones are NULL.
        """
        if not files:
            raise FlowError("no files to load")
        tables = [self._read_raw(entry) for entry in files]
        table = pa.concat_tables(tables, promote_options="permissive")
        pq.write_table(table, str(dest), compression="zstd")
        return table.schema

    def _read_raw(self, entry: FileEntry) -> pa.Table:
        try:
            if self.format == "json":
                table = read_json_lines(entry.path)
            elif self.format == "csv":
                table = read_csv_strings(entry.path, self.header, self.delimiter,
                                         [f.name for f in self.schema.fields] if self.schema else None)
            else:
                table = pq.read_table(entry.path)
        except (OSError, pa.ArrowInvalid) as exc:
            # An unreadable file (truncated parquet, ...) is kept as one rescued record, not lost.
            table = pa.table({CORRUPT: pa.array([f"unreadable file: {exc}"], pa.string())})
        n = table.num_rows
        modified = datetime.fromtimestamp(entry.mtime_ns / 1e9, tz=timezone.utc)
        table = table.append_column("_source_file", pa.array([entry.path] * n, pa.string()))
        if "_source_position" not in table.column_names:
            table = table.append_column("_source_position", pa.array(range(n), pa.int64()))
        table = table.append_column("_source_modified", pa.array([modified] * n, METADATA["_source_modified"]))
        return table.append_column("_source_size", pa.array([entry.size] * n, pa.int64()))


def read_json_lines(path: str) -> pa.Table:
    """One string per non-blank line. pyarrow's CSV reader does the splitting (fast, multithreaded)."""
    try:
        table = pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(column_names=["value"], block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False,
                                             newlines_in_values=False, invalid_row_handler=lambda row: "skip"),
            convert_options=pacsv.ConvertOptions(column_types={"value": pa.string()}, strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False))
        values = table.column("value")
    except pa.ArrowInvalid:
        # Invalid UTF-8 somewhere: decode with replacement so the line is rescued, not lost.
        text = Path(path).read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
        values = pa.array([line for line in text.splitlines() if line.strip()], pa.string())
    import pyarrow.compute as pc
    values = pc.utf8_rtrim(values, "\r")
    return pa.table({"value": values})


def read_csv_strings(path: str, header: bool, delimiter: str, schema_names: list[str] | None) -> pa.Table:
    """Every column as a string; rows with the wrong number of fields are kept as raw text."""
    bad: list[tuple[int | None, str]] = []

    def keep_bad(row) -> str:
        bad.append((row.number, row.text))
        return "skip"

    names = None if header else schema_names
    read_options = pacsv.ReadOptions(column_names=names, autogenerate_column_names=names is None and not header,
                                     use_threads=False, block_size=1 << 24)
    parse_options = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=keep_bad)
    try:
        probe = pacsv.open_csv(path, read_options=read_options, parse_options=parse_options)
        columns = probe.schema.names
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return pa.table({CORRUPT: pa.array([], pa.string())})
        raise
    bad.clear()
    table = pacsv.read_csv(path, read_options=read_options, parse_options=parse_options,
                           # Like Spark's CSV reader: an empty field is NULL.
                           convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                                                strings_can_be_null=True, null_values=[""]))
    good = table.num_rows
    total = good + len(bad)
    offset = 2 if header else 1          # physical row numbers count from 1, after the header
    bad_positions = {}
    for number, text in bad:
        pos = (number - offset) if number is not None else None
        if pos is None or pos < 0 or pos >= total or pos in bad_positions:
            pos = next(p for p in range(total - 1, -1, -1) if p not in bad_positions)
        bad_positions[pos] = text
    good_positions = [p for p in range(total) if p not in bad_positions]
    table = table.append_column(CORRUPT, pa.nulls(good, pa.string()))
    table = table.append_column("_source_position", pa.array(good_positions, pa.int64()))
    if bad_positions:
        # Like Spark's PERMISSIVE mode: the fields a bad row has fill the first columns, the raw text is kept.
        parsed = [next(csv.reader([text], delimiter=delimiter), []) for text in bad_positions.values()]
        extra = {c: pa.array([(row[i] if i < len(row) and row[i] != "" else None) for row in parsed], pa.string())
                 for i, c in enumerate(columns)}
        extra[CORRUPT] = pa.array(list(bad_positions.values()), pa.string())
        extra["_source_position"] = pa.array(list(bad_positions.keys()), pa.int64())
        table = pa.concat_tables([table, pa.table(extra)]).sort_by("_source_position")
    return table


def _unchanged(entry: FileEntry) -> bool:
    try:
        st = os.stat(entry.path)
    except FileNotFoundError:
        return False
    return st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns


def _smallest(*values):
    given = [v for v in values if v]
    return min(given) if given else None
