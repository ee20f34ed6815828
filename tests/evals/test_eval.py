"""`factory eval` end to end: scoring a completions file, an OpenAI-compatible endpoint, a tiny local model with an
adapter, the training run's decontam warning and the report section, config errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest
import yaml

from factory.cli import main
from stages.decontam.benchmarks import locate, read_rows
from stages.decontam.config import BenchmarkSpec
from tests.fake_openai import serve


def reference(name: str) -> dict[str, dict]:
    rows = read_rows(locate(BenchmarkSpec(name=name)))
    if name == "mbpp":
        return {f"mbpp/{r['task_id']}": r for r in rows}
    return {r["task_id"]: r for r in rows}


def write_config(tmp_path: Path, **keys) -> Path:
    cfg = {"model": "none", "output_dir": str(tmp_path / "out")} | keys
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def results(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "results.json").read_text())


def test_completions_file_scores_right_wrong_and_runaway_programs(tmp_path):
    he, mbpp = reference("humaneval"), reference("mbpp")
    rows = []
    for i in range(4):  # one right and one wrong sample per task
        rows.append({"task_id": f"HumanEval/{i}", "completion": he[f"HumanEval/{i}"]["canonical_solution"]})
        rows.append({"task_id": f"HumanEval/{i}", "completion": "    return None\n"})
    rows += [{"task_id": "HumanEval/4", "completion": "    while True:\n        pass\n"}] * 2  # runs forever
    rows.append({"task_id": "Mbpp/11", "completion": mbpp["mbpp/11"]["code"]})  # EvalPlus spelling
    rows.append({"task_id": "mbpp/12", "completion": "def sort_matrix(m):\n    return m\n"})
    rows.append({"task_id": "gsm8k/test/0", "completion": "9 eggs are sold for $2 each.\n#### 18"})
    rows.append({"task_id": "gsm8k/test/1", "completion": "#### 7"})
    rows.append({"task_id": "mmlu/abstract_algebra/0", "completion": "Answer: B"})
    rows.append({"task_id": "mmlu/abstract_algebra/1", "completion": "Answer: A"})
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = write_config(tmp_path, k=[1, 2], sandbox={"timeout_s": 2, "cpu_s": 2})
    assert main(["eval", "-c", str(config), "--completions", str(samples)]) == 0
    res = results(tmp_path)
    he_res = res["benchmarks"]["humaneval"]
    assert [t["passed"] for t in he_res["per_task"]] == [1, 1, 1, 1, 0]
    assert he_res["scores"]["pass@1"]["score"] == pytest.approx(0.4)
    assert he_res["scores"]["pass@2"]["score"] == pytest.approx(0.8)
    assert {o["status"] for o in he_res["per_task"][4]["outcomes"]} == {"timeout"}
    assert he_res["per_task"][0]["outcomes"][1]["reason"] == "AssertionError"
    mbpp_res = res["benchmarks"]["mbpp"]
    assert mbpp_res["scores"]["pass@1"]["score"] == pytest.approx(0.5)
    assert mbpp_res["scores"]["skipped_k"] == [2]  # one sample per task: pass@2 cannot be estimated
    assert res["benchmarks"]["gsm8k"]["scores"]["accuracy"]["score"] == 0.5
    assert res["benchmarks"]["mmlu"]["scores"]["accuracy"]["score"] == 0.5
    assert res["sandbox"]["isolation"]["network"]
    assert res["model"]["completions"] == str(samples)


def test_references_pass_and_empty_bodies_fail(tmp_path):
    he = reference("humaneval")
    ids = [f"HumanEval/{i}" for i in range(0, 164, 16)]
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        "".join(json.dumps({"task_id": i, "completion": he[i]["canonical_solution"]}) + "\n" for i in ids)
    )
    config = write_config(tmp_path, k=[1])
    assert main(["eval", "-c", str(config), "--completions", str(samples)]) == 0
    assert results(tmp_path)["benchmarks"]["humaneval"]["scores"]["pass@1"]["score"] == 1.0
    samples.write_text("".join(json.dumps({"task_id": i, "completion": "    pass\n"}) + "\n" for i in ids))
    assert main(["eval", "-c", str(config), "--completions", str(samples)]) == 0
    assert results(tmp_path)["benchmarks"]["humaneval"]["scores"]["pass@1"]["score"] == 0.0


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"task_id": "HumanEval/0", "completion": "x"}\nnot json\n', "samples.jsonl:2: not valid JSON"),
        ('{"task_id": "HumanEval/0"}\n', "samples.jsonl:1: needs a string `completion`"),
        ('{"task_id": "arc/3", "completion": "x"}\n', "is not a humaneval, mbpp, gsm8k or mmlu id"),
        ('{"task_id": "HumanEval/999", "completion": "x"}\n', "humaneval has no task 'HumanEval/999'"),
    ],
)
def test_bad_completions_file_is_exit_2_naming_the_line(tmp_path, capsys, content, message):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(content)
    assert main(["eval", "-c", str(write_config(tmp_path)), "--completions", str(samples)]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"benchmarks": ["arc"]}, "benchmarks.0"),
        ({"n_samples": 0}, "n_samples"),
        ({"k": [0]}, "every k must be at least 1"),
        ({"temprature": 0.2}, "temprature"),
        ({"backend": "openai", "adapter": "x"}, "only the transformers backend loads an adapter"),
    ],
)
def test_config_errors_name_the_key(tmp_path, capsys, keys, message):
    assert main(["eval", "-c", str(write_config(tmp_path, **keys))]) == 2
    assert message in capsys.readouterr().err


def _endpoint_answer(he: dict):
    def answer(messages, body):
        prompt = messages[-1]["content"]
        if "Complete the following Python function" in prompt:
            code = re.search(r"```python\n(.*)```", prompt, re.S).group(1)
            task = next(t for t in he.values() if t["prompt"] == code)
            right = f"```python\n{code}{task['canonical_solution']}```"
            return [right, "```python\nraise SystemExit(1)\n```"][: body.get("n", 1)]
        if "Janet" in prompt:
            return "She sells 9 eggs at $2.\n#### 18"
        return "#### 0"

    return answer


def test_openai_endpoint_is_scored_and_a_rerun_asks_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    he = reference("humaneval")
    with serve(_endpoint_answer(he)) as fake:
        config = write_config(
            tmp_path,
            backend="openai",
            base_url=fake.base_url,
            model="served-model",
            benchmarks=["humaneval", "gsm8k"],
            limit=3,
            n_samples=2,
            temperature=0.8,
            k=[1, 2],
        )
        assert main(["eval", "-c", str(config)]) == 0
        sent = len(fake.requests)
        assert sent == 6  # 3 humaneval requests with n=2, 3 gsm8k requests
        res = results(tmp_path)
        assert res["benchmarks"]["humaneval"]["scores"]["pass@1"]["score"] == pytest.approx(0.5)
        assert res["benchmarks"]["humaneval"]["scores"]["pass@2"]["score"] == 1.0
        assert res["benchmarks"]["gsm8k"]["scores"]["accuracy"]["score"] == pytest.approx(1 / 3)
        assert all(r["n"] == 2 and r["temperature"] == 0.8 for r in fake.requests[:3] if r.get("n") == 2)
        lines = (tmp_path / "out" / "completions.jsonl").read_text().splitlines()
        assert len(lines) == 3 * 2 + 3 and orjson.loads(lines[0])["task_id"] == "HumanEval/0"
        assert main(["eval", "-c", str(config)]) == 0
        assert len(fake.requests) == sent  # every answer came from the cache
        # and the completions it wrote score the same when given back
        assert (
            main(["eval", "-c", str(config), "--completions", str(tmp_path / "out" / "completions.jsonl")])
            == 0
        )
        assert results(tmp_path)["benchmarks"]["humaneval"]["scores"]["pass@1"]["score"] == pytest.approx(0.5)


def test_completion_style_sends_plain_prompts_with_stops_and_scores_them(tmp_path):
    """`prompt_style: completion`: /v1/completions with HumanEval's own prompt and the Codex stops, MBPP's 3-shot
    [BEGIN] prompt and [DONE], `Question: ... Answer:`, MMLU's `Answer:`; the continuations are scored as they
    are (a right body passes, a wrong one fails)."""
    he, mbpp = reference("humaneval"), reference("mbpp")

    def answer(messages, body):
        (message,) = messages
        prompt = message["content"]
        assert message["role"] == "prompt" and prompt == body["prompt"]
        task = next((t for t in he.values() if t["prompt"] == prompt), None)
        if task is not None:
            return task["canonical_solution"] if task["task_id"] != "HumanEval/1" else "    return None\n"
        if prompt.endswith("[BEGIN]\n"):
            target = next(t for t in mbpp.values() if prompt.endswith(t["test_list"][-1] + "\n[BEGIN]\n"))
            return target["code"]
        if prompt.rsplit("Question: ", 1)[-1].startswith("Janet"):
            return " She sells 9 eggs at $2, so 18 dollars."
        if prompt.endswith("Answer:"):
            return " B"
        return " 0"

    with serve(answer) as fake:
        config = write_config(
            tmp_path,
            backend="openai",
            base_url=fake.base_url,
            model="base-model",
            benchmarks=["humaneval", "mbpp", "gsm8k", "mmlu"],
            limit=3,
            prompt_style="completion",
        )
        assert main(["eval", "-c", str(config)]) == 0
    bodies = {b["prompt"]: b for b in fake.requests}
    assert len(bodies) == 12 and all("messages" not in b for b in fake.requests)
    he_body = bodies[he["HumanEval/0"]["prompt"]]
    assert he_body["stop"] == ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
    mbpp_prompt = next(p for p in bodies if p.endswith("[BEGIN]\n"))
    assert mbpp_prompt.count("[DONE]") == 3 and bodies[mbpp_prompt]["stop"] == ["[DONE]"]
    assert mbpp["mbpp/2"]["code"].strip() in mbpp_prompt  # the paper's first example
    gsm = next(p for p in bodies if p.startswith("Question: "))
    assert gsm.endswith("\nAnswer:") and bodies[gsm]["stop"] == ["Question:"] and gsm.count("\n#### ") == 8
    mmlu = next(p for p in bodies if p.startswith("The following are multiple choice questions"))
    assert mmlu.endswith("\nAnswer:") and bodies[mmlu]["stop"] == ["\n"]
    res = results(tmp_path)["benchmarks"]
    assert res["humaneval"]["scores"]["pass@1"]["score"] == pytest.approx(2 / 3)  # HumanEval/1 answered wrong
    assert res["mbpp"]["scores"]["pass@1"]["score"] == 1.0
    assert res["gsm8k"]["scores"]["accuracy"]["score"] == pytest.approx(1 / 3)  # Janet's 18; the others 0
    assert [t["got"] for t in res["mmlu"]["per_task"]] == ["B"] * 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("peft")
    from tests.tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny"))


def _adapter(model_dir: Path, folder: Path, data: str) -> Path:
    """A LoRA adapter with non-zero weights (so it changes the answers) and the train_config.json the trainer
    writes beside it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    lora = LoraConfig(
        r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    get_peft_model(base, lora).save_pretrained(folder)
    (folder / "train_config.json").write_text(json.dumps({"model": str(model_dir), "data": data}))
    return folder


def _fake_run(run: Path) -> Path:
    """A run directory whose decontam stage found gsm8k/test/1 in the training data."""
    (run / "mix").mkdir(parents=True)
    (run / "mix" / "manifest.json").write_text(json.dumps({"stage": "mix", "status": "done"}))
    (run / "decontam").mkdir()
    decontam = {
        "benchmarks": {
            "gsm8k": {"items": 1319, "items_hit": 1, "records_removed": 2, "by_item": {"gsm8k/test/1": 2}},
            "mmlu": {"items": 14042, "items_hit": 0, "records_removed": 0, "by_item": {}},
        }
    }
    (run / "decontam" / "manifest.json").write_text(
        json.dumps({"stage": "decontam", "status": "done", "decontam": decontam})
    )
    return run


def test_tiny_model_with_adapter_carries_the_runs_contamination_warning(tmp_path, tiny, capsys):
    run = _fake_run(tmp_path / "run")
    adapter = _adapter(tiny, tmp_path / "adapter", str(run / "mix"))
    config = write_config(
        tmp_path,
        model=str(tiny),
        adapter=str(adapter),
        benchmarks=["gsm8k", "mmlu", "humaneval"],
        limit=3,
        max_new_tokens=6,
        batch_size=2,
        device="cpu",
        k=[1],
    )
    assert main(["eval", "-c", str(config)]) == 0
    res = results(tmp_path)
    assert res["adapter"]["fingerprint"] and res["model"]["fingerprint"]
    assert res["run_dir"] == str(run)
    gsm = res["benchmarks"]["gsm8k"]
    assert gsm["contamination"]["items"] == ["gsm8k/test/1"]
    assert any("decontam found 1 gsm8k item" in w for w in gsm["warnings"])
    assert gsm["scores_without_hit_items"]["accuracy"]["tasks"] == 2
    assert [t["hit_in_training_data"] for t in gsm["per_task"]] == [False, True, False]
    assert res["benchmarks"]["mmlu"]["contamination"]["items_hit"] == 0
    assert any("did not check humaneval" in w for w in res["benchmarks"]["humaneval"]["warnings"])
    assert res["generation"]["requests"] == 9
    err = capsys.readouterr().err
    assert "decontam found 1 gsm8k item" in " ".join(err.split())
    # registered with the run: `factory report` shows it
    (entry,) = (run / "evals").glob("*.json")
    assert json.loads(entry.read_text())["benchmarks"]["gsm8k"]["scores"]["accuracy"]["tasks"] == 3

    # the adapter changes the answers (and the cache key): the base alone answers differently
    base_out = tmp_path / "base"
    assert main(["eval", "-c", str(config), "--output-dir", str(base_out)]) == 0
    with_adapter = (tmp_path / "out" / "completions.jsonl").read_text()
    config_base = write_config(
        tmp_path, model=str(tiny), benchmarks=["gsm8k", "mmlu", "humaneval"], limit=3, max_new_tokens=6, k=[1]
    )
    assert main(["eval", "-c", str(config_base), "--output-dir", str(base_out)]) == 0
    assert (base_out / "completions.jsonl").read_text() != with_adapter


def test_missing_model_or_adapter_is_exit_2(tmp_path, capsys, tiny):
    assert main(["eval", "-c", str(write_config(tmp_path, model=str(tmp_path / "nope")))]) == 2
    assert "no such folder" in capsys.readouterr().err
    config = write_config(tmp_path, model=str(tiny), adapter=str(tmp_path))
    assert main(["eval", "-c", str(config)]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err


def test_readme_eval_reference_matches_the_config():
    from evals.config import reference_table
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    found = re.search(
        r"<!-- eval-config-reference:start -->\n(.*?)\n<!-- eval-config-reference:end -->", readme, re.S
    )
    assert found, "README.md lost its eval-config-reference markers"
    assert found.group(1) == reference_table(), "README's factory eval key table is stale: run `make docs`"


def test_failed_requests_count_as_wrong_samples_and_are_said(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    he = reference("humaneval")

    def fault(body, seen):
        return "400" if "separate_paren_groups" in body["messages"][-1]["content"] else None

    with serve(_endpoint_answer(he), faults=fault) as fake:
        config = write_config(
            tmp_path,
            backend="openai",
            base_url=fake.base_url,
            model="served-model",
            benchmarks=["humaneval"],
            limit=2,
            n_samples=2,
            temperature=0.8,
            k=[1, 2],
        )
        assert main(["eval", "-c", str(config)]) == 0
    bench = results(tmp_path)["benchmarks"]["humaneval"]
    assert bench["generation_failures"] == 2
    assert [(t["n"], t["passed"]) for t in bench["per_task"]] == [(2, 1), (2, 0)]
    assert bench["scores"]["pass@2"]["score"] == pytest.approx(0.5)
    assert any("2 sample(s) got no answer" in w for w in bench["warnings"])
