"""What two systems' runs left behind, side by side: row counts of every table and the gold tables
compared key by key. Tables are read with delta-rs from the Delta folders under a storage root, so
Assay's storage and the Spark baseline's are read the same way.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa

# Gold tables of each reference pipeline: key columns, then the measures compared.
GOLD = {
    "zenith": {
        "gold_daily_product_performance": (["event_date", "product_id"],
                                           ["views", "adds_to_cart", "purchases", "revenue", "revenue_rank"]),
        "customer_purchase_summary": (["user_id", "region"],
                                      ["total_purchases", "total_purchase_value", "last_purchase_timestamp"]),
    },
    "activity_logs": {
        "gold_user_watch_time": (["user_id"], ["events", "total_watch_time_seconds", "first_event_time",
                                               "last_event_time"]),
        "gold_region_daily_watch_time": (["event_date", "region"], ["total_watch_time_seconds", "active_users"]),
    },
}

# What differs between Assay's pipeline and the seed's Structured Streaming code, by design.
SEMANTICS = {
    "zenith": [
        "Assay keeps rows behind the 3-minute watermark apart in silver_sessionized_activity_late; Spark's "
        "withWatermark + dropDuplicates drops rows behind the watermark of an earlier micro-batch (the full run "
        "is one micro-batch, so only the increment can drop any).",
        "The seed has no quality rules: rows Assay quarantines (NULL event_dt, unknown event_type) stay in the "
        "baseline's silver and gold (an unknown action adds a product-day row with zero counts).",
        "dropDuplicates keeps an arbitrary copy of a duplicate event_id; Assay the earliest event_dt, then file.",
    ],
    "activity_logs": [
        "Both quarantine in bronze with the same rules, so bronze and its quarantine should agree row for row.",
        "Assay deduplicates log_id across all runs with no watermark; the baseline's 1-hour watermark drops rows "
        "behind the watermark of an earlier micro-batch (only the increment can have any).",
        "dropDuplicates keeps an arbitrary copy of a duplicate log_id; Assay the earliest event_time, then file.",
    ],
}


def tables(storage: Path) -> dict[str, Path]:
    """Every Delta table under a storage root by folder name (the system schema left out)."""
    found = {}
    for log in sorted(Path(storage).glob("*/*/_delta_log")):
        if log.parent.parent.name != "_system":
            found[log.parent.name] = log.parent
    return found


def _active_files(table: Path) -> tuple[dict[str, dict], dict]:
    """The table's current add actions by path, and its schema (Delta log replay: the last
    checkpoint, then the JSON commits after it). Read here rather than through delta-rs, which
    refuses some schemas Spark writes (a pandas UDF declared with StringType() gives a column of
    type 'string collate UTF8_BINARY')."""
    import pyarrow.parquet as pq
    log = table / "_delta_log"
    adds: dict[str, dict] = {}
    schema: dict = {}
    start = -1
    last = log / "_last_checkpoint"
    if last.exists():
        start = json.loads(last.read_text())["version"]
        parts = sorted(log.glob(f"{start:020d}.checkpoint*.parquet"))
        for part in parts:
            for row in pq.read_table(part, columns=["add", "metaData"]).to_pylist():
                if row.get("add"):
                    add = row["add"]
                    pv = add.get("partitionValues") or {}
                    add["partitionValues"] = dict(pv) if not isinstance(pv, dict) else pv
                    adds[add["path"]] = add
                if row.get("metaData"):
                    schema = json.loads(row["metaData"]["schemaString"])
    for commit in sorted(log.glob("[0-9]" * 20 + ".json")):
        if int(commit.name[:20]) <= start:
            continue
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                adds[action["add"]["path"]] = action["add"]
            elif "remove" in action:
                adds.pop(action["remove"]["path"], None)
            elif "metaData" in action:
                schema = json.loads(action["metaData"]["schemaString"])
    return adds, schema


def row_counts(storage: Path) -> dict[str, int]:
    """Rows of each table from its add actions' record counts (metadata only, no data read)."""
    counts = {}
    for name, path in tables(storage).items():
        adds, _ = _active_files(path)
        stats = [json.loads(a["stats"]) if a.get("stats") else {} for a in adds.values()]
        counts[name] = sum(s.get("numRecords", 0) for s in stats) if all("numRecords" in s for s in stats) else -1
    return counts


_TYPES = {"date": pa.date32(), "string": pa.string(), "integer": pa.int32(), "long": pa.int64()}


def read_table(path: Path) -> pa.Table:
    """A (small) table's current rows, partition columns included."""
    import pyarrow.parquet as pq
    adds, schema = _active_files(path)
    types = {f["name"]: _TYPES.get(str(f["type"]).split(" ")[0], pa.string()) for f in schema.get("fields", [])}
    parts = []
    for add in adds.values():
        t = pq.read_table(path / unquote(add["path"]))
        for column, value in (add.get("partitionValues") or {}).items():
            if column in t.column_names:
                continue
            t = t.append_column(column, pa.array([value] * t.num_rows, pa.string()).cast(types.get(column, pa.string())))
        parts.append(t)
    return pa.concat_tables(parts, promote_options="permissive") if parts else pa.table({})


def read_gold(storage: Path, pipeline: str) -> dict[str, pa.Table]:
    found = tables(storage)
    return {name: read_table(found[name]) for name in GOLD[pipeline] if name in found}


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)
    if hasattr(a, "tzinfo") and hasattr(b, "tzinfo"):
        return a.replace(tzinfo=None) == b.replace(tzinfo=None)
    return a == b


def compare_gold(left: dict[str, pa.Table], right: dict[str, pa.Table], pipeline: str) -> dict:
    """Per gold table: keys on each side, keys in both with equal / different measures, and the
    totals of the summable measures on each side."""
    out = {}
    for name, (keys, measures) in GOLD[pipeline].items():
        if name not in left or name not in right:
            out[name] = {"missing": [side for side, t in (("left", left), ("right", right)) if name not in t]}
            continue
        rows = [{tuple(r[k] for k in keys): r for r in t.select(keys + measures).to_pylist()}
                for t in (left[name], right[name])]
        both = rows[0].keys() & rows[1].keys()
        differing = [k for k in both if not all(_same(rows[0][k][m], rows[1][k][m]) for m in measures)]
        totals = {}
        for m in measures:
            values = [[r[m] for r in side.values() if isinstance(r[m], (int, float))] for side in rows]
            if values[0] or values[1]:
                totals[m] = [round(sum(v), 2) for v in values]
        out[name] = {"rows": [len(rows[0]), len(rows[1])], "only_left": len(rows[0].keys() - both),
                     "only_right": len(rows[1].keys() - both), "equal": len(both) - len(differing),
                     "different": len(differing), "totals": totals,
                     "example": ({"key": [str(v) for v in differing[0]],
                                  "left": {m: str(rows[0][differing[0]][m]) for m in measures},
                                  "right": {m: str(rows[1][differing[0]][m]) for m in measures}}
                                 if differing else None)}
    return out


def render_gold(diff: dict, left: str, right: str) -> list[str]:
    lines = []
    for name, d in diff.items():
        if "missing" in d:
            lines.append(f"  {name}: missing on {', '.join(d['missing'])}")
            continue
        same = d["only_left"] == d["only_right"] == d["different"] == 0
        lines.append(f"  {name}: {left} {d['rows'][0]:,} rows, {right} {d['rows'][1]:,}; "
                     + ("identical" if same else
                        f"{d['equal']:,} keys equal, {d['different']:,} differ, {d['only_left']:,} only in {left}, "
                        f"{d['only_right']:,} only in {right}"))
        if not same:
            lines.append("      totals (" + left + " / " + right + "): "
                         + ", ".join(f"{m} {a:,} / {b:,}" for m, (a, b) in d["totals"].items()))
    return lines
