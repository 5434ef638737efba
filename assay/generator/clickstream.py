"""clickstream source data (JSON lines) and its counts.

Messy on purpose: timestamps in three formats (ISO with Z, epoch millis as a number,
"YYYY-MM-DD HH:MM:SS"), unknown extra fields, type mismatches (user_id as a string, plan
as a number), broken lines and repeats. The truth is counts only (no tables yet).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import text as T
from .rand import component_key, component_rng, hashed, pick, zipf_sample
from .sink import Sink, part_name, slot_drop
from .stream import Stream, stream_for

PIPELINE = "clickstream"
EVENT_DIR = "clickstream"
START_MS = 1_793_491_200_000
EVENT_TYPES = ["page_view", "click", "add_to_cart", "signup", "purchase", "logout"]
TYPE_SHARES = [0.55, 0.25, 0.08, 0.03, 0.05, 0.04]
PAGES = ["/", "/search", "/pricing", "/docs", "/cart", "/checkout", "/blog/launch", "/account"]
N_PAGES = 500
REFERRERS = [None, "https://www.google.com/", "https://t.co/x1", "https://news.ycombinator.com/", "newsletter"]
DEVICES = ["mobile", "desktop", "tablet"]
COUNTRIES = ["US", "DE", "FR", "IN", "BR", "JP", "GB", "CA", "NG", "MX"]
PLANS = ["free", "pro", "enterprise"]
TS_FORMATS = ["iso", "epoch_millis", "space_separated"]
EXTRAS = [',"utm_source":"newsletter"', ',"experiment":{"id":"exp-12","variant":"B"}', ',"ab_bucket":7']
EXTRA_RATE, MISMATCH_RATE = 0.03, 0.02


@dataclass
class Landed:
    stream: Stream
    user: np.ndarray
    etype: np.ndarray
    page: np.ndarray
    referrer: np.ndarray
    device: np.ndarray
    country: np.ndarray
    plan: np.ndarray
    ts_format: np.ndarray
    extra: np.ndarray        # -1 none, else index into EXTRAS
    mismatch: np.ndarray     # 0 none, 1 user_id as string, 2 plan as number
    broken: np.ndarray
    eid_hi: np.ndarray
    eid_lo: np.ndarray
    files_per_drop: int
    injected: dict


def build(seed: int, rows: int, knobs: dict, drops: int) -> Landed:
    rng = component_rng(seed, PIPELINE, "events")
    fpd = knobs["files_per_drop"]
    st = stream_for(seed, PIPELINE, rows=rows, slots=drops * fpd, start_ms=START_MS, knobs=knobs)
    n = st.n_events
    n_users = int(np.clip(n // 30, 50, 200_000))
    user = zipf_sample(rng, n_users, n, knobs["skew"]) + 10_000
    etype = np.minimum(np.searchsorted(np.cumsum(TYPE_SHARES), rng.random(n) * sum(TYPE_SHARES), side="right"), 5)
    extra = np.full(n, -1, dtype=np.int64)
    ex = pick(rng, n, EXTRA_RATE)
    extra[ex] = rng.integers(0, len(EXTRAS), len(ex))
    mismatch = np.zeros(n, dtype=np.int8)
    mm = pick(rng, n, MISMATCH_RATE)
    mismatch[mm] = rng.integers(1, 3, len(mm))
    broken = np.zeros(n, dtype=bool)
    broken[pick(rng, n, knobs["malformed_rate"])] = True
    salt = component_key(seed, PIPELINE, "event_id")
    hi, lo = T.uuid_words(hashed(salt, np.arange(n)), hashed(salt ^ np.uint64(0xA5A5), np.arange(n)))
    d = Landed(st, user, etype, rng.integers(0, N_PAGES, n), rng.integers(0, len(REFERRERS), n),
               rng.integers(0, len(DEVICES), n), rng.integers(0, len(COUNTRIES), n), rng.integers(0, len(PLANS), n),
               rng.integers(0, len(TS_FORMATS), n), extra, mismatch, broken, hi, lo, fpd, {})
    d.injected = {"events": n, "lines": int(st.n_lines), "duplicates": int(st.copy.sum()), "broken_json": int(broken.sum()),
                  "extra_fields": len(ex), "type_mismatches": len(mm)}
    return d


def _pages() -> pa.Array:
    urls = PAGES + [f"/p/{k}" for k in range(1, N_PAGES - len(PAGES) + 1)]
    return T.table([f',"page_url":"https://shop.example.com{u}"' for u in urls])


def render_lines(d: Landed, a: int, b: int) -> pa.Array:
    s = d.stream.src[a:b]
    ms = d.stream.ms[s]
    head = T.join('{"event_id":"', T.uuid_strings(d.eid_hi[s], d.eid_lo[s]), '"')
    user = T.int_strings(d.user[s])
    as_text = np.flatnonzero(d.mismatch[s] == 1)
    user = T.patch(user, as_text, T.join('"', user.take(pa.array(as_text)), '"'))
    email = T.join(',"email":"user', T.int_strings(d.user[s]), '@mail.example.org"')
    plan = T.pick(T.table([f',"plan":"{p}"' for p in PLANS] + [f',"plan":{i}' for i in range(len(PLANS))]),
                  d.plan[s] + np.where(d.mismatch[s] == 2, len(PLANS), 0))
    fmt = d.ts_format[s]
    ts = T.join(',"ts":"', T.iso_strings(ms), '"')
    rows = np.flatnonzero(fmt == 1)
    ts = T.patch(ts, rows, T.join(',"ts":', T.int_strings(ms[rows])))
    rows = np.flatnonzero(fmt == 2)
    ts = T.patch(ts, rows, T.join(',"ts":"', T.iso_strings(ms[rows], sep=" ", zulu=False, millis=False), '"'))
    ref = T.table([',"referrer":null' if r is None else f',"referrer":"{r}"' for r in REFERRERS])
    extra = T.pick(T.table([""] + EXTRAS), d.extra[s] + 1)
    end = T.pick(T.table(["}\n", "\n"]), d.broken[s].astype(np.int64))
    return T.join(head, ',"user_id":', user, email,
                  T.pick(T.table([f',"event_type":"{t}"' for t in EVENT_TYPES]), d.etype[s]),
                  T.pick(_pages(), d.page[s]), T.pick(ref, d.referrer[s]),
                  T.pick(T.table([f',"device":"{v}"' for v in DEVICES]), d.device[s]),
                  T.pick(T.table([f',"country":"{v}"' for v in COUNTRIES]), d.country[s]),
                  plan, ts, extra, end)


def write(d: Landed, sink: Sink) -> None:
    st = d.stream
    for g in range(st.n_slots):
        a, b = int(st.bounds[g]), int(st.bounds[g + 1])
        sink.write(slot_drop(g, d.files_per_drop), f"{EVENT_DIR}/{part_name(g, d.files_per_drop, 'json')}",
                   T.chunked(lambda lo, hi: render_lines(d, lo, hi), a, b), events=b - a)


def counts(d: Landed) -> dict:
    """Counts a reader of all landed lines must find (no truth tables for clickstream yet)."""
    st = d.stream
    good = ~d.broken[st.src]
    events = np.unique(st.src[good])
    return {
        "lines": int(st.n_lines),
        "malformed_lines": int((~good).sum()),
        "well_formed_lines": int(good.sum()),
        "distinct_event_ids": int(len(events)),
        "duplicate_lines": int(good.sum() - len(events)),
        "ts_format_lines": {f: int((d.ts_format[st.src[good]] == i).sum()) for i, f in enumerate(TS_FORMATS)},
        "event_type_events": {t: int((d.etype[events] == i).sum()) for i, t in enumerate(EVENT_TYPES)},
        "extra_field_lines": int((d.extra[st.src[good]] >= 0).sum()),
        "type_mismatch_lines": int((d.mismatch[st.src[good]] > 0).sum()),
    }
