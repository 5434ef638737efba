"""Vectorised text building: fixed-width fields as uint8 matrices, the rest as Arrow strings.

A file's content is the data buffer of one Arrow string array whose elements are whole
lines, so nothing is formatted or written row by row in Python.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Two ASCII digits / hex digits per value, as little-endian uint16, for table look-ups.
_DIG2 = np.array([(48 + i // 10) | ((48 + i % 10) << 8) for i in range(100)], dtype=np.uint16)
_HEX = b"0123456789abcdef"
_HEX2 = np.array([_HEX[i >> 4] | (_HEX[i & 15] << 8) for i in range(256)], dtype=np.uint16)
# 16-bit value -> 4 hex digits (one uint32), and second of day -> "HH:MM:SS" (one uint64).
_HEX4 = np.frombuffer(b"".join(b"%04x" % i for i in range(65536)), dtype=np.uint32)
_TOD = np.frombuffer(b"".join(b"%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)),
                     dtype=np.uint64)
_MILLI = np.frombuffer(b"".join(b".%03d" % i for i in range(1000)), dtype=np.uint32)
MS_PER_DAY = 86_400_000
CHUNK = 131_072    # lines rendered at a time: big enough for vector ops, small enough to stay cached


def fixed(mat: np.ndarray) -> pa.Array:
    """A string array whose i-th element is row i of a (n, width) uint8 matrix."""
    n, w = mat.shape
    big = n * w >= 2**31
    off = np.arange(n + 1, dtype=np.int64 if big else np.int32) * w
    typ = pa.large_string() if big else pa.string()
    return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(off), pa.py_buffer(np.ascontiguousarray(mat))])


def literal(s: str, n: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(s.encode(), dtype=np.uint8), (n, len(s)))


def put_digits2(mat: np.ndarray, col: int, val: np.ndarray) -> None:
    mat[:, col:col + 2] = _DIG2[val].view(np.uint8).reshape(-1, 2)


def _hex16(words: np.ndarray) -> np.ndarray:
    """(n, 16) uint8: the 8 bytes of each uint64 word, most significant first, as hex digits."""
    b = words.astype(">u8").view(">u2").reshape(-1, 4)
    return _HEX4[b].view(np.uint8).reshape(-1, 16)


def hex_bytes(mat: np.ndarray, col: int, words: np.ndarray, nbytes: int) -> None:
    """Write the nbytes most significant bytes of uint64 words as 2*nbytes lowercase hex digits."""
    mat[:, col:col + 2 * nbytes] = _hex16(words)[:, :2 * nbytes]


def uuid_words(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stamp version 4 / variant bits so the ids look like real random UUIDs."""
    hi = (hi & np.uint64(0xFFFFFFFFFFFF0FFF)) | np.uint64(0x4000)
    lo = (lo & np.uint64(0x3FFFFFFFFFFFFFFF)) | np.uint64(0x8000000000000000)
    return hi, lo


def put_uuid(mat: np.ndarray, col: int, hi: np.ndarray, lo: np.ndarray) -> None:
    """36 characters 8-4-4-4-12 from two (already stamped) uint64 words."""
    h, l = _hex16(hi), _hex16(lo)
    mat[:, col:col + 8] = h[:, 0:8]
    mat[:, col + 9:col + 13] = h[:, 8:12]
    mat[:, col + 14:col + 18] = h[:, 12:16]
    mat[:, col + 19:col + 23] = l[:, 0:4]
    mat[:, col + 24:col + 36] = l[:, 4:16]
    for dash in (8, 13, 18, 23):
        mat[:, col + dash] = ord("-")


def uuid_strings(hi: np.ndarray, lo: np.ndarray) -> pa.Array:
    m = np.empty((len(hi), 36), dtype=np.uint8)
    put_uuid(m, 0, hi, lo)
    return fixed(m)


def _date_prefixes(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """'YYYY-MM-DD' for each day of the (short) range present, plus each row's index into them."""
    lo = int(days.min()) if len(days) else 0
    hi = int(days.max()) if len(days) else 0
    text = np.datetime_as_string(np.arange(lo, hi + 1).astype("datetime64[D]")).astype("S10")
    return np.frombuffer(text.tobytes(), dtype=np.uint8).reshape(-1, 10), days - lo


def put_iso_ms(mat: np.ndarray, col: int, ms: np.ndarray, sep: str = "T", zulu: bool = True, millis: bool = True) -> None:
    """'2026-11-01T10:15:30.123Z' (24 chars) from epoch milliseconds, UTC.

    Variants (other separator, no millis, no Z) serve the formats of the clickstream source.
    """
    days = ms // MS_PER_DAY
    rem = ms - days * MS_PER_DAY
    pref, inv = _date_prefixes(days)
    mat[:, col:col + 10] = pref[inv]
    mat[:, col + 10] = ord(sep)
    sec = rem // 1000
    mat[:, col + 11:col + 19] = _TOD[sec].view(np.uint8).reshape(-1, 8)
    c = col + 19
    if millis:
        mat[:, c:c + 4] = _MILLI[rem - sec * 1000].view(np.uint8).reshape(-1, 4)
        c += 4
    if zulu:
        mat[:, c] = ord("Z")


def iso_width(millis: bool = True, zulu: bool = True) -> int:
    return 19 + (4 if millis else 0) + (1 if zulu else 0)


def iso_strings(ms: np.ndarray, **kw) -> pa.Array:
    m = np.empty((len(ms), iso_width(kw.get("millis", True), kw.get("zulu", True))), dtype=np.uint8)
    put_iso_ms(m, 0, ms, **kw)
    return fixed(m)


def int_strings(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())


def cents_strings(cents: np.ndarray) -> pa.Array:
    """'123.45' from integer cents (exact; no float formatting involved)."""
    cents = np.asarray(cents, dtype=np.int64)
    cc = np.empty((len(cents), 3), dtype=np.uint8)
    cc[:, 0] = ord(".")
    put_digits2(cc, 1, cents % 100)
    return join(int_strings(cents // 100), fixed(cc))


def table(values: list[str | None]) -> pa.Array:
    """A small dictionary of pre-rendered snippets, picked per row with take()."""
    return pa.array(values, type=pa.string())


def pick(snippets: pa.Array, idx: np.ndarray) -> pa.Array:
    return snippets.take(pa.array(np.asarray(idx, dtype=np.int64)))


def join(*pieces, sep: str = "") -> pa.Array:
    return pc.binary_join_element_wise(*pieces, sep)


def patch(base: pa.Array, rows: np.ndarray, values: pa.Array) -> pa.Array:
    """base with base[rows[i]] replaced by values[i] (rows sorted ascending)."""
    if len(rows) == 0:
        return base
    mask = np.zeros(len(base), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(base, pa.array(mask), values.cast(base.type))


def fill(base: pa.Array, mask: np.ndarray, value: str) -> pa.Array:
    """base with the elements where mask is True replaced by one constant string."""
    k = int(np.count_nonzero(mask))
    if k == 0:
        return base
    return pc.replace_with_mask(base, pa.array(mask), pa.repeat(pa.scalar(value, base.type), k))


def content(lines: pa.Array) -> memoryview:
    """The bytes of all elements back to back (the file content when elements are lines)."""
    if len(lines) == 0:
        return memoryview(b"")
    if lines.null_count:
        raise ValueError("a line is null")
    wide = pa.types.is_large_string(lines.type)
    off = np.frombuffer(lines.buffers()[1], dtype=np.int64 if wide else np.int32)
    start, stop = int(off[lines.offset]), int(off[lines.offset + len(lines)])
    return memoryview(lines.buffers()[2])[start:stop]


def chunked(render, a: int, b: int, step: int = CHUNK):
    """File content for lines a..b, rendered `step` lines at a time (render(lo, hi) -> lines)."""
    for lo in range(a, b, step):
        yield content(render(lo, min(b, lo + step)))
