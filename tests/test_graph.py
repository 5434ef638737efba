"""dry-run validation: every error names the dataset and the file and line that defined it."""
import pytest

from assay.errors import GraphError
from assay.runtime import services
from assay.spec import load_spec

BRONZE = """
from assay import pipelines as dp

@dp.table(name="bronze.raw")
def raw():
    return dp.read_files("in", "json", schema="id STRING, n INT")
"""


def analyse(folder, engine):
    return services.analyse(load_spec(folder), engine).graph


def test_valid_graph_is_ordered(project, engine):
    folder = project({"transformations/a.py": BRONZE + """
@dp.materialized_view(name="gold.totals")
def totals():
    return dp.read("clean").groupBy("id").count()

@dp.table(name="silver.clean")
def clean():
    return dp.read_stream("raw").where("n > 0")
"""})
    graph = analyse(folder, engine)
    assert graph.order == ["raw", "clean", "totals"]
    assert graph.analyses["totals"].static_reads == {"clean"}
    assert graph.analyses["clean"].stream_reads == {"raw"}


def test_unknown_dataset_and_column(project, engine):
    folder = project({"transformations/a.py": BRONZE + """
@dp.materialized_view
def wrong_table():
    return dp.read("nope")

@dp.materialized_view
def wrong_column():
    return dp.read("raw").select("no_such_column")
"""})
    with pytest.raises(GraphError) as info:
        analyse(folder, engine)
    text = str(info.value)
    assert "reads 'nope', which is not a dataset" in text and "a.py:8" in text
    assert "dataset 'wrong_column' (at " in text and "a.py:12" in text and "no_such_column" in text


def test_cycle_is_reported(project, engine):
    folder = project({"transformations/a.py": """
from assay import pipelines as dp

@dp.materialized_view
def a():
    return dp.read("b")

@dp.materialized_view
def b():
    return dp.read("a")
"""})
    with pytest.raises(GraphError, match=r"cycle: (a|b) .*→ .*→"):
        analyse(folder, engine)


def test_bad_expectation_sql_and_duplicate_names(project, engine):
    folder = project({"transformations/a.py": BRONZE + """
@dp.materialized_view
@dp.expect("broken_rule", "n = = 3")
def checked():
    return dp.read("raw")
""", "transformations/b.sql": "CREATE MATERIALIZED VIEW raw AS SELECT 1 AS x;\n"})
    with pytest.raises(GraphError) as info:
        analyse(folder, engine)
    assert "dataset 'raw' is defined twice" in str(info.value) and "b.sql:1" in str(info.value)

    folder.joinpath("transformations/b.sql").unlink()
    with pytest.raises(GraphError) as info:
        analyse(folder, engine)
    # a rule that does not parse is stopped when the file loads, at the rule's own line
    assert "a.py:9: expectation 'broken_rule' (n = = 3) is not one complete boolean expression" in str(info.value)


def test_stream_read_of_a_view_and_missing_stream(project, engine):
    folder = project({"transformations/a.py": BRONZE + """
@dp.materialized_view
def mv():
    return dp.read("raw")

@dp.table
def st():
    return dp.read_stream("mv")

@dp.table
def no_stream():
    return dp.read("raw")
"""})
    with pytest.raises(GraphError) as info:
        analyse(folder, engine)
    text = str(info.value)
    assert "reads 'mv' as a stream, but it is a materialized view" in text
    assert "streaming table 'no_stream'" in text and "reads no stream" in text


def test_dedupe_and_partition_columns_checked(project, engine):
    folder = project({"transformations/a.py": BRONZE + """
@dp.table(partition_cols=["day"])
@dp.dedupe(["missing_key"])
def d():
    return dp.read_stream("raw")
"""})
    with pytest.raises(GraphError) as info:
        analyse(folder, engine)
    assert "partitioned or clustered by 'day'" in str(info.value)
    assert "dedupe of 'd'" in str(info.value) and "missing_key" in str(info.value)
