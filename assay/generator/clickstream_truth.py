"""clickstream truth: the exact silver, quarantine, late and gold tables the pipeline must produce.

Computed from the generator's description of every landed line (what a JSON reader gets from
it), following the contract (README.md here), never by running the pipeline:
rules -> watermark lateness (10 min, per file) -> dedup on event_id (first arrival wins) ->
silver; gold `fact_page_views_daily` and `dim_users` (SCD type 2 of device, country, plan, in
event-time order) from silver. `user_key` / `email_key` are HMAC-SHA-256 under the key in the
environment variable the knob `pii_key_env` names (the pipeline's key), with Python's `hmac`.
"""
from __future__ import annotations

import hashlib
import hmac
import os

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import ConfigError
from . import text as T
from .clickstream import (ALL_TYPES, COUNTRIES, DEVICES, EID_OK, EVENT_TYPES, FIRST_USER_ID, PLANS, REFERRERS,
                          UID_BLANK, UID_NULL, WATERMARK_MS, Landed, _pages)
from .semantics import dates, first_survivors, late_rows, rule_lists, ts_us

RULES = ("valid_event_id", "valid_event_ts", "valid_event_type")     # sorted
MIN_KEY_BYTES = 32


def key_from_env(variable: str) -> bytes:
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"clickstream truth: set the environment variable {variable} to the HMAC key the pipeline "
                         f"will use (at least {MIN_KEY_BYTES} bytes, e.g. `openssl rand -hex 32`); the truth's "
                         "user_key and email_key are computed with it")
    if len(value.encode()) < MIN_KEY_BYTES:
        raise ConfigError(f"clickstream truth: the key in {variable} is shorter than {MIN_KEY_BYTES} bytes")
    return value.encode()


def keyed(key: bytes, version: str, values: list[str]) -> list[str]:
    return [f"{version}:" + hmac.new(key, v.encode(), hashlib.sha256).hexdigest() for v in values]


def compute(d: Landed, key: bytes, version: str) -> tuple[dict[str, pa.Table], dict]:
    st = d.stream
    s = st.src
    obj = ~d.broken[s]
    fails = ~np.stack([obj & (d.eid_state[s] == EID_OK),
                       obj & (d.bad_ts[s] == 0),
                       obj & (d.etype[s] < len(EVENT_TYPES))], axis=1)
    failing = fails.any(axis=1)
    passing = ~failing
    # Normalised event time: "YYYY-MM-DD HH:MM:SS" has no milliseconds.
    ms = np.where(d.ts_format[s] == 2, st.ms[s] // 1000 * 1000, st.ms[s])
    late = late_rows(ms, st.slot, passing, WATERMARK_MS)
    remaining = np.flatnonzero(passing & ~late)
    arrival = np.arange(st.n_lines)
    keep = first_survivors([d.eid_hi[s], d.eid_lo[s]], [arrival], remaining)

    names = np.array([d.file_name(g) for g in range(st.n_slots)], dtype=object)
    silver, users = _silver(d, keep, ms[keep], key, version)
    late_idx = np.flatnonzero(late)
    tables = {
        "silver_clickstream": silver,
        "silver_clickstream_late": pa.table({
            "event_id": T.uuid_strings(d.eid_hi[s][late_idx], d.eid_lo[s][late_idx]).cast(pa.string()),
            "event_ts": ts_us(ms[late_idx]),
            "source_file": pa.array(names[st.slot[late_idx]], pa.string())}),
        "silver_clickstream_quarantine": pa.table({
            "source_file": pa.array(names[st.slot[failing]], pa.string()),
            "event_id": _event_ids_as_read(d, np.flatnonzero(failing)),
            "failed_rules": rule_lists(fails[failing], RULES)}),
        "fact_page_views_daily": _fact(d, keep, ms[keep], users),
        "dim_users": _dim_users(d, keep, ms[keep], users, silver),
    }
    metrics = {
        "bronze_rows": int(st.n_lines),
        "silver_rows": int(len(keep)),
        "quarantined": int(failing.sum()),
        "late_events": int(late.sum()),
        "duplicates_dropped": int(len(remaining) - len(keep)),
        "out_of_order_user_events": _out_of_order(d, keep, ms[keep], users),
        "dim_users_rows": tables["dim_users"].num_rows,
        "dim_users_current": int(tables["dim_users"]["__END_AT"].null_count),
        "ts_format_lines": {f: int(((d.ts_format[s] == i) & (d.bad_ts[s] == 0) & obj).sum())
                            for i, f in enumerate(("iso", "epoch_millis", "space_separated"))},
    }
    return tables, metrics


def _event_ids_as_read(d: Landed, lines: np.ndarray) -> pa.Array:
    s = d.stream.src[lines]
    readable = ~d.broken[s] & (d.eid_state[s] == EID_OK)
    ids = T.uuid_strings(d.eid_hi[s], d.eid_lo[s]).cast(pa.string())
    return pa.array(np.where(readable, np.array(ids.to_pylist(), dtype=object), None), pa.string())


def _silver(d: Landed, keep: np.ndarray, ms: np.ndarray, key: bytes, version: str) -> tuple[pa.Table, np.ndarray]:
    """Silver's rows, and per row its user index (-1: no user)."""
    s = d.stream.src[keep]
    has_user = (d.uid_state[s] != UID_NULL) & (d.uid_state[s] != UID_BLANK)
    users = np.where(has_user, d.user[s], -1)
    user_keys = np.array(keyed(key, version, [str(FIRST_USER_ID + u) for u in range(d.n_users)]) + [None],
                         dtype=object)
    combo = d.user[s] * 64 + d.mail_version[s]
    uniq, inv = np.unique(combo, return_inverse=True)
    mail_keys = np.array(keyed(key, version, d.emails(uniq // 64, uniq % 64)), dtype=object)
    plan_text = PLANS + [str(i) for i in range(len(PLANS))]
    silver = pa.table({
        "event_id": T.uuid_strings(d.eid_hi[s], d.eid_lo[s]).cast(pa.string()),
        "user_key": pa.array(user_keys[np.where(has_user, d.user[s], d.n_users)], pa.string()),
        "email_key": pa.array(np.where(has_user, mail_keys[inv], None), pa.string()),
        "event_type": T.pick(T.table(ALL_TYPES), d.etype[s]),
        "page_url": T.pick(T.table(_pages()), d.page[s]),
        "referrer": T.pick(T.table(REFERRERS), d.referrer[s]),
        "device": T.pick(T.table(DEVICES), d.device[s]),
        "country": T.pick(T.table(COUNTRIES + [None]), np.where(d.country[s] < 0, len(COUNTRIES), d.country[s])),
        "plan": T.pick(T.table(plan_text), d.plan[s]),
        "event_ts": ts_us(ms),
        "event_date": dates(ms),
    })
    return silver, users


def _out_of_order(d: Landed, keep: np.ndarray, ms: np.ndarray, users: np.ndarray) -> int:
    """Silver events of a user that arrive after one of the same user's later events (by event time)."""
    s = d.stream.src[keep]
    f = pd.DataFrame({"user": users, "arrival": keep, "ms": ms}).loc[users >= 0].sort_values(["user", "arrival"])
    before = f.groupby("user")["ms"].cummax().groupby(f["user"]).shift(1)
    return int((f["ms"] < before).sum()) if len(s) else 0


def _fact(d: Landed, keep: np.ndarray, ms: np.ndarray, users: np.ndarray) -> pa.Table:
    s = d.stream.src[keep]
    etype = d.etype[s]
    f = pd.DataFrame({"day": ms // 86_400_000, "page": d.page[s],
                      "page_views": (etype == EVENT_TYPES.index("page_view")).astype("int64"),
                      "clicks": (etype == EVENT_TYPES.index("click")).astype("int64"),
                      "purchases": (etype == EVENT_TYPES.index("purchase")).astype("int64"),
                      "user": pd.array(np.where(users >= 0, users, -1)).astype("Int64")})
    f["user"] = f["user"].where(f["user"] >= 0)
    g = f.groupby(["day", "page"], as_index=False).agg(page_views=("page_views", "sum"), clicks=("clicks", "sum"),
                                                       purchases=("purchases", "sum"), unique_users=("user", "nunique"))
    pages = np.array(_pages(), dtype=object)
    return pa.table({
        "event_date": pa.array(g["day"].to_numpy().astype(np.int32), pa.date32()),
        "page_url": pa.array(pages[g["page"].to_numpy()], pa.string()),
        "page_views": pa.array(g["page_views"].to_numpy(), pa.int64()),
        "clicks": pa.array(g["clicks"].to_numpy(), pa.int64()),
        "purchases": pa.array(g["purchases"].to_numpy(), pa.int64()),
        "unique_users": pa.array(g["unique_users"].to_numpy(), pa.int64()),
    })


def _dim_users(d: Landed, keep: np.ndarray, ms: np.ndarray, users: np.ndarray, silver: pa.Table) -> pa.Table:
    """SCD type 2 of (device, country, plan) per user_key, as in-order processing builds it.

    A user's silver events sorted by (event_ts, event_id): a version starts at the first event
    and at each event whose tracked values differ from the previous event's; it ends where the
    next version starts. Untracked columns (email_key) are the last event's of the version."""
    rows = np.flatnonzero(users >= 0)
    s = d.stream.src[keep][rows]
    u = users[rows]
    order = np.lexsort((d.eid_lo[s], d.eid_hi[s], ms[rows], u))
    rows, s, u, t = rows[order], s[order], u[order], ms[rows][order]
    tracked = (d.device[s] * (len(COUNTRIES) + 1) + d.country[s] + 1) * (2 * len(PLANS)) + d.plan[s]
    new_user = np.r_[True, u[1:] != u[:-1]] if len(u) else np.zeros(0, bool)
    starts = np.flatnonzero(new_user | np.r_[True, tracked[1:] != tracked[:-1]]) if len(u) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(u)]                              # one past each version's last event
    closed = np.zeros(len(starts), dtype=bool)
    closed[:-1] = u[starts[1:]] == u[starts[:-1]]                 # the next version is the same user's
    nxt = np.minimum(ends, max(len(u) - 1, 0))
    eid = T.uuid_strings(d.eid_hi[s], d.eid_lo[s]).cast(pa.string())

    def seq(at: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
        mask = None if valid is None else pa.array(~valid)
        return pa.StructArray.from_arrays([ts_us(t[at]), eid.take(pa.array(at, pa.int64()))],
                                          names=["event_ts", "event_id"], mask=mask)

    pick = rows[starts]
    last = rows[ends - 1]
    return pa.table({
        "user_key": silver["user_key"].take(pa.array(pick, pa.int64())),
        "email_key": silver["email_key"].take(pa.array(last, pa.int64())),
        "device": silver["device"].take(pa.array(pick, pa.int64())),
        "country": silver["country"].take(pa.array(pick, pa.int64())),
        "plan": silver["plan"].take(pa.array(pick, pa.int64())),
        "__START_AT": seq(starts),
        "__END_AT": seq(nxt, closed),
    })
