"""customers_stream truth: every table of the pipeline, computed from the generator's own
knowledge of each message (never by parsing the rendered text).

- `bronze_customers`: every message's value, as sent (a multiset: repeats count).
- `silver_customers`: per customer_id, the well-formed version with the greatest updated_at,
  after the contract's defaults (gender `Unknown`; senior_citizen, partner, dependents,
  phone_service false; internet_service `No`; contract `Month-to-month`; tenure 0; a missing
  total_charges = monthly_charges × tenure), money as decimal(10,2), partition columns
  year/month/day/hour of updated_at (UTC). Well-formed: a JSON object with a customer_id and an
  updated_at that parses. The newest version replaces the row whole: a field it lacks takes the
  default, never an older version's value.
- `silver_customers_quarantine`: one row per malformed message (repeats count): the customer_id
  as read (NULL when the value is not a JSON object) and the rules it broke, sorted. A value that
  is not a JSON object breaks all three rules (it has no customer_id and no updated_at either).
- `customer_features` and `contract_summary`: the gold tables, from silver. Every rounding is
  half-up to 2 places on exact integers (cents, months), as the contract asks.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .customers_data import BAD_TIME, BROKEN, CHOICES, ARRAY, NULL_ID, OK, Landed, customer_ids, customer_strings, render_lines
from .semantics import ts_us

RULE_OBJECT, RULE_ID, RULE_TIME = "is_json_object", "has_customer_id", "valid_updated_at"
MONEY = pa.decimal128(10, 2)
SUM_MONEY = pa.decimal128(20, 2)
BANDS = [(12, "0-12"), (24, "13-24"), (48, "25-48")]


def half_up(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """round(numerator / denominator) with halves away from zero, on integers (denominator > 0)."""
    numerator = np.asarray(numerator, dtype=np.int64)
    denominator = np.asarray(denominator, dtype=np.int64)
    magnitude = (2 * np.abs(numerator) + denominator) // (2 * denominator)
    return np.sign(numerator) * magnitude


def _cents_to_decimal(cents: pa.Array, typ: pa.DataType) -> pa.Array:
    """Exact decimals (scale 2) from integer cents: the cents are the decimal's unscaled value."""
    values = np.asarray(cents.to_numpy(zero_copy_only=False), dtype=np.int64)
    words = np.empty((len(values), 2), dtype=np.int64)          # little-endian 128-bit integers
    words[:, 0] = values
    words[:, 1] = np.where(values < 0, -1, 0)
    return pa.Array.from_buffers(typ, len(values), [None, pa.py_buffer(words.tobytes())])


def compute(d: Landed) -> tuple[dict[str, pa.Table], dict]:
    st = d.stream
    landed_events = np.unique(st.src)
    ok = landed_events[d.defect[landed_events] == OK]
    order = ok[np.lexsort((-st.ms[ok], d.customer[ok]))]          # per customer, newest first
    first = np.ones(len(order), dtype=bool)
    first[1:] = d.customer[order][1:] != d.customer[order][:-1]
    e = order[first]
    cust = d.customer[e]
    names = customer_strings(d)
    take = pa.array(cust)

    def present(f: str) -> np.ndarray:
        return ~d.missing[f][e] if f in d.missing else np.ones(len(e), dtype=bool)

    def choice(f: str, default: str) -> pa.Array:
        values = np.array(CHOICES[f], dtype=object)[d.cat[f][e]]
        return pa.array(np.where(present(f), values, default), pa.string())

    def yes(f: str) -> pa.Array:
        return pa.array(present(f) & (d.cat[f][e] == CHOICES[f].index("Yes")), pa.bool_())

    tenure = np.where(present("tenure"), d.tenure[e], 0)
    monthly = d.monthly_cents[e]
    total = np.where(d.total_cents[e] < 0, monthly * tenure, d.total_cents[e])
    updated = ts_us(st.ms[e])
    dt = st.ms[e].astype("datetime64[ms]")
    silver = pa.table({
        "customer_id": customer_ids(cust).cast(pa.string()),
        "gender": choice("gender", "Unknown"),
        "senior_citizen": pa.array(present("senior_citizen") & (d.senior[e] == 1), pa.bool_()),
        "partner": yes("partner"),
        "dependents": yes("dependents"),
        "tenure": pa.array(tenure, pa.int32()),
        "phone_service": yes("phone_service"),
        "internet_service": choice("internet_service", "No"),
        "contract": choice("contract", "Month-to-month"),
        "monthly_charges": _cents_to_decimal(pa.array(monthly), MONEY),
        "total_charges": _cents_to_decimal(pa.array(total), MONEY),
        "updated_at": updated,
        "first_name": names["first_name"].take(take),
        "last_name": names["last_name"].take(take),
        "email": pa.array(names["email"].take(take).to_numpy(zero_copy_only=False), pa.string(),
                          mask=d.missing["email"][e]),
        "year": pa.array(dt.astype("datetime64[Y]").astype(np.int64) + 1970, pa.int32()),
        "month": pa.array(dt.astype("datetime64[M]").astype(np.int64) % 12 + 1, pa.int32()),
        "day": pa.array((dt.astype("datetime64[D]") - dt.astype("datetime64[M]")).astype(np.int64) + 1, pa.int32()),
        "hour": pa.array((dt.astype("datetime64[h]") - dt.astype("datetime64[D]")).astype(np.int64), pa.int32()),
    }).sort_by("customer_id")

    features = customer_features(silver)
    summary = contract_summary(silver)
    quarantine = _quarantine(d)
    bronze = pa.table({"value": _values(d)})
    good_lines = int((d.defect[st.src] == OK).sum())
    metrics = {"messages": int(st.n_lines), "well_formed_messages": good_lines,
               "malformed_messages": int(st.n_lines - good_lines), "customers": int(silver.num_rows),
               "quarantined_messages": int(quarantine.num_rows)}
    return {"bronze_customers": bronze, "silver_customers": silver, "silver_customers_quarantine": quarantine,
            "customer_features": features, "contract_summary": summary}, metrics


def _cents(decimals: pa.ChunkedArray) -> np.ndarray:
    """The unscaled values (cents) of a decimal(p, 2) column without nulls."""
    array = decimals.combine_chunks() if isinstance(decimals, pa.ChunkedArray) else decimals
    words = np.frombuffer(array.buffers()[1], dtype=np.int64)
    return words[2 * array.offset:2 * (array.offset + len(array)):2].copy()


def customer_features(silver: pa.Table) -> pa.Table:
    tenure = silver.column("tenure").to_numpy()
    total = _cents(silver.column("total_charges"))
    band = np.full(len(tenure), "49+", dtype=object)
    for limit, name in reversed(BANDS):
        band[tenure <= limit] = name
    contract = silver.column("contract")
    return pa.table({
        "customer_id": silver.column("customer_id"),
        "gender": silver.column("gender"),
        "senior_citizen": silver.column("senior_citizen"),
        "partner": silver.column("partner"),
        "dependents": silver.column("dependents"),
        "tenure": silver.column("tenure"),
        "tenure_band": pa.array(band, pa.string()),
        "phone_service": silver.column("phone_service"),
        "internet_service": silver.column("internet_service"),
        "contract": contract,
        "monthly_charges": silver.column("monthly_charges"),
        "total_charges": silver.column("total_charges"),
        "avg_monthly_spend": _cents_to_decimal(pa.array(half_up(total, np.maximum(tenure, 1))), MONEY),
        "is_month_to_month": pc.equal(contract, "Month-to-month"),
        "updated_at": silver.column("updated_at"),
    })


def contract_summary(silver: pa.Table) -> pa.Table:
    tenure = silver.column("tenure").to_numpy().astype(np.int64)
    monthly = _cents(silver.column("monthly_charges"))
    total = _cents(silver.column("total_charges"))
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(silver.column("contract").to_pylist(), silver.column("internet_service").to_pylist())):
        groups.setdefault(key, []).append(i)
    rows = sorted(groups.items())
    n = np.array([len(ix) for _, ix in rows], dtype=np.int64)
    sum_tenure = np.array([tenure[ix].sum() for _, ix in rows], dtype=np.int64)
    sum_monthly = np.array([monthly[ix].sum() for _, ix in rows], dtype=np.int64)
    sum_total = np.array([total[ix].sum() for _, ix in rows], dtype=np.int64)
    return pa.table({
        "contract": pa.array([k[0] for k, _ in rows], pa.string()),
        "internet_service": pa.array([k[1] for k, _ in rows], pa.string()),
        "customers": pa.array(n, pa.int64()),
        "avg_tenure": _cents_to_decimal(pa.array(half_up(sum_tenure * 100, n)), MONEY),
        "avg_monthly_charges": _cents_to_decimal(pa.array(half_up(sum_monthly, n)), MONEY),
        "total_charges_sum": _cents_to_decimal(pa.array(sum_total), SUM_MONEY),
    })


def _quarantine(d: Landed) -> pa.Table:
    st = d.stream
    src = st.src
    defect = d.defect[src]
    bad = np.flatnonzero(defect != OK)
    kinds = defect[bad]
    ids = customer_ids(d.customer[src[bad]]).cast(pa.string()).to_pylist()
    every = sorted([RULE_OBJECT, RULE_ID, RULE_TIME])
    rules, customer = [], []
    for kind, cid in zip(kinds, ids):
        if kind in (BROKEN, ARRAY):
            rules.append(every)
            customer.append(None)
        elif kind == BAD_TIME:
            rules.append([RULE_TIME])
            customer.append(cid)
        elif kind == NULL_ID:
            rules.append([RULE_ID])
            customer.append(None)
    return pa.table({"customer_id": pa.array(customer, pa.string()),
                     "failed_rules": pa.array(rules, pa.list_(pa.string()))})


def _values(d: Landed) -> pa.Array:
    """Every message as the producer sends it (one line, without its newline)."""
    chunks = []
    n = d.stream.n_lines
    for lo in range(0, n, 131_072):
        lines = render_lines(d, lo, min(n, lo + 131_072))
        chunks.append(pc.replace_substring_regex(lines, "\n$", "").cast(pa.large_string()))
    return pa.chunked_array(chunks, pa.large_string()).combine_chunks() if chunks else pa.array([], pa.large_string())
