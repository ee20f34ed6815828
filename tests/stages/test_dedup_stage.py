"""The dedup stage end to end through the CLI: what is removed, what is kept, the evidence, the chaining guard,
code awareness, keep policies, resume, and the same outcome on one worker or two."""

from __future__ import annotations

import json
import random

import pytest

from tests.conftest import read_stage, run_cli, write_config, write_jsonl

VOCAB = [a + b + c for a in "bcdfghjklm" for b in "aeiou" for c in "nprstvwxyz"] * 2  # 500 words, no digits
VOCAB = [w + s for w, s in zip(VOCAB, ["", "er"] * 500, strict=True)]


def passage(seed: int, n: int = 120) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(VOCAB) for _ in range(n)]


def msg(question: str, answer: str, **extra) -> dict:
    return {
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        **extra,
    }


def run_dedup(tmp_path, rows, stages=None, workers="2", name="in.jsonl"):
    path = write_jsonl(tmp_path / name, rows)
    cfg = write_config(
        tmp_path / "cfg.yaml",
        tmp_path / "run",
        [{"path": path, "format": "messages"}],
        stages={"clean": {"pii": {"enabled": False}}, "dedup": stages or {}},
    )
    assert run_cli("run", "dedup", "-c", str(cfg), "--workers", workers) == 0
    return read_stage(tmp_path / "run", "dedup"), cfg


def by_tag(records):
    return {json.loads(r["meta"])["tag"]: r for r in records}


def test_exact_and_near_duplicates_are_removed_with_evidence(tmp_path):
    base = [" ".join(passage(i)) for i in range(30)]
    rows = [msg("Summarise the text.", text, tag=f"orig{i}") for i, text in enumerate(base)]
    rows.append(msg("summarise the TEXT!", base[0].upper(), tag="exact0"))  # case and punctuation only
    edited = passage(1)
    edited[60] = "q" * len(edited[60])  # same length: the first of equals is kept
    rows.append(msg("Summarise the text.", " ".join(edited), tag="near1"))
    (records, rejects, manifest), _ = run_dedup(tmp_path, rows)
    ids = {json.loads(r["meta"])["tag"]: r["id"] for r in records}
    assert set(ids) == {f"orig{i}" for i in range(30)}
    reasons = {json.loads(r["meta"])["tag"]: (r["reason"], json.loads(r["detail"])) for r in rejects}
    assert reasons["exact0"][0] == "exact_duplicate"
    assert reasons["exact0"][1]["kept"] == ids["orig0"] and reasons["exact0"][1]["similarity"] == 1.0
    assert reasons["near1"][0] == "near_duplicate"
    assert reasons["near1"][1]["kept"] == ids["orig1"] and 0.8 <= reasons["near1"][1]["similarity"] < 1.0
    c = manifest["counts"]
    assert c == {"in": 32, "out": 30, "rejected": 2}
    assert manifest["rejected_by_reason"] == {"exact_duplicate": 1, "near_duplicate": 1}
    d = manifest["dedup"]
    assert d["lsh"]["bands"] == 16 and d["lsh"]["rows"] == 8 and d["lsh"]["threshold"] == 0.8
    assert d["clusters"] == 2 and d["cluster_sizes"] == {"2": 2}
    assert d["exact"]["removed"] == 1 and d["near"]["removed"] == 1
    assert set(d["timings"]) >= {"signatures_s", "pairs_s", "clusters_s"}
    assert not (tmp_path / "run" / "dedup" / "_work").exists()


def test_chaining_guard_keeps_the_far_end_of_a_chain(tmp_path):
    words = passage(7, 240)
    a, b, c = words[0:200], words[15:215], words[30:230]  # J(a,b) = J(b,c) ~ 0.86, J(a,c) ~ 0.73
    rows = [msg("Go on.", " ".join(x), tag=t) for x, t in ((a, "a"), (b, "b"), (c, "c"))]
    rows += [msg("Other.", " ".join(passage(100 + i)), tag=f"x{i}") for i in range(5)]
    (records, rejects, manifest), _ = run_dedup(tmp_path, rows, {"keep": "first"})
    kept = by_tag(records)
    assert manifest["dedup"]["near"]["exact_jaccard_checks"] >= 2  # all three pairs are close to 0.8
    assert "a" in kept and "c" in kept and "b" not in kept
    assert [json.loads(r["meta"])["tag"] for r in rejects] == ["b"]
    assert json.loads(rejects[0]["detail"])["kept"] == kept["a"]["id"]
    # a and c stay together for mix's split
    assert json.loads(kept["a"]["meta"])["dedup_cluster"] == kept["a"]["id"]
    assert json.loads(kept["c"]["meta"])["dedup_cluster"] == kept["a"]["id"]
    assert manifest["dedup"]["near"]["kept_by_chaining_guard"] == 1


def test_keep_policies(tmp_path):
    words = passage(3, 150)
    short = " ".join(words)
    long = short + " and one more closing remark"
    rows = [
        msg("Q", short, tag="first", quality_score=0.9),
        msg("Q", long, tag="longest", quality_score=0.1),
        msg("Q", " ".join(passage(4)), tag="other"),
    ]
    for policy, winner in (("first", "first"), ("longest", "longest"), ("score", "first")):
        sub = tmp_path / policy
        sub.mkdir()
        (records, rejects, _), _ = run_dedup(sub, rows, {"keep": policy})
        assert set(by_tag(records)) == {winner, "other"}, policy


def bubble(name: str, comment: str) -> str:
    return (
        f"def bubble_sort({name}):\n"
        f"    # {comment}\n"
        f"    n = len({name})\n"
        "    for i in range(n):\n"
        "        for j in range(0, n - i - 1):\n"
        f"            if {name}[j] > {name}[j + 1]:\n"
        f"                {name}[j], {name}[j + 1] = {name}[j + 1], {name}[j]\n"
        f"    return {name}\n"
    )


QUICKSORT = (
    "def quick_sort(arr):\n"
    "    if len(arr) <= 1:\n"
    "        return arr\n"
    "    pivot = arr[len(arr) // 2]\n"
    "    left = [x for x in arr if x < pivot]\n"
    "    middle = [x for x in arr if x == pivot]\n"
    "    right = [x for x in arr if x > pivot]\n"
    "    return quick_sort(left) + middle + quick_sort(right)\n"
)


def test_bubble_sort_rename_is_a_duplicate_and_quicksort_is_not(tmp_path):
    q = "Write a Python function that sorts a list of numbers in ascending order."
    rows = [
        msg(q, f"Here is a bubble sort:\n\n```python\n{bubble('arr', 'swap neighbours')}```", tag="bubble"),
        msg(
            q,
            f"Here is a bubble sort:\n\n```python\n{bubble('nums', 'swap adjacent items')}```",
            tag="renamed",
        ),
        msg(q, f"Here is a quick sort:\n\n```python\n{QUICKSORT}```", tag="quick"),
    ]
    (records, rejects, manifest), _ = run_dedup(tmp_path, rows, {"keep": "first"})
    assert set(by_tag(records)) == {"bubble", "quick"}
    assert [json.loads(r["meta"])["tag"] for r in rejects] == ["renamed"]
    assert manifest["dedup"]["code_records"] == 3 and manifest["dedup"]["code_blocks"] == {"python": 3}
    # the same data with code compared as text: the rename hides the duplicate
    sub = tmp_path / "text"
    sub.mkdir()
    (records, _, _), _ = run_dedup(sub, rows, {"keep": "first", "code": {"enabled": False}})
    assert len(records) == 3


def test_turns_decide_what_counts(tmp_path):
    answer = " ".join(passage(5))
    rows = [msg(" ".join(passage(11)), answer, tag="a"), msg(" ".join(passage(12)), answer, tag="b")]
    (records, _, _), _ = run_dedup(tmp_path, rows)
    assert len(records) == 2  # user turns differ
    sub = tmp_path / "final"
    sub.mkdir()
    (records, rejects, _), _ = run_dedup(sub, rows, {"turns": "final"})
    assert len(records) == 1 and rejects[0]["reason"] == "exact_duplicate"


def test_records_without_words_are_exact_duplicates_only(tmp_path):
    rows = [msg("?", "!!!", tag="p1"), msg("?", "...", tag="p2"), msg("Q", " ".join(passage(9)), tag="x")]
    (records, rejects, manifest), _ = run_dedup(tmp_path, rows)
    assert {json.loads(r["meta"])["tag"] for r in records} == {"p1", "x"}
    assert rejects[0]["reason"] == "exact_duplicate"
    assert manifest["dedup"]["records_without_shingles"] == 2


def test_one_worker_and_two_give_the_same_result(tmp_path):
    rng = random.Random(0)
    rows = []
    for i in range(400):
        words = passage(i % 150)
        if i >= 150:
            words = list(words)
            for _ in range(rng.randint(0, 4)):
                words[rng.randrange(len(words))] = rng.choice(VOCAB)
        rows.append(msg("Tell me.", " ".join(words), tag=f"r{i}"))
    stages = {"keep": "longest"}
    outcomes = []
    for workers in ("1", "2"):
        sub = tmp_path / workers
        sub.mkdir()
        (records, rejects, manifest), _ = run_dedup(sub, rows, stages, workers=workers)
        outcomes.append(
            (
                sorted(r["id"] for r in records),
                sorted((r["id"], r["reason"], r["detail"]) for r in rejects),
            )
        )
        assert manifest["counts"]["in"] == manifest["counts"]["out"] + manifest["counts"]["rejected"] == 400
    assert outcomes[0] == outcomes[1]
    assert 150 <= len(outcomes[0][0]) < 300


@pytest.mark.parametrize("cut", ["decisions", "pairs", "signatures"])
def test_a_cut_off_stage_resumes_from_its_work_files(tmp_path, cut):
    rows = [msg("Q", " ".join(passage(i % 20)), tag=f"r{i}") for i in range(60)]
    (records, rejects, manifest), cfg = run_dedup(tmp_path, rows, {"keep_work": True})
    stage_dir = tmp_path / "run" / "dedup"
    work = stage_dir / "_work"
    assert (work / "resolved.json").exists()
    # make it look cut off: running, one shard unfinished, and the work after `cut` not done
    manifest["status"] = "running"
    (stage_dir / "manifest.json").write_text(json.dumps(manifest))
    for p in (stage_dir / "_shards").glob("*.json"):
        p.unlink()
    for p in stage_dir.glob("part-*.parquet"):
        p.unlink()
    order = ["signatures", "pairs", "decisions"]
    (work / "resolved.json").unlink()
    for later in order[order.index(cut) :]:
        for p in sorted((work / later).glob("*"))[:1]:
            p.unlink()
    assert run_cli("run", "dedup", "-c", str(cfg), "--workers", "2") == 0
    again = read_stage(tmp_path / "run", "dedup")
    assert sorted(r["id"] for r in again[0]) == sorted(r["id"] for r in records)
    assert sorted(r["detail"] for r in again[1]) == sorted(r["detail"] for r in rejects)
    assert again[2]["dedup"]["clusters"] == manifest["dedup"]["clusters"] == 20


def test_rerun_is_skipped(tmp_path):
    rows = [msg("Q", " ".join(passage(i % 5)), tag=f"r{i}") for i in range(10)]
    (_, _, manifest), cfg = run_dedup(tmp_path, rows)
    assert manifest["counts"]["out"] == 5
    assert run_cli("run", "dedup", "-c", str(cfg)) == 0
    assert "dedup: skipped, up to date" in (tmp_path / "run" / "factory.log").read_text()


def test_unfenced_code_answers_are_compared_as_code(tmp_path):
    q = "Write a Python function that sorts a list of numbers in ascending order."
    rows = [
        msg(q, bubble("arr", "swap neighbours"), tag="bubble"),
        msg(q, bubble("nums", "swap adjacent items"), tag="renamed"),
        msg(q, QUICKSORT, tag="quick"),
    ]
    (records, rejects, manifest), _ = run_dedup(tmp_path, rows, {"keep": "first"})
    assert set(by_tag(records)) == {"bubble", "quick"}
    assert manifest["dedup"]["code_blocks"] == {"python": 3}
