"""The synth stage end to end through the CLI against a real local OpenAI-compatible server (tests/fake_openai.py)
with scripted answers: each method's records and rejects, lineage, the cache across re-runs and a kill -9, a run
with no inputs, and `synth clean` reading synth's output."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, read_stage, run_cli, write_config, write_jsonl
from tests.fake_openai import serve

VOCAB = [a + b + c + d for a in "bdfgklmnprst" for b in "aeiou" for c in "lmnrst" for d in "aeiouy"][:3000]
SEED_TASKS = [
    {
        "instruction": f"Describe the {w} of a {v} in plain words for a beginner.",
        "instances": [{"input": "", "output": f"The {w} of a {v} is simple."}],
        "is_classification": False,
    }
    for w, v in zip(VOCAB[:20], VOCAB[20:40], strict=True)
]


def words(text: str, n: int) -> str:
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def script(messages: list[dict], body: dict) -> str:
    """Deterministic answers by prompt kind (the same request always gets the same answer)."""
    text = messages[-1]["content"]
    if "Come up with a series of tasks" in text:
        start = int(re.findall(r"(\d+)\.\s*$", text)[0])
        items = [f"Explain {words(text + str(i), 7)} to a curious student." for i in range(4)]
        items.append("Draw an image of a sunset over the sea please.")  # blacklisted keyword
        items.append(SEED_TASKS[0]["instruction"])  # already in the pool: ROUGE-L 1.0
        first, *rest = items
        return first + "\n" + "\n".join(f"{start + 1 + i}. {it}" for i, it in enumerate(rest))
    if "classification task with finite output labels" in text:
        return "No"
    if "Come up with examples for the following tasks" in text:
        return f"Output: {words(text, 30)}."
    if "Prompt Rewriter" in text or "Prompt Creator" in text:
        return f"#Rewritten Prompt#:\n{words(text, 12)} and explain each step carefully."
    if "are equal to each other" in text:
        return "Not Equal"
    if "random code snippet" in text:
        name = words(text, 1)
        return (
            f"[Problem Description]\nWrite a function {name}(xs) that returns the sum of xs.\n\n"
            f"[Solution]\n```python\ndef {name}(xs):\n    return sum(xs)\n```"
        )
    return f"{words(text, 40)}."  # an answer


def synth_config(tmp_path, server, method: str, inputs=None, **extra):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEED_TASKS)
    synth = {
        "method": method,
        "target": extra.pop("target", 12),
        "seeds": str(seeds),
        "backend": {"kind": "openai", "base_url": server.base_url, "model": "fake-model", "max_in_flight": 4},
        **extra,
    }
    return write_config(
        tmp_path / "cfg.yaml",
        tmp_path / "run",
        inputs or [],
        stages={"synth": synth, "clean": {"pii": {"enabled": False}}},
    )


def test_self_instruct_records_rejects_and_lineage(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    with serve(script) as server:
        cfg = synth_config(tmp_path, server, "self_instruct", target=12)
        assert run_cli("run", "synth", "-c", str(cfg), "--workers", "1") == 0
        sent = len(server.requests)
    records, rejects, manifest = read_stage(tmp_path / "run", "synth")
    assert len(records) == 12
    c = manifest["counts"]
    assert c["in"] == c["out"] + c["rejected"] and c["out"] == 12
    reasons = {r["reason"] for r in rejects}
    assert {"blacklisted_keyword", "too_similar"} <= reasons
    similar = next(json.loads(r["detail"]) for r in rejects if r["reason"] == "too_similar")
    assert "raw" in similar
    rec = records[0]
    meta = json.loads(rec["meta"])
    assert meta["synth"]["method"] == "self_instruct" and meta["synth"]["model"] == "fake-model"
    assert meta["synth"]["template"] and meta["synth"]["parent"]
    assert rec["origin"].startswith("synth:self_instruct:") and rec["source"] == "general"
    assert [m["role"] for m in rec["messages"]] == ["user", "assistant"]
    s = manifest["synth"]
    assert s["requests"] == sent and s["cache_hits"] == 0 and s["completion_tokens"] > 0
    assert set(s["templates"]) >= {"self_instruct_generate", "self_instruct_instances_input_first"}
    # the key never lands in the run directory
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert b"sk-test-not-a-real-key" not in path.read_bytes(), path


def test_rerun_with_a_new_target_pays_only_for_new_requests(tmp_path):
    with serve(script) as server:
        cfg = synth_config(tmp_path, server, "self_instruct", target=8)
        assert run_cli("run", "synth", "-c", str(cfg), "--workers", "1") == 0
        first = len(server.requests)
        cfg = synth_config(tmp_path, server, "self_instruct", target=16)
        assert run_cli("run", "synth", "-c", str(cfg), "--workers", "1") == 0
        assert server.repeated() == 0 and len(server.requests) > first
    manifest = read_stage(tmp_path / "run", "synth")[2]
    assert manifest["counts"]["out"] == 16 and manifest["synth"]["cache_hits"] >= first


def test_evol_instruct_evolves_the_inputs(tmp_path):
    rows = [
        {"instruction": f"Explain {w} in one paragraph for a student.", "output": "Some answer."}
        for w in VOCAB[100:106]
    ]
    inputs = [{"path": write_jsonl(tmp_path / "in.jsonl", rows), "format": "alpaca"}]
    with serve(script) as server:
        cfg = synth_config(tmp_path, server, "evol_instruct", inputs, target=10)
        assert run_cli("run", "synth", "clean", "-c", str(cfg), "--workers", "1") == 0
    records, _, manifest = read_stage(tmp_path / "run", "synth")
    assert len(records) == 10 and manifest["synth"]["rounds"] == 2  # 6 seeds: two rounds for 10 records
    metas = [json.loads(r["meta"])["synth"] for r in records]
    ingested = {r["id"] for r in read_stage(tmp_path / "run", "ingest")[0]}
    assert {m["parent"] for m in metas if m["round"] == 1} <= ingested
    assert all(m["operation"] for m in metas)
    # clean reads synth's records, not the ingested seeds
    assert read_stage(tmp_path / "run", "clean")[2]["counts"]["in"] == 10
    # and the report profiles synth's records as "before", not the seeds
    from factory import report

    summary = report.build_summary(report.load_run(tmp_path / "run"))
    assert summary["before"]["stage"] == "synth" and summary["before"]["records"] == 10


def test_oss_instruct_turns_code_into_problems(tmp_path):
    rows = [
        {"instruction": "Show a loop.", "output": f"```python\nfor i in range({n}):\n    print(i * {n})\n```"}
        for n in range(5)
    ]
    inputs = [{"path": write_jsonl(tmp_path / "in.jsonl", rows), "format": "alpaca"}]
    with serve(script) as server:
        cfg = synth_config(tmp_path, server, "oss_instruct", inputs, target=6)
        assert run_cli("run", "synth", "-c", str(cfg), "--workers", "1") == 0
    records = read_stage(tmp_path / "run", "synth")[0]
    assert len(records) == 6 and {r["source"] for r in records} == {"code"}
    meta = json.loads(records[0]["meta"])
    assert meta["language"] == "python" and "```python" in records[0]["messages"][1]["content"]


def test_failed_requests_are_rejects_with_the_error(tmp_path):
    def faults(body, seen):
        return "500" if "classification task" in json.dumps(body) else None

    with serve(script, faults=faults) as server:
        cfg = synth_config(tmp_path, server, "self_instruct", target=3)
        cfg_text = cfg.read_text().replace("max_in_flight: 4", "max_in_flight: 4\n      max_retries: 1")
        cfg.write_text(cfg_text)
        assert run_cli("run", "synth", "-c", str(cfg), "--workers", "1") == 0
    records, rejects, manifest = read_stage(tmp_path / "run", "synth")
    # a failed classification check is not fatal: the instruction is treated as not classification
    assert len(records) == 3
    assert manifest["synth"]["failures"].get("http_5xx", 0) > 0


def test_missing_backend_is_a_one_line_error(tmp_path, capsys):
    cfg = write_config(
        tmp_path / "cfg.yaml", tmp_path / "run", [], stages={"synth": {"method": "self_instruct"}}
    )
    assert run_cli("run", "synth", "-c", str(cfg)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if line.startswith("error")] == [err[-1]] and "backend" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "run" / "ingest").exists()  # refused before any work


def test_kill_9_then_rerun_sends_no_request_twice(tmp_path):
    with serve(script, latency_s=0.05) as server:
        cfg = synth_config(
            tmp_path, server, "self_instruct", target=30, self_instruct={"requests_per_round": 4}
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "factory", "run", "synth", "-c", str(cfg), "--workers", "1"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while len(server.answered) < 20 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        killed_at = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = len(server.requests)
        assert run_cli("run", "synth", "-c", str(cfg), "--workers", "1") == 0
        # answered before the kill: never asked again; only what was in flight at the kill is asked again
        assert server.repeated_answered(before=killed_at - 0.2) == 0
        assert server.repeated() <= 4  # max_in_flight
        assert len(server.requests) > before
    manifest = read_stage(tmp_path / "run", "synth")[2]
    assert manifest["counts"]["out"] == 30 and manifest["synth"]["cache_hits"] > 0


@pytest.mark.parametrize(("method", "says"), [("evol_instruct", "no user turn"), ("oss_instruct", "no code")])
def test_methods_that_draw_from_the_inputs_need_some(tmp_path, capsys, method, says):
    with serve(script) as server:
        cfg = synth_config(tmp_path, server, method, [])
        assert run_cli("run", "synth", "-c", str(cfg), "--workers", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert says in err[-1]


def test_transformers_backend_on_a_tiny_local_model_with_overridden_templates(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.tiny_models import WORDS, build_tiny_llama

    model = build_tiny_llama(tmp_path / "tiny")
    tpl = tmp_path / "templates"
    tpl.mkdir()
    for name in (
        "add_constraints",
        "deepening",
        "concretizing",
        "increased_reasoning_steps",
        "complicate_input",
    ):
        (tpl / f"evol_{name}.txt").write_text("what is {instruction}")
    (tpl / "evol_equality.txt").write_text("is {first} {second}")
    (tpl / "evol_answer.txt").write_text("{instruction}")
    rows = [{"instruction": " ".join(WORDS[i : i + 5]), "output": "the cat"} for i in range(4)]
    inputs = [{"path": write_jsonl(tmp_path / "in.jsonl", rows), "format": "alpaca"}]
    synth = {
        "method": "evol_instruct",
        "target": 4,
        "templates": str(tpl),
        "evol_instruct": {"rounds": 1, "breadth_share": 0.0},
        "backend": {
            "kind": "transformers",
            "model": str(model),
            "max_tokens": 8,
            "device": "cpu",
            "batch_size": 4,
        },
    }
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path / "run", inputs, stages={"synth": synth})
    assert run_cli("run", "synth", "-c", str(cfg), "--workers", "1") == 0
    records, rejects, manifest = read_stage(tmp_path / "run", "synth")
    c = manifest["counts"]
    assert c["in"] == c["out"] + c["rejected"] == len(records) + len(rejects) == 4
    s = manifest["synth"]
    assert s["backend"] == "transformers" and s["requests"] >= 8  # 4 evolutions, 4 equality checks, answers
    assert s["templates"]["evol_deepening"] != s["templates"].get("evol_breadth")
    for r in records:
        assert json.loads(r["meta"])["synth"]["model"] == str(model)
