"""A publish declaration (dp.postgres, TBLPROPERTIES 'assay.publish…') is checked with the graph:
`assay dry-run` names a wrong one (table, property, value, file:line) before any commit, in Python
and SQL alike, with the graph's other problems. No PostgreSQL needed: nothing is published."""
import os

import pytest

from assay.errors import GraphError
from assay.runtime.services import analyse
from assay.spec import load_spec
from tests.conftest import ROOT

BRONZE = """
from assay import pipelines as dp

@dp.table(name="bronze.raw")
def raw():
    return dp.read_files("in", "json", schema="id STRING, n INT")
"""

WRONG_SQL = """CREATE MATERIALIZED VIEW gold.by_id
TBLPROPERTIES ('assay.publish' = 'postgres', 'assay.publish.keys' = 'id, nope', 'assay.publish.replace' = 'atomic')
AS SELECT id, count(*) AS n FROM raw GROUP BY id;

CREATE MATERIALIZED VIEW gold.typo
TBLPROPERTIES ('assay.publish' = 'postgres', 'assay.publish.key' = 'id')
AS SELECT id FROM raw;
"""

WRONG_PYTHON = BRONZE + """
@dp.table(name="silver.clean", publish=dp.postgres(keys=["idd"]))
def clean():
    return dp.read_stream("raw")

dp.create_streaming_table("silver.unkeyed", publish=dp.postgres())

@dp.append_flow(target="unkeyed")
def into_unkeyed():
    return dp.read_stream("raw")
"""


def test_wrong_sql_and_python_declarations_are_graph_errors_naming_each(project, engine):
    folder = project({"transformations/a.py": WRONG_PYTHON, "transformations/b.sql": WRONG_SQL})
    with pytest.raises(GraphError) as info:
        analyse(load_spec(folder), engine).graph
    text = str(info.value)
    sql, py = (os.path.relpath(folder / "transformations" / f) for f in ("b.sql", "a.py"))
    assert "5 problem(s)" in text, text
    assert f"'by_id' (at {sql}:1): assay.publish.keys = 'id, nope': 'nope' is not a column" in text
    assert f"'by_id' (at {sql}:1): assay.publish.replace = 'atomic'" in text
    assert f"'typo' (at {sql}:5): unknown property 'assay.publish.key' = 'id'" in text
    assert f"'clean' (at {py}:" in text and "assay.publish.keys = 'idd'" in text
    assert f"'unkeyed' (at {py}:12) is published to PostgreSQL without keys" in text


def test_dry_run_rejects_a_wrong_sql_publish_declaration(project, assay_cli):
    folder = project({"transformations/a.py": BRONZE, "transformations/b.sql": WRONG_SQL})
    result = assay_cli("dry-run", "-p", str(folder), cwd=ROOT)
    assert result.returncode == GraphError.exit_code, result.stdout + result.stderr
    assert "b.sql:1" in result.stderr and "assay.publish.replace = 'atomic'" in result.stderr, result.stderr
    assert "b.sql:5" in result.stderr and "assay.publish.key'" in result.stderr, result.stderr


def test_sound_declarations_pass(project, engine):
    folder = project({"transformations/a.py": BRONZE + """
@dp.table(name="silver.clean", publish=dp.postgres(keys=["id"], table="clean_rows"))
def clean():
    return dp.read_stream("raw")
""", "transformations/b.sql": """CREATE MATERIALIZED VIEW gold.by_id
TBLPROPERTIES ('assay.publish' = 'postgres', 'assay.publish.keys' = 'id', 'assay.publish.replace' = 'in_place')
AS SELECT id, count(*) AS n FROM raw GROUP BY id;
"""})
    assert analyse(load_spec(folder), engine).graph.order == ["raw", "clean", "by_id"]
