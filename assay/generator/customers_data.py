"""customers_stream source data: customer profile messages (JSON lines, one message a line)
for a Kafka topic `customers`; the lead's tooling produces them to the broker.

Messages are versions of customer profiles keyed by updated_at; they arrive roughly in
updated_at order, some late (older versions after newer ones), some repeated, some
malformed or missing fields (total_charges above all, as in the classic telco data).
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
OPTIONAL = ["gender", "partner", "dependents", "email"]    # keys that may be missing (null_rate)
BAD_UPDATED_AT = ["not-a-date", "", "soon"]
OK, BROKEN, BAD_TIME, NULL_ID = 0, 1, 2, 3


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
    missing: dict                 # optional field -> bool per message
    defect: np.ndarray            # OK / BROKEN / BAD_TIME / NULL_ID per message
    bad_time: np.ndarray
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
    n = st.n_events
    n_cust = max(10, n // 4)
    customer = rng.integers(0, n_cust, n)
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
    missing = {f: np.zeros(n, dtype=bool) for f in OPTIONAL}
    for f in OPTIONAL:
        missing[f][pick(rng, n, knobs["null_rate"])] = True
    defect = np.zeros(n, dtype=np.int8)
    bad = rng.permutation(pick(rng, n, knobs["malformed_rate"]))
    parts = np.array_split(bad, 3)
    defect[parts[0]], defect[parts[1]], defect[parts[2]] = BROKEN, BAD_TIME, NULL_ID
    bad_time = rng.integers(0, len(BAD_UPDATED_AT), n)
    first = rng.integers(0, len(vocab.FIRST_NAMES), n_cust)
    last = rng.integers(0, len(vocab.LAST_NAMES), n_cust)
    injected = {"messages": int(st.n_lines), "events": n, "customers": n_cust, "duplicates": int(st.copy.sum()),
                "late": int(st.late.sum()), "broken_json": len(parts[0]), "bad_updated_at": len(parts[1]),
                "null_customer_id": len(parts[2]), "missing_total_charges": int((total < 0).sum())}
    return Landed(st, n_cust, customer, cat, senior, tenure, monthly, total, first, last, missing, defect,
                  bad_time, fpd, injected)


def _unique_times(ms: np.ndarray, customer: np.ndarray) -> None:
    """Two versions of one customer never share an updated_at (so "latest" is unambiguous)."""
    while True:
        order = np.lexsort((ms, customer))
        same = (np.diff(customer[order]) == 0) & (np.diff(ms[order]) == 0)
        if not same.any():
            return
        ms[order[1:][same]] += 1


def _kv(name: str, values: list[str], quoted: bool = True) -> pa.Array:
    return T.table([f',"{name}":"{v}"' if quoted else f',"{name}":{v}' for v in values])


def render_lines(d: Landed, a: int, b: int) -> pa.Array:
    st = d.stream
    s = st.src[a:b]
    cust = d.customer[s]
    defect = d.defect[s]
    cid = T.join('{"customer_id":"', customer_ids(cust), '"')
    cid = T.fill(cid, defect == NULL_ID, '{"customer_id":null')
    pieces = [cid]
    for f, values in CHOICES.items():
        piece = T.pick(_kv(f, values), d.cat[f][s])
        if f in d.missing:
            piece = T.fill(piece, d.missing[f][s], "")
        pieces.append(piece)
        if f == "gender":
            pieces.append(T.pick(_kv("senior_citizen", ["0", "1"], quoted=False), d.senior[s]))
        if f == "dependents":
            pieces.append(T.join(',"tenure":', T.int_strings(d.tenure[s])))
    pieces.append(T.join(',"monthly_charges":', T.cents_strings(d.monthly_cents[s])))
    total = d.total_cents[s]
    tot = T.join(',"total_charges":', T.cents_strings(np.maximum(total, 0)))
    pieces.append(T.fill(tot, total < 0, ""))
    upd = T.join(',"updated_at":"', T.iso_strings(st.ms[s]), '"')
    bad = np.flatnonzero(defect == BAD_TIME)
    upd = T.patch(upd, bad, T.pick(_kv("updated_at", BAD_UPDATED_AT), d.bad_time[s][bad]))
    pieces.append(upd)
    names = customer_strings(d)
    take = pa.array(cust)
    pieces.append(T.join(',"first_name":"', names["first_name"].take(take), '","last_name":"',
                         names["last_name"].take(take), '"'))
    email = T.join(',"email":"', names["email"].take(take), '"')
    pieces.append(T.fill(email, d.missing["email"][s], ""))
    end = T.pick(T.table(["}\n", "\n"]), (defect == BROKEN).astype(np.int64))
    return T.join(*pieces, end)


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
