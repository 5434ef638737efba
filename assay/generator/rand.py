"""Seeded randomness: one independent numpy Generator per (seed, pipeline, component).

Deriving a stream per component (instead of drawing everything from one Generator in
sequence) keeps a dataset stable when another component changes how much it draws.
"""
from __future__ import annotations

import zlib

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def component_rng(seed: int, pipeline: str, component: str) -> np.random.Generator:
    key = [int(seed) & 0xFFFFFFFF, zlib.crc32(pipeline.encode()), zlib.crc32(component.encode())]
    return np.random.default_rng(np.random.SeedSequence(key))


def component_key(seed: int, pipeline: str, component: str) -> np.uint64:
    """A 64-bit salt for hash-derived values (ids that copies of a row must share)."""
    return np.uint64(component_rng(seed, pipeline, component).integers(0, 2**63, dtype=np.int64))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Stateless 64-bit mixer: same input, same output, so a copy of an event re-derives its ids."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hashed(salt: np.uint64, idx: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return splitmix64(idx.astype(np.uint64) ^ salt)


def exact_count(n: int, rate: float) -> int:
    """How many of n items a rate selects: exact, and at least one when the rate is positive,
    so small datasets still contain every awkward case."""
    if n <= 0 or rate <= 0:
        return 0
    return int(min(n, max(1, round(rate * n))))


def pick(rng: np.random.Generator, candidates: np.ndarray | int, rate: float, *, of: int | None = None) -> np.ndarray:
    """Sorted indices of exactly exact_count(of or len(candidates), rate) distinct candidates."""
    cand = np.arange(candidates) if isinstance(candidates, (int, np.integer)) else np.asarray(candidates)
    k = min(len(cand), exact_count(len(cand) if of is None else of, rate))
    return np.sort(rng.choice(cand, size=k, replace=False)) if k else cand[:0]


def zipf_ranks(rng: np.random.Generator, n_items: int, size: int, s: float) -> np.ndarray:
    """Popularity ranks 0..n_items-1 with P(rank k) ~ (k+1)^-s (continuous inverse-CDF
    approximation of Zipf: one pow per draw, no search)."""
    u = rng.random(size)
    top = float(n_items + 1)
    if abs(1.0 - s) < 1e-9:
        x = np.exp(u * np.log(top))
    else:
        x = (u * (top ** (1.0 - s) - 1.0) + 1.0) ** (1.0 / (1.0 - s))
    return np.minimum(x.astype(np.int64) - 1, n_items - 1)


def zipf_sample(rng: np.random.Generator, n_items: int, size: int, s: float) -> np.ndarray:
    """Item indices with Zipf popularity; popular items are a random subset, not the lowest ids."""
    order = rng.permutation(n_items)
    return order[zipf_ranks(rng, n_items, size, s)]
