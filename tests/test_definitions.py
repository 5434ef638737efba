"""The declarative API registers frozen definitions with the file and line that made them."""
import pytest

from assay import pipelines as dp
from assay.definitions import Registry
from assay.errors import GraphError
from assay.registry import registration
from assay.sql import load_sql_file, split_statements


@pytest.fixture
def registry():
    with registration(Registry()) as reg:
        yield reg


def test_decorators_register_datasets_and_flows(registry):
    @dp.table(name="bronze.events", comment="raw", partition_cols=["d"], cluster_by="u", quarantine=True,
              table_properties={"k": "v"})
    @dp.expect("warned", "a > 0")
    @dp.expect_or_drop("dropped", "b IS NOT NULL")
    @dp.expect_all_or_fail({"failed": "c < 10"})
    @dp.dedupe(["id"], event_time="ts", watermark="3 minutes")
    def events():
        return None

    @dp.materialized_view
    def totals():
        return None

    @dp.temporary_view(name="v")
    def view():
        return None

    ds = registry.datasets["events"]
    assert ds.schema_name == "bronze" and ds.kind == "streaming_table" and ds.quarantine
    assert ds.partition_cols == ("d",) and ds.cluster_by == ("u",) and ds.table_properties == {"k": "v"}
    assert [(e.name, e.action) for e in ds.expectations] == [("warned", "warn"), ("dropped", "drop"),
                                                              ("failed", "fail")]
    assert ds.dedupe.keys == ("id",) and ds.dedupe.watermark == "3 minutes"
    assert ds.location.file.endswith("test_definitions.py") and ds.location.line > 0
    assert registry.datasets["totals"].kind == "materialized_view"
    assert registry.datasets["v"].kind == "temporary_view"
    assert set(registry.flows) == {"events", "totals", "v"}


def test_streaming_table_with_append_flows(registry):
    dp.create_streaming_table("all_events", expect_all_or_drop={"has_id": "id IS NOT NULL"})

    @dp.append_flow(target="all_events")
    def from_web():
        return None

    @dp.append_flow(target="all_events", name="from_app")
    def app():
        return None

    assert [f.name for f in registry.flows_into("all_events")] == ["from_web", "from_app"]
    assert registry.datasets["all_events"].expectations[0].action == "drop"


def test_duplicate_and_invalid_names(registry):
    @dp.table
    def twice():
        return None

    @dp.materialized_view(name="twice")
    def again():
        return None
    assert "defined twice" in registry.errors[0] and "test_definitions.py" in registry.errors[0]
    with pytest.raises(GraphError, match="not a valid dataset name"):
        dp.table(lambda: None, name="bad-name")


def test_read_outside_a_run_is_explained():
    with pytest.raises(GraphError, match="only available inside a query function"):
        dp.read("x")
    with pytest.raises(GraphError, match="only be made while Assay loads a pipeline"):
        dp.table(lambda: None)


def test_sql_definitions(registry, tmp_path):
    path = tmp_path / "gold.sql"
    path.write_text("""-- a comment; with a semicolon
CREATE OR REFRESH STREAMING TABLE silver.clean (
  CONSTRAINT valid_id EXPECT (id IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT positive EXPECT (amount > 0) ON VIOLATION FAIL UPDATE,
  CONSTRAINT warn_only EXPECT (note <> 'x;y')
) COMMENT 'it''s clean' PARTITIONED BY (day)
AS SELECT * FROM STREAM(raw);

CREATE MATERIALIZED VIEW gold.totals CLUSTER BY (day) AS SELECT day, count(*) n FROM clean GROUP BY day;
""")
    load_sql_file(path, registry, None)
    clean = registry.datasets["clean"]
    assert clean.kind == "streaming_table" and clean.schema_name == "silver"
    assert [(e.name, e.action, e.sql) for e in clean.expectations] == [
        ("valid_id", "drop", "id IS NOT NULL"), ("positive", "fail", "amount > 0"), ("warn_only", "warn", "note <> 'x;y'")]
    assert clean.comment == "it's clean" and clean.partition_cols == ("day",)
    assert clean.location.line == 2
    assert registry.datasets["totals"].cluster_by == ("day",) and registry.datasets["totals"].location.line == 9
    assert len(split_statements("select ';' ; select 2")) == 2
