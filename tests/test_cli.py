"""The `assay` command as a user runs it: init → run → query/history/status/graph, errors without
tracebacks, one run at a time, and --continuous stopping cleanly on SIGTERM."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, cli


def init_project(tmp_path, assay_cli):
    assay_cli("init", "shop", cwd=tmp_path, check=True)
    return tmp_path / "shop"


@pytest.mark.slow
def test_init_run_query_history_status_graph(tmp_path, assay_cli):
    shop = init_project(tmp_path, assay_cli)
    run = cli("run", cwd=shop, check=True)        # `assay run` as a user runs it: its own process
    assert "completed" in run.stdout and "orders_raw" in run.stdout

    top = assay_cli("query", "SELECT customer_id, revenue FROM customer_totals ORDER BY revenue DESC LIMIT 3",
              "--format", "json", cwd=shop, check=True)
    rows = json.loads(top.stdout)
    assert len(rows) == 3 and rows[0]["revenue"] >= rows[1]["revenue"] >= rows[2]["revenue"]

    counts = assay_cli("query", "SELECT COUNT(*) AS n FROM orders", "--format", "csv", cwd=shop, check=True)
    assert counts.stdout.splitlines() == ["n", "200"]

    quarantined = assay_cli("query", "SELECT _failed_rules FROM orders_raw_quarantine", "--format", "json", cwd=shop,
                      check=True)
    assert json.loads(quarantined.stdout) == [{"_failed_rules": ["has_order_id"]}]

    history = assay_cli("history", "--format", "json", cwd=shop, check=True)
    runs = json.loads(history.stdout)
    assert len(runs) == 1 and runs[0]["outcome"] == "run_completed" and runs[0]["rows_written"] == 424

    status = assay_cli("status", cwd=shop, check=True)
    assert "customer_totals" in status.stdout and "orders_raw_quarantine" in status.stdout

    graph = assay_cli("graph", "--format", "json", cwd=shop, check=True)
    nodes = {n["target"]: n for n in json.loads(graph.stdout)}
    assert nodes["orders"]["streams"] == ["orders_raw"] and nodes["customer_totals"]["reads"] == ["orders"]

    dry = assay_cli("dry-run", cwd=shop, check=True)
    assert "is valid" in dry.stdout

    lineage = assay_cli("query", "SELECT flow, inputs, outputs FROM event_log WHERE event_type = 'flow_completed'",
                  "--format", "json", cwd=shop, check=True)
    flows = {r["flow"]: (json.loads(r["inputs"]), json.loads(r["outputs"])) for r in json.loads(lineage.stdout)}
    assert flows["customer_totals"] == (["orders"], ["customer_totals"])


@pytest.mark.slow
def test_errors_are_one_paragraph_with_exit_codes(tmp_path, assay_cli):
    """The real process's exit codes and stderr, for each kind of error."""
    shop = init_project(tmp_path, assay_cli)
    yml = shop / "assay.yml"
    good = yml.read_text()

    yml.write_text(good + "\nsurprise: 1\n")
    result = cli("run", cwd=shop)
    assert result.returncode == 2 and "unknown key 'surprise'" in result.stderr and "Traceback" not in result.stderr

    yml.write_text(good)
    code = shop / "transformations" / "orders.py"
    code.write_text(code.read_text().replace('"amount >= 0"', '"amount >= = 0"'))
    result = cli("dry-run", cwd=shop)
    assert result.returncode == 3 and "expectation 'positive_amount'" in result.stderr
    assert "orders.py" in result.stderr and "Traceback" not in result.stderr

    code.write_text(code.read_text().replace('"amount >= = 0"', '"amount >= 0"').replace(
        "def orders_raw():", "def orders_raw():\n    raise RuntimeError('upstream API changed')"))
    result = cli("run", cwd=shop)
    assert result.returncode != 0 and "upstream API changed" in result.stderr and "orders.py" in result.stderr
    assert "Traceback" not in result.stderr

    result = cli("query", "SELECT nope FROM event_log", cwd=shop)
    assert result.returncode == 1 and "query failed" in result.stderr


@pytest.mark.slow
def test_secret_from_environment_never_printed(tmp_path, assay_cli):
    """In a process of its own: all it prints, the engine's and the loggers' too, is searched."""
    shop = init_project(tmp_path, assay_cli)
    yml = shop / "assay.yml"
    yml.write_text(yml.read_text().replace("owner: data-team", "owner: data-team\n  token: ${env:SHOP_TOKEN}"))
    code = shop / "transformations" / "orders.py"
    code.write_text(code.read_text().replace(
        "def orders_raw():", "def orders_raw():\n    raise RuntimeError('auth failed for ' + dp.config('token'))"))
    result = cli("run", cwd=shop, env={"SHOP_TOKEN": "tok-very-secret-42"})
    assert result.returncode != 0 and "auth failed for ***SHOP_TOKEN***" in result.stderr
    assert "tok-very-secret-42" not in result.stdout + result.stderr
    log = cli("query", "SELECT message FROM event_log WHERE message IS NOT NULL", "--format", "json", cwd=shop,
              env={"SHOP_TOKEN": "x"}, check=True)
    assert "tok-very-secret-42" not in log.stdout and "***SHOP_TOKEN***" in log.stdout


def test_second_run_on_same_storage_stops_at_once(tmp_path, assay_cli):
    shop = init_project(tmp_path, assay_cli)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from assay.runtime.lock import PipelineLock; from pathlib import Path;"
        "lock = PipelineLock(Path(sys.argv[2])); lock.acquire(); print('locked', flush=True); time.sleep(60)"),
        str(ROOT), str(shop / "storage" / "_system")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        result = assay_cli("run", cwd=shop)
        assert result.returncode == 6 and "another `assay run`" in result.stderr
        assert f"process {holder.pid}" in result.stderr
        assert time.monotonic() - started < 30
        assert not (shop / "storage" / "01_bronze").exists()
    finally:
        holder.kill()
        holder.wait()
    assert assay_cli("run", cwd=shop).returncode == 0


@pytest.mark.slow
def test_continuous_stops_cleanly_on_sigterm(tmp_path, assay_cli):
    shop = init_project(tmp_path, assay_cli)
    proc = subprocess.Popen([sys.executable, "-m", "assay.cli", "run", "--continuous", "--interval", "1s"],
                            cwd=shop, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RUST_LOG": "error"})
    deadline = time.monotonic() + 60
    log = shop / "storage" / "_system" / "event_log" / "_delta_log"
    while time.monotonic() < deadline and len(list(log.glob("*.json")) if log.exists() else []) < 12:
        time.sleep(0.5)
    # A file landing while it runs is picked up by a later round.
    (shop / "landing" / "orders" / "orders-0002.json").write_text(
        '{"order_id": "late-1", "customer_id": 1, "amount": 1.0, "ordered_at": "2026-11-01T03:00:00.000Z"}\n')
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.count("completed") >= 2
    rows = assay_cli("query", "SELECT COUNT(*) AS n FROM orders", "--format", "csv", cwd=shop, check=True)
    assert rows.stdout.splitlines()[1] == "201"


def test_usage_errors_print_typers_message_and_exit_2(tmp_path, assay_cli):
    result = assay_cli("run", "--no-such-flag", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "No such option: --no-such-flag" in result.stderr and "Try 'assay run --help'" in result.stderr
    assert "Traceback" not in result.stderr

    result = assay_cli("init", cwd=tmp_path)
    assert result.returncode == 2 and "Missing argument 'name'" in result.stderr and "Traceback" not in result.stderr

    result = assay_cli("generate", "zenith", "--out", str(tmp_path / "g"), "--rows", "many", cwd=tmp_path)
    assert result.returncode == 2 and "Invalid value for '--rows'" in result.stderr
    assert not (tmp_path / "g").exists()


def test_unexpected_error_is_one_paragraph_unless_debugging(tmp_path, assay_cli):
    (tmp_path / "a-file").write_text("not a folder")
    args = ("generate", "zenith", "--out", str(tmp_path / "a-file" / "out"), "--rows", "10")
    result = assay_cli(*args, cwd=tmp_path, env={"ASSAY_DEBUG": ""})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: NotADirectoryError" in result.stderr and "ASSAY_DEBUG=1" in result.stderr

    result = assay_cli(*args, cwd=tmp_path, env={"ASSAY_DEBUG": "1"})
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "NotADirectoryError" in result.stderr
    assert "During handling" not in result.stderr
