"""customers_stream truth: `customers_latest`, the newest well-formed message per customer.

Well-formed: a JSON object with a non-null customer_id and an updated_at that parses as an
ISO-8601 timestamp. "Newest" is by updated_at, not by arrival; versions of one customer
never share an updated_at, and repeated messages are identical.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from .customers_data import CHOICES, OK, Landed, customer_ids, customer_strings
from .semantics import ts_us


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

    def choice(f: str) -> pa.Array:
        values = np.array(CHOICES[f], dtype=object)[d.cat[f][e]]
        missing = d.missing[f][e] if f in d.missing else None
        return pa.array(values, pa.string(), mask=missing)

    total = d.total_cents[e]
    latest = pa.table({
        "customer_id": customer_ids(cust).cast(pa.string()),
        "gender": choice("gender"),
        "senior_citizen": pa.array(d.senior[e], pa.int64()),
        "partner": choice("partner"),
        "dependents": choice("dependents"),
        "tenure": pa.array(d.tenure[e], pa.int64()),
        "phone_service": choice("phone_service"),
        "internet_service": choice("internet_service"),
        "contract": choice("contract"),
        "monthly_charges": pa.array(d.monthly_cents[e] / 100.0, pa.float64()),
        "total_charges": pa.array(np.maximum(total, 0) / 100.0, pa.float64(), mask=total < 0),
        "updated_at": ts_us(st.ms[e]),
        "first_name": names["first_name"].take(take),
        "last_name": names["last_name"].take(take),
        "email": pa.array(names["email"].take(take).to_numpy(zero_copy_only=False), pa.string(),
                          mask=d.missing["email"][e]),
    }).sort_by("customer_id")
    good_lines = int((d.defect[st.src] == OK).sum())
    metrics = {"messages": int(st.n_lines), "well_formed_messages": good_lines,
               "malformed_messages": int(st.n_lines - good_lines), "customers": int(latest.num_rows)}
    return {"customers_latest": latest}, metrics
