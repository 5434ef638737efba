"""`assay optimize` z-orders tables declared with cluster_by and compacts the others; `assay vacuum`."""
from assay.delta import table as storage

PIPELINE = """
from assay import pipelines as dp

@dp.table(name="bronze.events", cluster_by=["user"])
def events():
    return dp.read_files("in", "json", schema="id STRING, user INT")
"""


def test_optimize_z_orders_by_cluster_columns_and_vacuum(project, run_pipeline, assay_cli):
    folder = project({"transformations/p.py": PIPELINE})
    (folder / "landing/in").mkdir(parents=True)
    for i in range(4):
        (folder / f"landing/in/f{i}.json").write_text("".join(f'{{"id": "{i}-{j}", "user": {j % 5}}}\n'
                                                             for j in range(50)))
        run_pipeline(folder)
    path = folder / "storage/01_bronze/events"
    assert len(storage.open_table(path).file_uris()) == 4
    result = assay_cli("optimize", cwd=folder, check=True)
    assert "events: z-order by user, 4 files → 1" in result.stdout
    table = storage.open_table(path)
    assert len(table.file_uris()) == 1 and table.to_pyarrow_table().num_rows == 200
    assert table.history(1)[0]["operation"] == "OPTIMIZE"
    result = assay_cli("vacuum", "events", "--retention-hours", "0", cwd=folder, check=True)
    assert "events: 4 files deleted" in result.stdout
    assert storage.open_table(path).to_pyarrow_table().num_rows == 200
    assert assay_cli("optimize", "nope", cwd=folder).returncode == 1


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


# ---------------------------------------------------------------- the policy of continuous runs

MAINTAINED = """
    name: t
    storage: ./storage
    landing: ./landing
    schemas: {bronze: 01_bronze, silver: 02_silver, gold: 03_gold, system: _system}
    maintenance:
      compact_small_files: 3
      small_file_size: 1MB
      vacuum_every: 1h
      vacuum_retention: 0h
      force_retention: true
"""


def _maintenance_events(folder):
    import json
    log = storage.read_arrow(folder / "storage/_system/event_log")
    return [{**r, "metrics": json.loads(r["metrics"])} for r in log.to_pylist() if r["event_type"] == "maintenance"]


def test_continuous_runs_compact_and_vacuum_by_the_policy_and_status_shows_it(project, assay_cli):
    import os
    import signal
    import subprocess
    import sys
    import time
    folder = project({"transformations/p.py": PIPELINE}, MAINTAINED)
    (folder / "landing/in").mkdir(parents=True)
    for i in range(4):
        (folder / f"landing/in/f{i}.json").write_text("".join(f'{{"id": "{i}-{j}", "user": {j % 5}}}\n'
                                                             for j in range(50)))
    proc = subprocess.Popen([sys.executable, "-m", "assay.cli", "run", "--continuous", "--interval", "1s",
                             "--max-files-per-batch", "1"], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "RUST_LOG": "error"})
    def vacuumed() -> bool:
        # The folder exists a moment before the log's first commit does: read_arrow then finds no
        # table (None; reproduced reading in a loop while the first event is written).
        if storage.open_table(folder / "storage/_system/event_log") is None:
            return False
        try:
            return any(e["metrics"]["operation"] == "vacuum" for e in _maintenance_events(folder))
        except Exception as exc:  # noqa: BLE001 - delta-rs raises its own error types for a lost file
            # The run vacuums the event log with this test's 0 h retention (and the history upkeep
            # compacts it) while we read it: the snapshot we opened lost a file, a data file or a log
            # entry (a reader of an older version, as Delta allows). Look again; anything else fails.
            if isinstance(exc, FileNotFoundError) or "not found" in str(exc).lower() \
                    or "no such file" in str(exc).lower():
                return False
            raise
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not vacuumed():
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    # Four batches left four small files: z-ordered by the declared cluster_by, then vacuumed.
    assert "maintenance events: z-order by user (4 small files): 4 files → 1" in out, out
    assert "maintenance events: vacuum (retention 0h): 4 files deleted" in out, out
    assert "below 7 days" in err                                  # the forced retention is warned about
    path = folder / "storage/01_bronze/events"
    table = storage.open_table(path)
    assert len(table.file_uris()) == 1 and table.to_pyarrow_table().num_rows == 200
    assert len(list(path.rglob("*.parquet"))) == 1                # the replaced files are gone from disk
    events = {(e["target"], e["metrics"]["operation"]): e for e in _maintenance_events(folder)}
    compaction = events[("events", "z-order by user")]
    assert (compaction["status"], compaction["metrics"]["small_files"], compaction["metrics"]["files_removed"]) == \
        ("ok", 4, 4)
    assert events[("events", "vacuum")]["status"] == "warning"
    assert events[("events", "vacuum")]["metrics"]["files_removed"] == 4
    # The event log's own small files are compacted too.
    assert events[("event_log", "compact")]["status"] == "ok"
    status = assay_cli("status", cwd=folder, check=True).stdout
    row = next(line for line in status.splitlines() if " events " in f" {line} " and "01_bronze" in line)
    assert "z-order by user: 4 → 1 files" in row and "4 deleted, 0h" in row, status


def test_retention_below_7_days_is_refused_unless_forced(project, assay_cli):
    folder = project({"transformations/p.py": PIPELINE}, MAINTAINED.replace("force_retention: true",
                                                                             "force_retention: false"))
    result = assay_cli("run", cwd=folder)
    assert result.returncode == 2 and "maintenance.force_retention" in result.stderr and "168h" in result.stderr
    folder.joinpath("assay.yml").write_text(MAINTAINED.replace("vacuum_retention: 0h", "vacuum_retention: 7 days")
                                            .replace("force_retention: true", "compact_after: 3"))
    result = assay_cli("run", cwd=folder)
    assert result.returncode == 2 and "maintenance.compact_after" in result.stderr


def test_policy_defaults_and_units(tmp_path):
    from assay.maintenance import Policy
    from tests.conftest import write_project
    from assay.spec import load_spec
    folder = write_project(tmp_path / "p", {})
    assert Policy.from_spec(load_spec(folder)) == Policy(16, 32_000_000, 86_400.0, 168.0, False)
    (folder / "assay.yml").write_text(MAINTAINED.replace("vacuum_retention: 0h", "vacuum_retention: 10 days")
                                      .replace("force_retention: true", "force_retention: false"))
    policy = Policy.from_spec(load_spec(folder))
    assert (policy.compact_small_files, policy.small_file_bytes, policy.vacuum_every_s,
            policy.vacuum_retention_hours) == (3, 1_000_000, 3600.0, 240.0)


def test_streaming_readers_go_on_after_their_upstream_is_compacted(project, run_pipeline, assay_cli):
    """Compaction rewrites files without changing rows (dataChange=false): a flow reading the table
    as a stream neither rereads the rewritten rows nor stops."""
    folder = project({"transformations/p.py": PIPELINE + '''

@dp.table(name="silver.users_seen")
def users_seen():
    return dp.read_stream("events").select("id", "user")
'''})
    (folder / "landing/in").mkdir(parents=True)
    for i in range(3):
        (folder / f"landing/in/f{i}.json").write_text("".join(f'{{"id": "{i}-{j}", "user": {j}}}\n' for j in range(20)))
        run_pipeline(folder, max_files=1)
    result = assay_cli("optimize", "events", cwd=folder, check=True)
    assert "3 files → 1" in result.stdout
    (folder / "landing/in/f3.json").write_text('{"id": "3-0", "user": 0}\n')
    summaries = run_pipeline(folder)
    assert summaries["users_seen"].rows_read == 1
    ids = sorted(r["id"] for r in storage.read_arrow(folder / "storage/02_silver/users_seen").to_pylist())
    assert ids == sorted([f"{i}-{j}" for i in range(3) for j in range(20)] + ["3-0"])
