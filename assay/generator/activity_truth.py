"""activity_logs truth: bronze / quarantine split, deduplicated silver with regions, gold.

Rules are evaluated on the field values a CSV reader sees (header excluded, fields mapped
by position, missing trailing fields NULL, extra ones dropped, empty field NULL). Lines
are parsed in chunks so that memory stays bounded at gigabyte sizes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import text as T
from .activity_data import ACTIONS, COLUMNS, Landed, fields, user_ids
from .geoip import REGIONS
from .semantics import dates, first_survivors, rule_lists, ts_us

RULES = ("log_id_present", "user_id_present", "valid_action", "valid_event_time", "valid_ip",
         "valid_watch_time", "well_formed_record")     # sorted
ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$"
OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"^{OCTET}\.{OCTET}\.{OCTET}\.{OCTET}$"
MAX_WATCH = 86_400


def parsed_values(d: Landed, lines) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Per landed line, each column as read: NULL when empty or beyond the record's fields."""
    raw, nfields = fields(d, lines)
    out = {}
    for j, c in enumerate(COLUMNS):
        v = raw[c]
        missing = pa.array(nfields <= j)
        out[c] = pc.if_else(pc.or_(missing, pc.equal(v, "")), pa.scalar(None, pa.string()), v)
    return out, nfields


def _np(mask: pa.Array) -> np.ndarray:
    return mask.fill_null(False).to_numpy(zero_copy_only=False)


def _present(v: pa.Array) -> np.ndarray:
    return _np(pc.not_equal(pc.utf8_trim_whitespace(v), ""))


def rule_passes(v: dict[str, pa.Array], nfields: np.ndarray) -> np.ndarray:
    """(lines x RULES) booleans, True where the rule holds."""
    w = v["watch_time_seconds"]
    digits = _np(pc.match_substring_regex(w, r"^[0-9]+$"))
    short = _np(pc.less_equal(pc.utf8_length(w), 9))       # longer digit strings are out of range anyway
    value = np.zeros(len(w), dtype=np.int64)
    ok = digits & short
    value[ok] = pc.cast(w.filter(pa.array(ok)), pa.int64()).to_numpy()
    return np.stack([
        _present(v["log_id"]),
        _present(v["user_id"]),
        _np(pc.is_in(v["action"], pa.array(ACTIONS))),
        _np(pc.match_substring_regex(v["event_time"], ISO)),
        _np(pc.match_substring_regex(v["ip_address"], IPV4)),
        ok & (value <= MAX_WATCH),
        nfields == len(COLUMNS),
    ], axis=1)


def compute(d: Landed) -> tuple[dict[str, pa.Table], dict]:
    st, ev = d.stream, d.events
    passes = np.empty((st.n_lines, len(RULES)), dtype=bool)
    for lo in range(0, st.n_lines, T.CHUNK):
        hi = min(st.n_lines, lo + T.CHUNK)
        passes[lo:hi] = rule_passes(*parsed_values(d, slice(lo, hi)))
    valid = passes.all(axis=1)
    vrows, qrows = np.flatnonzero(valid), np.flatnonzero(~valid)
    names = np.array([d.file_name(g) for g in range(st.n_slots)], dtype=object)

    bronze = _rows(d, vrows)
    quarantine = pa.table({
        "source_file": pa.array(names[st.slot[qrows]], pa.string()),
        "log_id": _quarantined_log_ids(d, qrows),
        "failed_rules": rule_lists(~passes[qrows], RULES),
    })

    # Ties on (event time, file) are exact copies (conflicting re-sends differ in event time).
    keep = first_survivors([d.log_words(st.src)], [d.line_ms, st.slot], vrows)
    net = d.geo.lookup(ev.addr[st.src[keep]])
    region = np.where(net < 0, len(REGIONS), d.geo.region[np.maximum(net, 0)])
    silver = _rows(d, keep).append_column("region", T.pick(T.table(REGIONS + ["Unknown"]), region)) \
                           .append_column("event_date", dates(d.line_ms[keep]))
    tables = {"bronze_activity_logs": bronze, "bronze_activity_logs_quarantine": quarantine,
              "silver_activity_logs": silver, **_gold(d, keep, region)}
    metrics = {"lines": int(st.n_lines), "bronze_rows": len(vrows), "quarantined": len(qrows),
               "silver_rows": len(keep), "duplicates_dropped": int(len(vrows) - len(keep)),
               "unknown_region_events": int((net < 0).sum()),
               "failed_rule_counts": {r: int((~passes[:, i]).sum()) for i, r in enumerate(RULES)}}
    return tables, metrics


def _quarantined_log_ids(d: Landed, rows: np.ndarray) -> pa.Array:
    """log_id as a CSV reader sees it (NULL when empty or missing), in chunks."""
    parts = [parsed_values(d, rows[lo:lo + T.CHUNK])[0]["log_id"] for lo in range(0, len(rows), T.CHUNK)]
    return pa.concat_arrays(parts) if parts else pa.array([], pa.string())


def _rows(d: Landed, rows: np.ndarray) -> pa.Table:
    """The typed columns of valid lines (every field is present and passed its rule), in chunks."""
    parts = []
    for lo in range(0, max(len(rows), 1), T.CHUNK):
        r = rows[lo:lo + T.CHUNK]
        v, _ = parsed_values(d, r)
        parts.append(pa.table({
            "log_id": v["log_id"], "user_id": v["user_id"], "event_time": ts_us(d.line_ms[r]),
            "ip_address": v["ip_address"], "content_id": v["content_id"], "action": v["action"],
            "watch_time_seconds": pa.array(d.line_watch[r], pa.int64()),
        }))
    return pa.concat_tables(parts)


def _gold(d: Landed, keep: np.ndarray, region: np.ndarray) -> dict[str, pa.Table]:
    """Aggregates on integer codes (user index, region index, day); names looked up at the end.
    A valid line's user_id is exactly the rendering of its user index."""
    f = pd.DataFrame({"user": d.events.user[d.stream.src[keep]], "ms": d.line_ms[keep],
                      "watch": d.line_watch[keep], "region": region, "day": d.line_ms[keep] // 86_400_000})
    users = f.groupby("user", as_index=False).agg(total=("watch", "sum"), events=("watch", "size"),
                                                  first=("ms", "min"), last=("ms", "max"))
    daily = f.groupby(["day", "region"], as_index=False).agg(total=("watch", "sum"), active=("user", "nunique"))
    region_names = T.table(REGIONS + ["Unknown"])
    return {
        "gold_user_watch_time": pa.table({
            "user_id": user_ids(users["user"].to_numpy()),
            "total_watch_time_seconds": pa.array(users["total"].to_numpy(), pa.int64()),
            "events": pa.array(users["events"].to_numpy(), pa.int64()),
            "first_event_time": ts_us(users["first"].to_numpy()),
            "last_event_time": ts_us(users["last"].to_numpy()),
        }),
        "gold_region_daily_watch_time": pa.table({
            "event_date": pa.array(daily["day"].to_numpy().astype(np.int32), pa.date32()),
            "region": T.pick(region_names, daily["region"].to_numpy()),
            "total_watch_time_seconds": pa.array(daily["total"].to_numpy(), pa.int64()),
            "active_users": pa.array(daily["active"].to_numpy(), pa.int64()),
        }),
    }
