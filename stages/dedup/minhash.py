"""MinHash signatures, LSH band keys and similarity estimates, vectorised over a batch of records.

Signatures are datasketch's (2.x, its default `affine32` scheme): the permutations come from
`datasketch.MinHash(num_perm, seed)`, each 32-bit shingle hash `h` is avalanched once with MurmurHash3's
finaliser and every signature value is `min over h of (a * fmix32(h) + b) mod 2^32`. So a signature equals
`MinHash(num_perm, seed, hashfunc=...)` fed the same 32-bit shingle hashes (a test checks it, and
`LeanMinHash(seed=..., hashvalues=sig, scheme="affine32")` rebuilds one). The difference is speed: all of a
batch's shingles are permuted at once, permutation-major ((num_perm, shingles) uint32 arrays, so that the
per-record minimum is a contiguous `minimum.reduceat`), in chunks that stay in the CPU cache: two vector
operations and a reduction per shingle and permutation, no Python per shingle.

Band and row counts come from datasketch's `MinHashLSH` for the threshold and weights; the probabilities logged
beside them are the integrals datasketch minimises, computed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from datasketch import MinHash, MinHashLSH

from stages.dedup.shingles import mix64

U64 = np.uint64
U32 = np.uint32
EMPTY = U32(0xFFFFFFFF)  # datasketch's value for "no shingle yet"
_CHUNK = 2048  # shingles per block: num_perm x 2048 x 4 bytes = 1 MB at 128 permutations


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's (a, b) permutation parameters (uint32, affine32 scheme) for this length and seed."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch applies it before its affine permutations."""
    h = h.astype(np.uint32)
    h ^= h >> U32(16)
    h *= U32(0x85EBCA6B)
    h ^= h >> U32(13)
    h *= U32(0xC2B2AE35)
    h ^= h >> U32(16)
    return h


def signatures(hv: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, num_perm) uint32 signatures; record r's shingle hashes are hv[offsets[r]:offsets[r + 1]]. A record
    without shingles gets EMPTY everywhere (datasketch's empty MinHash)."""
    n = len(offsets) - 1
    num_perm = len(a)
    out = np.full((num_perm, n), EMPTY, dtype=np.uint32)
    counts = np.diff(offsets)
    recs = np.flatnonzero(counts > 0)
    if len(recs) == 0:
        return np.ascontiguousarray(out.T)
    a_col, b_col = a[:, None], b[:, None]
    h = fmix32(hv)
    buf = np.empty((num_perm, max(_CHUNK, int(counts.max()))), dtype=np.uint32)
    ends = offsets[recs + 1]
    i = 0
    with np.errstate(over="ignore"):
        while i < len(recs):
            lo = offsets[recs[i]]
            j = max(int(np.searchsorted(ends, lo + _CHUNK, side="right")), i + 1)
            hi = ends[j - 1]
            x = buf[:, : hi - lo]
            np.multiply(a_col, h[None, lo:hi], out=x)
            x += b_col
            out[:, recs[i:j]] = np.minimum.reduceat(x, offsets[recs[i:j]] - lo, axis=1)
            i = j
    return np.ascontiguousarray(out.T)


@dataclass(frozen=True)
class LshParams:
    num_perm: int
    bands: int
    rows: int
    threshold: float
    false_positive: float  # integral of P(candidate | s) over s < threshold
    false_negative: float  # integral of P(not candidate | s) over s >= threshold
    p_at_threshold: float  # P(candidate | Jaccard == threshold)

    def describe(self) -> str:
        return (
            f"LSH {self.bands} bands x {self.rows} rows of {self.num_perm} permutations for Jaccard "
            f"{self.threshold}: P(candidate | J={self.threshold}) = {self.p_at_threshold:.3f}, "
            f"false-positive area {self.false_positive:.4f}, false-negative area {self.false_negative:.4f}"
        )

    def as_dict(self) -> dict:
        return {
            "num_perm": self.num_perm,
            "bands": self.bands,
            "rows": self.rows,
            "threshold": self.threshold,
            "false_positive_probability": round(self.false_positive, 6),
            "false_negative_probability": round(self.false_negative, 6),
            "p_candidate_at_threshold": round(self.p_at_threshold, 6),
        }


def candidate_probability(s: np.ndarray | float, bands: int, rows: int) -> np.ndarray | float:
    """P(two records with Jaccard s share at least one band)."""
    return 1.0 - (1.0 - np.power(s, rows)) ** bands


def lsh_params(
    threshold: float,
    num_perm: int,
    weights: tuple[float, float],
    bands: int | None = None,
    rows: int | None = None,
) -> LshParams:
    """Bands and rows (datasketch's choice unless given) and their error probabilities."""
    if bands is None or rows is None:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=tuple(weights))
        bands, rows = lsh.b, lsh.r
    below = np.linspace(0.0, threshold, 2001)
    above = np.linspace(threshold, 1.0, 2001)
    fp = float(np.trapezoid(candidate_probability(below, bands, rows), below))
    fn = float(np.trapezoid(1.0 - candidate_probability(above, bands, rows), above))
    p = float(candidate_probability(threshold, bands, rows))
    return LshParams(num_perm, bands, rows, threshold, fp, fn, p)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: one key per band, equal for two records exactly when their band rows are equal (up
    to 64-bit collisions); band b's keys never equal band c's."""
    n = len(sig)
    keys = np.empty((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            k = np.full(n, U64(0x9E3779B97F4A7C15) * U64(band + 1), dtype=np.uint64)
            for col in range(band * rows, (band + 1) * rows):
                k = mix64(k ^ sig[:, col].astype(np.uint64))
            keys[:, band] = k
    return keys


def similarity(sig_u: np.ndarray, sig_v: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of row pairs: the share of equal signature values (datasketch's `jaccard`)."""
    return (sig_u == sig_v).mean(axis=1)
