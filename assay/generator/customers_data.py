"""customers_stream source data: customer profile messages (JSON lines, one message a line)
for a Kafka topic `customers` (`assay generate customers_stream --kafka …` sends them).

Messages are versions of customer profiles keyed by updated_at; they arrive roughly in
updated_at order, some late (older versions after newer ones), some repeated, some malformed or
missing fields (total_charges above all, as in the classic telco data). What a pipeline must
cope with, by construction:

- updated_at in four spellings of one instant: ISO-8601 with `Z` and milliseconds, with a
  `+HH:MM` offset, without a zone, and `YYYY-MM-DD HH:MM:SS` (no zone = UTC); times are whole
  seconds, and versions of one customer never share an updated_at;
- booleans as `"Yes"`/`"No"` strings and as 0/1 numbers (senior_citizen is usually 0/1);
- optional fields missing, or present as JSON null (`null_rate` each);
- an unknown field (`"channel"`) on a few messages: bronze rescues it, silver ignores it;
- repeats (`duplicate_rate`) come after the message they repeat, in the same file or later;
- malformed messages (`malformed_rate`, in four equal shares): a truncated line (not JSON), a
  JSON array holding the object (not a JSON object), an updated_at that does not parse, is
  null or is missing, and a customer_id that is null or missing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import text as T
from . import vocab
from .rand import component_rng, pick
from .sink import Sink, part_name, slot_drop
from .stream import Stream, stream_for

PIPELINE = "customers_stream"
EVENT_DIR = "customers"
START_MS = 1_793_491_200_000
MONTH_MS = 30 * 86_400_000
CHOICES = {
    "gender": ["Male", "Female"],
    "partner": ["Yes", "No"],
    "dependents": ["Yes", "No"],
    "phone_service": ["Yes", "No"],
    "internet_service": ["DSL", "Fiber optic", "No"],
    "contract": ["Month-to-month", "One year", "Two year"],
}
YES_NO = ("partner", "dependents", "phone_service")
# Keys that may be missing or null (null_rate each); the pipeline's defaults fill all but email.
OPTIONAL = ["gender", "senior_citizen", "partner", "dependents", "tenure", "phone_service", "internet_service",
            "contract", "email"]
BAD_UPDATED_AT = ['"not-a-date"', '""', '"soon"', '"2026-13-45 10:00:00"', "null", None]   # None: key missing
OFFSETS = [("+02:00", 2 * 3_600_000), ("-05:00", -5 * 3_600_000), ("+05:30", 19_800_000)]
OK, BROKEN, BAD_TIME, NULL_ID, ARRAY = 0, 1, 2, 3, 4
# updated_at spellings: ISO with Z and millis, ISO with an offset, ISO without zone, space-separated
ISO_Z, ISO_OFFSET, ISO_NAIVE, SPACE = 0, 1, 2, 3


@dataclass
class Landed:
    stream: Stream
    n_customers: int
    customer: np.ndarray          # per message (source event)
    cat: dict                     # field -> index into CHOICES[field]
    senior: np.ndarray
    tenure: np.ndarray
    monthly_cents: np.ndarray
    total_cents: np.ndarray       # -1 = key missing
    first: np.ndarray             # per customer
    last: np.ndarray
    missing: dict                 # optional field -> bool per message (missing or null)
    as_null: dict                 # optional field -> bool per message: present as JSON null (when missing)
    defect: np.ndarray            # OK / BROKEN / BAD_TIME / NULL_ID / ARRAY per message
    bad_time: np.ndarray          # index into BAD_UPDATED_AT
    id_missing: np.ndarray        # NULL_ID messages: key missing (True) or null (False)
    time_form: np.ndarray         # ISO_Z / ISO_OFFSET / ISO_NAIVE / SPACE per message
    offset: np.ndarray            # index into OFFSETS (ISO_OFFSET messages)
    numeric_bools: np.ndarray     # bool per message: Yes/No fields as 0/1, senior_citizen as "Yes"/"No"
    channel: np.ndarray           # bool per message: carries the unknown field "channel"
    files_per_drop: int
    injected: dict
    names: dict | None = None


def customer_ids(idx: np.ndarray) -> pa.Array:
    """Telco-style ids '7590-VHVEG': 4 digits, a dash, 5 letters; unique per index."""
    idx = np.asarray(idx, dtype=np.int64)
    m = np.empty((len(idx), 10), dtype=np.uint8)
    d = (idx * 7919 + 1234) % 9000 + 1000
    for k in range(4):
        m[:, 3 - k] = 48 + d % 10
        d //= 10
    m[:, 4] = ord("-")
    r = idx.copy()
    for k in range(5):
        m[:, 9 - k] = 65 + r % 26
        r //= 26
    return T.fixed(m)


def build(seed: int, rows: int, knobs: dict, drops: int) -> Landed:
    rng = component_rng(seed, PIPELINE, "messages")
    fpd = knobs["files_per_drop"]
    st = stream_for(seed, PIPELINE, rows=rows, slots=drops * fpd, start_ms=START_MS, knobs=knobs)
    _repeats_after_originals(st)
    n = st.n_events
    n_cust = max(10, n // 4)
    customer = rng.integers(0, n_cust, n)
    st.ms[:] = st.ms // 1000 * 1000                          # whole seconds: every spelling is exact
    _unique_times(st.ms, customer)
    cat = {f: rng.integers(0, len(v), n) for f, v in CHOICES.items()}
    base_gender = rng.integers(0, 2, n_cust)
    cat["gender"] = base_gender[customer]                    # a customer keeps their gender
    senior = (rng.random(n_cust) < 0.16).astype(np.int64)[customer]
    tenure = (rng.integers(0, 72, n_cust)[customer] + (st.ms - START_MS) // MONTH_MS).astype(np.int64)
    tenure[pick(rng, n, 0.02)] = 0
    monthly = rng.integers(1_825, 11_875, n)                 # $18.25 .. $118.75
    total = tenure * monthly + rng.integers(0, 5_000, n)
    total[tenure == 0] = -1                                  # new customers have no total yet
    total[pick(rng, n, 0.03)] = -1
    forms = component_rng(seed, PIPELINE, "forms")
    missing = {f: np.zeros(n, dtype=bool) for f in OPTIONAL}
    as_null = {}
    for f in OPTIONAL:
        missing[f][pick(forms, n, knobs["null_rate"])] = True
        as_null[f] = forms.random(n) < 0.5
    defect = np.zeros(n, dtype=np.int8)
    bad = rng.permutation(pick(rng, n, knobs["malformed_rate"]))
    parts = np.array_split(bad, 4)
    for part, kind in zip(parts, (BROKEN, BAD_TIME, NULL_ID, ARRAY)):
        defect[part] = kind
    bad_time = forms.integers(0, len(BAD_UPDATED_AT), n)
    id_missing = forms.random(n) < 0.5
    time_form = forms.integers(0, 4, n)
    offset = forms.integers(0, len(OFFSETS), n)
    numeric_bools = forms.random(n) < 0.05
    channel = forms.random(n) < 0.02
    first = rng.integers(0, len(vocab.FIRST_NAMES), n_cust)
    last = rng.integers(0, len(vocab.LAST_NAMES), n_cust)
    injected = {"messages": int(st.n_lines), "events": n, "customers": n_cust, "duplicates": int(st.copy.sum()),
                "late": int(st.late.sum()), "broken_json": len(parts[0]), "bad_updated_at": len(parts[1]),
                "null_customer_id": len(parts[2]), "json_arrays": len(parts[3]),
                "missing_total_charges": int((total < 0).sum())}
    return Landed(st, n_cust, customer, cat, senior, tenure, monthly, total, first, last, missing, as_null, defect,
                  bad_time, id_missing, time_form, offset, numeric_bools, channel, fpd, injected)


def _repeats_after_originals(st: Stream) -> None:
    """A producer repeats a message after sending it, never before: a copy that the shared stream put
    ahead of its original in the same file moves to just after it (files and their sizes unchanged).
    Otherwise a copy would be a message from the future, and everything after it would look late."""
    first = np.full(st.n_events, -1, dtype=np.int64)
    originals = np.flatnonzero(~st.copy)
    first[st.src[originals]] = originals
    key = np.arange(st.n_lines, dtype=np.float64)
    copies = np.flatnonzero(st.copy)
    original = first[st.src[copies]]
    ahead = original > copies                      # only within one file: copies never go to earlier files
    key[copies[ahead]] = original[ahead] + 0.5
    order = np.argsort(key, kind="stable")
    st.src, st.copy, st.slot = st.src[order], st.copy[order], st.slot[order]


def _unique_times(ms: np.ndarray, customer: np.ndarray) -> None:
    """Two versions of one customer never share an updated_at (so "latest" is unambiguous)."""
    while True:
        order = np.lexsort((ms, customer))
        same = (np.diff(customer[order]) == 0) & (np.diff(ms[order]) == 0)
        if not same.any():
            return
        ms[order[1:][same]] += 1000


def _kv(name: str, values: list[str], quoted: bool = True) -> pa.Array:
    return T.table([f',"{name}":"{v}"' if quoted else f',"{name}":{v}' for v in values])


def _optional(piece: pa.Array, d: Landed, field: str, s: np.ndarray) -> pa.Array:
    """A field's `,"key":value` piece, emptied (key missing) or made `,"key":null` where it is missing."""
    missing = d.missing[field][s]
    null = missing & d.as_null[field][s]
    piece = T.fill(piece, null, f',"{field}":null')
    return T.fill(piece, missing & ~null, "")


def updated_at_text(d: Landed, s: np.ndarray) -> pa.Array:
    """The JSON value of updated_at (quoted) in each message's spelling."""
    ms = d.stream.ms[s]
    off_text = T.pick(T.table([o for o, _ in OFFSETS]), d.offset[s])
    off_ms = np.array([m for _, m in OFFSETS], dtype=np.int64)[d.offset[s]]
    spellings = [
        T.iso_strings(ms),                                                           # 2026-11-01T10:15:30.000Z
        T.join(T.iso_strings(ms + off_ms, millis=False, zulu=False), off_text),      # 2026-11-01T12:15:30+02:00
        T.iso_strings(ms, millis=False, zulu=False),                                 # 2026-11-01T10:15:30
        T.iso_strings(ms, sep=" ", millis=False, zulu=False),                        # 2026-11-01 10:15:30
    ]
    chosen = pc.choose(pa.array(d.time_form[s].astype(np.int8)), *[x.cast(pa.string()) for x in spellings])
    return T.join('"', chosen, '"')


def render_lines(d: Landed, a: int, b: int) -> pa.Array:
    st = d.stream
    s = st.src[a:b]
    cust = d.customer[s]
    defect = d.defect[s]
    numeric = d.numeric_bools[s]
    cid = T.join('{"customer_id":"', customer_ids(cust), '"')
    null_id = defect == NULL_ID
    cid = T.fill(cid, null_id & ~d.id_missing[s], '{"customer_id":null')
    cid = T.fill(cid, null_id & d.id_missing[s], '{"source":"crm"')          # no customer_id key at all
    pieces = [cid]
    for f, values in CHOICES.items():
        piece = T.pick(_kv(f, values), d.cat[f][s])
        if f in YES_NO:                                                      # "Yes"/"No", or 1/0
            piece = T.patch(piece, np.flatnonzero(numeric),
                            T.pick(_kv(f, ["1", "0"], quoted=False), d.cat[f][s][numeric]))
        pieces.append(_optional(piece, d, f, s))
        if f == "gender":
            senior = T.pick(_kv("senior_citizen", ["0", "1"], quoted=False), d.senior[s])
            senior = T.patch(senior, np.flatnonzero(numeric), T.pick(_kv("senior_citizen", ["No", "Yes"]),
                                                                      d.senior[s][numeric]))
            pieces.append(_optional(senior, d, "senior_citizen", s))
        if f == "dependents":
            pieces.append(_optional(T.join(',"tenure":', T.int_strings(d.tenure[s])), d, "tenure", s))
    pieces.append(T.join(',"monthly_charges":', T.cents_strings(d.monthly_cents[s])))
    total = d.total_cents[s]
    tot = T.join(',"total_charges":', T.cents_strings(np.maximum(total, 0)))
    pieces.append(T.fill(tot, total < 0, ""))
    upd = T.join(',"updated_at":', updated_at_text(d, s))
    bad = np.flatnonzero(defect == BAD_TIME)
    bad_values = [f',"updated_at":{v}' if v is not None else "" for v in BAD_UPDATED_AT]
    upd = T.patch(upd, bad, T.pick(T.table(bad_values), d.bad_time[s][bad]))
    pieces.append(upd)
    names = customer_strings(d)
    take = pa.array(cust)
    pieces.append(T.join(',"first_name":"', names["first_name"].take(take), '","last_name":"',
                         names["last_name"].take(take), '"'))
    email = T.join(',"email":"', names["email"].take(take), '"')
    pieces.append(_optional(email, d, "email", s))
    pieces.append(T.fill(T.pick(T.table([""]), np.zeros(len(s), dtype=np.int64)), d.channel[s], ',"channel":"web"'))
    kind = np.where(defect == BROKEN, 1, np.where(defect == ARRAY, 2, 0))
    start = T.pick(T.table(["", "", "["]), kind)
    end = T.pick(T.table(["}\n", "\n", "}]\n"]), kind)
    return T.join(start, *pieces, end)


def customer_strings(d: Landed) -> dict[str, pa.Array]:
    """first_name, last_name, email per customer index (computed once per dataset)."""
    if d.names is None:
        first = T.pick(T.table(vocab.FIRST_NAMES), d.first)
        last = T.pick(T.table(vocab.LAST_NAMES), d.last)
        plain = pc.replace_substring(pc.utf8_lower(last), "'", "")
        email = T.join(pc.utf8_lower(first), ".", plain, T.int_strings(np.arange(d.n_customers)), "@example.net")
        d.names = {"first_name": first, "last_name": last, "email": email}
    return d.names


def write(d: Landed, sink: Sink) -> None:
    st = d.stream
    for g in range(st.n_slots):
        a, b = int(st.bounds[g]), int(st.bounds[g + 1])
        sink.write(slot_drop(g, d.files_per_drop), f"{EVENT_DIR}/{part_name(g, d.files_per_drop, 'json')}",
                   T.chunked(lambda lo, hi: render_lines(d, lo, hi), a, b), events=b - a)
