"""Zenith source data: customers CSV, products parquet, user-event JSON lines.

Every landed line is described by arrays (its source event, file, position, and per event
what went wrong with it); the JSON text is rendered from those arrays file by file, and
the truth is computed from the same arrays (zenith_truth), never by parsing the files.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import text as T
from . import vocab
from .rand import component_key, component_rng, hashed, pick, zipf_sample
from .sink import Sink, part_name, slot_drop
from .stream import Stream, stream_for
from .zenith_catalog import (CUSTOMERS_PATH, N_UNKNOWN_PRODUCTS, PRODUCTS_PATH, Catalog, make_catalog, parquet_bytes,
                             products_table)

PIPELINE = "zenith"
EVENT_DIR = "streaming/user_events"
START_MS = 1_793_491_200_000          # 2026-11-01T00:00:00Z

EVENT_TYPES = ["view", "add_to_cart", "purchase"]
TYPE_SHARES = [0.80, 0.13, 0.07]
BAD_TYPES = ["click", "VIEW", "", "share"]          # fail valid_event_type
ALL_TYPES = EVENT_TYPES + BAD_TYPES + [None]         # index 7: JSON null
BAD_TIMESTAMPS = ["not-a-timestamp", "", "N/A", "yesterday"]   # never parse as a timestamp
EID_OK, EID_NULL, EID_MISSING = 0, 1, 2
BROKEN_NONE, BROKEN_NO_BRACE, BROKEN_TRUNCATED = 0, 1, 2
COUPON_SHARE = 15  # percent of post-drift events that carry a code


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
    stream = stream_for(seed, PIPELINE, rows=rows, slots=slots, start_ms=START_MS, knobs=knobs)
    events, injected = make_events(seed, stream.n_events, cat, knobs)
    injected.update(lines=stream.n_lines, duplicates=int(stream.copy.sum()), late=int(stream.late.sum()))
    drift_line = int(np.ceil(knobs["drift_at"] * stream.n_lines))
    return Landed(cat, stream, events, drift_line, knobs["files_per_drop"], injected)


# ---------------------------------------------------------------- rendering

class _Snippets:
    """Pre-rendered JSON fragments for the variable part of a line (see render_lines)."""

    def __init__(self, cat: Catalog):
        self.n_prod = len(cat.product_ids) + 1          # + null
        prods = [f'"{p}"' for p in cat.product_ids] + ["null"]
        types = [f'"{t}"' if t is not None else "null" for t in ALL_TYPES]
        self.pair = T.table([f',"event_type":{t},"product_id":{p}' for t in types for p in prods]
                            + [f',"event_type":"{t[:3]}' for t in EVENT_TYPES])
        self.truncated_base = len(types) * self.n_prod
        self.tail = T.table(["}\n", "\n", ',"coupon_code":null}\n'] + [f',"coupon_code":"{c}"}}\n' for c in vocab.COUPONS])
        # The 6 digits of every user id (ids are 100000..999999), gathered per line.
        self.user_digits = np.empty((len(cat.user_ids), 6), dtype=np.uint8)
        for k in range(3):
            T.put_digits2(self.user_digits, 2 * k, cat.user_ids // 100 ** (2 - k) % 100)


# The fixed-width head of a line: {"event_id":"<uuid>","event_timestamp":"<ts>","user_id":<6 digits>,"session_id":"<hex>"
# (user ids always have 6 digits). Key order is free in JSON; fixed width makes it one numpy matrix.
_HEAD = [('{"event_id":"', 36), ('","event_timestamp":"', 24), ('","user_id":', 6), (',"session_id":"', 16), ('"', 0)]
_HEAD_WIDTH = sum(len(t) + w for t, w in _HEAD)
_COL = np.cumsum([len(t) for t, _ in _HEAD]) + np.cumsum([0] + [w for _, w in _HEAD][:-1])   # field starts
_HEAD_TEMPLATE = np.frombuffer("".join(t + "?" * w for t, w in _HEAD).encode(), dtype=np.uint8)


def render_lines(d: Landed, snips: _Snippets, a: int, b: int, seed: int) -> pa.Array:
    """The JSON lines a..b (arrival order), each ending with a newline."""
    ev, st = d.events, d.stream
    s = st.src[a:b]
    n = b - a
    ms = st.ms[s]
    user = ev.user[s]

    m = np.empty((n, _HEAD_WIDTH), dtype=np.uint8)
    m[:] = _HEAD_TEMPLATE
    T.put_uuid(m, _COL[0], ev.eid_hi[s], ev.eid_lo[s])
    T.put_iso_ms(m, _COL[1], ms)
    m[:, _COL[2]:_COL[2] + 6] = snips.user_digits[np.maximum(user, 0)]
    T.hex_bytes(m, _COL[3], session_words(seed, user, ms), 8)
    head = T.fixed(m)
    odd = np.flatnonzero((ev.eid_state[s] != EID_OK) | (ev.bad_ts[s] != 0) | (user < 0) | ev.session_null[s])
    if len(odd):
        head = T.patch(head, odd, _odd_head(d, s[odd], ms[odd], seed))

    prod = ev.product[s]
    pair = ev.etype[s] * snips.n_prod + np.where(prod < 0, snips.n_prod - 1, prod)
    broken = ev.broken[s]
    trunc = broken == BROKEN_TRUNCATED
    pair[trunc] = snips.truncated_base + np.minimum(ev.etype[s][trunc], 2)

    tail = np.where(np.arange(a, b) >= d.drift_line, 3 + ev.coupon[s], 0)
    tail[broken != BROKEN_NONE] = 1
    return T.join(head, T.pick(snips.pair, pair), T.pick(snips.tail, tail))


def session_words(seed: int, user: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """A session is a user's half hour: same user, same half hour, same id."""
    return hashed(component_key(seed, PIPELINE, "session"), (user + 1) * 1_000_003 + ms // 1_800_000)


def _odd_head(d: Landed, s: np.ndarray, ms: np.ndarray, seed: int) -> pa.Array:
    """The head of lines with a null/missing event_id or user_id or session_id, or a bad timestamp."""
    ev = d.events
    k = len(s)

    state = ev.eid_state[s]
    eid = T.join('{"event_id":"', T.uuid_strings(ev.eid_hi[s], ev.eid_lo[s]), '",')
    eid = T.fill(T.fill(eid, state == EID_NULL, '{"event_id":null,'), state == EID_MISSING, "{")
    bad = ev.bad_ts[s]
    value = T.patch(T.iso_strings(ms), np.flatnonzero(bad > 0), T.pick(T.table(BAD_TIMESTAMPS), bad[bad > 0] - 1))
    user = ev.user[s]
    uid = T.join(',"user_id":', T.int_strings(d.catalog.user_ids[np.maximum(user, 0)]))
    uid = T.fill(uid, user < 0, ',"user_id":null')
    sess = np.empty((k, 16), dtype=np.uint8)
    T.hex_bytes(sess, 0, session_words(seed, user, ms), 8)
    sid = T.fill(T.join(',"session_id":"', T.fixed(sess), '"'), ev.session_null[s], ',"session_id":null')
    return T.join(eid, '"event_timestamp":"', value, '"', uid, sid)


def write(d: Landed, sink: Sink, seed: int) -> None:
    cat = d.catalog
    sink.write(0, CUSTOMERS_PATH, cat.customers.csv())
    sink.write(0, PRODUCTS_PATH, parquet_bytes(products_table(cat)))
    snips = _Snippets(cat)
    st = d.stream
    for g in range(st.n_slots):
        a, b = int(st.bounds[g]), int(st.bounds[g + 1])
        sink.write(slot_drop(g, d.files_per_drop), f"{EVENT_DIR}/{d.file_name(g)}",
                   T.chunked(lambda lo, hi: render_lines(d, snips, lo, hi, seed), a, b), events=b - a)
