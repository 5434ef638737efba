"""activity_logs truth: bronze / quarantine split, deduplicated silver with regions, gold.

Rules are evaluated on the field values a CSV reader sees (header excluded, fields mapped
by position, missing trailing fields NULL, extra ones dropped, empty field NULL).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .activity_data import ACTIONS, COLUMNS, Landed, fields
from .geoip import REGIONS
from .semantics import dates, first_survivors, rule_lists, ts_us

RULES = ("log_id_present", "user_id_present", "valid_action", "valid_event_time", "valid_ip",
         "valid_watch_time", "well_formed_record")     # sorted
ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$"
OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"^{OCTET}\.{OCTET}\.{OCTET}\.{OCTET}$"
MAX_WATCH = 86_400


def parsed_values(d: Landed) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Per landed line, each column as read: NULL when empty or beyond the record's fields."""
    raw, nfields = fields(d, 0, d.stream.n_lines)
    out = {}
    for j, c in enumerate(COLUMNS):
        v = raw[c]
        missing = pa.array(nfields <= j)
        out[c] = pc.if_else(pc.or_(missing, pc.equal(v, "")), pa.scalar(None, pa.string()), v)
    return out, nfields


def _present(v: pa.Array) -> np.ndarray:
    return _np(pc.not_equal(pc.utf8_trim_whitespace(v), ""))


def _np(mask: pa.Array) -> np.ndarray:
    return mask.fill_null(False).to_numpy(zero_copy_only=False)


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
    values, nfields = parsed_values(d)
    passes = rule_passes(values, nfields)
    valid = passes.all(axis=1)
    vrows = np.flatnonzero(valid)
    qrows = np.flatnonzero(~valid)
    names = np.array([d.file_name(g) for g in range(st.n_slots)], dtype=object)

    take = pa.array(vrows)
    bronze = pa.table({
        "log_id": values["log_id"].take(take),
        "user_id": values["user_id"].take(take),
        "event_time": ts_us(d.line_ms[vrows]),
        "ip_address": values["ip_address"].take(take),
        "content_id": values["content_id"].take(take),
        "action": values["action"].take(take),
        "watch_time_seconds": pa.array(d.line_watch[vrows], pa.int64()),
    })
    quarantine = pa.table({
        "source_file": pa.array(names[st.slot[qrows]], pa.string()),
        "position": pa.array(st.positions()[qrows], pa.int64()),
        "failed_rules": rule_lists(~passes[qrows], RULES),
    })

    arrival = np.arange(st.n_lines)
    keep = first_survivors([d.log_words(st.src)], [d.line_ms, arrival], vrows)
    net = d.geo.lookup(ev.addr[st.src[keep]])
    region = np.array(REGIONS + ["Unknown"], dtype=object)[np.where(net < 0, len(REGIONS), d.geo.region[net])]
    kt = pa.array(keep)
    silver = pa.table({
        "log_id": values["log_id"].take(kt),
        "user_id": values["user_id"].take(kt),
        "event_time": ts_us(d.line_ms[keep]),
        "ip_address": values["ip_address"].take(kt),
        "content_id": values["content_id"].take(kt),
        "action": values["action"].take(kt),
        "watch_time_seconds": pa.array(d.line_watch[keep], pa.int64()),
        "region": pa.array(region, pa.string()),
        "event_date": dates(d.line_ms[keep]),
    })
    tables = {"bronze_activity_logs": bronze, "bronze_activity_logs_quarantine": quarantine,
              "silver_activity_logs": silver, **_gold(silver)}
    metrics = {"lines": int(st.n_lines), "bronze_rows": len(vrows), "quarantined": len(qrows),
               "silver_rows": len(keep), "duplicates_dropped": int(len(vrows) - len(keep)),
               "unknown_region_events": int((net < 0).sum()),
               "failed_rule_counts": {r: int((~passes[:, i]).sum()) for i, r in enumerate(RULES)}}
    return tables, metrics


def _gold(silver: pa.Table) -> dict[str, pa.Table]:
    s = silver.select(["user_id", "event_time", "watch_time_seconds", "region", "event_date"]).to_pandas()
    users = s.groupby("user_id", as_index=False).agg(
        total_watch_time_seconds=("watch_time_seconds", "sum"), events=("watch_time_seconds", "size"),
        first_event_time=("event_time", "min"), last_event_time=("event_time", "max")).sort_values("user_id")
    daily = s.groupby(["event_date", "region"], as_index=False).agg(
        total_watch_time_seconds=("watch_time_seconds", "sum"), active_users=("user_id", "nunique")
    ).sort_values(["event_date", "region"])
    ts = pa.timestamp("us", tz="UTC")
    return {
        "gold_user_watch_time": pa.Table.from_pandas(users, preserve_index=False).cast(pa.schema([
            ("user_id", pa.string()), ("total_watch_time_seconds", pa.int64()), ("events", pa.int64()),
            ("first_event_time", ts), ("last_event_time", ts)])),
        "gold_region_daily_watch_time": pa.Table.from_pandas(daily, preserve_index=False).cast(pa.schema([
            ("event_date", pa.date32()), ("region", pa.string()), ("total_watch_time_seconds", pa.int64()),
            ("active_users", pa.int64())])),
    }
