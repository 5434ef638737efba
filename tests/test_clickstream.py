"""The clickstream reference pipeline (pipelines/clickstream), end to end on the embedded engine, real
Delta tables, no mocks.

- Generated data with a truth (assay.generator): silver, quarantine, late, fact_page_views_daily and
  dim_users (SCD type 2 history, row for row) equal the truth whether the drops are processed in one
  run or one run per file, and after kill -9 at several instants.
- Hand-written files (tests/fixtures/clickstream) with the awkward cases and the exact rows they must
  give: each timestamp format and the ones no format reads, broken lines, unknown fields, JSON numbers
  and objects where text is declared, unknown event types, repeats, late rows, and the history cases
  (an out-of-order event inside an interval, one equal to the next version, untracked-only changes,
  simultaneous events, NULL in a tracked column).
- The raw user_id and e-mail never reach silver or gold.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import date, datetime, timezone
from functools import partial
from pathlib import Path

import pyarrow as pa
import pytest

from tests import pipeline_support as support
from tests.conftest import ROOT, cli
from tests.pipeline_support import land_tree, read

PIPELINE = ROOT / "pipelines" / "clickstream"
FIXTURES = ROOT / "tests" / "fixtures" / "clickstream"
run_in_process = partial(support.run_in_process, PIPELINE)
verify_storage = partial(support.verify_storage, PIPELINE)
finish_run = partial(support.finish_run, PIPELINE)
ROWS, DROPS, SEED = 40_000, 3, 13
LAYERS = ("bronze", "silver", "gold")
VOLATILE = {"ingestion_time", "_source_modified", "_source_size"}     # differ between two correct runs
tables_under = partial(support.tables_under, layers=LAYERS, volatile=VOLATILE)
KEY = "clickstream-test-key-" + "5" * 24
pytest_plugins = ["tests.spark_server"]


@pytest.fixture(autouse=True, scope="module")
def pii_key():
    saved = os.environ.get("CLICKSTREAM_PII_KEY")
    os.environ["CLICKSTREAM_PII_KEY"] = KEY
    yield
    if saved is None:
        os.environ.pop("CLICKSTREAM_PII_KEY", None)
    else:
        os.environ["CLICKSTREAM_PII_KEY"] = saved


def keyed(value: str) -> str:
    return "v1:" + hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def plain(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and "/" in value and value.endswith(".json"):
        return os.path.basename(value)
    if isinstance(value, list):
        return tuple(sorted(value))
    if isinstance(value, dict):
        return tuple(plain(v) for v in value.values())
    return value


def _order(t: tuple):
    return tuple((v is None, "" if v is None else str(v)) for v in t)


def rows(data: pa.Table, columns: list[str]) -> list[tuple]:
    return sorted((tuple(plain(r[c]) for c in columns) for r in data.select(columns).to_pylist()), key=_order)


def expected(tuples: list[tuple]) -> list[tuple]:
    return sorted((tuple(plain(v) for v in t) for t in tuples), key=_order)


def at(hms: str) -> datetime:
    """An instant of 2026-11-02 (UTC) from 'HH:MM:SS[.ffffff]'."""
    return datetime.fromisoformat(f"2026-11-02T{hms}+00:00")



def event_log_sums(store: Path, flow: str) -> dict[str, int]:
    log = read(store, "_system", "event_log").to_pylist()
    progress = [r for r in log if r["event_type"] == "flow_progress" and r["flow"] == flow]
    return {c: sum(r[c] or 0 for r in progress) for c in ("rows_written", "rows_quarantined", "rows_late",
                                                           "rows_duplicate")}


# ---------------------------------------------------------------- generated data, with a truth

generated = support.generated_fixture(PIPELINE, ROWS, DROPS, SEED)
one_run = support.one_run_fixture(PIPELINE, DROPS)


class TestReferenceContract(support.ReferenceContract):
    pipeline, drops, layers, volatile = PIPELINE, DROPS, LAYERS, VOLATILE
    bronze = "bronze_clickstream"
    tables = {"bronze.bronze_clickstream", "silver.silver_clickstream", "gold.dim_users", "gold.fact_page_views_daily"}
    per_drop_options = {"max_files": 1}                   # one file per batch
    kill_plan = [(1, r"running\s+bronze_clickstream\s+batches=1", "bronze, 2nd file of drop 1"),
                 (None, r"running\s+silver_clickstream\s+batches=1", "silver, 2nd file of drop 1"),
                 (None, r"running\s+dim_users\s+batches=1", "dim_users (AUTO CDC), drop 1"),
                 (2, r"running\s+silver_clickstream\s+batches=0", "silver, 1st file of drop 2"),
                 (None, r"running\s+fact_page_views_daily", "gold fact, drop 2"),
                 (None, r"running\s+dim_users\s+batches=2", "dim_users (AUTO CDC), 3rd file of drop 2")]
    kill_seed, kill_max_delay = 5, 0.3

    def records_in_drop(self, drop: Path) -> int:
        return sum(len(f.read_bytes().splitlines()) for f in drop.rglob("*.json"))

    def check_one_run(self, store: Path, manifest: dict) -> None:
        m, injected = manifest["metrics"], manifest["injected"]
        # The data exercises what the pipeline is for.
        assert all(v > 0 for v in m["ts_format_lines"].values())
        assert m["late_events"] > 0 and m["quarantined"] > 0 and m["duplicates_dropped"] > 0
        assert m["out_of_order_user_events"] > 0 and m["dim_users_rows"] > m["dim_users_current"] > 0
        for what in ("broken_json", "bad_timestamp", "bad_event_type", "bad_event_id", "extra_fields",
                     "user_id_as_text", "plan_as_number", "no_user", "email_variants", "unicode_email_users",
                     "email_changes", "profile_changes"):
            assert injected[what] > 0, what
        counts = event_log_sums(store, "silver_clickstream")
        assert counts == {"rows_written": m["silver_rows"], "rows_quarantined": m["quarantined"],
                          "rows_late": m["late_events"], "rows_duplicate": m["duplicates_dropped"]}
        assert read(store, "bronze", "bronze_clickstream").num_rows == m["bronze_rows"]


def test_raw_identifiers_never_reach_silver_or_gold(generated, one_run):
    bronze = read(one_run, "bronze", "bronze_clickstream")
    raw = {v.strip(" ").lower() for v in bronze["email"].to_pylist() if v and v.strip(" ")} | \
        {v.strip(" ") for v in bronze["user_id"].to_pylist() if v and v.strip(" ")}
    for layer, name in (("silver", "silver_clickstream"), ("silver", "silver_clickstream_quarantine"),
                        ("silver", "silver_clickstream_late"), ("gold", "dim_users"), ("gold", "fact_page_views_daily")):
        table = read(one_run, layer, name)
        assert not {"user_id", "email", "_rescued_data"} & set(table.column_names), name
        values = {str(v).strip(" ").lower() for c in table.column_names if pa.types.is_string(table.schema.field(c).type)
                  for v in table[c].to_pylist() if v is not None}
        assert not values & raw, f"{name} holds raw identifiers: {sorted(values & raw)[:3]}"
    silver = read(one_run, "silver", "silver_clickstream")
    assert all(k.startswith("v1:") and len(k) == 67 for k in silver["user_key"].to_pylist() if k is not None)


# ---------------------------------------------------------------- hand-written awkward cases

A, B, C = "part-00000-00000.json", "part-00001-00000.json", "part-00002-00000.json"


@pytest.fixture(scope="module")
def fixture_storage(engine, tmp_path_factory):
    """tests/fixtures/clickstream landed as three deliveries (run1..run3), one run after each."""
    base = tmp_path_factory.mktemp("clickstream_fixtures")
    landing, store = base / "landing", base / "storage"
    summaries = []
    for drop in ("run1", "run2", "run3"):
        land_tree(FIXTURES / drop, landing)
        summaries.append(run_in_process(engine, landing, store))
    return store, summaries


def test_fixture_bronze_keeps_every_line_and_rescues_what_does_not_fit(fixture_storage):
    store, _ = fixture_storage
    bronze = read(store, "bronze", "bronze_clickstream")
    assert bronze.num_rows == 27 + 8 + 3
    by_id = {}
    for r in bronze.to_pylist():
        by_id.setdefault(r["event_id"], []).append(r)
    # JSON numbers where text is declared are read as their text; objects and booleans too.
    assert (by_id["E02"][0]["ts"], by_id["E02"][0]["user_id"]) == ("1793613660000", "1")
    e09 = by_id["E09"][0]
    assert (e09["plan"], e09["device"], e09["referrer"], e09["user_id"]) == ("2", "true", '{"campaign":"x"}', "9")
    assert e09["_rescued_data"] is None
    # Unknown fields are rescued (an object as its JSON text); the declared columns are read as usual.
    assert json.loads(by_id["E08"][0]["_rescued_data"]) == {"utm_source": "mail",
                                                            "experiment": '{"id":"exp-1","variant":"B"}'}
    assert by_id["E08"][0]["page_url"] == "/pricing"
    # Lines that are not JSON objects: every column NULL, the raw text kept.
    corrupt = sorted(json.loads(r["_rescued_data"])["_corrupt_record"] for r in by_id[None] if r["_rescued_data"])
    assert corrupt == ["[1,2]", '{"event_id":"E04","ts":"2026-11-02T10:06:00Z","user_id":2,"email":"bob@example.org",'
                                '"event_type":"page_vi']
    assert [r["user_id"] for r in by_id["E11"]] == ["   "]                      # as landed
    assert len(by_id["E01"]) == 3 and len(by_id["E32"]) == 2                   # repeats are kept in bronze


def test_fixture_silver_rows_are_exact(fixture_storage):
    store, summaries = fixture_storage
    columns = ["event_id", "user_key", "email_key", "event_type", "page_url", "referrer", "device", "country", "plan",
               "event_ts", "event_date", "_source_file"]
    day = date(2026, 11, 2)

    def row(eid, user, mail, etype, page, ts, source, device="mobile", country="US", plan="free", referrer=None):
        return (eid, None if user is None else keyed(user), None if mail is None else keyed(mail), etype, page,
                referrer, device, country, plan, ts, day, source)
    assert rows(read(store, "silver", "silver_clickstream"), columns) == expected([
        # ISO with Z (milliseconds kept); the same event again in the file is a duplicate.
        row("E01", "1", "ann@example.org", "page_view", "/home", at("10:00:00.250"), A),
        # epoch milliseconds as a JSON number; user_id as text; the e-mail padded and upper-cased: same keys.
        row("E02", "1", "ann@example.org", "click", "/home", at("10:01:00"), A, referrer="https://t.co/x"),
        # "YYYY-MM-DD HH:MM:SS" is UTC; a padded user id is trimmed.
        row("E03", "2", "bob@example.org", "purchase", "/checkout", at("10:05:00"), A, device="desktop",
            country="DE", plan="pro"),
        # nanoseconds are cut to microseconds; unknown fields do not reach silver.
        row("E08", "1", "ann@example.org", "page_view", "/pricing", at("10:09:00.123456"), A, referrer="newsletter"),
        # JSON values that are not text are read as their text; a Unicode address is lower-cased.
        row("E09", "9", "zoë@example.org", "signup", "/signup", at("10:10:00"), A, device="true", country="GB",
            plan="2", referrer='{"campaign":"x"}'),
        # No user (NULL, or blank after trimming): NULL keys, kept (counted by the has_user expectation).
        row("E10", None, None, "page_view", "/home", at("10:11:00"), A),
        row("E11", None, None, "page_view", "/home", at("10:12:00"), A),
        # epoch milliseconds written as a quoted string: the same text, the same instant.
        row("E13", "1", "ann@example.org", "logout", "/home", at("10:13:00"), A),
        row("E30", "3", "carol@example.org", "page_view", "/account", at("10:00:00"), A, country="DE"),
        row("E31", "3", "carol.new@example.org", "click", "/account", at("10:30:00"), A, country="DE"),
        row("E32", "3", "carol.new@example.org", "page_view", "/account", at("12:00:00"), A, device="desktop",
            country="DE"),
        row("E40", "4", "dan@example.org", "page_view", "/account", at("11:50:00"), A, country="FR", plan="pro"),
        row("E41", "4", "dan@example.org", "page_view", "/account", at("11:58:00"), A, device="desktop",
            country="FR", plan="pro"),
        row("E50", "5", "five@example.org", "page_view", "/account", at("11:00:00"), A),
        row("E61", "6", "six@example.org", "page_view", "/account", at("11:56:00"), A, device="tablet"),
        row("E60", "6", "six@example.org", "page_view", "/account", at("11:56:00"), A),
        row("E70", "7", "seven@example.org", "page_view", "/account", at("11:40:00"), A, country=None),
        row("E71", "7", "seven@example.org", "page_view", "/account", at("11:45:00"), A),
        # Run 2 (watermark 11:50:00 = 12:00:00 - 10 min): exactly on the watermark is on time.
        row("E21", "8", "eight@example.org", "click", "/pricing", at("11:50:00"), B),
        row("E33", "3", "carol.new@example.org", "page_view", "/account", at("11:55:00"), B, device="tablet",
            country="DE"),
        row("E42", "4", "dan@example.org", "page_view", "/account", at("11:54:00"), B, device="desktop",
            country="FR", plan="pro"),
        row("E51", "5", "five.new@example.org", "page_view", "/account", at("11:59:00"), B),
        row("E80", "8", "eight@example.org", "page_view", "/home", at("12:20:00"), B),
        # Run 3 (watermark 12:10:00).
        row("E34", "3", "carol.new@example.org", "page_view", "/account", at("12:15:00"), C, country="DE"),
        row("E35", "3", "carol.third@example.org", "page_view", "/account", at("12:10:00"), C, device="desktop",
            country="DE"),
    ])
    silver = [s["silver_clickstream"] for s in summaries]
    assert [(s.rows_written, s.rows_quarantined, s.rows_late, s.rows_duplicate) for s in silver] == [
        (18, 8, 0, 1), (5, 0, 2, 1), (2, 0, 1, 0)]


def test_fixture_quarantine_and_late_rows_are_exact(fixture_storage):
    store, _ = fixture_storage
    quarantine = read(store, "silver", "silver_clickstream_quarantine")
    assert rows(quarantine, ["_source_file", "event_id", "_failed_rules"]) == expected([
        (A, None, ["valid_event_id", "valid_event_ts", "valid_event_type"]),   # a truncated line
        (A, None, ["valid_event_id", "valid_event_ts", "valid_event_type"]),   # [1,2]: not an object
        (A, "E05", ["valid_event_type"]),                                      # PAGE_VIEW: case-sensitive
        (A, "E06", ["valid_event_ts"]),                                        # 2026-02-30 is no date
        (A, None, ["valid_event_id", "valid_event_type"]),                     # no event_id, type "share"
        (A, "E14", ["valid_event_ts"]),                                        # an offset, not Z
        (A, "E15", ["valid_event_ts"]),                                        # ISO without a zone
        (A, "E17", ["valid_event_ts", "valid_event_type"]),                    # JSON nulls
    ])
    assert not {"user_id", "email"} & set(quarantine.column_names)
    late = read(store, "silver", "silver_clickstream_late")
    assert rows(late, ["event_id", "event_ts", "_source_file"]) == expected([
        ("E01", at("10:00:00.250"), B),       # a repeat arriving after the watermark passed it: late, not a duplicate
        ("E20", at("11:49:59"), B),           # one second behind the watermark (11:50:00)
        ("E61", at("11:56:00"), C),           # behind run 3's watermark (12:10:00)
    ])


def test_fixture_dim_users_history_is_exact(fixture_storage):
    """SCD type 2 on (device, country, plan), sequenced by (event_ts, event_id), as in-order processing
    of every silver event would build it, although run 2 and 3 bring events from inside the history."""
    store, summaries = fixture_storage
    dim = read(store, "gold", "dim_users")
    got = rows(dim, ["user_key", "email_key", "device", "country", "plan", "__START_AT", "__END_AT"])

    def v(user, mail, device, country, plan, start, end):
        return (keyed(user), keyed(mail), device, country, plan, start, end)
    assert got == expected([
        v("1", "ann@example.org", "mobile", "US", "free", {"t": at("10:00:00.250"), "i": "E01"}, None),
        v("2", "bob@example.org", "desktop", "DE", "pro", {"t": at("10:05:00"), "i": "E03"}, None),
        # User 3: E33 (11:55, run 2) splits [10:00, 12:00); E31's untracked e-mail change (10:30) stays in place
        # in its version; E35 (12:10, run 3) changes only the e-mail of the closed desktop version; E34 opens one.
        v("3", "carol.new@example.org", "mobile", "DE", "free", {"t": at("10:00:00"), "i": "E30"},
          {"t": at("11:55:00"), "i": "E33"}),
        v("3", "carol.new@example.org", "tablet", "DE", "free", {"t": at("11:55:00"), "i": "E33"},
          {"t": at("12:00:00"), "i": "E32"}),
        v("3", "carol.third@example.org", "desktop", "DE", "free", {"t": at("12:00:00"), "i": "E32"},
          {"t": at("12:15:00"), "i": "E34"}),
        v("3", "carol.new@example.org", "mobile", "DE", "free", {"t": at("12:15:00"), "i": "E34"}, None),
        # User 4: E42 (11:54, run 2) equals the next version: it starts that version earlier, no new row.
        v("4", "dan@example.org", "mobile", "FR", "pro", {"t": at("11:50:00"), "i": "E40"},
          {"t": at("11:54:00"), "i": "E42"}),
        v("4", "dan@example.org", "desktop", "FR", "pro", {"t": at("11:54:00"), "i": "E42"}, None),
        # User 5: only the e-mail changed: the current row is updated in place.
        v("5", "five.new@example.org", "mobile", "US", "free", {"t": at("11:00:00"), "i": "E50"}, None),
        # User 6: two events in the same second, ordered by event_id.
        v("6", "six@example.org", "mobile", "US", "free", {"t": at("11:56:00"), "i": "E60"},
          {"t": at("11:56:00"), "i": "E61"}),
        v("6", "six@example.org", "tablet", "US", "free", {"t": at("11:56:00"), "i": "E61"}, None),
        # User 7: a NULL country is a value of its own.
        v("7", "seven@example.org", "mobile", None, "free", {"t": at("11:40:00"), "i": "E70"},
          {"t": at("11:45:00"), "i": "E71"}),
        v("7", "seven@example.org", "mobile", "US", "free", {"t": at("11:45:00"), "i": "E71"}, None),
        # User 8: E20 was late, so history starts at E21.
        v("8", "eight@example.org", "mobile", "US", "free", {"t": at("11:50:00"), "i": "E21"}, None),
        v("9", "zoë@example.org", "true", "GB", "2", {"t": at("10:10:00"), "i": "E09"}, None),
    ])
    assert dim.schema.field("__START_AT").type == pa.struct([("event_ts", pa.timestamp("us", tz="UTC")),
                                                             ("event_id", pa.string())])


def test_fixture_fact_page_views_daily_is_exact_and_clustered(fixture_storage):
    store, _ = fixture_storage
    fact = read(store, "gold", "fact_page_views_daily")
    day = date(2026, 11, 2)
    assert rows(fact, ["event_date", "page_url", "page_views", "clicks", "purchases", "unique_users"]) == expected([
        (day, "/home", 4, 1, 0, 2),           # E01 E10 E11 E80 viewed, E02 clicked, E13 logout; users 1 and 8
        (day, "/checkout", 0, 0, 1, 1),
        (day, "/pricing", 1, 1, 0, 2),
        (day, "/signup", 0, 0, 0, 1),         # a signup only: a row with zero counts
        (day, "/account", 14, 1, 0, 5),
    ])
    catalog = json.loads((store / "_system" / "catalog.json").read_text())
    assert catalog["fact_page_views_daily"]["cluster_by"] == ["event_date", "page_url"]


def test_apache_spark_gives_the_same_tables(spark_server, fixture_storage, tmp_path):
    """The fixtures' three deliveries on a real Spark Connect server: every table as on the embedded
    engine (timestamps, text-typed JSON values, rescued data, keys, quarantine, late, history)."""
    from assay.engines import create_engine
    store, _ = fixture_storage
    with create_engine("spark", {"remote": spark_server}) as spark:
        for drop in ("run1", "run2", "run3"):
            land_tree(FIXTURES / drop, tmp_path / "landing")
            run_in_process(spark, tmp_path / "landing", tmp_path / "storage")
    sail, on_spark = tables_under(store), tables_under(tmp_path / "storage")
    assert len(sail) == 6
    support.assert_same_tables(sail, on_spark)


@pytest.mark.slow
def test_landing_and_storage_come_from_the_environment(tmp_path, assay_cli):
    land_tree(FIXTURES / "run1", tmp_path / "env_landing")
    env = {"ASSAY_LANDING": "env_landing", "ASSAY_STORAGE": "env_storage"}
    assay_cli("run", "-p", str(PIPELINE), cwd=tmp_path, env=env, check=True)
    assert read(tmp_path / "env_storage", "silver", "silver_clickstream").num_rows == 18
    missing = assay_cli("run", "-p", str(PIPELINE), cwd=tmp_path, env={**env, "CLICKSTREAM_PII_KEY": ""})
    assert missing.returncode != 0 and "CLICKSTREAM_PII_KEY" in missing.stderr


@pytest.mark.slow
def test_rotating_the_key_rekeys_silver_and_gold_from_bronze(tmp_path, assay_cli):
    """A new key under a new variable and version, then a full refresh of the keyed tables: every key
    is rebuilt from the raw values bronze kept, under the new key and with its prefix."""
    land_tree(FIXTURES / "run1", tmp_path / "landing")
    base = ("run", "-p", str(PIPELINE), "--landing", str(tmp_path / "landing"), "--storage", str(tmp_path / "storage"))
    assay_cli(*base, cwd=tmp_path, check=True)
    before = read(tmp_path / "storage", "gold", "dim_users")
    new_key = "the-rotated-clickstream-key-" + "8" * 20
    result = cli(*base, "--conf", "pii_key_env=CLICKSTREAM_PII_KEY_V2", "--conf", "pii_key_version=v2",
                 "--full-refresh", "silver_clickstream,dim_users", cwd=tmp_path,
                 env={"CLICKSTREAM_PII_KEY_V2": new_key}, check=True)
    assert new_key not in result.stdout + result.stderr

    def v2(value):
        return "v2:" + hmac.new(new_key.encode(), value.encode(), hashlib.sha256).hexdigest()
    silver = {r["event_id"]: r for r in read(tmp_path / "storage", "silver", "silver_clickstream").to_pylist()}
    assert len(silver) == 18
    assert (silver["E02"]["user_key"], silver["E02"]["email_key"]) == (v2("1"), v2("ann@example.org"))
    assert (silver["E09"]["user_key"], silver["E09"]["email_key"]) == (v2("9"), v2("zoë@example.org"))
    after = read(tmp_path / "storage", "gold", "dim_users")
    assert after.num_rows == before.num_rows
    assert {k for k in after["user_key"].to_pylist()} == {v2(str(u)) for u in (1, 2, 3, 4, 5, 6, 7, 9)}
