"""`assay optimize` z-orders tables declared with cluster_by and compacts the others; `assay vacuum`."""
from assay.delta import table as storage
from tests.conftest import cli

PIPELINE = """
from assay import pipelines as dp

@dp.table(name="bronze.events", cluster_by=["user"])
def events():
    return dp.read_files("in", "json", schema="id STRING, user INT")
"""


def test_optimize_z_orders_by_cluster_columns_and_vacuum(project, run_pipeline):
    folder = project({"transformations/p.py": PIPELINE})
    (folder / "landing/in").mkdir(parents=True)
    for i in range(4):
        (folder / f"landing/in/f{i}.json").write_text("".join(f'{{"id": "{i}-{j}", "user": {j % 5}}}\n'
                                                             for j in range(50)))
        run_pipeline(folder)
    path = folder / "storage/01_bronze/events"
    assert len(storage.open_table(path).file_uris()) == 4
    result = cli("optimize", cwd=folder, check=True)
    assert "events: z-order by user, 4 files → 1" in result.stdout
    table = storage.open_table(path)
    assert len(table.file_uris()) == 1 and table.to_pyarrow_table().num_rows == 200
    assert table.history(1)[0]["operation"] == "OPTIMIZE"
    result = cli("vacuum", "events", "--retention-hours", "0", cwd=folder, check=True)
    assert "events: 4 files deleted" in result.stdout
    assert storage.open_table(path).to_pyarrow_table().num_rows == 200
    assert cli("optimize", "nope", cwd=folder).returncode == 1


def test_table_properties_delta_ones_on_the_table_others_in_the_catalog(project, run_pipeline):
    import json
    folder = project({"transformations/p.py": PIPELINE.replace(
        'cluster_by=["user"]', 'cluster_by=["user"], comment="raw events", '
        'table_properties={"quality": "bronze", "delta.appendOnly": "true"}')})
    (folder / "landing/in").mkdir(parents=True)
    (folder / "landing/in/a.json").write_text('{"id": "1", "user": 1}\n')
    run_pipeline(folder)
    table = storage.open_table(folder / "storage/01_bronze/events")
    assert table.metadata().configuration == {"delta.appendOnly": "true"}
    entry = json.loads((folder / "storage/_system/catalog.json").read_text())["events"]
    assert entry["table_properties"] == {"quality": "bronze", "delta.appendOnly": "true"}
    assert entry["cluster_by"] == ["user"] and entry["comment"] == "raw events" and entry["schema"] == "01_bronze"
