"""SQL pipeline definitions read with a real parser: references are never found in strings or
comments, CTE names are not datasets, STREAM reads in every spelling, the CREATE forms, and
errors that name the file and line."""
import json

import pytest

from assay.definitions import Registry
from assay.errors import GraphError
from assay.sql import load_sql_file, references
from tests.conftest import table


def refs(sql):
    return [(".".join(r.parts), "stream" if r.stream else "table") for r in references(sql)]


def test_the_issue_query_reads_one_stream_and_no_table():
    assert refs("SELECT kind AS stream FROM STREAM(orders) WHERE note <> 'came from legacy'") == [
        ("orders", "stream")]


def test_strings_and_comments_are_not_references():
    sql = """
    SELECT o.id, 'FROM fake JOIN fake2' AS a, "STREAM(fake3)" AS b  -- FROM fake4 JOIN fake5
    FROM STREAM(orders) o            /* JOIN fake6 ON 1 = 1 ; STREAM fake7 */
    LEFT JOIN customers c ON c.id = o.customer_id AND c.note <> 'from stream(x)'
    WHERE o.kind NOT IN ('JOIN', 'FROM')
    """
    assert refs(sql) == [("orders", "stream"), ("customers", "table")]


def test_stream_spellings_and_qualified_names():
    assert refs("SELECT * FROM STREAM orders") == [("orders", "stream")]
    assert refs("SELECT * FROM stream bronze.orders AS o JOIN gold.x ON o.id = x.id") == [
        ("bronze.orders", "stream"), ("gold.x", "table")]
    assert refs("SELECT * FROM STREAM ( `bronze`.`orders` ) o, `gold`.`x y`") == [
        ("bronze.orders", "stream"), ("gold.x y", "table")]
    # a column named stream, a table named stream: neither is a stream read
    assert refs("SELECT stream, s.stream FROM events s") == [("events", "table")]


def test_ctes_subqueries_and_table_functions():
    sql = """
    WITH orders AS (SELECT * FROM orders WHERE amount > 0),        -- the dataset, filtered
         big AS (SELECT * FROM orders WHERE amount > 100)           -- the CTE above
    SELECT b.*, (SELECT MAX(amount) FROM refunds) AS top_refund
    FROM big b JOIN (SELECT id FROM customers) c ON c.id = b.customer_id
    WHERE b.id IN (SELECT order_id FROM flagged) AND EXISTS (SELECT 1 FROM range(10))
    """
    assert refs(sql) == [("orders", "table"), ("refunds", "table"), ("customers", "table"), ("flagged", "table")]
    # window() right after GROUP BY is a function, not a WINDOW clause
    assert refs("SELECT COUNT(*) FROM STREAM(clicks) GROUP BY window(ts, '1 hour'), page") == [("clicks", "stream")]


def load(tmp_path, text):
    path = tmp_path / "defs.sql"
    path.write_text(text)
    registry = Registry()
    load_sql_file(path, registry, "silver")
    return registry


def test_create_forms(tmp_path):
    registry = load(tmp_path, """-- every form; a ';' in a comment
CREATE OR REFRESH STREAMING TABLE bronze.`raw_events` (
  id STRING COMMENT 'the id; never null)',
  CONSTRAINT has_id EXPECT (id IS NOT NULL AND id <> ')') ON VIOLATION DROP ROW,
  CONSTRAINT sane   EXPECT (coalesce(amount, 0) BETWEEN -1 AND 1e9)
)
COMMENT 'it''s raw' PARTITIONED BY (day) CLUSTER BY (id, ts)
TBLPROPERTIES ('delta.appendOnly' = 'true')
AS SELECT * FROM STREAM(landing_events);

CREATE MATERIALIZED VIEW gold.totals AS
WITH t AS (SELECT * FROM `raw_events`) SELECT day, COUNT(*) AS n FROM t GROUP BY day;

CREATE TEMPORARY VIEW recent AS SELECT * FROM totals WHERE day > '2026-01-01';
CREATE LIVE TABLE legacy AS SELECT * FROM recent;
SET spark.sql.shuffle.partitions = 4;
""")
    raw = registry.datasets["raw_events"]
    assert (raw.kind, raw.schema_name, raw.location.line) == ("streaming_table", "bronze", 2)
    assert [(e.name, e.action, e.sql) for e in raw.expectations] == [
        ("has_id", "drop", "id IS NOT NULL AND id <> ')'"), ("sane", "warn", "coalesce(amount, 0) BETWEEN -1 AND 1e9")]
    assert raw.comment == "it's raw" and raw.partition_cols == ("day",) and raw.cluster_by == ("id", "ts")
    assert raw.table_properties == {"delta.appendOnly": "true"}
    assert registry.flows["raw_events"].sql == "SELECT * FROM STREAM(landing_events)"
    totals = registry.datasets["totals"]
    assert (totals.kind, totals.schema_name, totals.location.line) == ("materialized_view", "gold", 11)
    assert registry.flows["totals"].sql.startswith("WITH t AS")
    assert registry.datasets["recent"].kind == "temporary_view" and registry.datasets["recent"].schema_name == "silver"
    assert registry.datasets["legacy"].kind == "materialized_view"


@pytest.mark.parametrize("text, where, message", [
    ("SELECT 1;", ":1:", "unsupported statement"),
    ("\n\nCREATE VIEW v AS SELECT 1;", ":3:", "unsupported statement"),
    ("CREATE MATERIALIZED VIEW v;", ":1:", "'v' has no AS <query>"),
    ("\nCREATE MATERIALIZED VIEW v (\n  CONSTRAINT c EXPECT (x > 0) ON VIOLATION SKIP\n) AS SELECT 1 AS x;",
     ":3:", "expectation 'c': expected ON VIOLATION DROP ROW"),
    ("CREATE MATERIALIZED VIEW v AS\nSELECT a,\nFROM t WHERE (;", ":3:", ""),
    ("CREATE MATERIALIZED VIEW v AS SELECT 'unterminated FROM t;", ":", "Error tokenizing"),
    ("CREATE STREAMING TABLE v AS\n\nSELECT * FROM STREAM(SELECT 1);", ":3:", "STREAM() takes the name of a dataset"),
    ("CREATE MATERIALIZED VIEW v LOCATION '/tmp/x' AS SELECT 1;", ":1:", "LOCATION '/tmp/x' is not supported"),
])
def test_errors_name_file_and_line(tmp_path, text, where, message):
    with pytest.raises(GraphError) as caught:
        load(tmp_path, text)
    assert f"defs.sql{where}" in str(caught.value) and message in str(caught.value)


def test_sql_flows_run_with_awkward_sql(project, run_pipeline):
    folder = project({
        "transformations/bronze.py": """
from assay import pipelines as dp

@dp.table(name="bronze.orders")
def orders():
    return dp.read_files("orders", "json", schema="id STRING, customer STRING, kind STRING, note STRING")

@dp.materialized_view(name="silver.customers")
def customers():
    return dp.read_files("customers", "json", schema="customer STRING, region STRING", batch=True)
""",
        "transformations/silver.sql": """
-- the query of the issue: a column aliased `stream`, a string mentioning FROM
CREATE OR REFRESH STREAMING TABLE silver.kinds AS
SELECT kind AS stream FROM STREAM(orders) WHERE note <> 'came from legacy';

/* a stream joined with a table, qualified names, backticks, a string with JOIN and STREAM */
CREATE OR REFRESH STREAMING TABLE silver.enriched AS
SELECT orders.id, `customers`.region, 'JOIN x ON STREAM(y)' AS text
FROM STREAM bronze.orders
JOIN silver.customers ON silver.customers.customer = orders.customer;

CREATE MATERIALIZED VIEW gold.by_region AS
WITH enriched AS (SELECT * FROM enriched WHERE region IS NOT NULL)   -- the CTE shadows the dataset
SELECT region, COUNT(*) AS n FROM enriched GROUP BY region;
"""})
    (folder / "landing/orders").mkdir(parents=True)
    (folder / "landing/customers").mkdir(parents=True)
    (folder / "landing/customers/c.json").write_text(
        '{"customer": "c1", "region": "north"}\n{"customer": "c2", "region": "south"}\n')
    (folder / "landing/orders/o.json").write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "1", "customer": "c1", "kind": "web", "note": "fine"},
        {"id": "2", "customer": "c2", "kind": "app", "note": "came from legacy"},
        {"id": "3", "customer": "c1", "kind": "app", "note": None},
        {"id": "4", "customer": "c9", "kind": "web", "note": "unknown customer"}]))
    result = run_pipeline(folder)
    assert result["kinds"].rows_written == 2 and result["enriched"].rows_written == 3
    assert sorted(r["stream"] for r in table(folder, "02_silver", "kinds")) == ["web", "web"]
    assert sorted((r["id"], r["region"], r["text"]) for r in table(folder, "02_silver", "enriched")) == [
        ("1", "north", "JOIN x ON STREAM(y)"), ("2", "south", "JOIN x ON STREAM(y)"),
        ("3", "north", "JOIN x ON STREAM(y)")]
    assert sorted((r["region"], r["n"]) for r in table(folder, "03_gold", "by_region")) == [("north", 2), ("south", 1)]
