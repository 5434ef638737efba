"""Zenith truth: the exact silver, late, quarantine and gold tables the pipeline must produce.

Computed from the generator's description of every landed line (what a JSON parser reads
from it), following the contract in the generator's README section of the brief:
inner join with products -> rules -> watermark lateness (3 min) -> dedup on event_id ->
enrichment with customers -> gold aggregates.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from . import text as T
from .regions import region_of_location
from .semantics import dates, first_survivors, late_rows, rule_lists, ts_us
from .zenith_data import BROKEN_NONE, EID_OK, EVENT_TYPES, LOCATIONS, Landed, session_words

WATERMARK_MS = 3 * 60_000
RULES = ("valid_event_id", "valid_event_time", "valid_event_type")   # sorted


def compute(d: Landed, seed: int) -> tuple[dict[str, pa.Table], dict]:
    st, ev, cat = d.stream, d.events, d.catalog
    s = st.src
    obj = ev.broken[s] == BROKEN_NONE
    prod = np.where(obj, ev.product[s], -1)
    joined = (prod >= 0) & (prod < cat.n_known)           # inner join with products
    # One column per rule (RULES order): True where the rule fails.
    fails = ~np.stack([obj & (ev.eid_state[s] == EID_OK),
                       obj & (ev.bad_ts[s] == 0),
                       obj & (ev.etype[s] < len(EVENT_TYPES))], axis=1)
    failing = joined & fails.any(axis=1)
    passing = joined & ~failing

    dt = st.ms[s]
    late = late_rows(dt, st.slot, passing, WATERMARK_MS)
    remaining = np.flatnonzero(passing & ~late)
    arrival = np.arange(st.n_lines)
    keep = first_survivors([ev.eid_hi[s], ev.eid_lo[s]], [dt, arrival], remaining)

    silver = _silver(d, keep, seed)
    tables = {
        "silver_sessionized_activity": silver,
        "silver_sessionized_activity_late": pa.table({
            "event_id": T.uuid_strings(ev.eid_hi[s][late], ev.eid_lo[s][late]),
            "event_dt": ts_us(dt[late])}),
        "silver_sessionized_activity_quarantine": _quarantine(d, np.flatnonzero(failing), fails),
    }
    sdf = silver.to_pandas(types_mapper=_nullable)
    gold = _daily_product_performance(sdf)
    summary = _purchase_summary(sdf)
    tables["gold_daily_product_performance"] = gold
    tables["customer_purchase_summary"] = summary
    metrics = {
        "bronze_rows": int(st.n_lines),
        "silver_rows": int(len(keep)),
        "null_region_events": int(sdf["region"].isna().sum()),
        "late_events": int(late.sum()),
        "duplicates_dropped": int(len(remaining) - len(keep)),
        "quarantined": int(failing.sum()),
        "dropped_by_product_join": int((~joined).sum()),
        **_answers(gold.to_pandas(types_mapper=_nullable), summary.to_pandas(types_mapper=_nullable)),
    }
    return tables, metrics


def _nullable(t: pa.DataType):
    return pd.Int64Dtype() if pa.types.is_integer(t) else None


def _silver(d: Landed, keep: np.ndarray, seed: int) -> pa.Table:
    st, ev, cat = d.stream, d.events, d.catalog
    s = st.src[keep]
    ms = st.ms[s]
    user = ev.user[s]
    has_user = user >= 0
    user_id = np.where(has_user, cat.user_ids[np.maximum(user, 0)], 0)
    region = _user_regions(cat)[np.where(has_user, user, len(cat.user_ids))]
    prod = ev.product[s]
    words = session_words(seed, user, ms)
    sess = np.empty((len(s), 16), dtype=np.uint8)
    T.hex_bytes(sess, 0, words, 8)
    session = T.fixed(sess)
    if ev.session_null[s].any():
        session = T.patch(session, np.flatnonzero(ev.session_null[s]), pa.nulls(int(ev.session_null[s].sum()), pa.string()))
    names, cats = np.array(cat.product_name, dtype=object), np.array(cat.category, dtype=object)
    return pa.table({
        "event_id": T.uuid_strings(ev.eid_hi[s], ev.eid_lo[s]),
        "event_dt": ts_us(ms),
        "user_id": pa.array(user_id, pa.int64(), mask=~has_user),
        "action": pa.array(np.array(EVENT_TYPES, dtype=object)[ev.etype[s]], pa.string()),
        "product_id": pa.array(np.array(cat.product_ids, dtype=object)[prod], pa.string()),
        "product_name": pa.array(names[prod], pa.string()),
        "category": pa.array(cats[prod], pa.string()),
        "price": pa.array(cat.price_cents[prod] / 100.0, pa.float64()),
        "session_id": session.cast(pa.string()),
        "region": pa.array(region, pa.string()),
        "event_date": dates(ms),
    })


def _user_regions(cat) -> np.ndarray:
    """Region per user index (None for users that are not customers), plus a trailing None."""
    by_location = np.array([region_of_location(x) for x in LOCATIONS] + [None], dtype=object)
    cust = cat.customers
    order = np.argsort(cust.customer_id)
    i = np.minimum(np.searchsorted(cust.customer_id[order], cat.user_ids), len(order) - 1)
    found = cust.customer_id[order][i] == cat.user_ids
    loc = np.where(found, cust.location[order][i], len(LOCATIONS))
    return np.append(by_location[loc], None)


def _quarantine(d: Landed, rows: np.ndarray, fails: np.ndarray) -> pa.Table:
    names = np.array([d.file_name(g) for g in range(d.stream.n_slots)], dtype=object)
    return pa.table({
        "source_file": pa.array(names[d.stream.slot[rows]], pa.string()),
        "position": pa.array(d.stream.positions()[rows], pa.int64()),
        "failed_rules": rule_lists(fails[rows], RULES),
    })


def _daily_product_performance(s: pd.DataFrame) -> pa.Table:
    cents = (s["price"] * 100).round().astype("int64")
    df = pd.DataFrame({
        "event_date": s["event_date"], "product_id": s["product_id"], "product_name": s["product_name"],
        "category": s["category"],
        "views": (s["action"] == "view").astype("int64"),
        "adds_to_cart": (s["action"] == "add_to_cart").astype("int64"),
        "purchases": (s["action"] == "purchase").astype("int64"),
        "revenue_cents": cents.where(s["action"] == "purchase", 0),
    })
    g = df.groupby(["event_date", "product_id", "product_name", "category"], as_index=False, dropna=False).sum()
    # Rank on exact cents: equal revenues tie exactly, as rank() over doubles would see them.
    g["revenue_rank"] = g.groupby(["event_date", "category"])["revenue_cents"].rank(method="min", ascending=False).astype("int64")
    g["revenue"] = g["revenue_cents"] / 100.0
    g = g.drop(columns="revenue_cents").sort_values(["event_date", "category", "revenue_rank", "product_id"])
    cols = ["event_date", "product_id", "product_name", "category", "views", "adds_to_cart", "purchases",
            "revenue", "revenue_rank"]
    return pa.Table.from_pandas(g[cols], preserve_index=False)


def _purchase_summary(s: pd.DataFrame) -> pa.Table:
    p = s[s["action"] == "purchase"].copy()
    p["cents"] = (p["price"] * 100).round().astype("int64")
    g = p.groupby(["user_id", "region"], as_index=False, dropna=False).agg(
        total_cents=("cents", "sum"), total_purchases=("event_id", "size"),
        distinct_products_purchased=("product_id", "nunique"), last_purchase_timestamp=("event_dt", "max"))
    g["total_purchase_value"] = g["total_cents"] / 100.0
    g = g.sort_values(["user_id", "region"], na_position="first")
    cols = ["user_id", "region", "total_purchase_value", "total_purchases", "distinct_products_purchased",
            "last_purchase_timestamp"]
    out = pa.Table.from_pandas(g[cols], preserve_index=False)
    return out.cast(pa.schema([("user_id", pa.int64()), ("region", pa.string()), ("total_purchase_value", pa.float64()),
                               ("total_purchases", pa.int64()), ("distinct_products_purchased", pa.int64()),
                               ("last_purchase_timestamp", pa.timestamp("us", tz="UTC"))]))


def _answers(gold: pd.DataFrame, summary: pd.DataFrame) -> dict:
    """The three business questions, with deterministic tie-breaks (ascending id)."""
    out = {"top5_products_latest_date": [], "daily_revenue_by_category": [], "top10_customers": []}
    if len(gold):
        latest = gold["event_date"].max()
        day = gold[gold["event_date"] == latest].sort_values(["purchases", "product_id"], ascending=[False, True])
        out["latest_event_date"] = str(latest)
        out["top5_products_latest_date"] = [
            {"product_id": r.product_id, "product_name": r.product_name, "purchases": int(r.purchases)}
            for r in day.head(5).itertuples()]
        cents = (gold["revenue"] * 100).round().astype("int64")
        rev = gold.assign(c=cents).groupby(["event_date", "category"], as_index=False)["c"].sum()
        out["daily_revenue_by_category"] = [
            {"event_date": str(r.event_date), "category": r.category, "revenue": r.c / 100.0}
            for r in rev.sort_values(["event_date", "category"]).itertuples()]
    known = summary[summary["user_id"].notna()]
    if len(known):
        cents = (known["total_purchase_value"] * 100).round().astype("int64")
        per_user = known.assign(c=cents).groupby("user_id", as_index=False)["c"].sum()
        top = per_user.sort_values(["c", "user_id"], ascending=[False, True]).head(10)
        out["top10_customers"] = [{"user_id": int(r.user_id), "total_purchase_value": r.c / 100.0}
                                  for r in top.itertuples()]
    return out
