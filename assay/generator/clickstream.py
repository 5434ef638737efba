"""clickstream source data (JSON lines): page events of users whose profile changes over time.

Messy on purpose: timestamps in three formats (ISO with Z, epoch millis as a JSON number,
"YYYY-MM-DD HH:MM:SS" UTC) and unparseable ones, unknown extra fields, JSON numbers where text
is expected (user_id, plan), user ids and e-mails written in several ways (quoted, padded,
upper-cased: the same person), missing and blank user ids, unknown event types, missing event
ids, broken lines, repeats and late events.

Each user has a profile (device, country, plan, e-mail) that changes at a few instants; an event
carries the profile of its user at its event time, so the profile history the pipeline's
`dim_users` must rebuild is known here (clickstream_truth.py), whatever order events arrive in.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import text as T
from .rand import component_key, component_rng, hashed, pick, zipf_sample
from .sink import Sink, part_name, slot_drop
from .stream import Stream, build_stream

PIPELINE = "clickstream"
EVENT_DIR = "clickstream"
START_MS = 1_793_491_200_000          # 2026-11-01T00:00:00Z
WATERMARK_MS = 10 * 60_000            # the pipeline's dedupe watermark
FIRST_USER_ID = 10_000

EVENT_TYPES = ["page_view", "click", "add_to_cart", "signup", "purchase", "logout"]
TYPE_SHARES = [0.55, 0.25, 0.08, 0.03, 0.05, 0.04]
BAD_TYPES = ["PAGE_VIEW", "share", "", None]        # not in the known set (case-sensitive); None: JSON null
ALL_TYPES = EVENT_TYPES + BAD_TYPES
PAGES = ["/", "/search", "/pricing", "/docs", "/cart", "/checkout", "/blog/launch", "/account"]
N_PAGES = 500
SITE = "https://shop.example.com"
REFERRERS = [None, "https://www.google.com/", "https://t.co/x1", "https://news.ycombinator.com/", "newsletter"]
DEVICES = ["mobile", "desktop", "tablet"]
COUNTRIES = ["US", "DE", "FR", "IN", "BR", "JP", "GB", "CA", "NG", "MX"]
PLANS = ["free", "pro", "enterprise"]
TS_FORMATS = ["iso", "epoch_millis", "space_separated"]
# JSON values of `ts` that no format reads: quarantined by silver's valid_event_ts.
BAD_TIMESTAMPS = ['"not-a-timestamp"', '""', '"2026-02-30 10:00:00"', '"2026-11-01T10:15:30"', '"N/A"',
                  "17934912000001234567", "null"]
EXTRAS = [',"utm_source":"newsletter"', ',"experiment":{"id":"exp-12","variant":"B"}', ',"ab_bucket":7']
EXTRA_RATE, MISMATCH_RATE, EMAIL_VARIANT_RATE, UNICODE_USER_RATE = 0.03, 0.02, 0.05, 0.05
# Local parts of e-mail addresses with letters whose upper and lower cases map back and forth.
UNICODE_LOCALS = ["zoë", "josé", "æsa", "søren", "núria", "çelik", "ümit"]
DOMAINS = ["mail.example.org", "correo.example.es", "post.example.de"]

EID_OK, EID_NULL, EID_MISSING = 0, 1, 2
UID_NUMBER, UID_TEXT, UID_PADDED, UID_NULL, UID_BLANK = 0, 1, 2, 3, 4
MAIL_AS_IS, MAIL_UPPER, MAIL_PADDED = 0, 1, 2
TRACKED = ("device", "country", "plan")
EMAIL_CHANGE = 3                      # change kinds: 0 device, 1 country, 2 plan, 3 e-mail
CHANGE_KIND_SHARES = [0.3, 0.25, 0.25, 0.2]


@dataclass
class Landed:
    stream: Stream
    n_users: int
    user: np.ndarray          # per event: user index
    uid_state: np.ndarray     # per event: how user_id is written (UID_*)
    mail_variant: np.ndarray  # per event: how the e-mail is written (MAIL_*)
    mail_version: np.ndarray  # per event: how many times the user changed e-mail before the event
    device: np.ndarray        # per event: index into DEVICES
    country: np.ndarray       # per event: index into COUNTRIES, -1 = JSON null
    plan: np.ndarray          # per event: index into PLANS, + len(PLANS) when written as a JSON number
    etype: np.ndarray         # per event: index into ALL_TYPES
    page: np.ndarray
    referrer: np.ndarray
    ts_format: np.ndarray     # per event: index into TS_FORMATS
    bad_ts: np.ndarray        # per event: 0 = readable, k = BAD_TIMESTAMPS[k - 1]
    eid_state: np.ndarray
    extra: np.ndarray         # -1 none, else index into EXTRAS
    broken: np.ndarray
    eid_hi: np.ndarray
    eid_lo: np.ndarray
    locals_: list             # per user: the local part of the e-mail address
    domain: np.ndarray        # per user: index into DOMAINS
    files_per_drop: int
    injected: dict

    def file_name(self, slot: int) -> str:
        return part_name(slot, self.files_per_drop, "json")

    def user_ids(self) -> np.ndarray:
        return self.user + FIRST_USER_ID

    def emails(self, users: np.ndarray, versions: np.ndarray) -> list[str]:
        """The canonical (trimmed, lower-case) address of each (user, e-mail version)."""
        return [f"{self.locals_[u]}{'' if k == 0 else f'.{k}'}@{DOMAINS[self.domain[u]]}"
                for u, k in zip(users.tolist(), versions.tolist())]


def _profiles(rng, n_users: int, user: np.ndarray, ms: np.ndarray, span_ms: int):
    """Per event, its user's device, country, plan and e-mail version at the event's time."""
    base = {"device": rng.integers(0, len(DEVICES), n_users), "country": rng.integers(0, len(COUNTRIES), n_users),
            "plan": rng.integers(0, len(PLANS), n_users)}
    changes = rng.choice(4, n_users, p=[0.5, 0.25, 0.15, 0.1])
    who = np.repeat(np.arange(n_users), changes)
    when = START_MS + (rng.random(len(who)) * span_ms).astype(np.int64)
    kind = rng.choice(4, len(who), p=CHANGE_KIND_SHARES)
    sizes = [len(DEVICES), len(COUNTRIES), len(PLANS)]
    shift = np.int64(1) << np.int64(42)               # user-major keys: user * 2^42 + time
    offset = START_MS - 86_400_000                    # late events stay after this
    event_key = user * shift + (ms - offset)
    out = {}
    for k, name in enumerate(TRACKED):
        sel = kind == k
        keys = who[sel] * shift + (when[sel] - offset)
        value = rng.integers(0, sizes[k], int(sel.sum()))
        order = np.argsort(keys, kind="stable")
        keys, value, owner = keys[order], value[order], who[sel][order]
        at = np.searchsorted(keys, event_key, side="right") - 1
        hit = (at >= 0) & (owner[np.maximum(at, 0)] == user)
        out[name] = np.where(hit, value[np.maximum(at, 0)], base[name][user])
    mail = np.sort(who[kind == EMAIL_CHANGE] * shift + (when[kind == EMAIL_CHANGE] - offset))
    out["mail_version"] = (np.searchsorted(mail, event_key, side="right")
                           - np.searchsorted(mail, user * shift, side="left"))
    return out, {"profile_changes": int(len(who)), "email_changes": int((kind == EMAIL_CHANGE).sum())}


def build(seed: int, rows: int, knobs: dict, drops: int) -> Landed:
    rng = component_rng(seed, PIPELINE, "events")
    fpd = knobs["files_per_drop"]
    span = int(knobs["days"] * 86_400_000)
    st = build_stream(component_rng(seed, PIPELINE, "stream"), lines=rows, slots=drops * fpd, start_ms=START_MS,
                      span_ms=span, duplicate_rate=knobs["duplicate_rate"], late_rate=knobs["late_rate"],
                      late_minutes=knobs["late_minutes"], edge_delay_ms=WATERMARK_MS)
    n = st.n_events
    n_users = int(np.clip(n // 30, 50, 200_000))
    user = zipf_sample(rng, n_users, n, knobs["skew"]).astype(np.int64)
    profile, injected = _profiles(rng, n_users, user, st.ms, span)

    etype = np.minimum(np.searchsorted(np.cumsum(TYPE_SHARES), rng.random(n) * sum(TYPE_SHARES), side="right"), 5)
    extra = np.full(n, -1, dtype=np.int64)
    ex = pick(rng, n, EXTRA_RATE)
    extra[ex] = rng.integers(0, len(EXTRAS), len(ex))

    # How user ids and e-mails are written: mostly plainly; sometimes as text, padded, upper-cased.
    uid_state = np.zeros(n, dtype=np.int8)
    mm = pick(rng, n, MISMATCH_RATE)
    as_text, plan_number = np.array_split(rng.permutation(mm), 2)
    uid_state[as_text] = rng.choice([UID_TEXT, UID_PADDED], len(as_text))
    no_user = pick(rng, n, knobs["null_rate"])
    uid_state[no_user] = rng.choice([UID_NULL, UID_BLANK], len(no_user), p=[0.8, 0.2])
    mail_variant = np.zeros(n, dtype=np.int8)
    mv = pick(rng, n, EMAIL_VARIANT_RATE)
    mail_variant[mv] = rng.choice([MAIL_UPPER, MAIL_PADDED], len(mv))
    plan = profile["plan"].copy()
    plan[np.sort(plan_number)] += len(PLANS)
    country = profile["country"].copy()
    country[pick(rng, n, knobs["null_rate"])] = -1

    # Malformed events, split across the ways a line can go wrong.
    bad = rng.permutation(pick(rng, n, knobs["malformed_rate"] * 3))
    kinds = np.array_split(bad, [int(len(bad) * f) for f in (0.3, 0.6, 0.8)])
    broken = np.zeros(n, dtype=bool)
    broken[kinds[0]] = True
    bad_ts = np.zeros(n, dtype=np.int8)
    bad_ts[kinds[1]] = 1 + rng.integers(0, len(BAD_TIMESTAMPS), len(kinds[1]))
    etype[kinds[2]] = len(EVENT_TYPES) + rng.integers(0, len(BAD_TYPES), len(kinds[2]))
    eid_state = np.zeros(n, dtype=np.int8)
    eid_state[kinds[3]] = rng.choice([EID_NULL, EID_MISSING], len(kinds[3]))

    locals_ = [f"user{FIRST_USER_ID + u}" for u in range(n_users)]
    for u in pick(rng, n_users, UNICODE_USER_RATE).tolist():
        locals_[u] = f"{UNICODE_LOCALS[u % len(UNICODE_LOCALS)]}.{FIRST_USER_ID + u}"
    salt = component_key(seed, PIPELINE, "event_id")
    hi, lo = T.uuid_words(hashed(salt, np.arange(n)), hashed(salt ^ np.uint64(0xA5A5), np.arange(n)))
    d = Landed(st, n_users, user, uid_state, mail_variant, profile["mail_version"], profile["device"], country, plan,
               etype, rng.integers(0, N_PAGES, n), rng.integers(0, len(REFERRERS), n),
               rng.integers(0, len(TS_FORMATS), n), bad_ts, eid_state, extra, broken, hi, lo, locals_,
               rng.integers(0, len(DOMAINS), n_users), fpd, {})
    d.injected = {"events": n, "lines": int(st.n_lines), "duplicates": int(st.copy.sum()), "late": int(st.late.sum()),
                  "users": n_users, "unicode_email_users": sum(1 for x in locals_ if not x.isascii()),
                  "broken_json": len(kinds[0]), "bad_timestamp": len(kinds[1]), "bad_event_type": len(kinds[2]),
                  "bad_event_id": len(kinds[3]), "extra_fields": len(ex), "user_id_as_text": len(as_text),
                  "plan_as_number": len(plan_number), "no_user": len(no_user), "email_variants": len(mv),
                  "null_country": int((country < 0).sum()), **injected}
    return d


# ---------------------------------------------------------------- rendering

def _pages() -> list[str]:
    return [SITE + u for u in PAGES + [f"/p/{k}" for k in range(1, N_PAGES - len(PAGES) + 1)]]


def _q(value: str) -> str:
    import json
    return json.dumps(value, ensure_ascii=False)


def _written_emails(d: Landed, s: np.ndarray) -> pa.Array:
    """The `,"email":...` snippet of each event (upper-cased or padded as written)."""
    has = (d.uid_state[s] != UID_NULL) & (d.uid_state[s] != UID_BLANK)
    combo = (d.user[s] * 64 + np.minimum(d.mail_version[s], 20)) * 3 + d.mail_variant[s]
    uniq, inv = np.unique(combo, return_inverse=True)
    users, rest = uniq // 192, uniq % 192
    canon = d.emails(users, rest // 3)
    shown = []
    for text, variant in zip(canon, (rest % 3).tolist()):
        if variant == MAIL_UPPER:
            text = text.upper()
        elif variant == MAIL_PADDED:
            text = "  " + text[:1].upper() + text[1:] + " "
        shown.append(f',"email":{_q(text)}')
    out = T.pick(T.table(shown), inv)
    return T.fill(out, ~has, ',"email":null')


def render_lines(d: Landed, a: int, b: int) -> pa.Array:
    s = d.stream.src[a:b]
    ms = d.stream.ms[s]
    state = d.eid_state[s]
    head = T.join('{"event_id":"', T.uuid_strings(d.eid_hi[s], d.eid_lo[s]), '",')
    head = T.fill(T.fill(head, state == EID_NULL, '{"event_id":null,'), state == EID_MISSING, "{")

    fmt = d.ts_format[s]
    ts = T.join('"ts":"', T.iso_strings(ms), '"')
    rows = np.flatnonzero(fmt == 1)
    ts = T.patch(ts, rows, T.join('"ts":', T.int_strings(ms[rows])))
    rows = np.flatnonzero(fmt == 2)
    ts = T.patch(ts, rows, T.join('"ts":"', T.iso_strings(ms[rows], sep=" ", zulu=False, millis=False), '"'))
    bad = d.bad_ts[s]
    rows = np.flatnonzero(bad > 0)
    ts = T.patch(ts, rows, T.join('"ts":', T.pick(T.table(BAD_TIMESTAMPS), bad[rows] - 1)))

    ids = T.int_strings(d.user[s] + FIRST_USER_ID)
    uid = T.join(',"user_id":', ids)
    st = d.uid_state[s]
    for value, text in ((UID_TEXT, '"{}"'), (UID_PADDED, '" {} "')):
        rows = np.flatnonzero(st == value)
        pre, post = text.split("{}")
        uid = T.patch(uid, rows, T.join(',"user_id":' + pre, ids.take(pa.array(rows)), post))
    uid = T.fill(T.fill(uid, st == UID_NULL, ',"user_id":null'), st == UID_BLANK, ',"user_id":"  "')

    types = T.table([f',"event_type":{_q(t)}' if t is not None else ',"event_type":null' for t in ALL_TYPES])
    ref = T.table([',"referrer":null' if r is None else f',"referrer":"{r}"' for r in REFERRERS])
    plan = T.table([f',"plan":"{p}"' for p in PLANS] + [f',"plan":{i}' for i in range(len(PLANS))])
    country = T.table([f',"country":"{c}"' for c in COUNTRIES] + [',"country":null'])
    extra = T.pick(T.table([""] + EXTRAS), d.extra[s] + 1)
    end = T.pick(T.table(["}\n", "\n"]), d.broken[s].astype(np.int64))
    return T.join(head, ts, uid, _written_emails(d, s), T.pick(types, d.etype[s]),
                  T.pick(T.table([f',"page_url":"{u}"' for u in _pages()]), d.page[s]), T.pick(ref, d.referrer[s]),
                  T.pick(T.table([f',"device":"{v}"' for v in DEVICES]), d.device[s]),
                  T.pick(country, np.where(d.country[s] < 0, len(COUNTRIES), d.country[s])),
                  T.pick(plan, d.plan[s]), extra, end)


def write(d: Landed, sink: Sink) -> None:
    st = d.stream
    for g in range(st.n_slots):
        a, b = int(st.bounds[g]), int(st.bounds[g + 1])
        sink.write(slot_drop(g, d.files_per_drop), f"{EVENT_DIR}/{d.file_name(g)}",
                   T.chunked(lambda lo, hi: render_lines(d, lo, hi), a, b), events=b - a)
