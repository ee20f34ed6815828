"""`factory train` on a CPU: the shipped tiny recipe trains a tiny Llama through the real 4-bit path, the loss
falls on a memorisable set, the adapter loads back with peft, a cut-off run resumes, --merge writes a model that
equals base + adapter, and config or model mistakes are exit 2 with one line."""

from __future__ import annotations

import itertools
import json
import math
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
    cfg.update(model=str(model), data=str(data), validation=str(data), output_dir=str(tmp_path / "out"))
    cfg.update(over)
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


def test_early_stopping_stops_when_eval_loss_stops_improving(tmp_path, tiny_model, capsys):
    # A learning rate of 1e-8 cannot move the eval loss by the 1.0 the threshold asks for: the first evaluation
    # (step 2) sets the best, the second (step 4) is one without improvement, and patience 1 stops there.
    path = recipe(
        tmp_path,
        tiny_model,
        max_steps=20,
        learning_rate=1e-8,
        quantization="none",
        eval={"steps": 2, "early_stopping_patience": 1, "early_stopping_threshold": 1.0},
    )
    assert run_cli("train", "-c", str(path)) == 0
    assert (
        "early stopping at step 4 of 20: eval loss did not improve by more than 1" in capsys.readouterr().err
    )
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped_early"] is True
    assert metrics["steps"] == 4 < metrics["max_steps"] == 20
    assert metrics["best_checkpoint"] and metrics["best_eval_loss"] is not None  # the best one was loaded
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "eval_loss" in e][:2] == [2, 4]


def test_trains_to_max_steps_without_stopping_early(tmp_path, tiny_model):
    path = recipe(tmp_path, tiny_model, max_steps=4, quantization="none", eval={"steps": 2})
    assert run_cli("train", "-c", str(path)) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["stopped_early"] is False and metrics["steps"] == 4


def distinct_conversations(n: int) -> list[dict]:
    """n conversations with different words, so a token sequence names its sample."""
    from tests.tiny_models import WORDS

    return [
        {
            "conversations": [
                {"from": "human", "value": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 4))},
                {"from": "gpt", "value": " ".join(WORDS[(3 * i + k) % len(WORDS)] for k in range(2 + i % 3))},
            ]
        }
        for i in range(n)
    ]


def test_packing_keeps_samples_apart(tmp_path, tiny_model, capsys):
    """What reaches the model: position_ids restart at each sample, each sample's labels are its own, and the
    logits of a packed row equal those of its samples run one by one (sdpa and eager on a CPU)."""
    import torch

    from factory.log import setup_console
    from trainers.config import load_train_config
    from trainers.data import encode, read_conversations, resolve_files
    from trainers.sft import build_trainer

    path = recipe(tmp_path, tiny_model, packing=True, max_length=40, quantization="none", max_steps=2)
    cfg = load_train_config(path)
    cfg.data = cfg.validation = str(write_jsonl(tmp_path / "distinct.jsonl", distinct_conversations(12)))
    setup_console()
    run = build_trainer(cfg)
    err = capsys.readouterr().err
    assert "packing: samples packed padding-free" in err and "sdpa attention stays within each sample" in err

    samples = {}
    for messages in read_conversations(resolve_files(cfg.data)):
        enc = encode(run.tokenizer, run.tokenizer.chat_template, messages, cfg.max_length)
        samples[tuple(enc["input_ids"])] = enc["labels"]
    batch = next(iter(run.trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # one padding-free row
    ids, labels, positions = batch["input_ids"][0], batch["labels"][0], batch["position_ids"][0]
    starts = (positions == 0).nonzero().flatten().tolist() + [len(ids)]
    assert len(starts) > 3  # several samples in the row
    segments = []
    for start, end in itertools.pairwise(starts):
        assert positions[start:end].tolist() == list(range(end - start))
        key = tuple(ids[start:end].tolist())
        assert key in samples  # a whole sample, nothing of its neighbours
        assert labels[start:end].tolist() == samples[key]  # its own labels (the first is -100 anyway)
        segments.append((start, end))

    model = run.trainer.model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    for impl in ("sdpa", "eager"):
        model.base_model.model.set_attn_implementation(impl)
        with torch.no_grad():
            packed = model(**inputs).logits[0]
            concatenated = model(input_ids=batch["input_ids"]).logits[0]  # no position_ids: one long sequence
            for start, end in segments:
                alone = model(input_ids=ids[None, start:end]).logits[0]
                assert torch.allclose(packed[start:end], alone, atol=1e-5), (impl, start)
            start, end = segments[-1]
            assert not torch.allclose(concatenated[start:end], packed[start:end], atol=1e-3)

    model.base_model.model.set_attn_implementation("sdpa")
    result = run.trainer.train()
    assert run.trainer.state.global_step == 2 and math.isfinite(result.training_loss)


def test_tensorboard_gets_the_logged_scalars(tmp_path, tiny_model, capsys):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (it is in the train extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = recipe(tmp_path, tiny_model, max_steps=4, quantization="none", logging_steps=2, eval={"steps": 2})
    assert run_cli("train", "-c", str(path)) == 0
    assert "TensorBoard: tensorboard --logdir" in capsys.readouterr().err
    # One run folder (OUTPUT_DIR/runs/<date>_<host>); the final evaluation after training opens a second file.
    [run_dir] = {p.parent for p in (tmp_path / "out" / "runs").glob("*/events.out.tfevents.*")}
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/grad_norm", "train/learning_rate", "train/tokens_per_s", "eval/loss"} <= tags
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4]


def test_tensorboard_off_is_said(tmp_path, tiny_model, capsys, monkeypatch):
    import trainers.sft

    monkeypatch.setattr(trainers.sft, "tensorboard_available", lambda: False)
    path = recipe(tmp_path, tiny_model, max_steps=1, quantization="none", validation=None)
    assert run_cli("train", "-c", str(path)) == 0
    assert "TensorBoard is off (not installed: pip install tensorboard)" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()


def test_hub_name_resolved_from_the_local_cache(tmp_path, capsys, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someorg--tiny-llama"
    snapshot = build_tiny_llama(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    path = recipe(tmp_path, "someorg/tiny-llama", max_steps=1, quantization="none", validation=None)
    assert run_cli("train", "-c", str(path)) == 0
    assert f"model {snapshot} on cpu" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["steps"] == 1


def test_chatml_markers_become_trained_special_tokens(tmp_path, tiny_model, capsys):
    """The tiny tokenizer has no <|im_start|>/<|im_end|>: they are added as special tokens, the embedding and
    output rows grow, the adapter trains those rows (4-bit base), and adapter + tokenizer load back and generate."""
    import torch
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.data import TEMPLATES, encode

    path = recipe(tmp_path, tiny_model, max_steps=4, chat_template="chatml", validation=None)
    assert run_cli("train", "-c", str(path), "--merge") == 0
    assert "added special tokens <|im_start|>, <|im_end|>" in capsys.readouterr().err
    out = tmp_path / "out"
    assert json.loads((out / "metrics.json").read_text())["added_tokens"] == ["<|im_start|>", "<|im_end|>"]

    tok = AutoTokenizer.from_pretrained(out)
    base_len = len(AutoTokenizer.from_pretrained(tiny_model))
    start, end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert len(tok) == base_len + 2 and {start, end} == {base_len, base_len + 1}
    turns = [{"role": "user", "content": "what is the cat"}, {"role": "assistant", "content": "the cat sat"}]
    enc = encode(tok, TEMPLATES["chatml"], turns, 64)
    assert enc["input_ids"].count(start) == 2 and enc["input_ids"].count(end) == 2
    assert end in enc["labels"]  # the assistant's <|im_end|> is learned: one token the model can emit

    with safe_open(out / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
        deltas = {k: f.get_tensor(k) for k in keys if "trainable_tokens_delta" in k}
    assert sorted(k.split(".token_adapter.")[0].rsplit(".", 1)[-1] for k in deltas) == [
        "embed_tokens",
        "lm_head",
    ]
    assert all(v.shape[0] == 2 for v in deltas.values())  # just the two new rows of each
    assert not any(k.endswith(("embed_tokens.weight", "lm_head.weight")) for k in keys)  # no full matrices

    text = tok.apply_chat_template(turns[:1], tokenize=False, add_generation_prompt=True)
    prompt = tok(text, return_tensors="pt")
    logits, new_rows = [], []
    for mean_resizing in (True, False):  # other start values of the new rows: the adapter must override them
        base = AutoModelForCausalLM.from_pretrained(tiny_model)
        base.resize_token_embeddings(len(tok), mean_resizing=mean_resizing)
        new_rows.append(base.get_input_embeddings().weight[-2:].detach().clone())
        model = PeftModel.from_pretrained(base, out).eval()
        with torch.no_grad():
            logits.append(model(**prompt).logits)
            generated = model.generate(
                **prompt, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id
            )
        assert generated.shape[1] > prompt["input_ids"].shape[1]
    assert not torch.allclose(new_rows[0], new_rows[1], atol=1e-3)
    assert torch.allclose(logits[0], logits[1], atol=1e-5)
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    assert merged.get_input_embeddings().num_embeddings == len(tok)
    with torch.no_grad():
        assert torch.allclose(merged(**prompt).logits, logits[0], atol=1e-4)


def test_added_marker_rows_are_trained(tmp_path, tiny_model):
    """The new tokens' embedding and output rows get gradients through trl's fused LM head (4-bit base)."""
    import torch

    from trainers.config import load_train_config
    from trainers.sft import build_trainer

    cfg = load_train_config(
        recipe(tmp_path, tiny_model, max_steps=1, chat_template="llama3", validation=None)
    )
    run = build_trainer(cfg)
    assert run.added_tokens == ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    rows = {n: p for n, p in run.trainer.model.named_parameters() if "trainable_tokens_delta" in n}
    assert len(rows) == 2 and all(p.requires_grad and p.shape[0] == 3 for p in rows.values())
    before = {n: p.detach().clone() for n, p in rows.items()}
    run.trainer.train()
    assert all(not torch.equal(before[n], p) for n, p in rows.items())


def test_trainable_token_layers_follow_tying_and_refuse_an_output_bias():
    import torch

    from factory.errors import UserError
    from trainers.sft import trainable_token_layers

    class Tiny(torch.nn.Module):
        def __init__(self, bias=False, tied=False):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)
            self.head = torch.nn.Linear(4, 10, bias=bias)
            if tied:
                self.head.weight = self.embed.weight

        def get_input_embeddings(self):
            return self.embed

        def get_output_embeddings(self):
            return self.head

    assert trainable_token_layers(Tiny(), []) is None
    assert trainable_token_layers(Tiny(), [8, 9]) == {"embed": [8, 9], "head": [8, 9]}
    assert trainable_token_layers(Tiny(tied=True), [8, 9]) == {"embed": [8, 9]}  # peft ties the head itself
    with pytest.raises(UserError, match="bias"):
        trainable_token_layers(Tiny(bias=True), [8, 9])


def test_packing_note_warns_for_an_attention_that_may_cross_samples():
    from types import SimpleNamespace

    from trainers.sft import packing_note

    def note(impl):
        return packing_note(SimpleNamespace(config=SimpleNamespace(_attn_implementation=impl)))

    assert "flash_attention_2 attention stays within each sample" in note("flash_attention_2")
    assert "may attend across packed samples" in note("paged|my_kernel")
