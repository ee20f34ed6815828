"""The mixture plan: which records the mix keeps, how often each occurs in train, and which go to validation.

Pure numpy over one row per eligible record (source code, tokens, quality score, cluster code), in input order;
`mix`'s `prepare` gathers those columns from every shard (the one part of the stage whose memory grows with the
input: about 30 bytes per record) and `process` applies the plan shard by shard.

Steps, per source in name order, every random choice from one seeded generator (same seed, same plan):
1. targets: the planned size of each source (records, or tokens with `total_tokens`) from the weights and total;
2. order: the source's records by preference (`policy`: a seeded permutation, or score descending, ties random);
3. select: the first records of that order up to the target (down-sampling; the rest are dropped);
4. split: validation takes whole near-duplicate clusters (`unit`) at random until the source's share of the
   validation size is reached (a cluster already placed by another source stays where it is); validation
   records occur once;
5. repeat: train records of a source short of its target repeat, in preference order, in whole passes, up to
   `max_repeats` occurrences each, until the target is met or the cap stops it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRAIN, VALIDATION = 0, 1


@dataclass
class Pool:
    """The eligible records: `source` codes into `names`, approximate tokens, score (nan: none), cluster unit."""

    names: list[str]
    source: np.ndarray
    tokens: np.ndarray
    score: np.ndarray
    unit: np.ndarray

    def __len__(self) -> int:
        return len(self.source)


@dataclass
class Plan:
    """Per eligible record: occurrences in the output (0: dropped) and split; plus the per-source figures."""

    copies: np.ndarray
    split: np.ndarray
    unit: str  # "records" or "tokens"
    planned: dict[str, float] = field(default_factory=dict)
    available: dict[str, dict[str, int]] = field(default_factory=dict)
    achieved: dict[str, dict[str, int]] = field(default_factory=dict)
    short: dict[str, float] = field(default_factory=dict)  # source -> planned size it could not reach


def targets(
    available: dict[str, int], weights: dict[str, float] | None, total: int | None
) -> dict[str, float]:
    """Planned size per source (records or tokens, as `available` and `total` are).

    No weights: natural proportions, all of it unless `total` says less or more. Weights without total: the
    largest mixture that needs no up-sampling. Records are rounded to whole numbers that add up to `total`."""
    if weights is None:
        grand = sum(available.values())
        shares = {s: n / grand for s, n in available.items()} if grand else {}
        if total is None:
            return {s: float(n) for s, n in available.items()}
    else:
        norm = sum(weights.values())
        shares = {s: w / norm for s, w in weights.items() if w > 0}
        if total is None:
            total = min((available.get(s, 0) / w for s, w in shares.items()), default=0)
    return {s: w * total for s, w in shares.items()}


def whole(planned: dict[str, float]) -> dict[str, int]:
    """Largest-remainder rounding: whole numbers that add up to the rounded sum."""
    floors = {s: int(np.floor(v + 1e-9)) for s, v in planned.items()}
    left = int(round(sum(planned.values()))) - sum(floors.values())
    for s in sorted(planned, key=lambda s: (-(planned[s] - floors[s]), s))[: max(left, 0)]:
        floors[s] += 1
    return floors


def preference(idx: np.ndarray, score: np.ndarray, policy: str, rng: np.random.Generator) -> np.ndarray:
    """`idx` reordered, most wanted first."""
    shuffled = idx[rng.permutation(len(idx))]
    if policy == "random":
        return shuffled
    s = score[shuffled]
    key = np.where(np.isnan(s), -np.inf, s)
    return shuffled[np.argsort(-key, kind="stable")]


def take(order: np.ndarray, size: np.ndarray, target: float, passes: int) -> np.ndarray:
    """The records of `order` repeated `passes` times, cut where the running size first reaches `target`;
    returns the indices taken (with repeats)."""
    if target <= 0 or len(order) == 0:
        return order[:0]
    seq = np.tile(order, passes)
    cum = np.cumsum(size[seq])
    k = min(int(np.searchsorted(cum, target - 1e-9, side="left")) + 1, len(seq))
    return seq[:k]


def validation_sizes(
    planned: dict[str, float] | None, selected: dict[str, int], validation: float | int
) -> dict[str, int]:
    """Validation records per source: a fraction of the planned mixture (records), or of the records selected
    (`planned` None: a token budget), or a count; shared in proportion, never more than a source has."""
    weights = selected if planned is None else planned
    grand = sum(weights.values())
    if not grand or not validation:
        return dict.fromkeys(selected, 0)
    want = (
        grand * validation if isinstance(validation, float) else min(int(validation), sum(selected.values()))
    )
    sizes = whole({s: want * weights.get(s, 0) / grand for s in selected})
    return {s: min(n, selected[s]) for s, n in sizes.items()}


def split_units(
    picked: np.ndarray, unit: np.ndarray, want: int, rng: np.random.Generator, placed: np.ndarray
) -> np.ndarray:
    """The records of `picked` that go to validation, as whole units: units an earlier source already put
    there, then free units in random order, skipping any that would overshoot `want`. Every unit of `picked`
    is then placed (`placed[u]`: -1 free, else its split), so that no unit straddles the split."""
    units, sizes = np.unique(unit[picked], return_counts=True)
    state = placed[units]
    chosen = units[state == VALIDATION].tolist()
    count = int(sizes[state == VALIDATION].sum())
    for i in rng.permutation(len(units)) if count < want else ():
        if state[i] != -1 or count + sizes[i] > want:
            continue
        chosen.append(int(units[i]))
        count += int(sizes[i])
        if count == want:
            break
    placed[units[state == -1]] = TRAIN
    placed[np.array(chosen, dtype=units.dtype)] = VALIDATION
    return picked[np.isin(unit[picked], np.array(chosen, dtype=unit.dtype))]


def make_plan(
    pool: Pool,
    weights: dict[str, float] | None,
    total: int | None,
    total_tokens: int | None,
    validation: float | int,
    policy: str,
    max_repeats: int,
    seed: int,
) -> Plan:
    rng = np.random.default_rng(seed)
    by_tokens = total_tokens is not None
    size = pool.tokens if by_tokens else np.ones(len(pool), dtype=np.int64)
    members = {name: np.flatnonzero(pool.source == code) for code, name in enumerate(pool.names)}
    available = {s: int(size[m].sum()) for s, m in members.items()}
    planned = targets(available, weights, total_tokens if by_tokens else total)
    if not by_tokens:
        planned = {s: float(v) for s, v in whole(planned).items()}

    copies = np.zeros(len(pool), dtype=np.int64)
    split = np.full(len(pool), TRAIN, dtype=np.int8)
    orders, selected = {}, {}
    for s in sorted(members):
        order = preference(members[s], pool.score, policy, rng)
        chosen = take(order, size, planned.get(s, 0.0), 1)
        orders[s] = order[np.isin(order, chosen)]
        selected[s] = len(chosen)

    val_sizes = validation_sizes(None if by_tokens else planned, selected, validation)
    placed = np.full(int(pool.unit.max()) + 1 if len(pool) else 0, -1, dtype=np.int8)
    for s in sorted(members):
        val = split_units(orders[s], pool.unit, val_sizes[s], rng, placed)
        split[val] = VALIDATION
        copies[val] = 1
        train_order = orders[s][split[orders[s]] == TRAIN]
        rest = planned.get(s, 0.0) - size[val].sum()
        np.add.at(copies, take(train_order, size, rest, max_repeats), 1)

    plan = Plan(copies, split, "tokens" if by_tokens else "records", planned=planned)
    for s, m in members.items():
        kept = m[copies[m] > 0]
        in_val = kept[split[kept] == VALIDATION]
        got = int((size[m] * copies[m]).sum())
        plan.available[s] = {"records": len(m), "tokens": int(pool.tokens[m].sum())}
        plan.achieved[s] = {
            "records": int(copies[m].sum()),
            "unique": len(kept),
            "copies": int(copies[m].sum()) - len(kept),
            "tokens": int((pool.tokens[m] * copies[m]).sum()),
            "validation": len(in_val),
            "dropped": len(m) - len(kept),
        }
        if s in planned and got < planned[s] - (0.5 if not by_tokens else 0):
            plan.short[s] = planned[s]
    for s in planned:
        if s not in members:
            plan.available[s] = {"records": 0, "tokens": 0}
            plan.achieved[s] = {
                "records": 0,
                "unique": 0,
                "copies": 0,
                "tokens": 0,
                "validation": 0,
                "dropped": 0,
            }
            if planned[s] > 0:
                plan.short[s] = planned[s]
    return plan
