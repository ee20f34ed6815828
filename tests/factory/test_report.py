"""`factory report`: the figures of a real small run (funnel, rejects, lengths, sources, stage figures), the
page (self-contained, record text escaped), --json, partial runs, a mix and a synth stage, and user errors."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory import report as rep
from factory.tokens import message_tokens
from tests.conftest import alpaca, read_stage, run_cli, write_config, write_jsonl

SCRIPT = "<script>alert('pwned')</script>"
QUESTION = "Name the largest planet in the solar system and explain why its great red storm never stops"
STAGES = ("ingest", "clean", "dedup", "decontam")
TIPS = [
    (
        "gardening",
        "Water deeply but less often, so that roots grow down instead of staying near the surface.",
    ),
    (
        "cooking rice",
        "Rinse the grains until the water runs clear; the starch you wash off makes rice gluey.",
    ),
    ("running", "Keep most of your runs slow enough to hold a conversation while you build endurance."),
    ("saving money", "Move a fixed amount to savings on payday, before you can spend it on anything else."),
    ("learning chess", "Study endgames early: king and pawn positions teach you how pieces coordinate."),
    ("public speaking", "Rehearse out loud, standing up, and time yourself at least twice before the talk."),
    ("photography", "Shoot during the hour after sunrise, when low warm light gives soft shadows."),
    ("houseplants", "Check the soil with a finger; most plants die of too much water, not too little."),
    ("writing essays", "Write the conclusion first, then make every paragraph argue towards it."),
    ("baking bread", "Weigh the flour and water instead of using cups; hydration decides the crumb."),
    ("cycling", "Set the saddle so that your knee is only slightly bent at the bottom of the stroke."),
    ("sleep", "Get up at the same time every day, weekends included, to anchor your body clock."),
]


def _chat(*turns: str) -> dict:
    roles = ["user", "assistant"] * len(turns)
    return {"messages": [{"role": r, "content": c} for r, c in zip(roles, turns, strict=False)]}


def _code(i: int) -> dict:
    return _chat(
        f"Write a Python function named f{i} that returns the sum of a list of numbers plus {i}.",
        f"```python\ndef f{i}(xs):\n    return sum(xs) + {i}\n```",
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real run of ingest, clean, dedup and decontam over a few planted records (built once)."""
    tmp = tmp_path_factory.mktemp("report")
    general = [
        alpaca(0, instruction=f"Give one practical tip about {topic} for a beginner.", output=tip)
        for topic, tip in TIPS
    ]
    general += [
        general[0],  # an exact duplicate of the first record
        alpaca(100, instruction=SCRIPT, output="Sure."),  # too short: 1 word, and markup to escape
    ]
    path = write_jsonl(tmp / "general.jsonl", general)
    with path.open("a", encoding="utf-8") as f:
        f.write('{"instruction": "broken line", "output": \n')  # malformed JSON
    chats = [_code(i) for i in range(6)]
    chats.append(_chat("Hello there, can you help me plan a trip?", "Of course.", "Paris in May?", "Lovely."))
    chats.append(_chat(QUESTION + "?", "Jupiter; the storm is sustained by its deep atmosphere."))
    write_jsonl(tmp / "code.jsonl", chats)
    bench = write_jsonl(tmp / "bench.jsonl", [{"qid": "q1", "question": QUESTION, "answer": "Jupiter"}])
    decontam = {
        "benchmarks": [{"name": "planets", "path": str(bench), "fields": ["question"], "id_field": "qid"}],
        "cache_dir": str(tmp / "cache"),
    }
    inputs = [
        {"path": tmp / "general.jsonl", "format": "alpaca", "source": "general"},
        {"path": tmp / "code.jsonl", "format": "messages", "source": "code"},
    ]
    cfg = write_config(tmp / "c.yaml", tmp / "run", inputs, stages={"decontam": decontam})
    assert run_cli("run", *STAGES[1:], "-c", str(cfg), "--workers", "1") == 0
    return tmp / "run"


@pytest.fixture(scope="module")
def summary(run_dir) -> dict:
    return rep.report(run_dir, as_json=True)


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst, ignore=shutil.ignore_patterns("report"))
    return dst


def test_funnel_matches_manifests(run_dir, summary):
    assert [s["stage"] for s in summary["stages"]] == list(STAGES)
    for row in summary["stages"]:
        manifest = json.loads((run_dir / row["stage"] / "manifest.json").read_text())
        assert row["status"] == "done"
        assert {k: row[k] for k in ("in", "out", "rejected")} == manifest["counts"]
        assert row["rejected_by_reason"] == manifest["rejected_by_reason"]
    assert summary["missing"] == ["synth", "mix"] and summary["unfinished"] == []
    assert summary["warnings"] == []


def test_rejects_by_reason_with_examples(run_dir, summary):
    by = {(r["stage"], r["reason"]): r for r in summary["rejects"]}
    for stage in STAGES:
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        assert {reason: r["records"] for (s, reason), r in by.items() if s == stage} == manifest[
            "rejected_by_reason"
        ]
    (bad_json,) = by["ingest", "malformed_json"]["examples"]
    assert "broken line" in bad_json["text"] and bad_json["origin"].endswith("general.jsonl:15")
    assert json.loads(bad_json["detail"])["error"]
    (short,) = by["clean", "too_short"]["examples"]
    assert short["text"] == f"user: {SCRIPT}\nassistant: Sure." and short["source"] == "general"
    (dupe,) = by["dedup", "exact_duplicate"]["examples"]
    assert json.loads(dupe["detail"])["similarity"] == 1.0 and dupe["origin"].endswith("general.jsonl:13")
    (hit,) = by["decontam", "contaminated"]["examples"]
    assert QUESTION in hit["text"] and '"item":"planets/q1"' in hit["detail"].replace(" ", "")
    assert all(len(e["detail"]) <= rep.DETAIL_CHARS for r in summary["rejects"] for e in r["examples"])


def test_lengths_turns_and_sources_before_and_after(run_dir, summary):
    before, after = summary["before"], summary["after"]
    assert (before["stage"], after["stage"]) == ("ingest", "decontam")
    for side in (before, after):
        records, _, manifest = read_stage(run_dir, side["stage"])
        assert side["records"] == len(records) == manifest["counts"]["out"]
        table = pa.concat_tables(
            pq.read_table(p) for p in sorted((run_dir / side["stage"]).glob("part-*.parquet"))
        )
        for key, role in (("instruction_tokens", "user"), ("response_tokens", "assistant")):
            figures = side[key]
            assert sum(b["records"] for b in figures["histogram"]) == len(records)
            # the same count as pyarrow's (factory.tokens), summed over the user or assistant turns
            assert figures["total"] == sum(message_tokens(table.column("messages"), role).to_pylist())
            assert figures["p50"] <= figures["p90"] <= figures["p99"] <= figures["max"]
        assert sum(b["records"] for b in side["user_turns"]) == len(records)
        n_turns = Counter(sum(m["role"] == "user" for m in r["messages"]) for r in records)
        assert {b["label"]: b["records"] for b in side["user_turns"]} == {"1": n_turns[1], "2": n_turns[2]}
        assert {s["source"]: s["records"] for s in side["sources"]} == Counter(r["source"] for r in records)
        assert sum(s["share"] for s in side["sources"]) == pytest.approx(1.0)
    assert {s["source"]: s["records"] for s in before["sources"]} == {"general": 14, "code": 8}


def test_stage_figures(run_dir, summary, tmp_path):
    assert summary["pii"] == {"entities": [], "records_redacted": 0}
    assert summary["dedup"]["clusters"] == sum(c["clusters"] for c in summary["dedup"]["cluster_sizes"]) >= 1
    (bench,) = summary["decontam"]["benchmarks"]
    assert (bench["benchmark"], bench["items"], bench["items_hit"], bench["records_removed"]) == (
        "planets",
        1,
        1,
        1,
    )
    assert summary["synth"] is None and summary["mix"] is None
    assert summary["figures"]["dedup"]["dedup.clusters"] == summary["dedup"]["clusters"]
    # PII counts come from the clean manifest (presidio takes seconds to load, so the run above has no PII)
    run = _copy(run_dir, tmp_path)
    manifest = json.loads((run / "clean" / "manifest.json").read_text())
    manifest["pii"] = {"entities": {"phone": 1, "email": 3}, "records_redacted": 3}
    (run / "clean" / "manifest.json").write_text(json.dumps(manifest))
    pii = rep.report(run, as_json=True)["pii"]
    assert pii == {
        "entities": [{"type": "email", "count": 3}, {"type": "phone", "count": 1}],
        "records_redacted": 3,
    }


def test_page_is_self_contained_and_escapes_record_text(run_dir, summary):
    page = (run_dir / "report" / "index.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    for text in ("Funnel", "Rejects by reason", "too_short", "Lengths in tokens", "Source mix", "planets"):
        assert text in page
    on_disk = json.loads((run_dir / "report" / "summary.json").read_text())
    assert on_disk["stages"] == summary["stages"] and on_disk["before"] == summary["before"]


def test_cli_json_prints_the_summary(run_dir, capsys):
    assert run_cli("report", str(run_dir), "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((run_dir / "report" / "summary.json").read_text())
    assert printed["stages"][0]["stage"] == "ingest"


def test_cli_prints_a_rich_summary(run_dir, capsys):
    assert run_cli("report", str(run_dir)) == 0
    out = capsys.readouterr().out
    assert "decontam" in out and "not run: synth, mix" in out and "index.html" in out


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert run_cli("report", str(tmp_path / "nope")) == 2
    assert "does not exist" in _error_line(capsys)
    (tmp_path / "empty").mkdir()
    assert run_cli("report", str(tmp_path / "empty")) == 2
    assert "no stage manifests" in _error_line(capsys)
    (tmp_path / "bad" / "clean").mkdir(parents=True)
    (tmp_path / "bad" / "clean" / "manifest.json").write_text("{not json")
    assert run_cli("report", str(tmp_path / "bad")) == 2
    assert "cannot read" in _error_line(capsys)


def test_partial_run_shows_unfinished_and_missing_stages(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path)
    shutil.rmtree(run / "decontam")
    (run / "dedup" / "_shards" / "part-00001.json").unlink(missing_ok=True)
    manifest = json.loads((run / "dedup" / "manifest.json").read_text())
    running = {k: manifest[k] for k in ("stage", "config", "config_hash", "input_fingerprint", "started_at")}
    (run / "dedup" / "manifest.json").write_text(json.dumps({**running, "status": "running"}))
    markers = [json.loads(p.read_text()) for p in (run / "dedup" / "_shards").glob("part-*.json")]

    s = rep.report(run, as_json=True)
    dedup = s["stages"][2]
    assert (dedup["stage"], dedup["status"]) == ("dedup", "running")
    assert (dedup["in"], dedup["out"], dedup["shards"]) == (
        sum(m["in"] for m in markers),
        sum(m["rows"] for m in markers),
        len(markers),
    )
    assert s["unfinished"] == ["dedup"] and s["missing"] == ["synth", "decontam", "mix"]
    assert s["after"]["stage"] == "clean" and s["dedup"] is None
    assert any("dedup is unfinished" in w for w in s["warnings"])
    assert "dedup (running)" in (run / "report" / "index.html").read_text()


def test_ingest_only_run_has_one_profile(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path)
    for stage in STAGES[1:]:
        shutil.rmtree(run / stage)
    s = rep.report(run, as_json=True)
    assert s["before"] == s["after"] and s["before"]["stage"] == "ingest"
    assert s["missing"] == ["synth", "clean", "dedup", "decontam", "mix"]


def test_mix_and_synth_stages_are_shown(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path)
    alpaca_rows = {
        "instruction": ["a", "b", "c"],
        "input": ["", "", ""],
        "output": ["x", "y", "z"],
        "system": ["", "", ""],
        "history": [[], [], []],
        "id": ["1", "2", "3"],
        "source": ["general", "code", "code"],
    }
    table = pa.table(
        alpaca_rows,
        schema=pa.schema(
            [
                *[(k, pa.string()) for k in ("instruction", "input", "output", "system")],
                ("history", pa.list_(pa.list_(pa.string()))),
                ("id", pa.string()),
                ("source", pa.string()),
            ]
        ),
    )
    (run / "mix" / "train").mkdir(parents=True)
    (run / "mix" / "validation").mkdir()
    pq.write_table(table.slice(0, 2), run / "mix" / "train" / "part-00000.parquet")
    pq.write_table(table.slice(2), run / "mix" / "validation" / "part-00000.parquet")
    mix = {
        "stage": "mix",
        "status": "done",
        "counts": {"in": 5, "out": 3, "rejected": 3},
        "rejected_by_reason": {"mix_downsampled": 3},
        "format": "alpaca",
        "mixture": {"planned": {"general": 1, "code": 2}, "achieved": {"general": 1, "code": 2}},
        "split": {"train": 2, "validation": 1},
        "copies": 1,
    }
    (run / "mix" / "manifest.json").write_text(json.dumps(mix))
    synth = {
        "stage": "synth",
        "status": "done",
        "counts": {"in": 4, "out": 4, "rejected": 0},
        "synth": {
            "requests": 4,
            "cache_hits": 1,
            "tokens": {"prompt": 100, "completion": 50},
            "model": "m-1",
        },
    }
    (run / "synth").mkdir()
    (run / "synth" / "manifest.json").write_text(json.dumps(synth))

    s = rep.report(run, as_json=True)
    assert [r["stage"] for r in s["stages"]] == ["ingest", "synth", "clean", "dedup", "decontam", "mix"]
    assert (
        s["missing"] == [] and s["after"]["stage"] == "decontam"
    )  # mix is not canonical: lengths stop before
    m = s["mix"]
    assert (m["format"], m["copies"], m["split"]) == ("alpaca", 1, {"train": 2, "validation": 1})
    assert m["mixture"] == [
        {"source": "general", "planned": 1, "achieved": 1, "tokens": None},
        {"source": "code", "planned": 2, "achieved": 2, "tokens": None},
    ]
    assert {(r["split"], r["source"]): r["records"] for r in m["shards"]} == {
        ("train", "general"): 1,
        ("train", "code"): 1,
        ("validation", "code"): 1,
    }
    assert s["synth"]["requests"] == 4 and s["synth"]["cache_hit_rate"] == 0.25
    assert s["synth"]["tokens"] == {"tokens.prompt": 100, "tokens.completion": 50} and s["synth"][
        "models"
    ] == ["m-1"]
    # the mix stage has no rejects files here: its manifest's reasons disagree, and the report says so
    assert any("mix: manifest says 3 rejected as mix_downsampled" in w for w in s["warnings"])
    page = (run / "report" / "index.html").read_text()
    assert "mix planned" in page and "Synth" in page and "cache hit rate" in page


def test_evals_registered_with_the_run_are_shown(run_dir, tmp_path, capsys):
    from evals.run import _register

    run = _copy(run_dir, tmp_path)
    results = {
        "model": {"name": "base-7b"},
        "adapter": {"path": "out/qlora"},
        "finished_at": "2026-11-23T20:00:00+00:00",
        "benchmarks": {
            "gsm8k": {
                "metric": "accuracy",
                "scores": {"accuracy": {"score": 0.4125, "ci95": [0.38, 0.44], "tasks": 1319}},
                "contamination": {"items_hit": 2, "records_removed": 2, "items": ["gsm8k/test/5"]},
                "per_task": [{"task_id": "gsm8k/test/0"}],
            }
        },
    }
    _register(run, tmp_path / "eval-out", results)
    summary = rep.report(run, as_json=True)
    capsys.readouterr()
    (row,) = summary["evals"]
    assert (row["benchmark"], row["metric"], row["score"], row["items_hit_in_training_data"]) == (
        "gsm8k",
        "accuracy",
        0.4125,
        2,
    )
    assert row["adapter"] == "out/qlora" and row["results"].endswith("eval-out/results.json")
    page = (run / "report" / "index.html").read_text()
    assert "Evaluations" in page and "0.412" in page and "base-7b + adapter" in page
    rep.report(run)
    assert "eval eval-out-" in capsys.readouterr().out
