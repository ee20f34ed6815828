"""The mixture plan (stages/mix/plan.py) and the output formats (stages/mix/formats.py), without a run."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from factory.records import RECORD_SCHEMA
from stages.mix import formats
from stages.mix.plan import TRAIN, VALIDATION, Pool, make_plan, targets, whole


def pool(sizes: dict[str, int], tokens=None, score=None, unit=None) -> Pool:
    names = sorted(sizes)
    source = np.concatenate([np.full(sizes[s], i) for i, s in enumerate(names)]).astype(np.int64)
    n = len(source)
    return Pool(
        names,
        source,
        np.asarray(tokens if tokens is not None else np.full(n, 10), dtype=np.int64),
        np.asarray(score if score is not None else np.full(n, np.nan), dtype=np.float64),
        np.asarray(unit if unit is not None else np.arange(n), dtype=np.int64),
    )


def plan(p: Pool, **kw):
    args = dict(
        weights=None, total=None, total_tokens=None, validation=0, policy="random", max_repeats=3, seed=0
    )
    return make_plan(p, **{**args, **kw})


def per_source(p: Pool, values: np.ndarray) -> dict[str, int]:
    return {s: int(values[p.source == i].sum()) for i, s in enumerate(p.names)}


def test_targets_follow_weights_total_or_nature():
    avail = {"general": 800, "code": 150, "math": 50}
    assert targets(avail, {"general": 5, "code": 4, "math": 1}, 100) == {
        "general": 50,
        "code": 40,
        "math": 10,
    }
    # no total: the largest mixture with no up-sampling (code is the bottleneck: 150 / 0.4)
    assert whole(targets(avail, {"general": 0.5, "code": 0.4, "math": 0.1}, None)) == {
        "general": 188,  # 187.5 and 37.5: the tie goes to the first name
        "code": 150,
        "math": 37,
    }
    assert targets(avail, None, None) == {"general": 800.0, "code": 150.0, "math": 50.0}
    assert whole(targets(avail, None, 10)) == {"general": 8, "code": 2, "math": 0}


def test_whole_rounds_to_the_total():
    parts = whole({"a": 33.4, "b": 33.3, "c": 33.3})
    assert sum(parts.values()) == 100 and parts["a"] == 34


def test_downsampling_is_seeded_and_exact():
    p = pool({"general": 500, "code": 300})
    a = plan(p, weights={"general": 0.7, "code": 0.3}, total=200, seed=1)
    b = plan(p, weights={"general": 0.7, "code": 0.3}, total=200, seed=1)
    c = plan(p, weights={"general": 0.7, "code": 0.3}, total=200, seed=2)
    assert np.array_equal(a.copies, b.copies) and not np.array_equal(a.copies, c.copies)
    assert per_source(p, a.copies) == {"code": 60, "general": 140}
    assert a.copies.max() == 1 and a.achieved["code"]["dropped"] == 240 and not a.short


def test_a_source_left_out_of_the_weights_is_dropped():
    p = pool({"general": 50, "code": 50})
    r = plan(p, weights={"general": 1.0})
    assert per_source(p, r.copies) == {"code": 0, "general": 50}


def test_upsampling_repeats_within_the_cap_and_says_when_short():
    p = pool({"general": 100, "math": 10})
    r = plan(p, weights={"general": 0.5, "math": 0.5}, total=60, max_repeats=3)
    got = per_source(p, r.copies)
    assert got == {"general": 30, "math": 30}
    math = r.copies[p.source == p.names.index("math")]
    assert (math == 3).all() and r.achieved["math"]["copies"] == 20
    short = plan(p, weights={"general": 0.5, "math": 0.5}, total=100, max_repeats=2)
    assert per_source(p, short.copies)["math"] == 20 and short.short == {"math": 50}


def test_quality_policy_keeps_the_best_scores_first():
    score = np.array([0.1, 0.9, np.nan, 0.5, 0.7, 0.3])
    p = pool({"general": 6}, score=score)
    r = plan(p, total=3, policy="quality")
    assert set(np.flatnonzero(r.copies)) == {1, 4, 3}
    up = plan(p, total=8, policy="quality")  # two extra copies go to the two best
    assert up.copies[1] == 2 and up.copies[4] == 2 and up.copies[2] == 1


def test_token_budget_stops_at_the_target():
    tokens = np.array([1000, 1000, 100, 100, 100, 100])  # code's 2 records, then general's 4
    p = pool({"general": 4, "code": 2}, tokens=tokens)
    r = plan(p, weights={"general": 0.5, "code": 0.5}, total_tokens=400)
    assert r.unit == "tokens" and r.planned == {"general": 200, "code": 200}
    used = per_source(p, r.copies * tokens)
    assert used == {
        "general": 200,
        "code": 1000,
    }  # a record is never cut: code overshoots with its first record


def test_validation_is_stratified_unrepeated_and_keeps_clusters_whole():
    unit = np.arange(300)
    unit[10:20] = 10  # one cluster of 10 general records
    unit[200:203] = 10  # ... that also holds 3 code records
    p = pool({"general": 200, "code": 100}, unit=unit)
    for seed in range(8):
        r = plan(p, validation=0.1, seed=seed)
        val = r.split == VALIDATION
        assert per_source(p, val) == {"code": 10, "general": 20}
        assert (r.copies[val] == 1).all()
        assert len(set(r.split[unit == 10])) == 1  # the cluster never straddles the split
    count = plan(p, validation=30)
    assert int((count.split == VALIDATION).sum()) == 30
    assert (plan(p, validation=0).split == TRAIN).all()


def table(messages: list[list[tuple[str, str]]]) -> pa.Table:
    rows = [
        {
            "id": f"r{i}",
            "source": "general",
            "messages": [{"role": r, "content": c} for r, c in m],
            "meta": "{}",
            "origin": f"x:{i}",
        }
        for i, m in enumerate(messages)
    ]
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


CONVERSATIONS = [
    [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"), ("user", "2+2?"), ("assistant", "4")],
    [("user", "Name a colour."), ("assistant", "Red.")],
    [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"), ("user", "e"), ("assistant", "f")],
]


def test_sharegpt_keeps_every_turn_and_moves_the_system_prompt():
    rows = formats.to_sharegpt(table(CONVERSATIONS)).to_pylist()
    assert rows[0]["system"] == "Be brief." and rows[1]["system"] == ""
    assert rows[0]["conversations"] == [
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello"},
        {"from": "human", "value": "2+2?"},
        {"from": "gpt", "value": "4"},
    ]
    assert [t["from"] for t in rows[2]["conversations"]] == ["human", "gpt"] * 3
    assert rows[1]["id"] == "r1" and rows[1]["source"] == "general"


def test_alpaca_puts_earlier_turns_in_history():
    rows = formats.to_alpaca(table(CONVERSATIONS)).to_pylist()
    assert rows[0] == {
        "instruction": "2+2?",
        "input": "",
        "output": "4",
        "system": "Be brief.",
        "history": [["Hi", "Hello"]],
        "id": "r0",
        "source": "general",
    }
    assert rows[1]["history"] == [] and rows[1]["output"] == "Red."
    assert rows[2]["history"] == [["a", "b"], ["c", "d"]] and (rows[2]["instruction"], rows[2]["output"]) == (
        "e",
        "f",
    )


@pytest.mark.parametrize("fmt", ["sharegpt", "alpaca"])
def test_formats_of_an_empty_shard(fmt):
    assert formats.CONVERT[fmt](table([])).num_rows == 0
