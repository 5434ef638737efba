"""Zenith source data: customers CSV, products parquet, user-event JSON lines.

Every landed line is described by arrays (its source event, file, position, and per event
what went wrong with it); the JSON text is rendered from those arrays file by file, and
the truth is computed from the same arrays (zenith_truth), never by parsing the files.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import text as T
from . import vocab
from .rand import component_key, component_rng, hashed, pick, zipf_sample
from .sink import Sink, part_name, slot_drop
from .stream import Stream, build_stream

PIPELINE = "zenith"
EVENT_DIR = "streaming/user_events"
CUSTOMERS_PATH = "batch/customers/customers.csv"
PRODUCTS_PATH = "batch/products/products.parquet"
START_MS = 1_793_491_200_000          # 2026-11-01T00:00:00Z

EVENT_TYPES = ["view", "add_to_cart", "purchase"]
TYPE_SHARES = [0.80, 0.13, 0.07]
BAD_TYPES = ["click", "VIEW", "", "share"]          # fail valid_event_type
ALL_TYPES = EVENT_TYPES + BAD_TYPES + [None]         # index 7: JSON null
NULL_TYPE = len(ALL_TYPES) - 1
BAD_TIMESTAMPS = ["not-a-timestamp", "", "N/A", "yesterday"]   # never parse as a timestamp
N_UNKNOWN_PRODUCTS = 20
EID_OK, EID_NULL, EID_MISSING = 0, 1, 2
BROKEN_NONE, BROKEN_NO_BRACE, BROKEN_TRUNCATED = 0, 1, 2
COUPON_SHARE = 15  # percent of post-drift events that carry a code

_AB_WIDTH = 13 + 36 + 21 + 24 + 1    # {"event_id":"<uuid>","event_timestamp":"<ts>"
_E_WIDTH = 15 + 16 + 1               # ,"session_id":"<16 hex>"


@dataclass
class Catalog:
    product_ids: list[str]            # known products first, then unknown ones
    n_known: int
    product_name: list[str]
    category: list[str]
    price_cents: np.ndarray
    user_ids: np.ndarray              # the user universe (int)
    customers: pd.DataFrame           # customer_id, first_name, last_name, email, location, signup_date


@dataclass
class Events:
    """Per source event: what the line says and what is wrong with it."""
    user: np.ndarray        # index into user_ids, -1 = null
    etype: np.ndarray       # index into ALL_TYPES
    product: np.ndarray     # index into product_ids, -1 = null
    eid_state: np.ndarray
    bad_ts: np.ndarray      # 0 = valid, k = BAD_TIMESTAMPS[k-1]
    session_null: np.ndarray
    broken: np.ndarray
    eid_hi: np.ndarray      # uuid words of event_id
    eid_lo: np.ndarray
    coupon: np.ndarray      # -1 = null coupon, else index into COUPONS (present only after the drift)


@dataclass
class Landed:
    catalog: Catalog
    stream: Stream
    events: Events
    drift_line: int         # lines at arrival index >= this carry "coupon_code"
    files_per_drop: int
    injected: dict

    def file_name(self, slot: int) -> str:
        return part_name(slot, self.files_per_drop, "json")


def _primes(lo: int, hi: int) -> np.ndarray:
    sieve = np.ones(hi + 1, dtype=bool)
    sieve[:2] = False
    for p in range(2, int(hi ** 0.5) + 1):
        if sieve[p]:
            sieve[p * p::p] = False
    return np.flatnonzero(sieve[lo:]) + lo


def make_catalog(seed: int, rows: int, knobs: dict) -> Catalog:
    rng = component_rng(seed, PIPELINE, "catalog")
    n_prod = int(np.clip(rows // 2000, 50, 2000))
    ids = rng.choice(800_000, n_prod, replace=False) + 100_000
    unknown = rng.choice(100_000, N_UNKNOWN_PRODUCTS, replace=False) + 900_000
    category = [vocab.CATEGORIES[i] for i in rng.integers(0, len(vocab.CATEGORIES), n_prod)]
    names = [f"{vocab.ADJECTIVES[a]} {vocab.NOUNS[c][b]}"
             for a, b, c in zip(rng.integers(0, len(vocab.ADJECTIVES), n_prod), rng.integers(0, 6, n_prod), category)]
    # Prices are distinct prime numbers of cents: two products' revenues (count x price) can
    # only tie when a count reaches the other's price in cents, so revenue ranks are stable
    # under floating-point summation order.
    primes = _primes(1009, 99_991)
    w = 1.0 / primes
    cents = rng.choice(primes, n_prod, replace=False, p=w / w.sum())

    n_users = int(np.clip(rows // 20, 100, 200_000))
    user_ids = rng.choice(900_000, n_users, replace=False) + 100_000
    orphans = pick(rng, n_users, knobs["orphan_user_rate"])
    is_customer = np.ones(n_users, dtype=bool)
    is_customer[orphans] = False
    return Catalog([f"P{i}" for i in ids] + [f"P{i}" for i in unknown], n_prod, names, category, cents,
                   user_ids, _customers(rng, user_ids[is_customer]))


def _customers(rng: np.random.Generator, ids: np.ndarray) -> pd.DataFrame:
    n = len(ids)
    first = np.array(vocab.FIRST_NAMES)[rng.integers(0, len(vocab.FIRST_NAMES), n)]
    last = np.array(vocab.LAST_NAMES)[rng.integers(0, len(vocab.LAST_NAMES), n)]
    email = pd.Series(first).str.lower() + "." + pd.Series(last).str.lower().str.replace("'", "") \
        + pd.Series(ids).astype(str) + "@example.com"
    us = np.array([f"{c}, {s}" for c, s in vocab.US_CITIES], dtype=object)
    foreign = np.array([f"{c}, {s}" for c, s in vocab.FOREIGN_CITIES], dtype=object)
    location = us[rng.integers(0, len(us), n)]
    empty = pick(rng, n, 0.03)
    rest = np.setdiff1d(np.arange(n), empty)
    abroad = pick(rng, rest, 0.03, of=n)
    location[empty] = ""
    location[abroad] = foreign[rng.integers(0, len(foreign), len(abroad))]
    signup = np.datetime64("2022-01-01") + rng.integers(0, 1765, n).astype("timedelta64[D]")
    return pd.DataFrame({"customer_id": ids.astype(np.int64), "first_name": first, "last_name": last,
                         "email": email.to_numpy(), "location": location,
                         "signup_date": np.datetime_as_string(signup)})


def make_events(seed: int, n: int, cat: Catalog, knobs: dict) -> tuple[Events, dict]:
    rng = component_rng(seed, PIPELINE, "events")
    skew = knobs["skew"]
    user = zipf_sample(rng, len(cat.user_ids), n, skew).astype(np.int64)
    product = zipf_sample(rng, cat.n_known, n, skew).astype(np.int64)
    unknown = pick(rng, n, knobs["unknown_product_rate"])
    product[unknown] = cat.n_known + rng.integers(0, N_UNKNOWN_PRODUCTS, len(unknown))
    etype = np.searchsorted(np.cumsum(TYPE_SHARES), rng.random(n) * sum(TYPE_SHARES), side="right")
    etype = np.minimum(etype, 2).astype(np.int64)

    # Nulls in the optional (and the join-key) fields.
    user_null = pick(rng, n, knobs["null_rate"])
    prod_null = pick(rng, n, knobs["null_rate"])
    session_null = np.zeros(n, dtype=bool)
    session_null[pick(rng, n, knobs["null_rate"])] = True
    user[user_null] = -1
    product[prod_null] = -1

    # Malformed events, split across the ways a line can go wrong.
    bad = rng.permutation(pick(rng, n, knobs["malformed_rate"]))
    kinds = np.array_split(bad, [int(len(bad) * f) for f in (0.2, 0.4, 0.7, 0.9)])
    broken = np.zeros(n, dtype=np.int8)
    broken[kinds[0]] = BROKEN_NO_BRACE
    broken[kinds[1]] = BROKEN_TRUNCATED
    bad_ts = np.zeros(n, dtype=np.int8)
    bad_ts[kinds[2]] = 1 + rng.integers(0, len(BAD_TIMESTAMPS), len(kinds[2]))
    etype[kinds[3]] = 3 + rng.integers(0, len(ALL_TYPES) - 3, len(kinds[3]))
    eid_state = np.zeros(n, dtype=np.int8)
    eid_state[kinds[4]] = rng.choice([EID_NULL, EID_MISSING], len(kinds[4]))

    salt = component_key(seed, PIPELINE, "event_id")
    hi, lo = T.uuid_words(hashed(salt, np.arange(n)), hashed(salt ^ np.uint64(0x5A5A), np.arange(n)))
    ch = hashed(component_key(seed, PIPELINE, "coupon"), np.arange(n))
    coupon = ((ch >> np.uint64(8)) % np.uint64(len(vocab.COUPONS))).astype(np.int64)
    coupon[ch % np.uint64(100) >= COUPON_SHARE] = -1
    injected = {"events": n, "unknown_product": len(unknown), "null_user_id": len(user_null),
                "null_product_id": len(prod_null), "null_session_id": int(session_null.sum()),
                "broken_json": len(kinds[0]) + len(kinds[1]), "bad_timestamp": len(kinds[2]),
                "bad_event_type": len(kinds[3]), "bad_event_id": len(kinds[4])}
    return Events(user, etype, product, eid_state, bad_ts, session_null, broken, hi, lo, coupon), injected


def build(seed: int, rows: int, knobs: dict, drops: int) -> Landed:
    cat = make_catalog(seed, rows, knobs)
    slots = drops * knobs["files_per_drop"]
    stream = build_stream(component_rng(seed, PIPELINE, "stream"), lines=rows, slots=slots, start_ms=START_MS,
                          span_ms=int(knobs["days"] * 86_400_000), duplicate_rate=knobs["duplicate_rate"],
                          late_rate=knobs["late_rate"], late_minutes=knobs["late_minutes"])
    events, injected = make_events(seed, stream.n_events, cat, knobs)
    injected.update(lines=stream.n_lines, duplicates=int(stream.copy.sum()), late=int(stream.late.sum()))
    drift_line = int(np.ceil(knobs["drift_at"] * stream.n_lines))
    return Landed(cat, stream, events, drift_line, knobs["files_per_drop"], injected)


# ---------------------------------------------------------------- rendering

class _Snippets:
    """Pre-rendered JSON fragments; a line is five of them joined (see render_lines)."""

    def __init__(self, cat: Catalog):
        self.user = T.table([f',"user_id":{u}' for u in cat.user_ids] + [',"user_id":null'])
        self.n_prod = len(cat.product_ids) + 1          # + null
        prods = [f'"{p}"' for p in cat.product_ids] + ["null"]
        types = [f'"{t}"' if t is not None else "null" for t in ALL_TYPES]
        self.pair = T.table([f',"event_type":{t},"product_id":{p}' for t in types for p in prods]
                            + [f',"event_type":"{t[:3]}' for t in EVENT_TYPES])
        self.truncated_base = len(types) * self.n_prod
        self.tail = T.table(["}\n", "\n", ',"coupon_code":null}\n'] + [f',"coupon_code":"{c}"}}\n' for c in vocab.COUPONS])


def render_lines(d: Landed, snips: _Snippets, a: int, b: int, seed: int) -> pa.Array:
    """The JSON lines a..b (arrival order), each ending with a newline."""
    ev, st = d.events, d.stream
    s = st.src[a:b]
    n = b - a
    ms = st.ms[s]
    hi, lo = ev.eid_hi[s], ev.eid_lo[s]

    ab = np.empty((n, _AB_WIDTH), dtype=np.uint8)
    ab[:, 0:13] = T.literal('{"event_id":"', n)
    T.put_uuid(ab, 13, hi, lo)
    ab[:, 49:70] = T.literal('","event_timestamp":"', n)
    T.put_iso_ms(ab, 70, ms)
    ab[:, 94] = ord('"')
    ab = T.fixed(ab)
    odd = np.flatnonzero((ev.eid_state[s] != EID_OK) | (ev.bad_ts[s] != 0))
    if len(odd):
        ab = T.patch(ab, odd, _odd_ab(ev, s[odd], ms[odd]))

    user = ev.user[s]
    c = T.pick(snips.user, np.where(user < 0, len(snips.user) - 1, user))

    prod = ev.product[s]
    pair = ev.etype[s] * snips.n_prod + np.where(prod < 0, snips.n_prod - 1, prod)
    broken = ev.broken[s]
    trunc = broken == BROKEN_TRUNCATED
    pair[trunc] = snips.truncated_base + np.minimum(ev.etype[s][trunc], 2)
    dd = T.pick(snips.pair, pair)

    sess = np.empty((n, _E_WIDTH), dtype=np.uint8)
    sess[:, 0:15] = T.literal(',"session_id":"', n)
    T.hex_bytes(sess, 15, session_words(seed, user, ms), 8)
    sess[:, 31] = ord('"')
    e = T.fixed(sess)
    nulls = np.flatnonzero(ev.session_null[s])
    if len(nulls):
        e = T.patch(e, nulls, T.table([',"session_id":null'] * len(nulls)))

    after_drift = np.arange(a, b) >= d.drift_line
    tail = np.where(after_drift, 3 + ev.coupon[s], 0)
    tail[broken != BROKEN_NONE] = 1
    f = T.pick(snips.tail, tail)
    return T.join(ab, c, dd, e, f)


def session_words(seed: int, user: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """A session is a user's half hour: same user, same half hour, same id."""
    return hashed(component_key(seed, PIPELINE, "session"), (user + 1) * 1_000_003 + ms // 1_800_000)


def _odd_ab(ev: Events, s: np.ndarray, ms: np.ndarray) -> pa.Array:
    """The first two fields of lines with a null/missing event_id or a bad timestamp."""
    uuid = T.uuid_strings(ev.eid_hi[s], ev.eid_lo[s])
    state = ev.eid_state[s]
    eid = T.join(T.table(['{"event_id":"'] * len(s)), uuid, T.table(['",'] * len(s)))
    eid = T.patch(eid, np.flatnonzero(state == EID_NULL), T.table(['{"event_id":null,'] * int((state == EID_NULL).sum())))
    eid = T.patch(eid, np.flatnonzero(state == EID_MISSING), T.table(["{"] * int((state == EID_MISSING).sum())))
    bad = ev.bad_ts[s]
    ts_text = T.table(['"event_timestamp":"'] * len(s))
    value = T.patch(T.iso_strings(ms), np.flatnonzero(bad > 0), T.table([BAD_TIMESTAMPS[k - 1] for k in bad[bad > 0]]))
    return T.join(eid, ts_text, value, T.table(['"'] * len(s)))


def write(d: Landed, sink: Sink, seed: int) -> None:
    cat = d.catalog
    buf = io.StringIO()
    cat.customers.to_csv(buf, index=False)
    sink.write(0, CUSTOMERS_PATH, buf.getvalue().encode())
    sink.write(0, PRODUCTS_PATH, _parquet_bytes(products_table(cat)))
    snips = _Snippets(cat)
    st = d.stream
    for g in range(st.n_slots):
        a, b = int(st.bounds[g]), int(st.bounds[g + 1])
        lines = render_lines(d, snips, a, b, seed)
        sink.write(slot_drop(g, d.files_per_drop), f"{EVENT_DIR}/{d.file_name(g)}", T.content(lines), events=b - a)


def products_table(cat: Catalog) -> pa.Table:
    k = cat.n_known
    return pa.table({"product_id": pa.array(cat.product_ids[:k], pa.string()),
                     "product_name": pa.array(cat.product_name, pa.string()),
                     "category": pa.array(cat.category, pa.string()),
                     "price": pa.array(cat.price_cents / 100.0, pa.float64())})


def _parquet_bytes(table: pa.Table) -> bytes:
    out = pa.BufferOutputStream()
    pq.write_table(table, out)
    return out.getvalue().to_pybytes()
