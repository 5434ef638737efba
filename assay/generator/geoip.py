"""A geo-IP reference table (non-overlapping IPv4 CIDR networks -> region) and addresses for it.

Addresses are mostly inside some network, deliberately including networks' first and last
addresses (the classic off-by-one of range joins), and some fall in no network at all.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import text as T
from .rand import exact_count

REGIONS = ["us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-northeast", "sa-east", "af-south"]
PREFIXES = [8, 12, 14, 16, 16, 18, 20, 22, 24, 24, 24, 24]
LOW, HIGH = 1 << 24, 224 << 24          # 1.0.0.0 .. 223.255.255.255 (unicast)
INSIDE, FIRST, LAST, OUTSIDE = 0, 1, 2, 3


@dataclass
class GeoIP:
    start: np.ndarray      # uint32-valued int64, in generation (file) order
    prefix: np.ndarray
    region: np.ndarray     # index into REGIONS

    @property
    def end(self) -> np.ndarray:
        return self.start + (np.int64(1) << (32 - self.prefix)) - 1

    def lookup(self, addr: np.ndarray) -> np.ndarray:
        """Index of the network containing each address, -1 when none."""
        order = np.argsort(self.start)
        starts, ends = self.start[order], self.end[order]
        i = np.searchsorted(starts, addr, side="right") - 1
        hit = (i >= 0) & (addr <= ends[np.maximum(i, 0)])
        return np.where(hit, order[np.maximum(i, 0)], -1)

    def csv(self) -> bytes:
        rows = [f"{dotted_one(s)}/{p},{REGIONS[r]}" for s, p, r in zip(self.start, self.prefix, self.region)]
        return ("network,region\n" + "\n".join(rows) + "\n").encode()


def dotted_one(addr: int) -> str:
    return ".".join(str((int(addr) >> sh) & 255) for sh in (24, 16, 8, 0))


_OCTETS = T.table([str(i) for i in range(256)])


def dotted(addr: np.ndarray) -> pa.Array:
    a = np.asarray(addr, dtype=np.int64)
    return T.join(*[T.pick(_OCTETS, (a >> sh) & 255) for sh in (24, 16, 8, 0)], sep=".")


def make_networks(rng: np.random.Generator, count: int) -> GeoIP:
    starts, prefixes = [10 << 24], [8]          # 10.0.0.0/8 is always there
    while len(starts) < count:
        p = int(rng.choice(PREFIXES))
        base = (int(rng.integers(LOW, HIGH)) >> (32 - p)) << (32 - p)
        end = base + (1 << (32 - p)) - 1
        if all(end < s or base > s + (1 << (32 - q)) - 1 for s, q in zip(starts, prefixes)):
            starts.append(base)
            prefixes.append(p)
    region = rng.integers(0, len(REGIONS), count)
    return GeoIP(np.array(starts, dtype=np.int64), np.array(prefixes, dtype=np.int64), region)


def sample_addresses(rng: np.random.Generator, geo: GeoIP, n: int,
                     edge_rate: float = 0.04, outside_rate: float = 0.12) -> tuple[np.ndarray, np.ndarray]:
    """Addresses and their kind (INSIDE / FIRST / LAST / OUTSIDE)."""
    kind = np.full(n, INSIDE, dtype=np.int8)
    perm = rng.permutation(n)
    k_edge, k_out = exact_count(n, edge_rate), exact_count(n, outside_rate)
    kind[perm[:k_edge]] = FIRST
    kind[perm[k_edge:2 * k_edge]] = LAST
    kind[perm[2 * k_edge:2 * k_edge + k_out]] = OUTSIDE

    net = rng.integers(0, len(geo.start), n)
    size = np.int64(1) << (32 - geo.prefix[net])
    addr = geo.start[net] + (rng.random(n) * size).astype(np.int64)
    addr = np.where(kind == FIRST, geo.start[net], addr)
    addr = np.where(kind == LAST, geo.end[net], addr)
    out = np.flatnonzero(kind == OUTSIDE)
    addr[out] = _outside(rng, geo, len(out))
    return addr, kind


def _outside(rng: np.random.Generator, geo: GeoIP, k: int) -> np.ndarray:
    got = np.zeros(0, dtype=np.int64)
    while len(got) < k:
        cand = rng.integers(LOW, HIGH, 2 * k + 16)
        got = np.concatenate([got, cand[geo.lookup(cand) < 0]])
    return got[:k]
