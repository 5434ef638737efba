"""The rows appended to an upstream Delta table since this flow last read it."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .. import storage
from .base import BatchLimits, LoadContext, Plan, Source


class DeltaSource(Source):
    kind = "delta"

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = Path(path)

    def key(self) -> str:
        return f"delta:{self.name}"

    def plan(self, position: int | None, limits: BatchLimits) -> Plan | None:
        """Position: the last upstream version read (-1: none). A batch covers whole commits."""
        after = -1 if position is None else int(position)
        latest = storage.current_version(self.path)
        if latest <= after:
            return None
        end = latest
        if after >= 0 and (limits.max_bytes or limits.max_files):
            # Bound the batch by whole commits: at least one, then as many as fit.
            total_bytes = total_files = 0
            for version in range(after + 1, latest + 1):
                added = storage.appended_files(self.path, version - 1, version)
                total_bytes += sum(f.size for f in added)
                total_files += len(added)
                over = (limits.max_bytes and total_bytes > limits.max_bytes) or \
                       (limits.max_files and total_files > limits.max_files)
                if over and version > after + 1:
                    end = version - 1
                    break
        return Plan(start=after, end=end, info={"table": self.name, "versions": [after + 1, end]})

    def load(self, ctx: LoadContext, plan: Plan):
        from pyspark.sql import functions as F

        full = ctx.spark.read.format("delta").option("versionAsOf", int(plan.end)).load(str(self.path))
        if plan.start is None or int(plan.start) < 0:
            return full   # first read (or after a full refresh): the table as of the planned version
        files = storage.appended_files(self.path, int(plan.start), int(plan.end))
        if not files:
            return full.limit(0)
        columns = full.columns
        schema = {f.name: f.dataType for f in full.schema.fields}
        groups: dict[tuple, list[str]] = defaultdict(list)
        for f in files:
            groups[tuple(sorted(f.partition_values.items()))].append(f.path)
        frames = []
        for partition, paths in groups.items():
            df = ctx.spark.read.parquet(*paths)
            for key, value in partition:
                df = df.withColumn(key, F.lit(value).cast(schema[key]))
            frames.append(df.select(*columns))
        result = frames[0]
        for df in frames[1:]:
            result = result.unionByName(df)
        return result
