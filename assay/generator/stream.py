"""The arrival skeleton shared by every event source: which event lands where, and when.

Events happen over a time span that is cut into consecutive file slots (drop-major: slot
g is file g % files_per_drop of drop g // files_per_drop). Each slot holds the events of
its time window, slightly shuffled; then
  * late events get a timestamp well behind their file's window (they arrive late); a
    fifth of them sit right at the edge of a 3-minute watermark instead, to pin its bounds;
  * duplicates are extra lines that repeat an event, in the same file (anywhere in it),
    in the next file (taken from the tail of their own file, so a watermark keeps them
    on time), or in any later file, possibly of a later drop.
Lines are then ordered by (slot, position); everything else about a line is looked up
from its source event through `src`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rand import component_rng, exact_count, pick

TAIL_MS = 60_000          # "end of file" window from which next-file duplicates are taken
JITTER_MS = 2_000         # in-file disorder, far below any watermark delay


@dataclass
class Stream:
    n_events: int
    ms: np.ndarray            # event time per source event (epoch ms, UTC), after lateness
    slot_of_event: np.ndarray
    late: np.ndarray          # bool per source event: was pushed behind its file's window
    src: np.ndarray           # per landed line (arrival order): index of its source event
    copy: np.ndarray          # per landed line: True when the line is an injected duplicate
    slot: np.ndarray          # per landed line: file slot
    bounds: np.ndarray        # lines of slot g are [bounds[g], bounds[g+1])
    n_slots: int

    @property
    def n_lines(self) -> int:
        return len(self.src)

    def positions(self) -> np.ndarray:
        """0-based position of each landed line inside its file."""
        return np.arange(self.n_lines) - self.bounds[self.slot]


def build_stream(rng: np.random.Generator, *, lines: int, slots: int, start_ms: int, span_ms: int,
                 duplicate_rate: float, late_rate: float, late_minutes: float,
                 same_file_share: float = 0.5, next_file_share: float = 0.3,
                 edge_delay_ms: int = 180_000) -> Stream:
    n_dup = int(round(lines * duplicate_rate / (1.0 + duplicate_rate))) if duplicate_rate > 0 else 0
    n = lines - n_dup
    if n < slots:
        raise ValueError(f"{lines} rows cannot fill {slots} files; ask for more rows or fewer files")

    # Equal-sized slots; times uniform within each slot's window, in order, then jittered.
    slot_of_event = (np.arange(n, dtype=np.int64) * slots) // n
    win = span_ms / slots
    pos = np.sort(slot_of_event + rng.random(n))          # stays inside each event's slot
    ms = (start_ms + pos * win + rng.uniform(-JITTER_MS, JITTER_MS, n)).astype(np.int64)

    # Late events: well behind the start of their own window (never in slot 0, which has no watermark).
    late = np.zeros(n, dtype=bool)
    cand = np.flatnonzero(slot_of_event > 0)
    chosen = pick(rng, cand, late_rate, of=n)
    late[chosen] = True
    win_start = (start_ms + slot_of_event[chosen] * win).astype(np.int64)
    ms[chosen] = win_start - (late_minutes * 60_000 * rng.uniform(1.0, 2.0, len(chosen))).astype(np.int64)
    _edge_cases(rng, ms, late, slot_of_event, chosen, slots, edge_delay_ms)

    # Events keep their (time) order inside a slot; each copy is inserted at a random place of its slot.
    dup_src, dup_slot = _duplicates(rng, n_dup, ms, late, slot_of_event, slots, start_ms, win,
                                    same_file_share, next_file_share)
    first = np.searchsorted(slot_of_event, np.arange(slots + 1))
    count = np.diff(first)
    at = first[dup_slot] + (rng.random(len(dup_src)) * (count[dup_slot] + 1)).astype(np.int64)
    order = np.lexsort((dup_slot, at))                    # at a slot boundary, the earlier slot first
    at, dup_src, dup_slot = at[order], dup_src[order], dup_slot[order]
    src = np.insert(np.arange(n), at, dup_src)
    slot = np.insert(slot_of_event, at, dup_slot)
    copy = np.insert(np.zeros(n, dtype=bool), at, True)
    bounds = np.searchsorted(slot, np.arange(slots + 1))
    return Stream(n, ms, slot_of_event, late, src, copy, slot, bounds, slots)


def _edge_cases(rng, ms, late, slot_of_event, chosen, slots, delay_ms) -> None:
    """Move a fifth of the late events to the edge of a `delay_ms` watermark: exactly on it,
    a millisecond or a second either side, or within ten seconds. wm(f) is taken as the
    max time of the on-time events of earlier files - delay (exact when that event is valid)."""
    if len(chosen) == 0:
        return
    edge = rng.permutation(chosen)[: max(1, len(chosen) // 5)]
    top = np.full(slots, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(top, slot_of_event[~late], ms[~late])
    high = np.maximum.accumulate(top)
    offsets = np.array([0, -1, 1, -1000, 1000], dtype=np.int64)
    off = np.where(rng.random(len(edge)) < 0.5, offsets[rng.integers(0, len(offsets), len(edge))],
                   rng.integers(-10_000, 10_000, len(edge)))
    base = high[slot_of_event[edge] - 1]
    known = base > np.iinfo(np.int64).min          # an earlier file with an on-time event
    ms[edge[known]] = base[known] - delay_ms + off[known]


def _duplicates(rng, n_dup, ms, late, slot_of_event, slots, start_ms, win, same_share, next_share):
    if n_dup == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    n = len(ms)
    n_next = exact_count(n_dup, next_share) if slots > 1 else 0
    n_same = min(n_dup - n_next, exact_count(n_dup, same_share))
    n_later = n_dup - n_next - n_same

    same = rng.integers(0, n, n_same)

    # Next-file copies come from the last minute of their file so that they are on time there.
    win_end = start_ms + (slot_of_event + 1) * win
    tail = np.flatnonzero((ms >= win_end - TAIL_MS) & ~late & (slot_of_event < slots - 1))
    if len(tail) == 0:
        tail = np.flatnonzero(slot_of_event < slots - 1) if slots > 1 else np.arange(n)
    nxt = tail[rng.integers(0, len(tail), n_next)] if n_next else np.zeros(0, np.int64)

    later = rng.integers(0, n, n_later)
    lo = slot_of_event[later] + 1
    later_slot = np.where(lo < slots, lo + (rng.random(n_later) * np.maximum(slots - lo, 1)).astype(np.int64),
                          slot_of_event[later])
    later_slot = np.minimum(later_slot, slots - 1)

    src = np.concatenate([same, nxt, later]).astype(np.int64)
    slot = np.concatenate([slot_of_event[same], np.minimum(slot_of_event[nxt] + 1, slots - 1), later_slot])
    return src, slot.astype(np.int64)


def stream_for(seed: int, pipeline: str, *, rows: int, slots: int, start_ms: int, knobs: dict) -> Stream:
    """The event stream of a pipeline's data set, shaped by the user's knobs (one place for all pipelines)."""
    return build_stream(component_rng(seed, pipeline, "stream"), lines=rows, slots=slots, start_ms=start_ms,
                        span_ms=int(knobs["days"] * 86_400_000), duplicate_rate=knobs["duplicate_rate"],
                        late_rate=knobs["late_rate"], late_minutes=knobs["late_minutes"])
