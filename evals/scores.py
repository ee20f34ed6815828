"""Scores and their uncertainty: the unbiased pass@k estimator and bootstrap confidence intervals over tasks.

pass@k is the Codex paper's estimator (Chen et al. 2021, eq. 1): with n samples of a task of which c pass,
`1 - C(n-c, k) / C(n, k)`, computed as a running product so that it never overflows; the benchmark's pass@k is
its mean over tasks. Accuracy (gsm8k, mmlu) is the mean of 0/1 outcomes. The 95% interval is the percentile
bootstrap over tasks (resampling whole tasks, 2,000 times, seeded): the tasks are the sample, not the
completions of one task.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP = 2000


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) is correct."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def interval(values: list[float], seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of per-task values."""
    data = np.asarray(values, dtype=np.float64)
    if len(data) == 0:
        return (float("nan"), float("nan"))
    if len(data) == 1 or np.all(data == data[0]):
        return (float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    means = np.empty(BOOTSTRAP)
    for start in range(0, BOOTSTRAP, 250):  # bounded memory for big benchmarks (mmlu: 14k tasks)
        picks = rng.integers(0, len(data), size=(min(250, BOOTSTRAP - start), len(data)))
        means[start : start + len(picks)] = data[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))


def summarise(per_task: list[tuple[int, int]], ks: list[int], seed: int = 0) -> dict:
    """{`pass@k`: {score, ci95, tasks}} for each k that every task has enough samples for; the rest are listed
    under `skipped_k` (pass@k needs n >= k)."""
    out: dict = {}
    skipped = []
    for k in ks:
        if not per_task or any(n < k for n, _ in per_task):
            skipped.append(k)
            continue
        values = [pass_at_k(n, c, k) for n, c in per_task]
        low, high = interval(values, seed)
        out[f"pass@{k}"] = {"score": float(np.mean(values)), "ci95": [low, high], "tasks": len(values)}
    if skipped:
        out["skipped_k"] = skipped
    return out


def accuracy(outcomes: list[bool], seed: int = 0) -> dict:
    values = [1.0 if o else 0.0 for o in outcomes]
    low, high = interval(values, seed)
    return {
        "score": float(np.mean(values)) if values else float("nan"),
        "ci95": [low, high],
        "tasks": len(values),
    }
