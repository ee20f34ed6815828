"""The demo recipe end to end on the shipped samples: every planted fault lands where it should."""

from __future__ import annotations

import json

from tests.conftest import ROOT, read_stage, run_cli


def test_demo_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert (
        run_cli(
            "run",
            "clean",
            "dedup",
            "decontam",
            "mix",
            "-c",
            "configs/demo.yaml",
            "--run-dir",
            str(tmp_path / "demo"),
        )
        == 0
    )

    _, ingest_rejects, ingest = read_stage(tmp_path / "demo", "ingest")
    assert ingest["counts"] == {"in": 3398, "out": 3394, "rejected": 4}
    assert {r["reason"]: r["origin"] for r in ingest_rejects} == {
        "malformed_json": "data/samples/messy.jsonl:7",
        "bad_encoding": "data/samples/messy.jsonl:8",
        "wrong_type": "data/samples/messy.jsonl:14",
        "missing_field": "data/samples/messy.jsonl:15",
    }
    assert [(i["format"], i["format_detected"]) for i in ingest["inputs"]] == [
        ("alpaca", False),
        ("alpaca", False),
        ("sharegpt", True),
        ("messages", False),
        ("alpaca", False),
        ("alpaca", True),
        ("messages", False),
        ("messages", False),
    ]

    records, rejects, clean = read_stage(tmp_path / "demo", "clean")
    c = clean["counts"]
    assert c["in"] == 3394 and c["in"] == c["out"] + c["rejected"]
    messy = {r["origin"].rsplit(":", 1)[1]: r for r in rejects if "messy" in r["origin"]}
    assert {line: r["reason"] for line, r in messy.items()} == {
        "5": "too_short",
        "6": "refusal",
        "9": "needs_modality",
        "10": "empty_response",
        "11": "repeats_instruction",
        "12": "truncated",
        "13": "repetition",
        "17": "code_syntax_error",
    }
    assert json.loads(messy["6"]["detail"])  # evidence is JSON
    kept = {r["origin"].rsplit(":", 1)[1]: r["messages"] for r in records if "messy" in r["origin"]}
    assert kept["1"][-1]["content"] == "Yes."
    assert kept["2"][-1]["content"] == "98.6"
    assert "café au lait" in kept["3"][-1]["content"] and "Ã" not in kept["3"][-1]["content"]
    assert (
        kept["4"][0]["content"] == "Name three primary colours."
        and kept["4"][1]["content"] == "Red, yellow and blue."
    )
    assert clean["normalised"]["mojibake"] >= 1 and clean["normalised"]["zero_width"] >= 1
    # PII is replaced by typed placeholders, and counted; the broken code answer names its line.
    assert kept["16"][0]["content"].endswith("From: <EMAIL>, phone <PHONE>")
    assert clean["pii"]["entities"]["email"] >= 1 and clean["pii"]["entities"]["phone"] >= 1
    code = json.loads(messy["17"]["detail"])
    assert (code["language"], code["line"]) == ("python", 1)
    assert clean["code"]["failed"] == {"python": 1}
    # The shipped curated samples are nearly all kept.
    assert c["out"] / (c["in"] - 13) >= 0.95

    # dedup: the planted copies go, each naming the sample it copies; FastChat's sample repeats itself a lot
    kept, dupes, dedup = read_stage(tmp_path / "demo", "dedup")
    d = dedup["counts"]
    assert d["in"] == c["out"] and d["in"] == d["out"] + d["rejected"]
    origin_of = {r["id"]: r["origin"] for r in records}
    planted = {
        r["origin"]: (r["reason"], origin_of[json.loads(r["detail"])["kept"]])
        for r in dupes
        if "dupes" in r["origin"]
    }
    assert planted == {
        "data/samples/dupes.jsonl:1": ("exact_duplicate", "data/samples/general.jsonl:1"),
        "data/samples/dupes.jsonl:2": ("near_duplicate", "data/samples/general.jsonl:4"),
        "data/samples/dupes.jsonl:3": ("near_duplicate", "data/samples/code.jsonl:13"),
    }
    assert dedup["rejected_by_reason"]["exact_duplicate"] > 50  # FastChat's dummy conversations
    assert dedup["dedup"]["code_blocks"].get("cpp", 0) >= 2

    # decontam: the planted benchmark items go, each naming its item; nothing else of the samples does
    _, hits, decontam = read_stage(tmp_path / "demo", "decontam")
    t = decontam["counts"]
    assert t["in"] == d["out"] and t["in"] == t["out"] + t["rejected"]
    assert {r["origin"]: json.loads(r["detail"])["item"] for r in hits} == {
        "data/samples/contaminated.jsonl:1": "gsm8k/test/5",
        "data/samples/contaminated.jsonl:2": "HumanEval/2",
        "data/samples/contaminated.jsonl:3": "mmlu/high_school_biology/10",
        # a real one: this GSM8K train problem is test item 602 with other numbers ("A train travels 360
        # miles in 3 hours..." / "A plane travels 1200 miles in 3 hours..."), same wording and reasoning
        "data/samples/math.jsonl:687": "gsm8k/test/602",
        # and two GPTeacher answers that are MBPP 932's solution with other names (remove duplicates from a list
        # of strings, keeping order), caught as whole programs
        "data/samples/code.jsonl:218": "mbpp/932",
        "data/samples/code.jsonl:429": "mbpp/932",
    }
    assert decontam["decontam"]["benchmarks"]["gsm8k"]["records_removed"] == 2

    # mix: 2,000 records, 50/40/10 general/code/math, of what decontam kept; split, described, nothing lost
    _, dropped, mix = read_stage(tmp_path / "demo", "mix")
    m = mix["counts"]
    assert m["in"] == t["out"] and m["in"] == m["out"] + m["rejected"] == m["out"] + len(dropped)
    assert mix["mixture"]["achieved"] == {"code": 800, "general": 1000, "math": 200}
    assert mix["split"] == {"train": 1900, "validation": 100}
    card = (tmp_path / "demo" / "mix" / "README.md").read_text()
    assert "| gsm8k | 1,319 | 2 | 2 |" in card and "| decontam | 3,273 |" in card
