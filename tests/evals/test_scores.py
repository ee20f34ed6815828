"""pass@k against hand-computed values, and the bootstrap interval's behaviour."""

from math import comb

import pytest

from evals.scores import accuracy, interval, pass_at_k, summarise


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (10, 0, 1, 0.0),
        (10, 10, 1, 1.0),
        (5, 1, 1, 0.2),  # c/n
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (4, 2, 3, 1.0),  # n - c < k: any 3 of 4 include a pass
        (1, 1, 1, 1.0),
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_the_exact_ratio_for_big_n():
    n, c, k = 200, 13, 100
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), rel=1e-12)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_summarise_means_over_tasks_and_skips_k_above_n():
    scores = summarise([(5, 1), (5, 2), (5, 0)], [1, 2, 10])
    assert scores["pass@1"]["score"] == pytest.approx((0.2 + 0.4 + 0.0) / 3)
    assert scores["pass@2"]["score"] == pytest.approx((0.4 + 0.7 + 0.0) / 3)
    assert scores["skipped_k"] == [10]
    low, high = scores["pass@1"]["ci95"]
    assert low <= scores["pass@1"]["score"] <= high


def test_interval_is_seeded_and_brackets_the_mean():
    values = [1.0] * 30 + [0.0] * 70
    a, b = interval(values, seed=1), interval(values, seed=1)
    assert a == b
    assert 0.18 < a[0] < 0.3 < a[1] < 0.42
    assert interval([1.0, 1.0, 1.0]) == (1.0, 1.0)


def test_accuracy():
    result = accuracy([True, False, True, True])
    assert result["score"] == 0.75 and result["tasks"] == 4
