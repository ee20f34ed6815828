"""Clusters from verified pairs, and which record of each cluster is kept.

`components` is union-find done in bulk (hook every root onto the smallest root it has an edge to, then pointer
jumping until every node points at its root; a few rounds even for long chains), over the nodes that appear in
pairs only.

`choose_keepers` is the chaining guard. Connected components chain: A~B and B~C put A and C in one component
even when A and C are far apart, and removing all but one record per component wipes out whole sources (a known
failure of LSH dedup that keeps one record per bucket or component). Here a component is only a place to look:
its records are ranked by the keep policy, the best is kept, and only records that are themselves similar to it
(estimated Jaccard >= threshold) are removed as its duplicates; the rest are ranked again and the best of them is
kept, and so on. Every removed record is similar to the record kept instead, which its reject names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, root): the distinct nodes of the edges u[i]-v[i], sorted, and the smallest node of each one's
    connected component."""
    if len(u) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    nodes, inv = np.unique(np.concatenate((u, v)), return_inverse=True)
    a, b = inv[: len(u)], inv[len(u) :]
    parent = np.arange(len(nodes))
    while True:
        ra, rb = parent[a], parent[b]
        lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
        differ = lo != hi
        if not differ.any():
            break
        np.minimum.at(parent, hi[differ], lo[differ])
        while True:  # pointer jumping: every node to its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return nodes, nodes[parent]


@dataclass
class Decisions:
    """What clustering decided: removed records with the record kept instead, and the cluster figures."""

    removed: list[np.ndarray] = field(default_factory=list)
    kept: list[np.ndarray] = field(default_factory=list)
    similarity: list[np.ndarray] = field(default_factory=list)
    cluster_sizes: list[np.ndarray] = field(default_factory=list)  # 1 + duplicates removed, per keeper
    extra_keepers: list[np.ndarray] = field(
        default_factory=list
    )  # kept records of a component beyond its first
    extra_root: list[np.ndarray] = field(default_factory=list)  # ... and that component's first keeper

    def add(self, removed, kept, sim) -> None:
        self.removed.append(np.asarray(removed, dtype=np.int64))
        self.kept.append(np.asarray(kept, dtype=np.int64))
        self.similarity.append(np.asarray(sim, dtype=np.float64))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dtype=dt)  # noqa: E731
        return cat(self.removed, np.int64), cat(self.kept, np.int64), cat(self.similarity, np.float64)


def choose_keepers(
    nodes: np.ndarray,
    root: np.ndarray,
    rank: np.ndarray,
    similar_to: Callable[[np.ndarray, int], np.ndarray] | None,
    threshold: float,
    pair_similarity: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Decisions:
    """Per component (nodes sharing a root): keep the best-ranked record (lowest `rank`) and remove the records
    similar to it, then repeat on the rest (see the module docstring). `similar_to(members, keeper)` gives the
    similarity of each member to the keeper; None means every member is a duplicate (exact groups, similarity
    1.0). Two-record components, the common case, are decided in bulk (`pair_similarity` of the two)."""
    out = Decisions()
    if len(nodes) == 0:
        return out
    order = np.lexsort((rank, root))
    nodes, root = nodes[order], root[order]
    starts = np.flatnonzero(np.concatenate(([True], root[1:] != root[:-1])))
    sizes = np.diff(np.concatenate((starts, [len(nodes)])))
    pairs = starts[sizes == 2]
    if len(pairs):
        best, other = nodes[pairs], nodes[pairs + 1]
        sim = np.ones(len(pairs)) if pair_similarity is None else pair_similarity(other, best)
        dup = sim >= threshold - 1e-9
        out.add(other[dup], best[dup], sim[dup])
        out.cluster_sizes.append(np.where(dup, 2, 1))
        out.cluster_sizes.append(np.ones(int((~dup).sum()), dtype=np.int64))
        out.extra_keepers.append(other[~dup])
        out.extra_root.append(best[~dup])
    for start, size in zip(starts[sizes > 2], sizes[sizes > 2], strict=True):
        remaining = nodes[start : start + size]
        first = int(remaining[0])
        while len(remaining):
            keeper, rest = int(remaining[0]), remaining[1:]
            if keeper != first:
                out.extra_keepers.append(np.array([keeper]))
                out.extra_root.append(np.array([first]))
            if len(rest) == 0:
                out.cluster_sizes.append(np.array([1]))
                break
            sim = np.ones(len(rest)) if similar_to is None else similar_to(rest, keeper)
            dup = sim >= threshold - 1e-9
            out.add(rest[dup], np.full(int(dup.sum()), keeper), sim[dup])
            out.cluster_sizes.append(np.array([1 + int(dup.sum())]))
            remaining = rest[~dup]
    return out


def size_histogram(sizes: np.ndarray) -> dict[str, int]:
    """Clusters (a kept record with at least one duplicate) by size: 2, 3, 4, 5, 6-10, 11-100, 101-1000, >1000."""
    sizes = sizes[sizes >= 2]
    bins = [(2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 100), (101, 1000)]
    hist = {
        (f"{lo}" if lo == hi else f"{lo}-{hi}"): int(((sizes >= lo) & (sizes <= hi)).sum()) for lo, hi in bins
    }
    hist[">1000"] = int((sizes > 1000).sum())
    return {k: v for k, v in hist.items() if v}
