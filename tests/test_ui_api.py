"""The JSON API of `assay ui`, in process (Starlette's test client), over a real pipeline run on the
embedded engine: three runs (two that complete with dropped, quarantined, late and warned rows,
one stopped by an expect_or_fail rule). Every figure is checked against the event log as delta-rs
reads it, never against the UI's own code."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from starlette.testclient import TestClient

from assay.errors import ExpectationFailed
from assay.runtime.runner import RunOptions, Runner
from assay.spec import load_spec
from assay.ui.api import Lake
from assay.ui.app import create_app
from assay.ui.events import EventLogReader
from assay.ui.report import render
from assay.ui.sqlbox import RejectedQuery, check_query, wrap
from tests.ui_support import (DROPS, TOKEN, TOKEN_VAR, events, flow_totals, land, rule_counts, run_ids, run_outcome,
                              write_project, write_wide_project)

MASK = f"***{TOKEN_VAR}***"


@pytest.fixture(scope="module")
def shop(tmp_path_factory, engine):
    """The small pipeline after runs 1 and 2 (complete) and 3 (failed on sane_amount)."""
    previous = os.environ.get(TOKEN_VAR)
    os.environ[TOKEN_VAR] = TOKEN
    folder = write_project(tmp_path_factory.mktemp("ui_api") / "shop")

    def run():
        return Runner(load_spec(folder), RunOptions(), engine=engine).run()
    land(folder, 1)
    run()
    land(folder, 2)
    run()
    land(folder, 4)
    with pytest.raises(ExpectationFailed):
        run()
    yield folder
    if previous is None:
        os.environ.pop(TOKEN_VAR, None)
    else:
        os.environ[TOKEN_VAR] = previous


@pytest.fixture(scope="module")
def lake(shop, engine):
    lake = Lake(load_spec(shop), engine_factory=lambda: engine)
    yield lake
    lake.close()


@pytest.fixture(scope="module")
def client(lake):
    with TestClient(create_app(lake), base_url="http://127.0.0.1:8765") as c:
        yield c


def get(client, path, **params):
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def sql(client, text, **extra):
    return client.post("/api/sql", json={"sql": text, **extra})


def test_overview_and_state(client, shop):
    doc = get(client, "/api/overview")
    assert doc["pipeline"] == "shop_ui"
    assert doc["event_log"]["runs"] == 3
    assert doc["configuration"]["api_token"] == MASK          # resolved from ${env:...}, never shown
    state = get(client, "/api/state")
    assert state["runs"] == 3 and state["running"] is False
    assert state["latest"]["run_id"] == run_ids(shop / "storage")[-1]
    assert state["latest"]["outcome"] == "failed"


def test_graph_nodes_and_counts_match_the_event_log(client, shop):
    storage = shop / "storage"
    first, second, third = run_ids(storage)
    doc = get(client, "/api/graph", run=second)
    assert doc["graph_source"] == "code" and doc["graph_error"] is None
    nodes = {n["id"]: n for n in doc["nodes"]}
    datasets = {n["id"] for n in doc["nodes"] if n["type"] == "dataset"}
    assert datasets == {"orders_raw", "orders", "customer_totals", "daily_revenue"}
    assert {"orders_quarantine", "orders_late", "source:files:orders"} <= set(nodes)
    assert doc["layers"] == ["sources", "bronze", "silver", "gold"]
    assert nodes["orders"]["layer"] == "silver" and nodes["daily_revenue"]["layer"] == "gold"
    assert nodes["daily_revenue"]["defined_at"].endswith("gold.sql:2")
    totals = flow_totals(storage, second)
    for name in datasets:
        assert nodes[name]["state"] == "completed"
        for key, value in totals[name].items():
            assert nodes[name][key] == value, (name, key)
    assert nodes["orders"]["rows_quarantined"] > 0 and nodes["orders"]["rows_late"] > 0
    assert nodes["orders_quarantine"]["rows_written"] == totals["orders"]["rows_quarantined"]
    assert nodes["orders_late"]["rows_written"] == totals["orders"]["rows_late"]
    edges = {(e["source"], e["target"], e["kind"]) for e in doc["edges"]}
    assert {("source:files:orders", "orders_raw", "source"), ("orders_raw", "orders", "stream"),
            ("orders", "customer_totals", "read"), ("orders", "daily_revenue", "read"),
            ("orders", "orders_quarantine", "quarantine"), ("orders", "orders_late", "late")} <= edges

    latest = {n["id"]: n for n in get(client, "/api/graph")["nodes"]}   # the failed run
    assert latest["orders_raw"]["state"] == "completed"
    assert latest["orders"]["state"] == "failed" and "sane_amount" in latest["orders"]["message"]
    assert latest["customer_totals"]["state"] == "skipped"
    assert client.get("/api/graph", params={"run": "no-such-run"}).status_code == 404


def test_runs_and_a_run_with_batches_offsets_and_errors(client, shop):
    storage = shop / "storage"
    ids = run_ids(storage)
    doc = get(client, "/api/runs", offset=0, limit=50)
    assert doc["total"] == 3 and [r["run_id"] for r in doc["runs"]] == ids[::-1]
    assert [r["outcome"] for r in doc["runs"]] == [run_outcome(storage, i) for i in ids[::-1]]
    assert [t[0] for t in doc["timeline"]] == ids
    for run in doc["runs"]:
        assert run["rows_written"] == sum(t["rows_written"] for t in flow_totals(storage, run["run_id"]).values())
        assert run["duration_s"] > 0
    page = get(client, "/api/runs", offset=1, limit=1)
    assert [r["run_id"] for r in page["runs"]] == [ids[1]]

    first = get(client, f"/api/runs/{ids[0]}")
    flows = {f["flow"]: f for f in first["flows"]}
    assert set(flows) == {"orders_raw", "orders", "customer_totals", "daily_revenue"}
    batch = flows["orders_raw"]["batches"][0]
    assert batch["batch_id"] == 0 and batch["rows_written"] == flow_totals(storage, ids[0])["orders_raw"]["rows_written"]
    offsets = json.dumps(batch["sources"])
    assert "part-1.json" in offsets                                  # the files of the batch
    assert {e["name"] for e in flows["orders"]["batches"][0]["expectations"]} >= {"positive_amount", "known_customer"}

    failed = get(client, f"/api/runs/{ids[-1]}")
    assert failed["run"]["outcome"] == "failed" and "sane_amount" in failed["run"]["error"]
    orders = next(f for f in failed["flows"] if f["flow"] == "orders")
    assert orders["state"] == "failed" and "sane_amount" in orders["message"]
    assert re.fullmatch(r".*transformations/shop\.py:\d+", orders["error_location"])
    assert orders["error_location"] == orders["defined_at"]
    assert client.get("/api/runs/nope").status_code == 404


def test_data_quality_per_rule_and_run_matches_the_event_log(client, shop):
    storage = shop / "storage"
    ids = run_ids(storage)
    doc = get(client, "/api/quality", last=20)
    assert [r["run_id"] for r in doc["runs"]] == ids
    orders = next(t for t in doc["tables"] if t["table"] == "orders")
    assert orders["quarantine_table"] == "orders_quarantine" and orders["late_table"] == "orders_late"
    rules = {r["name"]: r for r in orders["rules"]}
    assert {"has_order_id", "positive_amount", "known_customer", "sane_amount"} <= set(rules)
    assert rules["positive_amount"]["action"] == "drop" and rules["known_customer"]["action"] == "warn"
    assert rules["sane_amount"]["action"] == "fail"
    for index, run_id in enumerate(ids):
        counts = rule_counts(storage, run_id)
        for name, rule in rules.items():
            expected = counts.get(("orders", name))
            cell = rule["series"][index]
            assert (cell and (cell["passed"], cell["failed"])) == (expected or None), (run_id, name)
    assert rules["positive_amount"]["total_failed"] == sum(
        rule_counts(storage, i).get(("orders", "positive_amount"), (0, 0))[1] for i in ids) > 0
    assert rules["known_customer"]["total_failed"] > 0
    assert sum(orders["late"]) == sum(flow_totals(storage, i).get("orders", {}).get("rows_late", 0) for i in ids)

    quarantine = DeltaTable(str(storage / "02_silver" / "orders_quarantine")).to_pyarrow_table().to_pylist()
    rows = get(client, "/api/tables/orders_quarantine/rows", limit=100, rule="positive_amount")
    failed_rules = rows["columns"].index("_failed_rules")
    assert rows["rule"] == "positive_amount" and rows["rows"]
    assert all("positive_amount" in row[failed_rules] for row in rows["rows"])
    assert len(rows["rows"]) == sum("positive_amount" in r["_failed_rules"] for r in quarantine)
    everything = get(client, "/api/tables/orders_quarantine/rows", limit=100)
    assert len(everything["rows"]) == len(quarantine)
    late = get(client, "/api/tables/orders_late/rows", limit=100)
    assert [r[late["columns"].index("order_id")] for r in late["rows"]] == ["o14"]


def test_the_failed_run_shows_the_rule_that_stopped_it_and_the_flows_it_skipped(client, shop):
    storage = shop / "storage"
    failed = run_ids(storage)[-1]
    absurd = len(DROPS[4])                      # drop 4's rows, every one of them over sane_amount's limit
    # the event log itself (delta-rs) has the failing batch's counts and the flows left unrun
    logged = [e for e in events(storage) if e["run_id"] == failed]
    stopped = next(e for e in logged if e["event_type"] == "flow_failed")
    assert (stopped["flow"], stopped["rows_read"], stopped["rows_written"]) == ("orders", absurd, None)
    assert {r["name"]: (r["passed"], r["failed"]) for r in json.loads(stopped["expectations"])}["sane_amount"] == \
        (0, absurd)
    run_end = next(e for e in logged if e["event_type"] == "run_failed")
    assert sorted(json.loads(run_end["metrics"])["flows_not_run"]) == ["customer_totals", "daily_revenue"]

    doc = get(client, f"/api/runs/{failed}")
    flows = {f["flow"]: f for f in doc["flows"]}
    assert {name: f["state"] for name, f in flows.items()} == {
        "orders_raw": "completed", "orders": "failed", "customer_totals": "skipped", "daily_revenue": "skipped"}
    assert (flows["orders"]["rows_read"], flows["orders"]["rows_written"]) == (absurd, 0)
    [batch] = flows["orders"]["batches"]
    assert batch["status"] == "failed" and batch["rows_read"] == absurd and "sane_amount" in batch["message"]
    assert {"name": "sane_amount", "action": "fail", "passed": 0, "failed": absurd} in batch["expectations"]
    assert flows["daily_revenue"]["batches"] == [] and flows["daily_revenue"]["defined_at"].endswith("gold.sql:2")
    assert doc["run"]["rows_read"] == sum(f["rows_read"] for f in flow_totals(storage, failed).values())

    orders = next(t for t in get(client, "/api/quality", last=20)["tables"] if t["table"] == "orders")
    sane = next(r for r in orders["rules"] if r["name"] == "sane_amount")
    assert sane["last"] == {"passed": 0, "failed": absurd} and sane["total_failed"] == absurd


def test_long_values_are_cut_on_the_server_saying_how_long_they_are(tmp_path, engine):
    import pyarrow as pa
    from deltalake import write_deltalake
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "assay.yml").write_text("name: notes\nstorage: ./storage\nlanding: ./landing\n")
    big = "x" * 10_000_000
    write_deltalake(str(folder / "storage" / "01_bronze" / "notes"),
                    pa.table({"id": [1, 2], "body": [big, "short"], "blob": [b"\x01" * 3_000_000, b"ab"]}))
    with TestClient(create_app(Lake(load_spec(folder), engine_factory=lambda: engine)),
                    base_url="http://127.0.0.1:8765") as notes:
        response = notes.get("/api/tables/notes", params={"preview": 20})
        assert response.status_code == 200 and len(response.content) < 20_000
        rows = response.json()["preview"]["rows"]
        assert rows[0][1] == "x" * 2000 + "… [truncated: 10,000,000 characters in all]"
        assert rows[0][2].endswith("… [truncated: 3,000,000 bytes in all]") and len(rows[0][2]) < 2100
        assert rows[1][1:] == ["short", "base64:YWI="]
        found = notes.post("/api/sql", json={"sql": "SELECT body FROM notes WHERE id = 1"}).json()
        assert found["rows"] == [["x" * 2000 + "… [truncated: 10,000,000 characters in all]"]]


def test_tables_size_partitioning_clustering_history_preview(client, shop):
    storage = shop / "storage"
    doc = get(client, "/api/tables")
    tables = {t["name"]: t for t in doc["tables"]}
    assert {"orders_raw", "orders", "orders_quarantine", "orders_late", "customer_totals", "daily_revenue",
            "event_log"} <= set(tables)
    for name, t in tables.items():
        delta = DeltaTable(str(storage / t["path"]))
        assert t["rows"] == delta.to_pyarrow_dataset().count_rows(), name
        assert t["version"] == delta.version() and t["size_bytes"] > 0
    assert tables["orders"]["partition_cols"] == ["day"] and tables["orders"]["kind"] == "streaming_table"
    assert tables["customer_totals"]["cluster_by"] == ["customer_id"]
    assert tables["orders_quarantine"]["kind"] == "quarantine" and tables["orders_quarantine"]["parent"] == "orders"
    assert tables["event_log"]["kind"] == "event_log"

    detail = get(client, "/api/tables/orders", preview=5)
    assert {"order_id", "amount", "ordered_at", "day"} <= {c["name"] for c in detail["columns"]}
    assert len(detail["preview"]["rows"]) == 5 and detail["preview"]["columns"][0] == detail["columns"][0]["name"]
    versions = [h["version"] for h in detail["history"]]
    assert versions == sorted(versions, reverse=True) and versions[0] == tables["orders"]["version"]
    assert client.get("/api/tables/nope").status_code == 404
    assert client.get("/api/tables/..%2F..%2Fetc").status_code == 404


def test_sql_box_answers_queries_like_assay_query(client, shop):
    storage = shop / "storage"
    res = sql(client, "SELECT count(*) AS n FROM orders")
    assert res.status_code == 200, res.text
    assert res.json()["rows"] == [[DeltaTable(str(storage / "02_silver" / "orders")).to_pyarrow_dataset().count_rows()]]
    res = sql(client, "WITH r AS (SELECT run_id FROM event_log) SELECT count(DISTINCT run_id) FROM r;  ")
    assert res.json()["rows"] == [[3]]
    res = sql(client, "SELECT * FROM orders ORDER BY order_id -- a comment at the end", limit=2)
    assert res.status_code == 200 and len(res.json()["rows"]) == 2 and res.json()["truncated"] is True


INJECTIONS = [
    "DROP TABLE orders",
    "DROP VIEW orders",
    "CREATE TABLE x (a INT)",
    "CREATE OR REPLACE TEMP VIEW orders AS SELECT 1 AS a",
    "INSERT INTO orders SELECT * FROM orders",
    "DELETE FROM orders WHERE true",
    "UPDATE orders SET amount = 0",
    "MERGE INTO orders t USING orders s ON t.order_id = s.order_id WHEN MATCHED THEN DELETE",
    "TRUNCATE TABLE orders",
    "ALTER TABLE orders ADD COLUMNS (x INT)",
    "SELECT 1; DROP TABLE orders",
    "SELECT 1) AS q; DROP VIEW orders; SELECT (1",
    "SELECT * FROM orders; -- \nDROP VIEW orders",
    "/* SELECT */ DROP VIEW orders",
    "WITH a AS (INSERT INTO orders SELECT * FROM orders) SELECT 1",
    "SELECT * INTO copy FROM orders",
    "SET spark.sql.ansi.enabled=false",
    "RESET",
    "ADD JAR /tmp/x.jar",
    "CACHE TABLE orders",
    "REFRESH TABLE orders",
    "OPTIMIZE orders",
    "VACUUM orders",
    "MSCK REPAIR TABLE orders",
    "LOAD DATA LOCAL INPATH '/etc/passwd' INTO TABLE orders",
    "SELECT * FROM parquet.`/etc`",
    "SELECT * FROM delta.`/tmp`",
    "SELECT * FROM json.`/etc/hostname`",
    "SELECT * FROM read_files('/etc/hostname')",
    "SELECT reflect('java.lang.System', 'exit', 0)",
    "SELECT java_method('java.lang.Runtime', 'getRuntime')",
    "SELECT * FROM secret_table",
    "DESCRIBE orders",
    "",
]


def test_sql_box_refuses_anything_but_a_query(client, shop, engine):
    storage = shop / "storage"
    versions = {p.name: DeltaTable(str(p)).version() for p in storage.glob("*/*") if (p / "_delta_log").is_dir()}
    for text in INJECTIONS:
        res = sql(client, text)
        assert res.status_code == 400, (text, res.text)
        assert res.json()["error"], text
    # nothing changed, and the views still answer
    assert versions == {p.name: DeltaTable(str(p)).version() for p in storage.glob("*/*") if (p / "_delta_log").is_dir()}
    assert sql(client, "SELECT count(*) FROM orders").status_code == 200
    # the second check: the engine gets the text only as a subquery, where its parser rejects statements
    spark = engine.spark
    for statement in ("DROP VIEW orders", "CREATE TABLE zz (a INT)", "INSERT INTO orders SELECT * FROM orders",
                      "SET x=1", "SELECT 1) q; DROP VIEW orders; SELECT (1"):
        with pytest.raises(Exception):
            spark.sql(wrap(statement, 5)).toArrow()
    assert spark.sql(wrap("SELECT 1 AS one -- trailing comment", 5)).toArrow().to_pylist() == [{"one": 1}]
    with pytest.raises(RejectedQuery, match="one query"):
        check_query("SELECT 1; SELECT 2", {"orders"})
    assert check_query("select * from ORDERS;", {"orders"}) == "select * from ORDERS"


def test_requests_must_name_this_server_and_cross_site_posts_are_refused(client):
    assert client.get("/api/state", headers={"Host": "evil.example"}).status_code == 421
    assert client.get("/api/state", headers={"Host": "localhost:8765"}).status_code == 200
    assert client.get("/api/state", headers={"Host": "[::1]:8765"}).status_code == 200
    res = client.post("/api/sql", json={"sql": "SELECT 1"}, headers={"Origin": "http://evil.example"})
    assert res.status_code == 403
    res = client.post("/api/sql", content='{"sql": "SELECT 1"}', headers={"Content-Type": "text/plain"})
    assert res.status_code == 415
    for method in ("put", "delete", "patch"):
        assert getattr(client, method)("/api/tables").status_code == 405
    assert client.post("/api/tables").status_code == 405
    page = client.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def _every_document(client, shop) -> list[str]:
    ids = run_ids(shop / "storage")
    paths = ["/api/overview", "/api/state", "/api/graph", "/api/runs", "/api/quality", "/api/tables"]
    paths += [f"/api/runs/{i}" for i in ids] + [f"/api/graph?run={i}" for i in ids]
    paths += [f"/api/tables/{t['name']}" for t in get(client, "/api/tables")["tables"]]
    paths += ["/api/tables/orders/rows", "/api/tables/orders_quarantine/rows?rule=positive_amount"]
    bodies = []
    for path in paths:
        res = client.get(path)
        assert res.status_code == 200, (path, res.text)
        bodies.append(res.text)
    for text in ("SELECT source_tag FROM orders", "SELECT * FROM event_log",
                 f"SELECT '{TOKEN}' AS typed_in"):
        res = sql(client, text)
        assert res.status_code == 200, res.text
        bodies.append(res.text)
    return bodies


def test_secrets_never_reach_the_api_or_a_report(client, lake, shop):
    bodies = _every_document(client, shop)
    assert not [b for b in bodies if TOKEN in b]
    everything = "\n".join(bodies)
    assert MASK in everything                          # the configuration, and the table that holds it
    assert MASK in client.get("/api/tables/orders").text
    html = render(lake)
    assert TOKEN not in html and MASK in html


def test_the_api_writes_nothing(client, shop):
    def snapshot():
        return {str(p.relative_to(shop)): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(shop.rglob("*")) if p.is_file()}
    before = snapshot()
    _every_document(client, shop)
    assert snapshot() == before


def test_a_report_is_one_self_contained_file(lake):
    html = render(lake)
    assert "<script src=" not in html and "<link" not in html.replace('<link rel="icon" href="data:,">', "")
    assert "default-src 'none'" in html and "connect-src" not in html
    data = json.loads(re.search(r'<script id="assay-report" type="application/json">(.*?)</script>', html,
                                re.S).group(1))
    assert data["pipeline"] == "shop_ui"
    assert {"/api/overview", "/api/graph", "/api/runs?offset=0&limit=50", "/api/quality?last=20",
            "/api/tables", "/api/tables/orders?preview=20",
            "/api/tables/orders_quarantine/rows?limit=100&rule=positive_amount"} <= set(data["data"])


def test_the_event_log_is_read_incrementally(shop, engine):
    storage = shop / "storage"
    reader = EventLogReader(storage / "_system" / "event_log")
    before = reader.snapshot()
    assert len(before.runs) == 3 and reader.loads == {"full": 1, "incremental": 0}
    assert reader.snapshot() is before                                 # nothing new: no read at all
    with pytest.raises(ExpectationFailed):                             # one more run (fails again)
        Runner(load_spec(shop), RunOptions(), engine=engine).run()
    after = reader.snapshot()
    assert reader.loads == {"full": 1, "incremental": 1} and len(after.runs) == 4
    fresh = EventLogReader(storage / "_system" / "event_log").snapshot()
    assert [r.summary() for r in after.ordered()] == [r.summary() for r in fresh.ordered()]
    assert after.events == fresh.events == len(DeltaTable(str(storage / "_system" / "event_log"))
                                               .to_pyarrow_table())


def test_a_300_dataset_graph(tmp_path, engine):
    folder = write_wide_project(tmp_path / "wide")
    lake = Lake(load_spec(folder), engine_factory=lambda: engine)
    started = time.monotonic()
    doc = lake.graph()
    seconds = time.monotonic() - started
    datasets = [n for n in doc["nodes"] if n["type"] == "dataset"]
    assert len(datasets) == 300 and doc["graph_error"] is None
    assert {n["state"] for n in datasets} == {"never"} and doc["run"] is None
    assert len([n for n in doc["nodes"] if n["type"] == "source"]) == 30
    assert doc["layers"] == ["sources", "bronze", "silver", "gold"]
    print(f"300-dataset graph built in {seconds:.2f}s, {len(doc['edges'])} edges")


def test_append_flows_are_nodes_between_their_sources_and_their_table(tmp_path, engine):
    folder = tmp_path / "multi"
    (folder / "transformations").mkdir(parents=True)
    (folder / "assay.yml").write_text("name: multi\nstorage: ./storage\nlanding: ./landing\n")
    (folder / "transformations" / "flows.py").write_text(
        "from assay import pipelines as dp\n\n"
        "dp.create_streaming_table('all_orders')\n\n\n"
        "@dp.append_flow(target='all_orders')\n"
        "def web_orders():\n"
        "    return dp.read_files('web', format='json', schema='id INT')\n\n\n"
        "@dp.append_flow(target='all_orders')\n"
        "def shop_orders():\n"
        "    return dp.read_files('shop', format='json', schema='id INT')\n")
    doc = Lake(load_spec(folder), engine_factory=lambda: engine).graph()
    assert doc["graph_error"] is None
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert nodes["flow:web_orders"]["type"] == "flow" and nodes["flow:shop_orders"]["type"] == "flow"
    assert nodes["all_orders"]["flows"] == ["web_orders", "shop_orders"]
    edges = {(e["source"], e["target"]) for e in doc["edges"]}
    assert {("source:files:web", "flow:web_orders"), ("flow:web_orders", "all_orders"),
            ("source:files:shop", "flow:shop_orders"), ("flow:shop_orders", "all_orders")} <= edges
