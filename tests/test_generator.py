"""assay.generator: deterministic layout, knobs that do what they say, awkward cases present,
and truths that agree with an independent re-derivation from the landed files.

The oracles below parse the files the way a pipeline would (json / csv, row by row) and
apply the documented semantics; they share no code with the generator's truth modules.
"""
from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.generator import PIPELINES, generate, land_drop
from assay.generator.regions import region_of_location
from assay.verify import compare, verify

UTC = timezone.utc


# ---------------------------------------------------------------- helpers

def _gen(tmp_path_factory, pipeline, **kw):
    out = tmp_path_factory.mktemp(pipeline)
    return out, generate(pipeline, out, **kw)


def _landed(out: Path, manifest: dict, prefix: str) -> list[tuple[str, Path]]:
    """(landing-relative path, file) of every landed file under prefix, in arrival (path) order."""
    files = [(rel, out / "drops" / k / rel) for k, rels in manifest["files"].items() for rel in rels
             if rel.startswith(prefix)]
    return sorted(files)


def _truth(out: Path, name: str) -> pa.Table:
    return pq.read_table(out / "truth" / f"{name}.parquet")


def _iso(s):
    """An ISO-8601 instant, or None when the text is not one (Z spelled out for Python 3.10)."""
    if not isinstance(s, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?", s):
        return None
    try:
        return datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith("Z") else s)
    except ValueError:
        return None


def _assert_same(out, name, rows: list[dict], approx=()):
    truth = _truth(out, name)
    actual = pa.Table.from_pylist(rows, schema=truth.schema) if rows else truth.slice(0, 0)
    res = compare(name, truth, actual, approx=list(approx))
    assert res.ok, (res.missing, res.unexpected, res.mismatched, res.missing_examples, res.unexpected_examples,
                    res.mismatch_examples)


# ---------------------------------------------------------------- zenith

@pytest.fixture(scope="module")
def zenith(tmp_path_factory):
    return _gen(tmp_path_factory, "zenith", rows=6000, seed=7, drops=2, files_per_drop=3,
                duplicate_rate=0.05, late_rate=0.02, malformed_rate=0.02, null_rate=0.02)


def zenith_oracle(out: Path, manifest: dict) -> dict:
    drop0 = out / "drops" / "0"
    products = {r["product_id"]: r for r in pq.read_table(drop0 / "batch/products/products.parquet").to_pylist()}
    with open(drop0 / "batch/customers/customers.csv", newline="") as f:
        customers = {int(r["customer_id"]): (r["location"] or None) for r in csv.DictReader(f)}

    joined, quarantine = [], []
    for rel, path in _landed(out, manifest, "streaming/user_events/"):
        for line in path.read_text().split("\n")[:-1]:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            obj = obj if isinstance(obj, dict) else {}
            if obj.get("product_id") not in products:
                continue
            dt = _iso(obj.get("event_timestamp"))
            failed = sorted(r for r, ok in (("valid_event_id", obj.get("event_id") is not None),
                                             ("valid_event_time", dt is not None),
                                             ("valid_event_type", obj.get("event_type") in ("view", "add_to_cart", "purchase")))
                            if not ok)
            if failed:
                quarantine.append({"source_file": Path(rel).name, "event_id": obj.get("event_id"),
                                   "failed_rules": failed})
            else:
                joined.append({**obj, "dt": dt, "file": rel})

    by_file = defaultdict(list)
    for r in joined:
        by_file[r["file"]].append(r)
    high, late, on_time = None, [], []
    for rel in sorted(by_file):
        wm = None if high is None else high - pd.Timedelta(minutes=3)
        fresh = [r for r in by_file[rel] if wm is None or r["dt"] >= wm]
        late += [r for r in by_file[rel] if wm is not None and r["dt"] < wm]
        on_time += fresh
        if fresh:
            m = max(r["dt"] for r in fresh)
            high = m if high is None else max(high, m)
    best = {}
    for r in on_time:
        k = (r["dt"], r["file"])          # ties within a file are exact copies
        if r["event_id"] not in best or k < best[r["event_id"]][0]:
            best[r["event_id"]] = (k, r)
    silver = []
    for _, r in best.values():
        p = products[r["product_id"]]
        loc = customers.get(r["user_id"]) if r.get("user_id") is not None else None
        silver.append({"event_id": r["event_id"], "event_dt": r["dt"], "user_id": r.get("user_id"),
                       "action": r["event_type"], "product_id": r["product_id"], "product_name": p["product_name"],
                       "category": p["category"], "price": p["price"], "session_id": r.get("session_id"),
                       "region": region_of_location(loc), "event_date": r["dt"].date()})
    return {"silver": silver, "late": [{"event_id": r["event_id"], "event_dt": r["dt"]} for r in late],
            "quarantine": quarantine, "duplicates_dropped": len(on_time) - len(best)}


def test_zenith_truth_matches_an_independent_reading_of_the_files(zenith):
    out, manifest = zenith
    o = zenith_oracle(out, manifest)
    _assert_same(out, "silver_sessionized_activity", o["silver"])
    _assert_same(out, "silver_sessionized_activity_late", o["late"])
    _assert_same(out, "silver_sessionized_activity_quarantine", o["quarantine"])

    s = pd.DataFrame(o["silver"])
    s["is_view"], s["is_cart"], s["is_buy"] = (s["action"] == a for a in ("view", "add_to_cart", "purchase"))
    s["rev"] = s["price"].where(s["is_buy"], 0.0)
    g = s.groupby(["event_date", "product_id", "product_name", "category"], as_index=False).agg(
        views=("is_view", "sum"), adds_to_cart=("is_cart", "sum"), purchases=("is_buy", "sum"), revenue=("rev", "sum"))
    g["revenue_rank"] = g.groupby(["event_date", "category"])["revenue"].transform(
        lambda v: v.round(2).rank(method="min", ascending=False))
    _assert_same(out, "gold_daily_product_performance", g.to_dict("records"))

    c = s[s["is_buy"]].groupby(["user_id", "region"], dropna=False, as_index=False).agg(
        total_purchase_value=("price", "sum"), total_purchases=("price", "size"),
        distinct_products_purchased=("product_id", "nunique"), last_purchase_timestamp=("event_dt", "max"))
    rows = [{k: (None if not isinstance(v, (str, datetime)) and pd.isna(v) else v) for k, v in r.items()}
            for r in c.to_dict("records")]
    for r in rows:
        r["user_id"] = None if r["user_id"] is None else int(r["user_id"])
    _assert_same(out, "customer_purchase_summary", rows)

    m = manifest["metrics"]
    assert m["bronze_rows"] == sum(len(p.read_text().split("\n")) - 1
                                   for _, p in _landed(out, manifest, "streaming/user_events/"))
    assert m["late_events"] == len(o["late"]) and m["quarantined"] == len(o["quarantine"])
    assert m["duplicates_dropped"] == o["duplicates_dropped"]
    assert m["null_region_events"] == sum(r["region"] is None for r in o["silver"])
    latest = g[g["event_date"] == g["event_date"].max()].sort_values(["purchases", "product_id"], ascending=[False, True])
    assert [r["product_id"] for r in m["top5_products_latest_date"]] == list(latest["product_id"][:5])


def test_zenith_awkward_cases_are_present(zenith):
    out, manifest = zenith
    drop0 = out / "drops" / "0"
    with open(drop0 / "batch/customers/customers.csv", newline="") as f:
        locations = [r["location"] for r in csv.DictReader(f)]
    assert "" in locations                                               # empty location
    assert any(x and region_of_location(x) is None for x in locations)   # non-US code ("Toronto, ON")
    assert any(x.count(",") == 1 and region_of_location(x) for x in locations)
    assert '"' in (drop0 / "batch/customers/customers.csv").read_text()  # the comma forces quoting
    products = set(pq.read_table(drop0 / "batch/products/products.parquet")["product_id"].to_pylist())
    lines = [ln for _, p in _landed(out, manifest, "streaming/user_events/") for ln in p.read_text().splitlines()]
    parsed = []
    for ln in lines:
        try:
            parsed.append(json.loads(ln))
        except ValueError:
            parsed.append(None)
    assert any(p is None for p in parsed)                                          # broken JSON
    assert any(p and p.get("product_id") and p["product_id"] not in products for p in parsed)  # unknown product
    assert any(p and p.get("product_id") in products and _iso(p.get("event_timestamp")) is None for p in parsed)
    assert any(p and p.get("user_id") is None for p in parsed)
    # Drift: coupon_code appears only after the drift point (default: half of the stream).
    cut = len(lines) // 2
    assert not any(p and "coupon_code" in p for p in parsed[:cut - 1])
    assert all("coupon_code" in p for p in parsed[cut + 1:] if p)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", parsed[0]["event_timestamp"])
    assert manifest["metrics"]["null_region_events"] > 0


def test_zenith_knob_rates_show_up_roughly(tmp_path):
    m = generate("zenith", tmp_path, rows=20_000, seed=3, duplicate_rate=0.05, late_rate=0.02, malformed_rate=0.01,
                 files_per_drop=4)
    inj, met = m["injected"], m["metrics"]
    assert inj["duplicates"] == round(20_000 * 0.05 / 1.05)
    assert inj["late"] == round(0.02 * inj["events"])
    assert 0.6 * inj["duplicates"] <= met["duplicates_dropped"] <= inj["duplicates"]
    assert inj["late"] * 0.8 <= met["late_events"] <= inj["late"] + inj["duplicates"]
    malformed = inj["broken_json"] + inj["bad_timestamp"] + inj["bad_event_type"] + inj["bad_event_id"]
    assert malformed == round(0.01 * inj["events"])
    assert 0.3 * malformed <= met["quarantined"] <= 1.2 * malformed


def test_zero_rates_give_a_clean_stream(tmp_path):
    m = generate("zenith", tmp_path, rows=3000, duplicate_rate=0, late_rate=0, malformed_rate=0, null_rate=0,
                 unknown_product_rate=0, drift_at=1.0)
    met = m["metrics"]
    assert met["late_events"] == met["quarantined"] == met["duplicates_dropped"] == met["dropped_by_product_join"] == 0
    assert met["silver_rows"] == met["bronze_rows"] == 3000


# ---------------------------------------------------------------- activity_logs

@pytest.fixture(scope="module")
def activity(tmp_path_factory):
    return _gen(tmp_path_factory, "activity_logs", rows=6000, seed=11, drops=2, files_per_drop=3,
                duplicate_rate=0.05, malformed_rate=0.03)


_OCT = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"


def activity_oracle(out: Path, manifest: dict) -> dict:
    with open(out / "drops/0/reference/geo_ip/geo_ip.csv", newline="") as f:
        nets = [(ipaddress.ip_network(r["network"]), r["region"]) for r in csv.DictReader(f)]
    bronze, quarantine, boms = [], [], 0
    for rel, path in _landed(out, manifest, "activity_logs/"):
        raw = path.read_bytes()
        boms += raw.startswith(b"\xef\xbb\xbf")
        reader = csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
        assert next(reader) == ["log_id", "user_id", "event_time", "ip_address", "content_id", "action",
                                "watch_time_seconds"]
        for rec in reader:
            v = [(x if x != "" else None) for x in (rec + [None] * 7)[:7]]
            log_id, user_id, t, ip, content, action, watch = v
            checks = {
                "log_id_present": log_id is not None and log_id.strip() != "",
                "user_id_present": user_id is not None and user_id.strip() != "",
                "valid_event_time": _iso(t) is not None,
                "valid_ip": ip is not None and re.fullmatch(rf"{_OCT}(\.{_OCT}){{3}}", ip) is not None,
                "valid_action": action in ("play", "pause", "seek", "stop"),
                "valid_watch_time": watch is not None and re.fullmatch(r"[0-9]+", watch) is not None
                and int(watch) <= 86400,
                "well_formed_record": len(rec) == 7,
            }
            failed = sorted(k for k, ok in checks.items() if not ok)
            if failed:
                quarantine.append({"source_file": Path(rel).name, "log_id": log_id, "failed_rules": failed})
            else:
                bronze.append({"log_id": log_id, "user_id": user_id, "event_time": _iso(t), "ip_address": ip,
                               "content_id": content, "action": action, "watch_time_seconds": int(watch),
                               "_key": (_iso(t), rel, user_id, ip, content or "", action, int(watch))})
    best = {}
    for r in bronze:
        if r["log_id"] not in best or r["_key"] < best[r["log_id"]]["_key"]:
            best[r["log_id"]] = r
    silver = []
    for r in best.values():
        addr = ipaddress.ip_address(r["ip_address"])
        region = next((reg for net, reg in nets if addr in net), "Unknown")
        silver.append({**{k: v for k, v in r.items() if k != "_key"}, "region": region,
                       "event_date": r["event_time"].date()})
    for r in bronze:
        del r["_key"]
    return {"bronze": bronze, "quarantine": quarantine, "silver": silver, "boms": boms, "nets": nets}


def test_activity_truth_matches_an_independent_reading_of_the_files(activity):
    out, manifest = activity
    o = activity_oracle(out, manifest)
    _assert_same(out, "bronze_activity_logs", o["bronze"])
    _assert_same(out, "bronze_activity_logs_quarantine", o["quarantine"])
    _assert_same(out, "silver_activity_logs", o["silver"])
    s = pd.DataFrame(o["silver"])
    u = s.groupby("user_id", as_index=False).agg(
        total_watch_time_seconds=("watch_time_seconds", "sum"), events=("log_id", "size"),
        first_event_time=("event_time", "min"), last_event_time=("event_time", "max"))
    _assert_same(out, "gold_user_watch_time", u.to_dict("records"))
    r = s.groupby(["event_date", "region"], as_index=False).agg(
        total_watch_time_seconds=("watch_time_seconds", "sum"), active_users=("user_id", "nunique"))
    _assert_same(out, "gold_region_daily_watch_time", r.to_dict("records"))


def test_every_activity_row_lands_in_exactly_one_bronze_table(activity):
    out, manifest = activity
    data_rows = sum(len(p.read_bytes().decode("utf-8-sig").splitlines()) - 1
                    for _, p in _landed(out, manifest, "activity_logs/"))
    bronze, quarantine = _truth(out, "bronze_activity_logs"), _truth(out, "bronze_activity_logs_quarantine")
    assert bronze.num_rows + quarantine.num_rows == data_rows == manifest["rows"]
    assert all(rules == sorted(rules) and rules for rules in quarantine["failed_rules"].to_pylist())
    assert any(len(rules) > 1 for rules in quarantine["failed_rules"].to_pylist())


def test_activity_awkward_cases_are_present(activity):
    out, manifest = activity
    o = activity_oracle(out, manifest)
    assert o["boms"] >= 1 and o["boms"] < len(_landed(out, manifest, "activity_logs/"))
    text = "".join(p.read_text(encoding="utf-8-sig") for _, p in _landed(out, manifest, "activity_logs/"))
    assert re.search(r',"show\d+,season\d+",', text)                                   # quoted comma
    ips = {ipaddress.ip_address(r["ip_address"]) for r in o["bronze"]}
    assert any(ip == net.network_address for net, _ in o["nets"] for ip in [ip for ip in ips if ip in net])
    assert any(ip == net.broadcast_address for net, _ in o["nets"] for ip in [ip for ip in ips if ip in net])
    assert any(r["region"] == "Unknown" for r in o["silver"])
    assert manifest["injected"]["conflicting_duplicates"] > 0
    # A conflicting copy (same log_id, other event_time) exists among valid rows.
    times = defaultdict(set)
    for r in o["bronze"]:
        times[r["log_id"]].add(r["event_time"])
    assert any(len(v) > 1 for v in times.values())
    rules = Counter(r for q in o["quarantine"] for r in q["failed_rules"])
    assert set(rules) == {"log_id_present", "user_id_present", "valid_event_time", "valid_ip", "valid_action",
                          "valid_watch_time", "well_formed_record"}


# ---------------------------------------------------------------- customers_stream / clickstream

def _customers_oracle(lines: list[str]):
    """The customers_stream contract applied to raw message lines in plain Python: silver after
    defaults, and the quarantine's (customer_id, rules). Independent of the generator's arrays."""
    from decimal import ROUND_HALF_UP, Decimal
    latest, quarantine = {}, []
    flag = {"Yes": True, "No": False, 1: True, 0: False}

    def when(text):
        if not isinstance(text, str) or not re.fullmatch(
                r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?", text):
            return None
        try:
            t = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            return None
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)

    for line in lines:
        try:
            msg = json.loads(line)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            quarantine.append((None, ("has_customer_id", "is_json_object", "valid_updated_at")))
            continue
        ts = when(msg.get("updated_at"))
        rules = tuple(r for r, bad in (("has_customer_id", msg.get("customer_id") is None),
                                       ("valid_updated_at", ts is None)) if bad)
        if rules:
            quarantine.append((msg.get("customer_id"), rules))
        elif msg["customer_id"] not in latest or ts > latest[msg["customer_id"]][0]:
            latest[msg["customer_id"]] = (ts, msg)
    silver = {}
    for cid, (ts, m) in latest.items():
        tenure = m.get("tenure") if m.get("tenure") is not None else 0
        monthly = Decimal(str(m["monthly_charges"])).quantize(Decimal("0.01"), ROUND_HALF_UP)
        total = m.get("total_charges")
        total = monthly * tenure if total is None else Decimal(str(total))
        silver[cid] = {"customer_id": cid, "gender": m.get("gender") or "Unknown",
                       "senior_citizen": flag.get(m.get("senior_citizen"), False),
                       "partner": flag.get(m.get("partner"), False), "dependents": flag.get(m.get("dependents"), False),
                       "tenure": tenure, "phone_service": flag.get(m.get("phone_service"), False),
                       "internet_service": m.get("internet_service") or "No",
                       "contract": m.get("contract") or "Month-to-month", "monthly_charges": monthly,
                       "total_charges": total.quantize(Decimal("0.01"), ROUND_HALF_UP), "updated_at": ts,
                       "first_name": m.get("first_name"), "last_name": m.get("last_name"), "email": m.get("email"),
                       "year": ts.astimezone(timezone.utc).year, "month": ts.astimezone(timezone.utc).month,
                       "day": ts.astimezone(timezone.utc).day, "hour": ts.astimezone(timezone.utc).hour}
    return silver, quarantine


def test_customers_stream_truth_matches_the_messages(tmp_path):
    from decimal import ROUND_HALF_UP, Decimal
    m = generate("customers_stream", tmp_path, rows=6000, seed=5, drops=2, malformed_rate=0.04, late_rate=0.05,
                 null_rate=0.05)
    lines = [line for _, p in _landed(tmp_path, m, "customers/") for line in p.read_text().splitlines()]
    assert sorted(_truth(tmp_path, "bronze_customers").column("value").to_pylist()) == sorted(lines)
    silver, quarantine = _customers_oracle(lines)
    _assert_same(tmp_path, "silver_customers", list(silver.values()))
    _assert_same(tmp_path, "silver_customers_quarantine",
                 [{"customer_id": c, "failed_rules": sorted(r)} for c, r in quarantine])
    cent = Decimal("0.01")
    features = [{**{k: v for k, v in r.items() if k not in ("first_name", "last_name", "email", "year", "month",
                                                             "day", "hour")},
                 "tenure_band": "0-12" if r["tenure"] <= 12 else "13-24" if r["tenure"] <= 24
                 else "25-48" if r["tenure"] <= 48 else "49+",
                 "avg_monthly_spend": (r["total_charges"] / max(r["tenure"], 1)).quantize(cent, ROUND_HALF_UP),
                 "is_month_to_month": r["contract"] == "Month-to-month"} for r in silver.values()]
    _assert_same(tmp_path, "customer_features", features)
    groups = defaultdict(list)
    for r in silver.values():
        groups[(r["contract"], r["internet_service"])].append(r)
    summary = [{"contract": c, "internet_service": i, "customers": len(rs),
                "avg_tenure": (Decimal(sum(r["tenure"] for r in rs)) / len(rs)).quantize(cent, ROUND_HALF_UP),
                "avg_monthly_charges": (sum(r["monthly_charges"] for r in rs) / len(rs)).quantize(cent, ROUND_HALF_UP),
                "total_charges_sum": sum(r["total_charges"] for r in rs)} for (c, i), rs in groups.items()]
    _assert_same(tmp_path, "contract_summary", summary)
    # every awkward case is there
    text = "\n".join(lines)
    for needle in ('"senior_citizen":"Yes"', '"partner":1', '"gender":null', '+02:00"', '"channel":"web"',
                   '"updated_at":null', '{"source":"crm"', '"customer_id":null'):
        assert needle in text, needle
    assert any(line.startswith("[") for line in lines)
    assert any(re.search(r'"updated_at":"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"', line) for line in lines)
    assert any(re.search(r'"updated_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"', line) for line in lines)
    assert any('"gender"' not in line for line in lines if line.startswith('{"customer_id":"'))
    assert any(r["total_charges"] == r["monthly_charges"] * r["tenure"] for r in silver.values())
    assert m["metrics"]["malformed_messages"] == len(quarantine) > 0


CLICK_KEY = "generator-test-key-" + "7" * 24


def _click_text(value):
    """A JSON value read into a text column, as Spark's JSON reader does."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":")) if not isinstance(value, (int, float)) or isinstance(value, bool) \
        else str(value)


def _click_ts(text):
    """Epoch milliseconds of the three formats (ISO with Z, epoch millis, 'YYYY-MM-DD HH:MM:SS' UTC), else None."""
    if text is None:
        return None
    if re.fullmatch(r"[0-9]{1,15}", text):
        return int(text)
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z?)", text)
    if not m or (m.group(8) == "Z") != ("T" in text) or ("T" not in text and m.group(7)):
        return None
    try:
        t = datetime(*map(int, m.groups()[:6]), tzinfo=UTC)
    except ValueError:
        return None
    micros = int((m.group(7) or "0").ljust(6, "0")[:6])
    return int(t.timestamp()) * 1000 + micros // 1000, micros       # (ms, micros) of an ISO / space value


def clickstream_oracle(out: Path, manifest: dict) -> dict:
    import hashlib
    import hmac

    def keyed(v):
        return None if v is None else "v1:" + hmac.new(CLICK_KEY.encode(), v.encode(), hashlib.sha256).hexdigest()
    types = {"page_view", "click", "add_to_cart", "signup", "purchase", "logout"}
    files = []
    for rel, path in _landed(out, manifest, "clickstream/"):
        rows = []
        for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            obj = obj if isinstance(obj, dict) else {}
            r = {k: _click_text(obj.get(k)) for k in ("event_id", "user_id", "email", "event_type", "page_url",
                                                      "referrer", "device", "country", "plan", "ts")}
            t = _click_ts(r["ts"])
            r["us"] = None if t is None else (t * 1000 if isinstance(t, int) else t[0] // 1000 * 1_000_000 + t[1])
            r["source_file"] = Path(rel).name
            rows.append(r)
        files.append(rows)
    quarantine, late, silver, seen, high = [], [], {}, set(), None
    for rows in files:
        top = high
        for r in rows:
            failed = sorted(n for n, ok in (("valid_event_id", r["event_id"] is not None),
                                            ("valid_event_ts", r["us"] is not None),
                                            ("valid_event_type", r["event_type"] in types)) if not ok)
            if failed:
                quarantine.append({"source_file": r["source_file"], "event_id": r["event_id"], "failed_rules": failed})
            elif high is not None and r["us"] < high - 600_000_000:
                late.append(r)
            else:
                top = r["us"] if top is None else max(top, r["us"])
                if r["event_id"] not in seen:            # first arrival wins
                    seen.add(r["event_id"])
                    user = (r["user_id"] or "").strip(" ") or None
                    mail = (r["email"] or "").strip(" ").lower() or None
                    silver[r["event_id"]] = {**r, "user_key": keyed(user), "email_key": keyed(mail)}
        high = top
    return {"files": files, "quarantine": quarantine, "late": late, "silver": list(silver.values())}


def _micros_dt(us):
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def test_clickstream_truth_matches_an_independent_reading_of_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_PII_KEY", CLICK_KEY)
    m = generate("clickstream", tmp_path, rows=6000, seed=2, drops=2, files_per_drop=3, malformed_rate=0.02,
                 late_rate=0.03, duplicate_rate=0.05)
    o = clickstream_oracle(tmp_path, m)
    assert sum(len(f) for f in o["files"]) == 6000
    _assert_same(tmp_path, "silver_clickstream_quarantine", o["quarantine"])
    _assert_same(tmp_path, "silver_clickstream_late", [
        {"event_id": r["event_id"], "event_ts": _micros_dt(r["us"]), "source_file": r["source_file"]} for r in o["late"]])
    cols = ["event_id", "user_key", "email_key", "event_type", "page_url", "referrer", "device", "country", "plan"]
    _assert_same(tmp_path, "silver_clickstream", [
        {**{c: r[c] for c in cols}, "event_ts": _micros_dt(r["us"]), "event_date": _micros_dt(r["us"]).date()}
        for r in o["silver"]])

    facts = defaultdict(lambda: {"page_views": 0, "clicks": 0, "purchases": 0, "users": set()})
    for r in o["silver"]:
        f = facts[(_micros_dt(r["us"]).date(), r["page_url"])]
        f["page_views"] += r["event_type"] == "page_view"
        f["clicks"] += r["event_type"] == "click"
        f["purchases"] += r["event_type"] == "purchase"
        if r["user_key"] is not None:
            f["users"].add(r["user_key"])
    _assert_same(tmp_path, "fact_page_views_daily", [
        {"event_date": d, "page_url": p, "page_views": f["page_views"], "clicks": f["clicks"],
         "purchases": f["purchases"], "unique_users": len(f["users"])} for (d, p), f in facts.items()])

    # SCD type 2, by processing each user's events one by one in (event_ts, event_id) order.
    versions, by_user = [], defaultdict(list)
    for r in o["silver"]:
        if r["user_key"] is not None:
            by_user[r["user_key"]].append(r)
    for user, events in by_user.items():
        current = None
        for r in sorted(events, key=lambda r: (r["us"], r["event_id"])):
            seq = {"event_ts": _micros_dt(r["us"]), "event_id": r["event_id"]}
            tracked = (r["device"], r["country"], r["plan"])
            if current is not None and current["tracked"] == tracked:
                current["email_key"] = r["email_key"]             # untracked: updated in place
                continue
            if current is not None:
                current["__END_AT"] = seq
            current = {"user_key": user, "email_key": r["email_key"], "tracked": tracked, "__START_AT": seq,
                       "__END_AT": None}
            versions.append(current)
    _assert_same(tmp_path, "dim_users", [
        {"user_key": v["user_key"], "email_key": v["email_key"], "device": v["tracked"][0], "country": v["tracked"][1],
         "plan": v["tracked"][2], "__START_AT": v["__START_AT"], "__END_AT": v["__END_AT"]} for v in versions])
    assert len(versions) > len(by_user) and m["metrics"]["out_of_order_user_events"] > 0
    formats = Counter("epoch" if re.fullmatch(r"[0-9]+", r["ts"] or "") else "iso" if (r["ts"] or "").endswith("Z")
                      else "space" for f in o["files"] for r in f if r["us"] is not None)
    assert len(formats) == 3 and min(formats.values()) > 1000
    assert len(o["late"]) > 0 and any(r["event_id"] is None for r in o["quarantine"])


def test_clickstream_truth_needs_the_pipelines_key(tmp_path, monkeypatch):
    from assay.errors import ConfigError
    monkeypatch.delenv("CLICKSTREAM_PII_KEY", raising=False)
    with pytest.raises(ConfigError, match="CLICKSTREAM_PII_KEY"):
        generate("clickstream", tmp_path, rows=500, seed=1)
    assert generate("clickstream", tmp_path, rows=500, seed=1, truth=False)["tables"] == {}


# ---------------------------------------------------------------- layout, determinism, API

def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_PII_KEY", CLICK_KEY)          # the clickstream truth's HMAC key

    def snapshot(d):
        return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}
    for pipeline in PIPELINES:
        a, b, c = tmp_path / f"{pipeline}-a", tmp_path / f"{pipeline}-b", tmp_path / f"{pipeline}-c"
        generate(pipeline, a, rows=1500, seed=42, drops=2)
        generate(pipeline, b, rows=1500, seed=42, drops=2)
        generate(pipeline, c, rows=1500, seed=43, drops=2)
        sa, sb, sc = snapshot(a), snapshot(b), snapshot(c)
        assert sa == sb, pipeline
        assert sa.keys() == sc.keys() and sa != sc


def test_drop_layout_and_landing(tmp_path):
    out = tmp_path / "gen"
    m = generate("zenith", out, rows=3000, drops=3, files_per_drop=2)
    assert sorted(m["files"]) == ["0", "1", "2"]
    assert "batch/products/products.parquet" in m["files"]["0"] and "batch/customers/customers.csv" in m["files"]["0"]
    for k in ("1", "2"):
        assert all(rel.startswith("streaming/user_events/") for rel in m["files"][k])
    events = [rel for k in ("0", "1", "2") for rel in m["files"][k] if rel.startswith("streaming/")]
    assert events == sorted(events) and len(events) == 6
    assert Path(events[-1]).name == "part-00002-00001.json"
    assert sum(m["tables"][t]["rows"] for t in ["silver_sessionized_activity"]) == m["metrics"]["silver_rows"]
    assert json.loads((out / "truth/manifest.json").read_text())["knobs"]["files_per_drop"] == 2

    landing = tmp_path / "landing"
    first = land_drop(out, landing, 0)
    assert first == sorted(first) and len(first) == 4
    assert (landing / "batch/customers/customers.csv").read_bytes() == (out / "drops/0/batch/customers/customers.csv").read_bytes()
    land_drop(out, landing, 1)
    assert not [p for p in landing.rglob(".*")]                # no temporary files left behind
    assert len(list((landing / "streaming/user_events").iterdir())) == 4
    with pytest.raises(KeyError):
        land_drop(out, landing, 3)


def test_size_knob_approximates_event_bytes(tmp_path):
    m = generate("activity_logs", tmp_path, size="1MB", seed=1)
    assert 0.85e6 <= m["event_bytes"] <= 1.15e6


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(TypeError, match="unknown knob"):
        generate("zenith", tmp_path, rows=100, bom_rate=0.5)
    with pytest.raises(ValueError, match="duplicate_rate"):
        generate("zenith", tmp_path, rows=100, duplicate_rate=1.5)
    with pytest.raises(KeyError):
        generate("nope", tmp_path, rows=100)
    with pytest.raises(ValueError, match="files"):
        generate("zenith", tmp_path, rows=3, files_per_drop=4)


def test_truth_passes_verify_against_itself(zenith):
    out, _ = zenith
    report = verify(out / "truth", lambda name: _truth(out, name))
    assert report.ok, report.render()
