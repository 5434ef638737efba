"""The activity_logs reference pipeline (pipelines/activity_logs), end to end on the embedded engine, real
Delta tables, no mocks.

- Generated data with a truth (assay.generator): every table equals the truth whether the drops are
  processed in one run or one run per drop, and after kill -9 at several instants of a drop.
- Hand-written files (tests/fixtures/activity_logs) with the awkward cases, and the exact rows they must give.
- Landing and storage roots: from assay.yml, overridable by flags and environment, never by editing files.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from datetime import date, datetime, timezone
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from assay.generator import generate, land_drop
from assay.spec import load_spec
from tests import pipeline_support as support
from tests.conftest import ROOT, cli
from tests.pipeline_support import land_tree, read, verify_cli

PIPELINE = ROOT / "pipelines" / "activity_logs"
finish_run = partial(support.finish_run, PIPELINE)
run_in_process = partial(support.run_in_process, PIPELINE)
verify_storage = partial(support.verify_storage, PIPELINE)
FIXTURES = ROOT / "tests" / "fixtures" / "activity_logs"
ROWS, DROPS, SEED = 40_000, 3, 13
LAYERS = ("bronze", "silver", "gold")
VOLATILE = {"ingestion_time", "_source_modified", "_source_size"}   # differ between two correct runs
tables_under = partial(support.tables_under, layers=LAYERS, volatile=VOLATILE)


# ---------------------------------------------------------------- helpers




def plain(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and "/" in value and value.endswith(".csv"):
        return os.path.basename(value)
    if isinstance(value, list):
        return tuple(sorted(value))
    return value


def _order(t: tuple):
    return tuple((v is None, "" if v is None else str(v)) for v in t)


def rows(data: pa.Table, columns: list[str]) -> list[tuple]:
    """The rows as tuples of plain values (UTC ISO instants, ISO dates, file base names), sorted."""
    return sorted((tuple(plain(r[c]) for c in columns) for r in data.select(columns).to_pylist()), key=_order)


def expected(tuples: list[tuple]) -> list[tuple]:
    """Hand-written rows in the form rows() returns."""
    return sorted((tuple(plain(v) for v in t) for t in tuples), key=_order)



# ---------------------------------------------------------------- generated data, with a truth

generated = support.generated_fixture(PIPELINE, ROWS, DROPS, SEED)
one_run = support.one_run_fixture(PIPELINE, DROPS)


class TestReferenceContract(support.ReferenceContract):
    pipeline, drops, layers, volatile = PIPELINE, DROPS, LAYERS, VOLATILE
    bronze = "bronze_activity_logs"
    tables = {"bronze.bronze_activity_logs", "bronze.bronze_activity_logs_quarantine", "silver.silver_activity_logs",
              "gold.gold_user_watch_time", "gold.gold_region_daily_watch_time"}
    kill_plan = [(1, r"running\s+bronze_activity_logs\s+batches=1", "bronze, 2nd file of drop 1"),
                 (None, r"running\s+silver_activity_logs\s+batches=1", "silver, 2nd file of drop 1"),
                 (None, r"running\s+gold_user_watch_time", "gold, drop 1"),
                 (2, r"running\s+bronze_activity_logs\s+batches=0", "bronze, 1st file of drop 2"),
                 (None, r"running\s+silver_activity_logs\s+batches=2", "silver, 3rd file of drop 2"),
                 (None, r"running\s+gold_region_daily_watch_time", "gold, drop 2")]
    kill_seed, kill_max_delay = 3, 0.3

    def records_in_drop(self, drop: Path) -> int:
        return sum(len(f.read_bytes().splitlines()) - 1 for f in (drop / "activity_logs").iterdir())  # minus the header

    def check_one_run(self, store: Path, manifest: dict) -> None:
        injected = manifest["injected"]
        # The data exercises what the pipeline is for: conflicting re-sends, BOMs, network edges, no network.
        assert injected["conflicting_duplicates"] > 0 and injected["bom_files"] > 0
        assert injected["ip_first_address"] > 0 and injected["ip_last_address"] > 0 and injected["ip_no_network"] > 0
        assert manifest["metrics"]["quarantined"] > 0 and manifest["metrics"]["duplicates_dropped"] > 0


# ---------------------------------------------------------------- hand-written awkward cases

@pytest.fixture(scope="module")
def fixture_storage(engine, tmp_path_factory):
    """tests/fixtures/activity_logs landed as three drops (run1, run2, run3), one run after each; with
    silver's L10 row after each run."""
    base = tmp_path_factory.mktemp("activity_fixtures")
    landing, store = base / "landing", base / "storage"
    land_tree(FIXTURES / "reference", landing)
    summaries, l10 = [], []
    for drop in ("run1", "run2", "run3"):
        land_tree(FIXTURES / drop, landing)
        summaries.append(run_in_process(engine, landing, store))
        silver = read(store, "silver", "silver_activity_logs")
        l10.append(rows(silver.filter(pc.equal(silver["log_id"], "L10")),
                        ["event_time", "watch_time_seconds", "region", "_source_file"]))
    return store, summaries, l10


A, B, C = "part-00000-00000.csv", "part-00001-00000.csv", "part-00002-00000.csv"


def test_fixture_bronze_and_quarantine_rows_are_exact(fixture_storage):
    store, _, _ = fixture_storage
    columns = ["log_id", "user_id", "event_time", "ip_address", "content_id", "action", "watch_time_seconds",
               "_source_file"]
    assert rows(read(store, "bronze", "bronze_activity_logs"), columns) == expected([
        # A starts with a UTF-8 BOM: its header and first record are read like any other.
        ("L01", "u1", "2026-11-02T10:00:00Z", "10.0.0.0", "movie1", "play", "120", A),
        ("L02", "u1", "2026-11-02T10:05:00Z", "10.255.255.255", "show1,season2", "pause", "30", A),  # quoted comma
        ("L03", "u2", "2026-11-02T10:10:00Z", "192.168.1.255", "movie2", "seek", "0", A),
        ("L04", "u2", "2026-11-02T10:15:00Z", "192.168.2.0", None, "stop", "86400", A),   # empty field: NULL
        ("L05", "u3", "2026-11-02T10:20:00Z", "8.8.8.8", "movie3", "play", "600", A),
        ("L10", "u4", "2026-11-03T00:00:30Z", "203.0.113.0", "movie4", "play", "50", A),
        ("L10", "u4", "2026-11-02T23:59:00Z", "203.0.113.1", "movie4", "pause", "70", B),
        ("L01", "u1", "2026-11-02T10:00:00Z", "10.0.0.0", "movie1", "play", "120", B),
        ("L02", "u1", "2026-11-02T10:06:00Z", "10.255.255.255", "show1,season2", "pause", "999", B),
        ("L13", "u5", "2026-11-03T08:00:00Z", "192.168.1.0", "movie6", "play", "300", B),
        ("L03", "u2", "2026-11-02T10:10:00Z", "192.168.1.255", "movie2", "seek", "0", C),
        (" L14 ", "u6", "2026-11-03T09:00:00Z", "10.1.2.3", "movie7", "play", "45", C),      # as landed
        ("L10", "u4", "2026-11-02T23:59:30Z", "203.0.113.2", "movie4", "seek", "80", C),
    ])
    # Nothing from the empty file or the header-only file of run2.
    quarantine = read(store, "bronze", "bronze_activity_logs_quarantine")
    assert rows(quarantine, ["_source_file", "log_id", "_failed_rules"]) == expected([
        (A, "L06", ["valid_action", "valid_ip"]),                  # two rules at once: both listed
        (A, "L07", ["valid_watch_time", "well_formed_record"]),     # 6 fields: watch time missing too
        (A, "   ", ["log_id_present"]),                             # whitespace only
        (A, "L09", ["valid_event_time"]),
        (A, "L11", ["valid_watch_time"]),                          # 90000 > 86400
        (A, "L12", ["well_formed_record"]),                        # 8 fields
    ])
    rescued = {r["log_id"]: r["_rescued_data"] for r in quarantine.to_pylist()}
    assert json.loads(rescued["L12"]) == {
        "_corrupt_record": "L12,u5,2026-11-02T11:05:00Z,203.0.113.9,movie5,play,5,extra"}


def test_fixture_silver_rows_are_exact(fixture_storage):
    store, summaries, _ = fixture_storage
    columns = ["log_id", "user_id", "event_time", "ip_address", "content_id", "action", "watch_time_seconds",
               "region", "event_date", "_source_file"]
    assert rows(read(store, "silver", "silver_activity_logs"), columns) == expected([
        # L01 again in B with the same event_time: the earlier file's row stays.
        ("L01", "u1", "2026-11-02T10:00:00", "10.0.0.0", "movie1", "play", 120, "us-east", "2026-11-02", A),
        # L02 again in B with a later event_time: ignored.
        ("L02", "u1", "2026-11-02T10:05:00", "10.255.255.255", "show1,season2", "pause", 30, "us-east", "2026-11-02",
         A),
        # L03 again two runs later (C): ignored. Last address of 192.168.1.0/24.
        ("L03", "u2", "2026-11-02T10:10:00", "192.168.1.255", "movie2", "seek", 0, "eu-west", "2026-11-02", A),
        # One past the last address of a network: in none.
        ("L04", "u2", "2026-11-02T10:15:00", "192.168.2.0", None, "stop", 86400, "Unknown", "2026-11-02", A),
        ("L05", "u3", "2026-11-02T10:20:00", "8.8.8.8", "movie3", "play", 600, "Unknown", "2026-11-02", A),
        # Replaced by B's copy (earlier event_time, another day); C's copy is later again: ignored.
        ("L10", "u4", "2026-11-02T23:59:00", "203.0.113.1", "movie4", "pause", 70, "ap-south", "2026-11-02", B),
        ("L13", "u5", "2026-11-03T08:00:00", "192.168.1.0", "movie6", "play", 300, "eu-west", "2026-11-03", B),
        # log_id and user_id are trimmed in silver.
        ("L14", "u6", "2026-11-03T09:00:00", "10.1.2.3", "movie7", "play", 45, "us-east", "2026-11-03", C),
    ])
    assert [(s["silver_activity_logs"].rows_written, s["silver_activity_logs"].rows_duplicate)
            for s in summaries] == [(6, 0), (2, 2), (1, 2)]


def test_fixture_a_later_copy_with_an_earlier_event_time_replaces_the_survivor(fixture_storage):
    _, _, l10 = fixture_storage
    assert l10 == [
        [("2026-11-03T00:00:30", 50, "ap-south", A)],     # run1: first address of 203.0.113.0/24
        [("2026-11-02T23:59:00", 70, "ap-south", B)],     # run2: the earlier copy replaces it
        [("2026-11-02T23:59:00", 70, "ap-south", B)],     # run3: a later copy does not
    ]


def test_fixture_gold_rows_are_exact(fixture_storage):
    store, _, _ = fixture_storage
    users = read(store, "gold", "gold_user_watch_time")
    assert rows(users, ["user_id", "total_watch_time_seconds", "events", "first_event_time", "last_event_time"]) == \
        expected([
            ("u1", 150, 2, "2026-11-02T10:00:00", "2026-11-02T10:05:00"),
            ("u2", 86400, 2, "2026-11-02T10:10:00", "2026-11-02T10:15:00"),
            ("u3", 600, 1, "2026-11-02T10:20:00", "2026-11-02T10:20:00"),
            ("u4", 70, 1, "2026-11-02T23:59:00", "2026-11-02T23:59:00"),
            ("u5", 300, 1, "2026-11-03T08:00:00", "2026-11-03T08:00:00"),
            ("u6", 45, 1, "2026-11-03T09:00:00", "2026-11-03T09:00:00"),
        ])
    daily = read(store, "gold", "gold_region_daily_watch_time")
    assert rows(daily, ["event_date", "region", "total_watch_time_seconds", "active_users"]) == expected([
        ("2026-11-02", "Unknown", 87000, 2),
        ("2026-11-02", "ap-south", 70, 1),        # L10 moved here from 2026-11-03 when it was replaced
        ("2026-11-02", "eu-west", 0, 1),
        ("2026-11-02", "us-east", 150, 1),
        ("2026-11-03", "eu-west", 300, 1),
        ("2026-11-03", "us-east", 45, 1),
    ])


# ---------------------------------------------------------------- where the data lives

@pytest.mark.slow
def test_landing_and_storage_come_from_assay_yml_and_are_overridable(tmp_path, monkeypatch, assay_cli):
    for var in ("ASSAY_LANDING", "ASSAY_STORAGE", "ASSAY_TARGET"):
        monkeypatch.delenv(var, raising=False)
    yml = (PIPELINE / "assay.yml").read_bytes()
    data_dir_existed = (PIPELINE / "data").exists()
    spec = load_spec(PIPELINE)
    assert (spec.landing, spec.storage) == ((PIPELINE / "data" / "landing").resolve(),
                                            (PIPELINE / "data" / "storage").resolve())

    land_tree(FIXTURES / "reference", tmp_path / "env_landing")
    land_tree(FIXTURES / "run1", tmp_path / "env_landing")
    env = {"ASSAY_LANDING": "env_landing", "ASSAY_STORAGE": "env_storage"}     # relative to the working folder
    assay_cli("run", "-p", str(PIPELINE), cwd=tmp_path, env=env, check=True)
    assert read(tmp_path / "env_storage", "silver", "silver_activity_logs").num_rows == 6

    shutil.copytree(tmp_path / "env_landing", tmp_path / "flag_landing")
    assay_cli("run", "-p", str(PIPELINE), "--landing", str(tmp_path / "flag_landing"), "--storage",
              str(tmp_path / "flag_storage"), cwd=tmp_path,
              env={"ASSAY_LANDING": "nowhere", "ASSAY_STORAGE": "nowhere"}, check=True)
    assert read(tmp_path / "flag_storage", "silver", "silver_activity_logs").num_rows == 6
    assert not (tmp_path / "nowhere").exists()

    assert (PIPELINE / "assay.yml").read_bytes() == yml
    assert (PIPELINE / "data").exists() == data_dir_existed


# ---------------------------------------------------------------- 1 GB

@pytest.mark.soak
@pytest.mark.skipif(os.environ.get("ASSAY_SOAK") != "1", reason="1 GB scale run: set ASSAY_SOAK=1 (make test-all)")
def test_1gb_generated_run_matches_the_truth(tmp_path):
    out = tmp_path / "gen"
    generate("activity_logs", out, size="1GB", seed=0, drops=DROPS)
    for k in range(DROPS):
        land_drop(out, tmp_path / "landing", k)
    started = time.monotonic()
    run = cli("run", "-p", str(PIPELINE), "--landing", str(tmp_path / "landing"), "--storage",
              str(tmp_path / "storage"), cwd=ROOT, timeout=3600)
    assert run.returncode == 0, run.stdout + run.stderr
    print(f"activity_logs 1 GB: assay run {time.monotonic() - started:.0f}s")
    verify_cli(PIPELINE, out / "truth", tmp_path / "storage", timeout=3600)
