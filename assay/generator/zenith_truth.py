"""Zenith truth: the exact silver, late, quarantine and gold tables the pipeline must produce.

Computed from the generator's description of every landed line (what a JSON parser reads
from it), following the contract (see README.md here): inner join with products -> rules
-> watermark lateness (3 min) -> dedup on event_id -> enrichment with customers -> gold.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import text as T
from .regions import region_of_location
from .semantics import dates, first_survivors, late_rows, rule_lists, ts_us
from .zenith_catalog import LOCATIONS
from .zenith_data import BROKEN_NONE, EID_OK, EVENT_TYPES, Landed, session_words

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
    # Ties on (event time, file) are exact copies: any of them is the same silver row.
    keep = first_survivors([ev.eid_hi[s], ev.eid_lo[s]], [dt, st.slot], remaining)

    silver = _silver(d, keep, seed)
    tables = {
        "silver_sessionized_activity": silver,
        "silver_sessionized_activity_late": pa.table({
            "event_id": T.uuid_strings(ev.eid_hi[s][late], ev.eid_lo[s][late]),
            "event_dt": ts_us(dt[late])}),
        "silver_sessionized_activity_quarantine": _quarantine(d, np.flatnonzero(failing), fails),
    }
    facts = _facts(d, keep)
    gold = _daily_product_performance(facts, cat)
    summary = _purchase_summary(facts, cat)
    tables["gold_daily_product_performance"] = gold
    tables["customer_purchase_summary"] = summary
    metrics = {
        "bronze_rows": int(st.n_lines),
        "silver_rows": int(len(keep)),
        "null_region_events": int(silver["region"].null_count),
        "late_events": int(late.sum()),
        "duplicates_dropped": int(len(remaining) - len(keep)),
        "quarantined": int(failing.sum()),
        "dropped_by_product_join": int((~joined).sum()),
        **_answers(gold.to_pandas(), summary.to_pandas(types_mapper=_nullable)),
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
    region = pa.array(_user_regions(cat), pa.string()).take(pa.array(np.where(has_user, user, len(cat.user_ids))))
    prod = ev.product[s]
    words = session_words(seed, user, ms)
    sess = np.empty((len(s), 16), dtype=np.uint8)
    T.hex_bytes(sess, 0, words, 8)
    session = T.fixed(sess)
    if ev.session_null[s].any():
        session = T.patch(session, np.flatnonzero(ev.session_null[s]), pa.nulls(int(ev.session_null[s].sum()), pa.string()))
    return pa.table({
        "event_id": T.uuid_strings(ev.eid_hi[s], ev.eid_lo[s]),
        "event_dt": ts_us(ms),
        "user_id": pa.array(user_id, pa.int64(), mask=~has_user),
        "action": T.pick(T.table(EVENT_TYPES), ev.etype[s]),
        "product_id": T.pick(T.table(cat.product_ids), prod),
        "product_name": T.pick(T.table(cat.product_name), prod),
        "category": T.pick(T.table(cat.category), prod),
        "price": pa.array(cat.price_cents[prod] / 100.0, pa.float64()),
        "session_id": session.cast(pa.string()),
        "region": region,
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
        "event_id": _event_ids(d, rows),
        "failed_rules": rule_lists(fails[rows], RULES),
    })


def _event_ids(d: Landed, rows: np.ndarray) -> pa.Array:
    """The event_id each line holds (NULL when null or missing)."""
    s = d.stream.src[rows]
    ids = T.uuid_strings(d.events.eid_hi[s], d.events.eid_lo[s])
    return pc.if_else(pa.array(d.events.eid_state[s] == EID_OK), ids, pa.scalar(None, pa.string()))


def _facts(d: Landed, keep: np.ndarray) -> pd.DataFrame:
    """The silver rows as integer codes (fast to aggregate; names are looked up at the end)."""
    s = d.stream.src[keep]
    ms = d.stream.ms[s]
    prod = d.events.product[s]
    return pd.DataFrame({"day": ms // 86_400_000, "ms": ms, "prod": prod, "etype": d.events.etype[s],
                         "user": d.events.user[s], "cents": d.catalog.price_cents[prod]})


def _daily_product_performance(f: pd.DataFrame, cat) -> pa.Table:
    buy = f["etype"] == 2
    g = pd.DataFrame({
        "day": f["day"], "prod": f["prod"],
        "views": (f["etype"] == 0).astype("int64"), "adds_to_cart": (f["etype"] == 1).astype("int64"),
        "purchases": buy.astype("int64"), "revenue_cents": f["cents"].where(buy, 0),
    }).groupby(["day", "prod"], as_index=False).sum()
    g["category"] = np.array(cat.category, dtype=object)[g["prod"]]
    # Rank on exact cents: equal revenues tie exactly, as rank() over doubles would see them.
    g["revenue_rank"] = g.groupby(["day", "category"])["revenue_cents"].rank(method="min", ascending=False).astype("int64")
    g = g.sort_values(["day", "category", "revenue_rank", "prod"])
    p = g["prod"].to_numpy()
    return pa.table({
        "event_date": pa.array(g["day"].to_numpy().astype(np.int32), pa.date32()),
        "product_id": pa.array(np.array(cat.product_ids, dtype=object)[p], pa.string()),
        "product_name": pa.array(np.array(cat.product_name, dtype=object)[p], pa.string()),
        "category": pa.array(g["category"].to_numpy(), pa.string()),
        "views": pa.array(g["views"].to_numpy(), pa.int64()),
        "adds_to_cart": pa.array(g["adds_to_cart"].to_numpy(), pa.int64()),
        "purchases": pa.array(g["purchases"].to_numpy(), pa.int64()),
        "revenue": pa.array(g["revenue_cents"].to_numpy() / 100.0, pa.float64()),
        "revenue_rank": pa.array(g["revenue_rank"].to_numpy(), pa.int64()),
    })


def _purchase_summary(f: pd.DataFrame, cat) -> pa.Table:
    """Per buyer (user_id and its region; a NULL user_id is its own group)."""
    g = f[f["etype"] == 2].groupby("user", as_index=False).agg(
        cents=("cents", "sum"), n=("cents", "size"), products=("prod", "nunique"), last=("ms", "max"))
    u = g["user"].to_numpy()
    known = u >= 0
    return pa.table({
        "user_id": pa.array(np.where(known, cat.user_ids[np.maximum(u, 0)], 0), pa.int64(), mask=~known),
        "region": pa.array(_user_regions(cat)[np.where(known, u, len(cat.user_ids))], pa.string()),
        "total_purchase_value": pa.array(g["cents"].to_numpy() / 100.0, pa.float64()),
        "total_purchases": pa.array(g["n"].to_numpy(), pa.int64()),
        "distinct_products_purchased": pa.array(g["products"].to_numpy(), pa.int64()),
        "last_purchase_timestamp": ts_us(g["last"].to_numpy()),
    })


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
