"""Generator knobs: shared defaults, per-pipeline overrides, validation, sizes like "50MB"."""
from __future__ import annotations

import re

COMMON = {
    "duplicate_rate": 0.02,   # extra copies per event
    "late_rate": 0.01,        # events pushed well behind their file's window
    "late_minutes": 30.0,     # how far behind (x U[1, 2])
    "malformed_rate": 0.005,  # records that break parsing or a rule
    "null_rate": 0.01,        # per nullable field
    "drift_at": 0.5,          # fraction of the stream after which a new field appears
    "skew": 1.1,              # Zipf exponent of product / user / content popularity
    "files_per_drop": 4,
    "days": 3.0,              # event time span covered by all drops together
    "conflict_rate": 0.0,     # share of duplicates re-sent with a different event time
}
PER_PIPELINE = {
    "activity_logs": {"conflict_rate": 0.25, "bom_rate": 0.3, "networks": 60},
    "zenith": {"unknown_product_rate": 0.01, "orphan_user_rate": 0.08},
    "customers_stream": {},
    # The HMAC key's environment variable (the pipeline's) and version: the truth's user_key / email_key.
    "clickstream": {"pii_key_env": "CLICKSTREAM_PII_KEY", "pii_key_version": "v1"},
}
RATES = {"duplicate_rate", "late_rate", "malformed_rate", "null_rate", "drift_at", "conflict_rate",
         "bom_rate", "unknown_product_rate", "orphan_user_rate"}
DEFAULT_ROWS = 100_000


def resolve(pipeline: str, knobs: dict) -> dict:
    allowed = {**COMMON, **PER_PIPELINE[pipeline]}
    unknown = set(knobs) - set(allowed)
    if unknown:
        raise TypeError(f"unknown knob(s) for {pipeline}: {', '.join(sorted(unknown))}")
    out = {**allowed, **knobs}
    for k in RATES & set(out):
        if not 0.0 <= float(out[k]) <= 1.0:
            raise ValueError(f"{k} must be in [0, 1], got {out[k]}")
    out["files_per_drop"] = int(out["files_per_drop"])
    if out["files_per_drop"] < 1:
        raise ValueError("files_per_drop must be >= 1")
    return out


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(size: str | int) -> int:
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(size))
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"not a size: {size!r} (use e.g. 50MB, 1GB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])
