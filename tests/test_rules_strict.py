"""Expectation rules are read strictly, when the pipeline is loaded: one complete boolean expression
or an error naming the rule, its SQL and its file:line (a trailing operator used to be ignored and
a non-boolean rule cast, so the rule run differed from the rule written)."""
import os
from pathlib import Path

import pytest

from assay.definitions import Expectation
from assay.errors import GraphError
from assay.runtime.services import analyse
from assay.loader import load_registry
from assay.quality import rule_problem
from assay.spec import load_spec
from tests.conftest import ROOT, table

BRONZE = '''
from assay import pipelines as dp

@dp.table(name="bronze.orders")
@dp.expect_or_drop("r", {rule!r})
def orders():
    return dp.read_files("orders", "json", schema="id STRING, amount DOUBLE, note STRING")
'''
NOT_ONE = "is not one complete boolean expression"
NOT_A_CONDITION = ("is not a condition (a comparison, AND/OR/NOT, IS [NOT] NULL, IN, BETWEEN, LIKE/RLIKE, EXISTS, "
                   "TRUE/FALSE or a boolean function)")

REJECTED = [
    ("amount > 0 OR", "it does not parse at `OR` (column 13): OR lacks its right-hand side"),
    ("amount >> 0 AND", "it does not parse at `AND` (column 15): AND lacks its right-hand side"),
    ("amount BETWEEN 1", "it does not parse at `1` (column 16): BETWEEN lacks its upper bound"),
    ("amount", "`amount` is a column, not a condition (for a boolean column write `amount IS TRUE`)"),
    ("amount > 0 AND note", "`note` is a column, not a condition (for a boolean column write `note IS TRUE`)"),
    ("NOT amount", "`amount` is a column, not a condition (for a boolean column write `amount IS TRUE`)"),
    ("amount * 2", f"`amount * 2` {NOT_A_CONDITION}"),
    ("'yes'", f"`'yes'` {NOT_A_CONDITION}"),
    ("length(note)", f"`LENGTH(note)` {NOT_A_CONDITION}"),
    ("amount > 0 positive", "`positive` after `amount > 0` reads as a name for it (an alias)"),
    ("amount > 0; note IS NULL", "it holds a ';' (a rule is one expression, not statements)"),
]
ACCEPTED = [
    "amount > 0", "amount = 1 OR amount <> 2", "NOT (amount > 0 AND note IS NULL)", "note IS NOT NULL",
    "amount IN (1, 2)", "amount NOT BETWEEN 1 AND 2", "note LIKE 'a%'", "note RLIKE '^[0-9]+$'",
    "exists(array(amount), x -> x > 0)", "EXISTS (SELECT 1)", "true", "startswith(note, 'a')",
    "array_contains(array(1), 1)", "isnotnull(note)",
    "my_boolean_udf(note)",                         # unknown to sqlglot: analysis checks its result is boolean
    "coalesce(amount > 0, false)", "CASE WHEN amount > 0 THEN true ELSE false END", "note IS TRUE",
    "try_cast(note AS BIGINT) BETWEEN 0 AND 86400 -- a comment",
]


def where(folder: Path, file: str, line: int) -> str:
    return f"{os.path.relpath(folder / file)}:{line}"


@pytest.mark.parametrize("rule, why", REJECTED)
def test_python_rule_is_rejected_when_loaded(project, rule, why):
    folder = project({"transformations/p.py": BRONZE.format(rule=rule)})
    with pytest.raises(GraphError) as caught:
        load_registry(load_spec(folder))
    assert str(caught.value) == f"{where(folder, 'transformations/p.py', 5)}: expectation 'r' ({rule}) {NOT_ONE}: {why}"


@pytest.mark.parametrize("rule", ACCEPTED)
def test_boolean_rules_are_accepted(rule):
    assert rule_problem(Expectation("r", rule, "drop")) is None


def test_every_rule_of_the_reference_pipelines_and_tests_is_accepted(engine, monkeypatch, tmp_path):
    """The rules already written (reference pipelines, `assay init`'s project, tests) all still load."""
    from assay.scaffold import create_project
    registry = load_registry(load_spec(create_project(tmp_path / "shop")))
    assert sum(len(ds.expectations) for ds in registry.datasets.values()) == 4
    for name in ("CUSTOMERS_PG_PASSWORD", "EVENTHUBS_CONNECTION_STRING"):   # customers_stream's assay.yml
        monkeypatch.setenv(name, "unused")                                  # refers to them
    for pipeline in sorted((ROOT / "pipelines").glob("*/assay.yml")):
        registry = load_registry(load_spec(pipeline.parent))
        assert any(ds.expectations for ds in registry.datasets.values()), pipeline   # they were read
    rules = ["id IS NOT NULL AND id <> ')'", "coalesce(amount, 0) BETWEEN -1 AND 1e9", "note <> 'x;y'",
             "channel IN ('web', 'app')", "amount IS NULL OR amount < 1000000", "id <> 'boom'", "n < 100",
             "page_views >= 0 AND clicks >= 0 AND purchases >= 0", "_rescued_data IS NULL", "amount >= 0",
             "network RLIKE '^[0-9.]+/[0-9]{1,2}$'", "amout > 0"]
    assert [r for r in rules if rule_problem(Expectation("r", r, "warn"))] == []


def test_several_rules_are_reported_together_with_their_lines(project):
    folder = project({"transformations/p.py": '''
from assay import pipelines as dp

dp.create_streaming_table("bronze.all_orders", expect_all_or_drop={"ok": "id IS NOT NULL", "bad": "amount >"})

@dp.append_flow(target="all_orders")
def web():
    return dp.read_files("orders", "json", schema="id STRING, amount DOUBLE")

@dp.materialized_view(name="gold.totals")
@dp.expect_all_or_fail({"sum": "total", "count": "n > 0"})
def totals():
    return dp.read("all_orders").groupBy().agg({"amount": "sum"})
'''})
    with pytest.raises(GraphError) as caught:
        load_registry(load_spec(folder))
    p = "transformations/p.py"
    assert str(caught.value) == (
        f"{where(folder, p, 4)}: expectation 'bad' (amount >) {NOT_ONE}: it does not parse at `>` (column 8): "
        f"GT lacks its right-hand side; "
        f"{where(folder, p, 11)}: expectation 'sum' (total) {NOT_ONE}: `total` is a column, not a condition "
        f"(for a boolean column write `total IS TRUE`)")


def test_sql_constraint_is_rejected_with_its_line(project):
    folder = project({"transformations/orders.sql": """
CREATE OR REFRESH STREAMING TABLE silver.orders (
  CONSTRAINT has_id EXPECT (id IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT positive EXPECT (amount > 0 OR) ON VIOLATION DROP ROW
) AS SELECT * FROM STREAM(orders_raw);
"""})
    with pytest.raises(GraphError) as caught:
        load_registry(load_spec(folder))
    assert str(caught.value) == (f"{where(folder, 'transformations/orders.sql', 4)}: expectation 'positive' "
                                 f"(amount > 0 OR) {NOT_ONE}: it does not parse at `OR` (column 13): "
                                 f"OR lacks its right-hand side")


def test_run_stops_before_reading_anything(project, run_pipeline):
    folder = project({"transformations/p.py": BRONZE.format(rule="amount > 0 OR")})
    (folder / "landing/orders").mkdir(parents=True)
    (folder / "landing/orders/a.json").write_text('{"id": "a", "amount": -1}\n')
    with pytest.raises(GraphError, match=r"p\.py:5: expectation 'r' \(amount > 0 OR\)"):
        run_pipeline(folder)
    assert table(folder, "01_bronze", "orders") is None


def test_rule_whose_result_is_not_boolean_is_rejected_by_analysis(project, engine):
    """A function sqlglot cannot type is left to the engine: its result must be boolean, not cast."""
    folder = project({"transformations/p.py": BRONZE.format(rule="coalesce(amount, 0)")})
    with pytest.raises(GraphError) as caught:
        analyse(load_spec(folder), engine).graph
    assert str(caught.value) == (f"1 problem(s) in pipeline 't':\n- expectation 'r' of 'orders' "
                                 f"(at {where(folder, 'transformations/p.py', 4)}) is not valid SQL over its "
                                 f"columns: its result is double, not boolean")


def test_dry_run_exits_3_naming_the_rule(project, assay_cli):
    folder = project({"transformations/p.py": BRONZE.format(rule="amount >> 0 AND")})
    result = assay_cli("dry-run", cwd=folder)
    assert result.returncode == 3, result.stdout + result.stderr
    output = " ".join((result.stdout + result.stderr).split())
    assert ("transformations/p.py:5: expectation 'r' (amount >> 0 AND) is not one complete boolean expression: "
            "it does not parse at `AND` (column 15): AND lacks its right-hand side") in output, output
