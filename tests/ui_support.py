"""What the UI tests share: a small pipeline that exercises every view (quarantine, late rows, a
warning rule, a failing rule, a secret from the environment that even reaches a table), its
drops of data, a generated 300-dataset pipeline, and the event log read independently of the
UI's own code (straight from delta-rs) to check the pages against."""
from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

from deltalake import DeltaTable

TOKEN_VAR = "ASSAY_UI_TEST_TOKEN"
TOKEN = "tok-3f9a1c7e5d2b"          # the secret: it must never reach a page, the API or a report

SPEC = textwrap.dedent(f"""
    name: shop_ui
    storage: ./storage
    landing: ./landing
    schemas: {{bronze: 01_bronze, silver: 02_silver, gold: 03_gold, system: _system}}
    configuration:
      api_token: ${{env:{TOKEN_VAR}}}
""")

PIPELINE = textwrap.dedent('''
    from pyspark.sql import functions as F
    from assay import pipelines as dp


    @dp.table(name="bronze.orders_raw", comment="Orders as landed")
    def orders_raw():
        return dp.read_files("orders", format="json",
                             schema="order_id STRING, customer_id INT, amount DOUBLE, ordered_at STRING")


    @dp.table(name="silver.orders", quarantine=True, partition_cols=["day"], comment="Checked orders")
    @dp.expect_or_drop("has_order_id", "order_id IS NOT NULL")
    @dp.expect_or_drop("positive_amount", "amount > 0")
    @dp.expect("known_customer", "customer_id IS NOT NULL")
    @dp.expect_or_fail("sane_amount", "amount IS NULL OR amount < 1000000")
    @dp.dedupe(keys=["order_id"], event_time="ordered_at", watermark="10 minutes")
    def orders():
        return (dp.read_stream("orders_raw")
                .withColumn("ordered_at", F.to_timestamp("ordered_at"))
                .withColumn("day", F.to_date("ordered_at"))
                .withColumn("source_tag", F.lit(dp.config("api_token"))))


    @dp.materialized_view(name="gold.customer_totals", cluster_by=["customer_id"])
    def customer_totals():
        return (dp.read("orders").groupBy("customer_id")
                .agg(F.sum("amount").alias("revenue"), F.count("*").alias("orders")))
''')

GOLD_SQL = textwrap.dedent('''
    CREATE MATERIALIZED VIEW gold.daily_revenue
    COMMENT 'Revenue per day'
    AS SELECT day, SUM(amount) AS revenue, COUNT(*) AS orders FROM orders GROUP BY day;
''')


def _order(order_id, customer, amount, at):
    return json.dumps({"order_id": order_id, "customer_id": customer, "amount": amount, "ordered_at": at})


DROPS = {
    # o1 twice (a duplicate), no order id, a negative amount
    1: [_order(f"o{i}", 100 + i, 10.0 * i, f"2026-01-01T10:0{i}:00") for i in range(1, 7)]
       + [_order("o1", 101, 10.0, "2026-01-01T10:01:00"), _order(None, 107, 5.0, "2026-01-01T10:07:00"),
          _order("o8", 108, -5.0, "2026-01-01T10:08:00")],
    # later orders, a zero amount, an unknown customer (kept, warned), and one 2 hours late
    2: [_order(f"o{i}", 100 + i, 10.0 * i, f"2026-01-01T11:{i:02d}:00") for i in range(9, 13)]
       + [_order("o13", 113, 0.0, "2026-01-01T11:13:00"), _order("o15", None, 15.0, "2026-01-01T11:15:00"),
          _order("o14", 114, 14.0, "2026-01-01T09:00:00")],
    3: [_order(f"o{i}", 100 + i, 10.0 * i, f"2026-01-01T12:{i:02d}:00") for i in range(16, 19)],
    # an absurd amount: sane_amount (expect_or_fail) stops the flow
    4: [_order("o19", 119, 5_000_000.0, "2026-01-01T13:00:00")],
}

_landed = [time.time() - 3600.0]


def write_project(folder: Path) -> Path:
    (folder / "transformations").mkdir(parents=True, exist_ok=True)
    (folder / "assay.yml").write_text(SPEC)
    (folder / "transformations" / "shop.py").write_text(PIPELINE)
    (folder / "transformations" / "gold.sql").write_text(GOLD_SQL)
    (folder / "landing" / "orders").mkdir(parents=True, exist_ok=True)
    return folder


def land(folder: Path, drop: int) -> Path:
    """One drop of orders, with a modification time later than every earlier drop."""
    path = folder / "landing" / "orders" / f"part-{drop}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(DROPS[drop]) + "\n")
    _landed[0] += 10.0
    os.utime(tmp, (_landed[0], _landed[0]))
    os.replace(tmp, path)
    return path


def write_wide_project(folder: Path, datasets: int = 300) -> Path:
    """A generated pipeline of `datasets` datasets: bronze streaming tables over landing folders,
    silver streaming tables with an expectation, gold materialized views joining two silvers."""
    bronze, silver = datasets // 10, datasets * 4 // 10
    gold = datasets - bronze - silver
    (folder / "transformations").mkdir(parents=True, exist_ok=True)
    (folder / "assay.yml").write_text("name: wide\nstorage: ./storage\nlanding: ./landing\n"
                                      "schemas: {bronze: 01_bronze, silver: 02_silver, gold: 03_gold, "
                                      "system: _system}\n")
    lines = ["from pyspark.sql import functions as F", "from assay import pipelines as dp", ""]
    for i in range(bronze):
        lines += [f'@dp.table(name="bronze.b{i:03d}")', f"def b{i:03d}():",
                  f'    return dp.read_files("src{i:03d}", format="json", schema="id INT, v DOUBLE")', ""]
    for i in range(silver):
        lines += [f'@dp.table(name="silver.s{i:03d}")', '@dp.expect("positive_v", "v > 0")', f"def s{i:03d}():",
                  f'    return dp.read_stream("b{i % bronze:03d}").where("id IS NOT NULL")', ""]
    for i in range(gold):
        a, b = i % silver, (i * 7 + 3) % silver
        lines += [f'@dp.materialized_view(name="gold.g{i:03d}")', f"def g{i:03d}():",
                  f'    return (dp.read("s{a:03d}").unionByName(dp.read("s{b:03d}"))',
                  '            .groupBy("id").agg(F.sum("v").alias("v")))', ""]
    (folder / "transformations" / "wide.py").write_text("\n".join(lines))
    return folder


# --- the event log, read without the UI's code -----------------------------------------------

def events(storage: Path) -> list[dict]:
    rows = DeltaTable(str(storage / "_system" / "event_log")).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: r["timestamp"])


def run_ids(storage: Path) -> list[str]:
    """Run ids, oldest first."""
    seen = []
    for row in events(storage):
        if row["run_id"] not in seen:
            seen.append(row["run_id"])
    return seen


def batches(storage: Path, run_id: str) -> list[dict]:
    """The batch events of one run: flow_progress, and the flow_failed event of a batch that an
    expect_or_fail rule stopped (it carries the rows read and every rule's counts)."""
    return [row for row in events(storage) if row["run_id"] == run_id and (
        row["event_type"] == "flow_progress" or (row["event_type"] == "flow_failed" and row["expectations"]))]


def flow_totals(storage: Path, run_id: str) -> dict[str, dict[str, int]]:
    """rows_* summed over each target's batches of one run."""
    totals: dict[str, dict[str, int]] = {}
    for row in batches(storage, run_id):
        entry = totals.setdefault(row["target"], {})
        for key in ("rows_read", "rows_written", "rows_dropped", "rows_quarantined", "rows_late", "rows_duplicate"):
            entry[key] = entry.get(key, 0) + (row[key] or 0)
    return totals


def rule_counts(storage: Path, run_id: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(target, rule) → (passed, failed) in one run."""
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for row in batches(storage, run_id):
        for rule in json.loads(row["expectations"] or "[]"):
            passed, failed = counts.get((row["target"], rule["name"]), (0, 0))
            counts[(row["target"], rule["name"])] = (passed + rule["passed"], failed + rule["failed"])
    return counts


def run_outcome(storage: Path, run_id: str) -> str | None:
    for row in events(storage):
        if row["run_id"] == run_id and row["event_type"] in ("run_completed", "run_failed"):
            return row["event_type"].removeprefix("run_")
    return None
