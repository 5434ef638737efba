"""Zenith reference data: the products table and the customers CSV.

Prices are distinct prime numbers of cents: two products' revenues on a day (count x
price) can only be equal when a count reaches the other's price in cents (>= 1009), so
revenue ranks do not depend on floating-point summation order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import text as T
from . import vocab
from .rand import component_rng, pick

PIPELINE = "zenith"
CUSTOMERS_PATH = "batch/customers/customers.csv"
PRODUCTS_PATH = "batch/products/products.parquet"
N_UNKNOWN_PRODUCTS = 20


@dataclass
class Catalog:
    product_ids: list[str]            # known products first, then unknown ones
    n_known: int
    product_name: list[str]
    category: list[str]
    price_cents: np.ndarray
    user_ids: np.ndarray              # the user universe (int)
    customers: "Customers"


def _primes(lo: int, hi: int) -> np.ndarray:
    sieve = np.ones(hi + 1, dtype=bool)
    sieve[:2] = False
    for p in range(2, int(hi ** 0.5) + 1):
        if sieve[p]:
            sieve[p * p::p] = False
    return np.flatnonzero(sieve[lo:]) + lo


def make_catalog(seed: int, rows: int, knobs: dict) -> Catalog:
    rng = component_rng(seed, PIPELINE, "catalog")
    n_prod = int(np.clip(rows // 2000, 50, 2000))
    ids = rng.choice(800_000, n_prod, replace=False) + 100_000
    unknown = rng.choice(100_000, N_UNKNOWN_PRODUCTS, replace=False) + 900_000
    category = [vocab.CATEGORIES[i] for i in rng.integers(0, len(vocab.CATEGORIES), n_prod)]
    names = [f"{vocab.ADJECTIVES[a]} {vocab.NOUNS[c][b]}"
             for a, b, c in zip(rng.integers(0, len(vocab.ADJECTIVES), n_prod), rng.integers(0, 6, n_prod), category)]
    primes = _primes(1009, 99_991)
    w = 1.0 / primes
    cents = rng.choice(primes, n_prod, replace=False, p=w / w.sum())

    n_users = int(np.clip(rows // 20, 100, 200_000))
    user_ids = rng.choice(900_000, n_users, replace=False) + 100_000
    orphans = pick(rng, n_users, knobs["orphan_user_rate"])
    is_customer = np.ones(n_users, dtype=bool)
    is_customer[orphans] = False
    return Catalog([f"P{i}" for i in ids] + [f"P{i}" for i in unknown], n_prod, names, category, cents,
                   user_ids, _customers(rng, user_ids[is_customer]))


# Customer locations: "" (empty), US "City, ST", or abroad (a code that is not a US state).
LOCATIONS = [""] + [f"{c}, {st}" for c, st in vocab.US_CITIES] + [f"{c}, {st}" for c, st in vocab.FOREIGN_CITIES]
_FOREIGN0 = 1 + len(vocab.US_CITIES)


@dataclass
class Customers:
    customer_id: np.ndarray
    first: np.ndarray        # index into vocab.FIRST_NAMES
    last: np.ndarray
    location: np.ndarray     # index into LOCATIONS
    signup_day: np.ndarray   # days since epoch

    def csv(self) -> list:
        """customers.csv; locations contain a comma, so non-empty ones are quoted."""
        first = T.pick(T.table(vocab.FIRST_NAMES), self.first)
        last = T.pick(T.table(vocab.LAST_NAMES), self.last)
        email = T.join(pc.utf8_lower(first), ".", pc.replace_substring(pc.utf8_lower(last), "'", ""),
                       T.int_strings(self.customer_id), "@example.com")
        loc = T.pick(T.table([f'"{x}"' if x else "" for x in LOCATIONS]), self.location)
        signup = T.iso_strings(self.signup_day * T.MS_PER_DAY)           # date = first 10 chars
        body = T.join(T.int_strings(self.customer_id), first, last, email, loc,
                      pc.utf8_slice_codeunits(signup, 0, 10), sep=",")
        return [b"customer_id,first_name,last_name,email,location,signup_date\n", T.content(T.join(body, "\n"))]


def _customers(rng: np.random.Generator, ids: np.ndarray) -> Customers:
    n = len(ids)
    location = rng.integers(1, _FOREIGN0, n)
    empty = pick(rng, n, 0.03)
    abroad = pick(rng, np.setdiff1d(np.arange(n), empty), 0.03, of=n)
    location[empty] = 0
    location[abroad] = rng.integers(_FOREIGN0, len(LOCATIONS), len(abroad))
    signup = np.datetime64("2022-01-01").astype(np.int64) + rng.integers(0, 1765, n)
    return Customers(ids.astype(np.int64), rng.integers(0, len(vocab.FIRST_NAMES), n),
                     rng.integers(0, len(vocab.LAST_NAMES), n), location, signup)


def products_table(cat: Catalog) -> pa.Table:
    k = cat.n_known
    return pa.table({"product_id": pa.array(cat.product_ids[:k], pa.string()),
                     "product_name": pa.array(cat.product_name, pa.string()),
                     "category": pa.array(cat.category, pa.string()),
                     "price": pa.array(cat.price_cents / 100.0, pa.float64())})


def parquet_bytes(table: pa.Table) -> bytes:
    out = pa.BufferOutputStream()
    pq.write_table(table, out)
    return out.getvalue().to_pybytes()
