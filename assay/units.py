"""Parsing the sizes and durations users write: '256MB', '1.5 GB', '3 minutes', '60s'."""
from __future__ import annotations

import re

_BYTES = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}
_SECONDS = {"ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001, "s": 1, "sec": 1, "second": 1,
            "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600,
            "hours": 3600, "d": 86400, "day": 86400, "days": 86400}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_bytes(value) -> int:
    if isinstance(value, int) and value > 0:
        return value
    match = _QUANTITY.match(str(value))
    if not match or match.group(2).lower() not in _BYTES:
        raise ValueError(f"'{value}' is not a size (write e.g. 256MB, 1GB, 500KiB)")
    size = int(float(match.group(1)) * _BYTES[match.group(2).lower()])
    if size <= 0:
        raise ValueError(f"'{value}' must be a positive size")
    return size


def parse_seconds(value) -> float:
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    text = str(value).strip().lower()
    if text.startswith("interval "):
        text = text[len("interval "):]
    match = _QUANTITY.match(text)
    if not match or match.group(2) not in _SECONDS:
        raise ValueError(f"'{value}' is not a duration (write e.g. 3 minutes, 60s, 1 hour)")
    return float(match.group(1)) * _SECONDS[match.group(2)]
