"""`factory train` on a CPU: the shipped tiny recipe trains a tiny Llama through the real 4-bit path, the loss
falls on a memorisable set, the adapter loads back with peft, a cut-off run resumes, --merge writes a model that
equals base + adapter, and config or model mistakes are exit 2 with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_cli, write_jsonl
from tests.tiny_models import build_tiny_llama

pytest.importorskip("trl")
pytest.importorskip("peft")
pytest.importorskip("bitsandbytes")

CONVERSATIONS = [
    {
        "conversations": [
            {"from": "human", "value": "what is the cat"},
            {"from": "gpt", "value": "the cat sat"},
        ]
    },
    {
        "instruction": "how is the dog",
        "input": "",
        "output": "the dog ran fast",
        "history": [["hello", "hello world"]],
    },
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def recipe(tmp_path: Path, model: Path, **over) -> Path:
    """The shipped CPU recipe pointed at the tiny model and 16 memorisable samples."""
    cfg = yaml.safe_load((ROOT / "configs/train/lora-cpu-tiny.yaml").read_text())
    data = write_jsonl(tmp_path / "data.jsonl", [CONVERSATIONS[i % 2] for i in range(16)])
    cfg.update(
        model=str(model), data=str(data), validation=str(data), output_dir=str(tmp_path / "out"), **over
    )
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_tiny_recipe_trains_4bit_on_cpu_and_the_adapter_loads(tmp_path, tiny_model, caplog):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert run_cli("train", "-c", str(recipe(tmp_path, tiny_model, max_steps=20))) == 0
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 20 and metrics["device"] == "cpu" and metrics["peak_gpu_memory_gb"] is None
    assert all(torch.isfinite(torch.tensor(metrics[k])) for k in ("train_loss", "eval_loss"))
    assert metrics["last_logged_loss"] < metrics["first_logged_loss"] - 0.2
    assert metrics["tokens_seen"] > 0 and metrics["tokens_per_s"] > 0
    assert metrics["data"]["train"]["kept"] == 16
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert any("eval_loss" in e for e in log) and any("tokens_per_s" in e for e in log)
    assert json.loads((out / "train_config.json").read_text())["quantization"] == "4bit"
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [10, 20]

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(base, out)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # lora_B starts at zero: it was trained
    cfg = json.loads((out / "adapter_config.json").read_text())
    targets = {name.rsplit(".", 1)[-1] for name in cfg["target_modules"]}
    assert cfg["r"] == 8 and targets == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }


def test_quantized_base_is_4bit(tmp_path, tiny_model):
    import bitsandbytes as bnb

    from trainers.config import load_train_config
    from trainers.sft import load_model, pick_device

    cfg = load_train_config(recipe(tmp_path, tiny_model))
    device, dtype = pick_device(cfg)
    model = load_model(tiny_model, cfg, device, dtype)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 2 * 7 and layers[0].weight.quant_state.quant_type == "nf4"


def test_resume_after_a_crash_and_merge(tmp_path, tiny_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    path = recipe(tmp_path, tiny_model, max_steps=6, quantization="none", eval={"steps": 3})
    assert run_cli("train", "-c", str(path)) == 0
    out = tmp_path / "out"
    # A crash between step 3 and 6: only checkpoint-3 and nothing final.
    shutil.rmtree(out / "checkpoint-6")
    for name in ("adapter_model.safetensors", "metrics.json"):
        (out / name).unlink()
    assert run_cli("train", "-c", str(path), "--merge") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("checkpoint-3") and metrics["steps"] == 6

    ids = torch.tensor([[4, 20, 21, 7, 9, 5]])
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), out)
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)


def test_missing_model_is_exit_2(tmp_path, capsys):
    assert run_cli("train", "-c", str(recipe(tmp_path, tmp_path / "no-such-model"))) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "Traceback" not in err


def test_hub_name_not_in_cache_is_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert run_cli("train", "-c", str(recipe(tmp_path, "someorg/some-model"))) == 2
    assert "not in the local Hugging Face cache" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"lora": {"rank": 8}}, "unknown key `lora.rank`"),
        ({"quantization": "3bit"}, "`quantization`"),
        ({"max_steps": 0}, "`max_steps`"),
        ({"learning_rate": "fast"}, "`learning_rate`"),
    ],
)
def test_config_errors_name_the_key(tmp_path, tiny_model, capsys, over, message):
    assert run_cli("train", "-c", str(recipe(tmp_path, tiny_model, **over))) == 2
    assert message in capsys.readouterr().err


def test_shipped_recipes_validate():
    from trainers.config import load_train_config

    big = load_train_config(ROOT / "configs/train/qlora-7b.yaml")
    assert (big.quantization, big.bnb.quant_type, big.bnb.double_quant, big.bnb.compute_dtype) == (
        "4bit",
        "nf4",
        True,
        "bfloat16",
    )
    assert (big.lora.r, big.lora.alpha, big.lora.dropout, big.lora.target_modules) == (
        16,
        32,
        0.05,
        "all-linear",
    )
    assert (big.learning_rate, big.lr_scheduler, big.warmup_ratio, big.epochs) == (2e-4, "cosine", 0.03, 3)
    load_train_config(ROOT / "configs/train/lora-cpu-tiny.yaml")


def test_readme_train_reference_matches_the_config():
    import re

    from trainers.config import reference_table

    readme = (ROOT / "README.md").read_text()
    found = re.search(
        r"<!-- train-config-reference:start -->\n(.*?)\n<!-- train-config-reference:end -->", readme, re.S
    )
    assert found and found[1] == reference_table(), (
        "README's factory train table is stale: paste the output of "
        "python -c 'from trainers.config import reference_table; print(reference_table())'"
    )
