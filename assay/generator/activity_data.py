"""activity_logs source data: CSV activity files and the geo-IP reference table.

Each source event has clean values plus, when malformed, a code per field saying which
bad value replaces it and a record shape (short / long). `fields()` gives, for a range of
landed lines, the field values a CSV reader sees; the writer quotes them, the truth
evaluates the rules on them.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import text as T
from .geoip import GeoIP, dotted, make_networks, sample_addresses
from .rand import component_key, component_rng, hashed, pick, zipf_sample
from .sink import Sink, part_name, slot_drop
from .stream import Stream, stream_for

PIPELINE = "activity_logs"
EVENT_DIR = "activity_logs"
GEO_PATH = "reference/geo_ip/geo_ip.csv"
START_MS = 1_793_491_200_000          # 2026-11-01T00:00:00Z
COLUMNS = ["log_id", "user_id", "event_time", "ip_address", "content_id", "action", "watch_time_seconds"]
HEADER = (",".join(COLUMNS) + "\n").encode()
BOM = b"\xef\xbb\xbf"
ACTIONS = ["play", "pause", "seek", "stop"]
ACTION_SHARES = [0.5, 0.2, 0.15, 0.15]

# Bad values per field (code k selects BAD[field][k - 1]); each breaks exactly one rule.
BAD = {
    "log_id": ["", "   "],
    "user_id": ["", " "],
    "event_time": ["not-a-time", "N/A", "yesterday", ""],
    "ip_address": ["256.10.0.1", "10.01.2.3", "1.2.3", "bad-ip", "", "1.2.3.4.5", "300.300.300.300"],
    "action": ["rewind", "PLAY", ""],
    "watch_time_seconds": ["-5", "12.5", "abc", "90000", "", "86401"],
}
SHAPE_OK, SHAPE_SHORT1, SHAPE_SHORT2, SHAPE_LONG = 0, 1, 2, 3
_KINDS = list(BAD) + ["shape"]


@dataclass
class Events:
    user: np.ndarray
    addr: np.ndarray
    addr_kind: np.ndarray
    content: np.ndarray          # -1 = empty (null)
    action: np.ndarray
    watch: np.ndarray
    bad: dict                    # field -> int8 code per event (0 = fine)
    shape: np.ndarray


@dataclass
class Landed:
    stream: Stream
    events: Events
    geo: GeoIP
    contents: list[str]
    n_users: int
    line_ms: np.ndarray          # event time per landed line (conflicting copies differ)
    line_watch: np.ndarray
    conflict: np.ndarray
    bom_slots: np.ndarray
    files_per_drop: int
    salt: np.uint64
    injected: dict

    def file_name(self, slot: int) -> str:
        return part_name(slot, self.files_per_drop, "csv")

    def log_words(self, src: np.ndarray) -> np.ndarray:
        return hashed(self.salt, src)


def _contents(rng: np.random.Generator, n: int) -> list[str]:
    """Movies and series; a series id has a comma in it ("show12,season3") and must be quoted."""
    series = rng.random(n) < 0.3
    return [f"show{i},season{rng.integers(1, 9)}" if s else f"movie{i}" for i, s in enumerate(series)]


def build(seed: int, rows: int, knobs: dict, drops: int) -> Landed:
    rng = component_rng(seed, PIPELINE, "events")
    fpd = knobs["files_per_drop"]
    slots = drops * fpd
    st = stream_for(seed, PIPELINE, rows=rows, slots=slots, start_ms=START_MS, knobs=knobs)
    n = st.n_events
    geo = make_networks(component_rng(seed, PIPELINE, "geo"), int(knobs["networks"]))
    addr, addr_kind = sample_addresses(rng, geo, n)

    contents = _contents(rng, int(np.clip(rows // 500, 20, 5000)))
    n_users = int(np.clip(rows // 50, 50, 100_000))
    user = zipf_sample(rng, n_users, n, knobs["skew"])
    content = zipf_sample(rng, len(contents), n, knobs["skew"]).astype(np.int64)
    series = np.flatnonzero([("," in c) for c in contents])
    if len(series):   # make sure some rows carry a quoted comma, whatever the popularity draw
        forced = pick(rng, n, 0.05)
        content[forced] = series[rng.integers(0, len(series), len(forced))]
    content[pick(rng, n, knobs["null_rate"])] = -1
    action = np.minimum(np.searchsorted(np.cumsum(ACTION_SHARES), rng.random(n), side="right"), 3)
    watch = np.minimum(rng.exponential(600, n).astype(np.int64), 86_400)
    watch[pick(rng, n, 0.001)] = 86_400            # the inclusive upper bound is valid
    watch[pick(rng, n, 0.01)] = 0

    bad, shape, bad_counts = _malformed(rng, n, knobs["malformed_rate"])
    ev = Events(user, addr, addr_kind, content, action, watch, bad, shape)

    # Conflicting copies: a re-sent record with another event time and watch time.
    crng = component_rng(seed, PIPELINE, "conflicts")
    copies = np.flatnonzero(st.copy)
    conflict = np.zeros(st.n_lines, dtype=bool)
    conflict[pick(crng, copies, knobs["conflict_rate"], of=len(copies))] = True
    line_ms = st.ms[st.src].copy()
    line_watch = watch[st.src].copy()
    k = int(conflict.sum())
    shift = crng.integers(1_000, 600_000, k) * crng.choice([-1, 1], k)
    line_ms[conflict] += shift
    line_watch[conflict] = crng.integers(0, 3_600, k)

    bom = pick(component_rng(seed, PIPELINE, "bom"), slots, knobs["bom_rate"])
    injected = {"events": n, "lines": st.n_lines, "duplicates": int(st.copy.sum()), "conflicting_duplicates": k,
                "late": int(st.late.sum()), "malformed": int(len(bad_counts["any"])),
                **{f"bad_{f}": len(v) for f, v in bad_counts.items() if f != "any"},
                "null_content_id": int((content < 0).sum()), "bom_files": len(bom),
                "ip_first_address": int((addr_kind == 1).sum()), "ip_last_address": int((addr_kind == 2).sum()),
                "ip_no_network": int((addr_kind == 3).sum())}
    return Landed(st, ev, geo, contents, n_users, line_ms, line_watch, conflict, bom, fpd,
                  component_key(seed, PIPELINE, "log_id"), injected)


def _malformed(rng: np.random.Generator, n: int, rate: float):
    """Pick malformed events; each gets one defect, 15% of them a second one."""
    rows = pick(rng, n, rate)
    kind = rng.integers(0, len(_KINDS), len(rows))
    extra = rows[rng.random(len(rows)) < 0.15]
    rows2 = np.concatenate([rows, extra])
    kind2 = np.concatenate([kind, rng.integers(0, len(_KINDS), len(extra))])
    bad = {f: np.zeros(n, dtype=np.int8) for f in BAD}
    shape = np.zeros(n, dtype=np.int8)
    counts = {"any": rows}
    for i, f in enumerate(_KINDS):
        sel = rows2[kind2 == i]
        counts[f] = sel
        if f == "shape":
            shape[sel] = rng.integers(1, 4, len(sel))
        else:
            bad[f][sel] = 1 + rng.integers(0, len(BAD[f]), len(sel))
    return bad, shape, counts


def fields(d: Landed, lines: np.ndarray | slice) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Field values of the given landed lines as written (unquoted), and each record's field count."""
    ev, st = d.events, d.stream
    s = st.src[lines]
    n = len(s)
    log = np.empty((n, 20), dtype=np.uint8)
    log[:, 0:4] = T.literal("log-", n)
    T.hex_bytes(log, 4, d.log_words(s), 8)
    content = ev.content[s]
    out = {
        "log_id": T.fixed(log),
        "user_id": user_ids(ev.user[s]),
        "event_time": T.iso_strings(d.line_ms[lines]),
        "ip_address": dotted(ev.addr[s]),
        "content_id": T.pick(T.table(d.contents + [""]), np.where(content < 0, len(d.contents), content)),
        "action": T.pick(T.table(ACTIONS), ev.action[s]),
        "watch_time_seconds": T.int_strings(d.line_watch[lines]),
    }
    for f, values in BAD.items():
        code = ev.bad[f][s]
        rows = np.flatnonzero(code)
        if len(rows):
            out[f] = T.patch(out[f], rows, T.pick(T.table(values), code[rows] - 1))
    shape = ev.shape[s]
    nfields = np.select([shape == SHAPE_SHORT1, shape == SHAPE_SHORT2, shape == SHAPE_LONG], [6, 5, 8], 7)
    return out, nfields


def user_ids(user: np.ndarray) -> pa.Array:
    """'u' + 7 digits: user index i is 'u' + str(1_000_000 + i)."""
    m = np.empty((len(user), 8), dtype=np.uint8)
    m[:, 0] = ord("u")
    u = np.asarray(user, dtype=np.int64) + 1_000_000
    for k in range(7):
        m[:, 7 - k] = 48 + u % 10
        u = u // 10
    return T.fixed(m)


def render_lines(d: Landed, a: int, b: int) -> pa.Array:
    f, nfields = fields(d, slice(a, b))
    content = f["content_id"]
    has_comma = pc.match_substring(content, ",").fill_null(False).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(has_comma)
    if len(rows):
        sub = content.take(pa.array(rows))
        content = T.patch(content, rows, T.join('"', sub, '"'))
    cols = [f[c] for c in COLUMNS[:4]] + [content] + [f[c] for c in COLUMNS[5:]]
    body = T.join(*cols, sep=",")
    for width in (5, 6):
        rows = np.flatnonzero(nfields == width)
        if len(rows):
            take = pa.array(rows)
            body = T.patch(body, rows, T.join(*[c.take(take) for c in cols[:width]], sep=","))
    rows = np.flatnonzero(nfields == 8)
    if len(rows):
        body = T.patch(body, rows, T.join(body.take(pa.array(rows)), "extra", sep=","))
    return T.join(body, "\n")


def write(d: Landed, sink: Sink) -> None:
    sink.write(0, GEO_PATH, d.geo.csv())
    st = d.stream
    bom = set(d.bom_slots.tolist())
    for g in range(st.n_slots):
        a, b = int(st.bounds[g]), int(st.bounds[g + 1])
        head = (BOM if g in bom else b"") + HEADER
        sink.write(slot_drop(g, d.files_per_drop), f"{EVENT_DIR}/{d.file_name(g)}",
                   itertools.chain([head], T.chunked(lambda lo, hi: render_lines(d, lo, hi), a, b)), events=b - a)
