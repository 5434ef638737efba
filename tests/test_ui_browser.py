"""`assay ui` and `assay report` in a real browser: Debian's chromium, headless, driven by
Playwright (scripts/browser.sh installs it; `make test` runs that). One server (`assay ui` as a
subprocess) and one browser for the module. The pages are checked against the event log read
straight from delta-rs; screenshots land in the module's temporary folder."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from assay.runtime.runner import RunOptions, Runner
from assay.spec import load_spec
from tests.conftest import ROOT
from tests.ui_support import (DROPS, TOKEN, TOKEN_VAR, flow_totals, land, rule_counts, run_ids, run_outcome,
                              write_project, write_wide_project)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-gpu", "--disable-dev-shm-usage"]
ASSAY = [sys.executable, "-m", "assay.cli"]


def _num(value: int) -> str:
    return f"{value:,}"


class Site:
    def __init__(self, folder: Path, url: str, page, shots: Path, env: dict, browser):
        self.folder, self.url, self.page, self.shots, self.env = folder, url, page, shots, env
        self.storage = folder / "storage"
        self.browser = browser

    def open(self, route: str, page_name: str | None = None):
        """Go to a view and wait until it has rendered; no page may ever show the secret."""
        name = page_name or route.split("/")[0]
        self.page.goto(f"{self.url}#/{route}")
        self.page.wait_for_selector(f"body[data-page='{name}'][data-ready='1']", state="attached", timeout=30_000)
        assert TOKEN not in self.page.content()
        return self.page

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def graph_nodes(self) -> dict[str, dict]:
        return {n["id"]: n for n in self.page.evaluate(
            "() => window.assayUI.cy().nodes(':childless').map(n => n.data())")}

    def until(self, check, timeout: float = 60.0, what: str = "the page to update"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            self.page.wait_for_timeout(250)
        raise AssertionError(f"timed out waiting for {what}")

    def assay(self, *args, timeout: float = 180):
        return subprocess.run([*ASSAY, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)


def _read_url(proc: subprocess.Popen, timeout: float = 60.0) -> str:
    found: list[str] = []

    def read():
        for line in proc.stdout:
            match = re.search(r"http://\S+/", line)
            if match:
                found.append(match.group(0))
                return
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        proc.kill()
        raise AssertionError(f"assay ui did not start: {proc.stderr.read() if proc.stderr else ''}")
    return found[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory, engine):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/browser.sh install` (make test does)")
    from playwright.sync_api import sync_playwright
    base = tmp_path_factory.mktemp("ui_browser")
    home, tmp, shots = base / "home", base / "tmp", base / "screenshots"
    for d in (home, tmp, shots):
        d.mkdir()
    previous = os.environ.get(TOKEN_VAR)
    os.environ[TOKEN_VAR] = TOKEN
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "RUST_LOG": "error", TOKEN_VAR: TOKEN}

    folder = write_project(base / "shop")
    for drop in (1, 2):
        land(folder, drop)
        Runner(load_spec(folder), RunOptions(), engine=engine).run()

    server = subprocess.Popen([*ASSAY, "ui", "-p", str(folder), "--port", "0"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pw = browser = None
    try:
        url = _read_url(server)
        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, env=env)
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield Site(folder, url, page, shots, env, browser)
        assert not errors, errors
        print(f"screenshots: {shots}")
    finally:
        if browser is not None:
            browser.close()
        if pw is not None:
            pw.stop()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        if previous is None:
            os.environ.pop(TOKEN_VAR, None)
        else:
            os.environ[TOKEN_VAR] = previous


def test_graph_shows_every_dataset_with_its_state_and_counts(site):
    latest = run_ids(site.storage)[-1]
    totals = flow_totals(site.storage, latest)
    page = site.open("graph")
    page.wait_for_selector("#cy canvas")
    nodes = site.graph_nodes()
    datasets = {i for i, n in nodes.items() if n["type"] == "dataset"}
    assert datasets == {"orders_raw", "orders", "customer_totals", "daily_revenue"}
    assert {"orders_quarantine", "orders_late", "source:files:orders"} <= set(nodes)
    for name in datasets:
        assert nodes[name]["state"] == "completed"
        for key, value in totals[name].items():
            assert nodes[name][key] == value, (name, key)
        assert _num(totals[name]["rows_written"]) + " written" in nodes[name]["display"]
    assert nodes["orders_quarantine"]["rows_written"] == totals["orders"]["rows_quarantined"]
    # layers are columns, left to right
    x = {i: page.evaluate(f"() => window.assayUI.cy().getElementById('{i}').position('x')")
         for i in ("source:files:orders", "orders_raw", "orders", "customer_totals")}
    assert x["source:files:orders"] < x["orders_raw"] < x["orders"] < x["customer_totals"]
    site.shot("graph")

    # a click on the canvas, where Cytoscape drew the node, opens its details
    box = page.locator("#cy").bounding_box()
    pos = page.evaluate("() => window.assayUI.cy().getElementById('orders').renderedPosition()")
    page.mouse.click(box["x"] + pos["x"], box["y"] + pos["y"])
    page.wait_for_selector("#graph-detail h3:text-is('orders')")
    detail = page.inner_text("#graph-detail")
    assert "positive_amount" in detail and "shop.py:" in detail
    site.shot("graph-selected")

    # the list view carries the same figures
    page.click("#view-list")
    row = page.wait_for_selector("tr[data-node='orders']")
    cells = [c.inner_text() for c in row.query_selector_all("td")]
    assert cells[4] == _num(totals["orders"]["rows_written"]) and cells[6] == _num(totals["orders"]["rows_quarantined"])
    page.click("#view-graph")


def test_runs_page_lists_runs_and_opens_flows_batches_and_offsets(site):
    ids = run_ids(site.storage)
    page = site.open("runs")
    rows = page.query_selector_all("#runs-table tbody tr")
    assert [r.get_attribute("data-run") for r in rows] == ids[::-1]
    first = rows[0].inner_text()
    assert run_outcome(site.storage, ids[-1]) in first
    assert len(page.query_selector_all("svg.timeline rect.bar")) == len(ids)
    site.shot("runs")
    page.click(f"#runs-table tr[data-run='{ids[0]}']")
    page.wait_for_selector("body[data-page='run'][data-ready='1']", state="attached")
    page.wait_for_selector("#flows-table tr[data-flow='orders_raw']")
    page.click("#flows-table tr[data-flow='orders_raw']")
    offsets = page.wait_for_selector("tr[data-flow-batches='orders_raw'] pre.offsets")
    assert "part-1.json" in offsets.inner_text()
    site.shot("run")


def test_data_quality_shows_the_failing_expectation_and_its_quarantined_rows(site):
    ids = run_ids(site.storage)
    counts = rule_counts(site.storage, ids[-1])
    passed, failed = counts[("orders", "positive_amount")]
    assert failed > 0
    page = site.open("quality")
    rule = page.wait_for_selector("section[data-table='orders'] tr[data-rule='positive_amount']")
    assert rule.query_selector("td.failed").inner_text() == _num(failed)
    assert rule.query_selector("td.passed").inner_text() == _num(passed)
    assert "failed-count" in rule.query_selector("td.failed").get_attribute("class")
    warn = page.query_selector("section[data-table='orders'] tr[data-rule='known_customer'] td.failed")
    assert warn.inner_text() == _num(counts[("orders", "known_customer")][1])
    rule.click()
    chart = page.wait_for_selector("section[data-table='orders'] svg.dq-chart[data-rule='positive_amount']")
    assert len(chart.query_selector_all("g[data-run]")) == len(ids)
    panel = page.wait_for_selector("div[data-rows-for='orders'][data-loaded='orders_quarantine:positive_amount']")
    text = panel.inner_text()
    assert "_failed_rules" in text and "positive_amount" in text
    site.shot("quality")
    page.click("section[data-table='orders'] button.show-late")
    page.wait_for_selector("div[data-rows-for='orders'][data-loaded='orders_late']")
    assert "o14" in page.inner_text("div[data-rows-for='orders']")


def test_tables_page_and_its_read_only_sql_box(site):
    page = site.open("tables")
    row = page.wait_for_selector("#tables-table tr[data-table='orders']")
    assert "day" in row.inner_text()
    page.fill("#sql", "SELECT count(*) AS n FROM orders_raw")
    page.click("#sql-run")
    result = page.wait_for_selector("#sql-result table")
    written = sum(flow_totals(site.storage, i)["orders_raw"]["rows_written"] for i in run_ids(site.storage))
    assert result.query_selector("tbody td").inner_text() == str(written)
    page.fill("#sql", "SELECT 1; DROP VIEW orders")
    page.click("#sql-run")
    assert "one query" in page.wait_for_selector("#sql-error").inner_text()
    page.fill("#sql", "DELETE FROM orders")
    page.click("#sql-run")
    page.wait_for_selector("#sql-error:has-text('only queries')")
    page.fill("#sql", "SELECT source_tag FROM orders LIMIT 1")
    page.click("#sql-run")
    assert f"***{TOKEN_VAR}***" in page.wait_for_selector("#sql-result table").inner_text()
    assert TOKEN not in page.content()
    site.shot("tables")
    page = site.open("tables/orders", "table")
    assert page.query_selector_all("#columns-table tbody tr")
    assert page.query_selector_all("#history-table tbody tr")
    site.shot("table")


def test_graph_follows_a_continuous_run_live(site):
    page = site.open("graph")
    before = page.evaluate("() => window.assayUI.graph().run.run_id")
    land(site.folder, 3)
    runner = subprocess.Popen([*ASSAY, "run", "-p", str(site.folder), "--continuous", "--interval", "2s"],
                              cwd=ROOT, env=site.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def new_run_with_drop_3():
            for run_id in run_ids(site.storage)[::-1]:
                if run_outcome(site.storage, run_id) == "completed" and run_id > before and \
                        flow_totals(site.storage, run_id).get("orders_raw", {}).get("rows_written"):
                    return run_id
            return None
        fresh = site.until(new_run_with_drop_3, 90, "the continuous run to process drop 3")
        # the page was not reloaded: it polls, and redraws when the event log moves on
        shown = site.until(lambda: (lambda r: r if r and r != before else None)(
            page.evaluate("() => window.assayUI.graph().run && window.assayUI.graph().run.run_id")),
            30, "the graph to show a newer run")
        assert shown >= fresh
        # Rounds keep coming every 2 s: read the run the page shows and its nodes in one snapshot,
        # once that run is complete, and compare them with the event log's counts of that run.
        snapshot = site.until(lambda: page.evaluate(
            """() => { const g = window.assayUI.graph();
                       return g.run && g.run.outcome === 'completed' &&
                              {run: g.run.run_id, nodes: window.assayUI.cy().nodes(':childless').map(n => n.data())}; }"""),
            30, "the run on the page to complete")
        nodes = {n["id"]: n for n in snapshot["nodes"]}
        for name, counts in flow_totals(site.storage, snapshot["run"]).items():
            assert nodes[name]["rows_written"] == counts["rows_written"], name
        assert "last run completed" in page.inner_text("#live")
        site.shot("graph-live")
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(60)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait(10)


def test_a_failed_run_is_red_with_its_error_and_file_line(site):
    land(site.folder, 4)
    result = site.assay("run", "-p", str(site.folder))
    assert result.returncode != 0 and "sane_amount" in result.stderr
    failed = run_ids(site.storage)[-1]
    assert run_outcome(site.storage, failed) == "failed"
    page = site.open("graph")
    # the page may have polled while that run was going: wait for it to show the run's end
    site.until(lambda: page.evaluate("() => [window.assayUI.graph().run.run_id, window.assayUI.graph().run.outcome]")
               == [failed, "failed"], 30, "the graph to show the failed run")
    nodes = site.graph_nodes()
    assert nodes["orders"]["state"] == "failed" and nodes["orders"]["stroke"] == "#d64545", \
        {k: nodes["orders"].get(k) for k in ("state", "stroke", "fill", "message", "rows_read")}
    assert nodes["customer_totals"]["state"] == "skipped"
    legend = page.evaluate("() => ['skipped', 'never'].map(s => getComputedStyle("
                           "document.querySelector('.legend .dot.' + s)).backgroundColor)")
    assert legend[0] != legend[1] and legend[0] == _rgb(nodes["customer_totals"]["stroke"])   # as drawn
    site.shot("graph-failed")
    page = site.open(f"runs/{failed}", "run")
    assert "sane_amount" in page.inner_text("#run-error")
    location = page.inner_text("tr[data-flow-batches='orders'] .error-location")
    assert re.fullmatch(r".*transformations/shop\.py:\d+", location)
    # the failing flow read drop 4's rows, and its batch shows the rule's count
    read = flow_totals(site.storage, failed)["orders"]["rows_read"]
    assert read == len(DROPS[4])
    cells = [c.inner_text() for c in page.query_selector_all("#flows-table tr[data-flow='orders'] td")]
    assert cells[1:4] == ["failed", "1", _num(read)]
    batches = page.inner_text("tr[data-flow-batches='orders']")
    assert f"sane_amount: {_num(read)} failed" in batches and "No batch" not in batches
    # the flows it never reached are listed as skipped, saying why
    for name in ("customer_totals", "daily_revenue"):
        assert page.inner_text(f"#flows-table tr[data-flow='{name}'] .badge") == "skipped"
        page.click(f"#flows-table tr[data-flow='{name}']")
        assert "Not run: the run stopped when orders failed" in page.inner_text(f"tr[data-flow-batches='{name}']")
    site.shot("run-failed")
    page = site.open("quality")
    sane = page.wait_for_selector("section[data-table='orders'] tr[data-rule='sane_amount']")
    assert sane.query_selector("td.failed").inner_text() == _num(read)
    site.shot("quality-failed")


def _rgb(color: str) -> str:
    return "rgb({}, {}, {})".format(*(int(color[i:i + 2], 16) for i in (1, 3, 5)))


@pytest.fixture(scope="module")
def zenith(site, engine, tmp_path_factory):
    """Zenith Online over 200 000 generated events (counts as wide as a real day's), and its report."""
    from assay.generator import generate, land_drop
    base = tmp_path_factory.mktemp("ui_zenith")
    generate("zenith", base / "generated", rows=200_000, seed=3, drops=1, truth=False)
    land_drop(base / "generated", base / "landing", 0)
    pipeline = ROOT / "pipelines" / "zenith"
    paths = ("--storage", str(base / "storage"), "--landing", str(base / "landing"))
    Runner(load_spec(pipeline, storage=paths[1], landing=paths[3]), RunOptions(), engine=engine).run()
    result = site.assay("report", "-o", str(base / "zenith.html"), "-p", str(pipeline), *paths)
    assert result.returncode == 0, result.stderr
    return base


# Per node at the first view: label size on screen, whether the label stays inside the node, and the
# widest piece of text that must not be broken (a count line, or a word of the name between the
# places where it may wrap: spaces and the zero-width spaces after underscores).
NODE_TEXT = r"""() => { const cy = window.assayUI.cy(), ctx = document.createElement('canvas').getContext('2d');
  const labelOnly = {includeNodes: false, includeEdges: false, includeLabels: true, includeMainLabels: true,
                     includeSourceLabels: false, includeTargetLabels: false, includeOverlays: false, includeUnderlays: false};
  return cy.nodes(':childless').map(n => {
    ctx.font = n.style('font-size') + ' ' + n.style('font-family');
    const label = n.boundingBox(labelOnly), body = n.boundingBox({includeLabels: false, includeOverlays: false});
    const [name, ...counts] = n.data('display').split('\n');
    const pieces = name.split(/[\s\u200b]+/).concat(counts);
    return {id: n.id(), px: parseFloat(n.style('font-size')) * cy.zoom(),
            inside: label.x1 >= body.x1 && label.x2 <= body.x2 && label.y1 >= body.y1 && label.y2 <= body.y2,
            widest: Math.max(...pieces.map(t => ctx.measureText(t).width)), room: parseFloat(n.style('text-max-width'))};
  }); }"""


@pytest.mark.parametrize("width,height", [(1280, 800), (1920, 1080)])
def test_the_zenith_graph_is_readable_at_its_first_view(site, zenith, width, height):
    run = run_ids(zenith / "storage")[-1]
    late = flow_totals(zenith / "storage", run)["silver_sessionized_activity"]["rows_late"]
    page = site.browser.new_page(viewport={"width": width, "height": height})
    try:
        page.goto((zenith / "zenith.html").as_uri() + "#/graph")
        page.wait_for_selector("body[data-page='graph'][data-ready='1']", state="attached")
        page.screenshot(path=str(site.shots / f"zenith-{width}.png"))
        nodes = {n["id"]: n for n in page.evaluate(NODE_TEXT)}
        assert len(nodes) == 11 and min(n["px"] for n in nodes.values()) >= 11, nodes
        assert [i for i, n in nodes.items() if not n["inside"] or n["widest"] > n["room"]] == [], nodes
        canvas = page.evaluate("() => window.assayUI.cy().width()")
        assert canvas >= 0.75 * width                     # the canvas gets the room until a node is chosen
        # the three silver_sessionized_activity… tables are told apart in the list: whole names, none clipped
        names = page.evaluate("""() => [...document.querySelectorAll('#graph-list li[data-id]')].map(li => {
            const el = li.querySelector('.name'); return [li.dataset.id, el.innerText, el.scrollWidth > el.clientWidth]; })""")
        silver = [n for n in names if n[0].startswith("silver_sessionized_activity")]
        assert sorted(silver) == [[i, i, False] for i in ("silver_sessionized_activity", "silver_sessionized_activity_late",
                                                          "silver_sessionized_activity_quarantine")]
        # the list view shows every column, the late rows included, without scrolling sideways
        page.click("#view-list")
        row = page.wait_for_selector("tr[data-node='silver_sessionized_activity']")
        assert [c.inner_text() for c in row.query_selector_all("td")][7] == _num(late)
        assert page.evaluate("() => { const wrap = document.getElementById('graph-table'); "
                             "return wrap.scrollWidth <= wrap.clientWidth; }")
        page.screenshot(path=str(site.shots / f"zenith-list-{width}.png"))
    finally:
        page.close()


def test_a_huge_value_is_cut_before_it_reaches_the_page(site, tmp_path):
    import pyarrow as pa
    from deltalake import write_deltalake
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "assay.yml").write_text("name: notes\nstorage: ./storage\nlanding: ./landing\n")
    write_deltalake(str(folder / "storage" / "01_bronze" / "notes"),
                    pa.table({"id": [1, 2], "body": ["x" * 10_000_000, "short"]}))
    out = tmp_path / "notes.html"
    result = site.assay("report", "-o", str(out), "-p", str(folder))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size < 1_000_000
    page = site.page
    page.goto(out.as_uri() + "#/tables/notes")
    page.wait_for_selector("body[data-page='table'][data-ready='1']", state="attached")
    cell = page.wait_for_selector(".scroll tbody tr:first-child td:nth-child(2)")
    assert cell.inner_text() == "x" * 2000 + "… [truncated: 10,000,000 characters in all]"
    assert page.evaluate("() => { const box = document.querySelector('.scroll'); return box.scrollWidth <= box.clientWidth; }")
    site.shot("table-long-value")


def test_reports_are_self_contained_and_open_large_graphs_on_a_selection(site, tmp_path):
    # the small pipeline's report: same views, no server, nothing fetched
    out = tmp_path / "shop.html"
    result = site.assay("report", "-o", str(out), "-p", str(site.folder))
    assert result.returncode == 0, result.stderr
    assert TOKEN not in out.read_text()
    requests: list[str] = []
    page = site.page
    page.on("request", lambda req: requests.append(req.url))
    page.goto(out.as_uri() + "#/graph")
    page.wait_for_selector("body[data-page='graph'][data-ready='1']", state="attached")
    assert set(site.graph_nodes()) >= {"orders_raw", "orders", "customer_totals", "daily_revenue"}
    page.goto(out.as_uri() + "#/quality")
    page.wait_for_selector("section[data-table='orders'] tr[data-rule='positive_amount']")
    assert {urlsplit_scheme(u) for u in requests} == {"file"}, requests

    # a generated 300-dataset pipeline: opens on a selection, with a search box and a list view
    wide = write_wide_project(tmp_path / "wide")
    out = tmp_path / "wide.html"
    result = site.assay("report", "-o", str(out), "-p", str(wide))
    assert result.returncode == 0, result.stderr
    page.goto(out.as_uri() + "#/graph")
    page.wait_for_selector("body[data-page='graph'][data-ready='1']", state="attached")
    total = len(page.evaluate("() => window.assayUI.graph().nodes"))
    assert total == 330                                   # 300 datasets and 30 landing folders
    shown = len(site.graph_nodes())
    assert 0 < shown < 40 and page.query_selector("#selection-banner")
    site.shot("wide-selection")
    page.fill("#graph-search", "g149")
    page.click("#graph-list li[data-id='g149']")
    site.until(lambda: "g149" in site.graph_nodes(), 10, "g149 to be drawn")
    nodes = site.graph_nodes()
    a, b = 149 % 120, (149 * 7 + 3) % 120          # what g149 reads (write_wide_project)
    assert {"g149", f"s{a:03d}", f"s{b:03d}", f"b{a % 30:03d}", f"b{b % 30:03d}"} <= set(nodes) and len(nodes) < 40
    page.click("#view-list")
    assert len(page.query_selector_all("#graph-table tbody tr")) == 1     # the search still applies
    page.fill("#graph-search", "")
    page.dispatch_event("#graph-search", "input")
    assert len(page.query_selector_all("#graph-table tbody tr")) == 300
    page.click("#view-graph")
    started = time.monotonic()
    page.click("#graph-all")
    site.until(lambda: len(site.graph_nodes()) == 330, 60, "the whole graph")
    print(f"300-dataset graph: whole layout drawn in {time.monotonic() - started:.1f}s")
    site.shot("wide-all")


def urlsplit_scheme(url: str) -> str:
    return url.split(":", 1)[0]
