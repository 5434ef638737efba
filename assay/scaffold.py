"""`assay init NAME`: a small working project (assay.yml, Python and SQL transformations, sample data)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .errors import ConfigError
from .spec import SCHEMA_NAME

ASSAY_YML = """\
# The pipeline: where its data lives, which code defines it, and per-target overrides.
name: {name}
catalog: {name}
storage: ./storage            # Delta tables; override with --storage or ASSAY_STORAGE
landing: ./landing            # incoming files; override with --landing or ASSAY_LANDING
schemas:
  landing: 00_landing
  bronze: 01_bronze
  silver: 02_silver
  gold: 03_gold
  system: _system             # checkpoints, state and the event log
libraries:
  - transformations/**/*.py
  - transformations/**/*.sql
configuration:
  owner: data-team            # read in code with dp.config("owner")
batch:
  max_files: 1000
  max_bytes: 256MB
targets:
  dev: {{}}
  prod:
    storage: ${{env:ASSAY_PROD_STORAGE:-./prod_storage}}
"""

PYTHON = '''\
"""Bronze and silver: orders landing as JSON lines, read once each, checked and deduplicated."""
from pyspark.sql import functions as F

from assay import pipelines as dp


@dp.table(name="bronze.orders_raw", comment="Every order line as it landed, with its source file.",
          quarantine=True)
@dp.expect_or_drop("has_order_id", "order_id IS NOT NULL")
@dp.expect("known_customer", "customer_id IS NOT NULL")
def orders_raw():
    return (dp.read_files("orders", format="json",
                          schema="order_id STRING, customer_id INT, amount DOUBLE, ordered_at STRING")
            .withColumn("ordered_at", F.to_timestamp("ordered_at"))
            .withColumn("ingested_at", F.current_timestamp()))


@dp.table(name="silver.orders", comment="One row per order; late copies are kept apart in orders_late.")
@dp.dedupe(keys=["order_id"], event_time="ordered_at", watermark="10 minutes")
@dp.expect_or_drop("positive_amount", "amount >= 0")
def orders():
    return dp.read_stream("orders_raw").select(
        "order_id", "customer_id", "amount", "ordered_at", "_source_file", "_source_modified")
'''

SQL = """\
-- Gold: recomputed from silver on every run.
CREATE MATERIALIZED VIEW gold.customer_totals (
  CONSTRAINT has_customer EXPECT (customer_id IS NOT NULL) ON VIOLATION DROP ROW
)
COMMENT 'Revenue and order count per customer'
AS SELECT customer_id, COUNT(*) AS orders, ROUND(SUM(amount), 2) AS revenue
FROM orders
GROUP BY customer_id;
"""


def sample_orders(count: int = 200, start: datetime | None = None) -> list[dict]:
    start = start or datetime(2026, 11, 1, tzinfo=timezone.utc)
    rows = []
    for i in range(count):
        rows.append({"order_id": f"o-{i:05d}", "customer_id": (i * 7) % 23 if i % 50 else None,
                     "amount": round(5 + (i * 13) % 200 + 0.99, 2),
                     "ordered_at": (start + timedelta(seconds=37 * i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")})
    return rows


def create_project(folder: Path) -> Path:
    name = folder.name
    if not SCHEMA_NAME.match(name):
        raise ConfigError(f"'{name}' is not a valid pipeline name: use letters, digits and underscores")
    if (folder / "assay.yml").exists():
        raise ConfigError(f"{folder / 'assay.yml'} already exists: choose another folder")
    (folder / "transformations").mkdir(parents=True, exist_ok=True)
    (folder / "landing" / "orders").mkdir(parents=True, exist_ok=True)
    (folder / "assay.yml").write_text(ASSAY_YML.format(name=name))
    (folder / "transformations" / "orders.py").write_text(PYTHON)
    (folder / "transformations" / "gold.sql").write_text(SQL)
    rows = sample_orders()
    rows.append(dict(rows[3]))                      # a duplicate delivery
    lines = [json.dumps(r) for r in rows] + ['{"order_id": "broken']
    (folder / "landing" / "orders" / "orders-0001.json").write_text("\n".join(lines) + "\n")
    (folder / ".gitignore").write_text("storage/\nprod_storage/\n")
    return folder
