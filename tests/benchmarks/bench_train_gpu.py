"""Benchmark: `factory train` on a GPU, QLoRA (4-bit NF4 base, bf16 compute) against bf16 LoRA. One JSON line.

Nothing can be downloaded, so the base is a randomly initialised ~1.1B-parameter Llama shaped like TinyLlama
(hidden 2048, intermediate 5632, 22 layers, 32 heads, 4 KV heads, vocabulary 32,000), saved with save_pretrained
next to a word-level tokenizer built here (as tests/tiny_models.py does) with the tiny test chat template. The data
are 500 synthetic conversations of exactly 2,003 tokens each (a user turn of 200-600 words, an assistant answer
making up 2,000 words, the markers and EOS), trained with `max_length` 2,048, batch 4, no gradient accumulation,
gradient checkpointing on. Random weights train as fast as real ones: speed and memory depend on shapes only.

Each mode runs the trainer's own code (`trainers.sft.build_trainer`: the same model loading, k-bit preparation,
LoRA r 16 / alpha 32 on every linear layer, `SFTConfig`, optimizer choice: paged 8-bit AdamW for QLoRA, AdamW
for bf16 LoRA) in a subprocess of its own, so that one mode's allocations cannot colour the other's figures:
- `tokens_per_s`: tokens trained per second over `--steps` optimizer steps (30) after `--warmup` steps (5), the
  clock read at step ends after a CUDA synchronise;
- `peak_gpu_memory_gb`: torch.cuda.max_memory_allocated() over model preparation and training (reset once the
  base is loaded: it includes the base, adapter, optimizer state and activations);
- `base_footprint_gb`: the base as loaded (`model.get_memory_footprint()`, before peft's k-bit preparation
  upcasts the non-quantised layers to float32), and `base_allocated_gb`, the CUDA memory the load allocated
  (it also counts the 4-bit quantisation constants, which are not parameters);
- `trained_footprint_gb`: the model that trains (base after k-bit preparation + adapter);
- `ratios`: qlora / bf16_lora of each (expected: about 0.25-0.35 for the base footprint: 4-bit linear layers,
  embeddings and output head still in bf16).

Usage (on a machine with CUDA and the `train` extra):
    python tests/benchmarks/bench_train_gpu.py [--steps 30] [--warmup 5] [--conversations 500] [--batch-size 4]
    python tests/benchmarks/bench_train_gpu.py --dry-run   # CPU plumbing check: 2-layer 64-hidden model, 3 steps
Without CUDA (and without --dry-run) it prints {"bench": "train_gpu", "skipped": "no CUDA device"} and exits 0.
`--dry-run` runs both modes on the CPU (bitsandbytes runs NF4 there; compute is float32, so "bf16_lora" is fp32)
with a tiny model and data: its figures mean nothing, it only shows the plumbing works.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.tiny_models import SPECIALS, save_word_tokenizer  # noqa: E402

MODES = {"qlora": "4bit", "bf16_lora": "none"}
FULL = {
    "model": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=32000,
        max_position_embeddings=2048,
    ),
    "words_per_sample": 2000,
    "max_length": 2048,
}
TINY = {
    "model": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1000,
        max_position_embeddings=256,
    ),
    "words_per_sample": 100,
    "max_length": 128,
}


def build_model(folder: Path, shape: dict, device: str) -> int:
    """A random Llama of `shape` in bf16 and a word-level tokenizer of its vocabulary size; returns its parameters."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    words = [f"w{i}" for i in range(shape["vocab_size"] - len(SPECIALS))]
    save_word_tokenizer(folder, words, mark_special=True)
    torch.manual_seed(0)
    config = LlamaConfig(**shape, pad_token_id=0, bos_token_id=2, eos_token_id=3, tie_word_embeddings=False)
    with torch.device(device):  # random init on the GPU takes seconds, on a CPU a minute for 1.1B parameters
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    params = model.num_parameters()
    model.save_pretrained(folder)
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()  # the workers are other processes: leave them the memory
    return params


def write_data(path: Path, n: int, words: int, vocab: int) -> None:
    """n conversations of exactly `words` words (+ 3 tokens: the two markers and EOS) in messages format."""
    rng = random.Random(0)
    pool = [f"w{i}" for i in range(vocab - len(SPECIALS))]
    with path.open("w", encoding="utf-8") as f:
        for _ in range(n):
            user = rng.randint(words // 10, words * 3 // 10)
            text = rng.choices(pool, k=words)
            messages = [
                {"role": "user", "content": " ".join(text[:user])},
                {"role": "assistant", "content": " ".join(text[user:])},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")


def worker(args: argparse.Namespace) -> dict:
    """One mode: load the base alone for its footprint, then the trainer's own build and `steps` timed steps."""
    import torch
    from transformers import AutoModelForCausalLM, TrainerCallback

    from factory.log import setup_console
    from trainers.config import TrainConfig
    from trainers.sft import build_trainer, pick_device, quantization_config

    setup_console()  # the trainer's log lines to stderr; stdout carries the JSON
    work = Path(args.workdir)
    shape = TINY if args.dry_run else FULL
    cfg = TrainConfig(
        model=str(work / "model"),
        data=str(work / "data.jsonl"),
        output_dir=str(work / f"out-{args.worker}"),
        quantization=MODES[args.worker],
        max_length=shape["max_length"],
        max_steps=args.warmup + args.steps,
        batch_size=args.batch_size,
        grad_accum=1,
        logging_steps=args.warmup + args.steps,
        warmup_ratio=0.0,
        resume=False,
        device="cpu" if args.dry_run else "cuda",
    )
    cuda = cfg.device == "cuda"
    device, dtype = pick_device(cfg)

    quant = quantization_config(cfg, dtype)
    before = torch.cuda.memory_allocated() if cuda else 0
    base = AutoModelForCausalLM.from_pretrained(
        cfg.model,
        dtype=dtype,
        quantization_config=quant,
        device_map={"": device},
        local_files_only=True,
    )
    footprint = base.get_memory_footprint()
    allocated = torch.cuda.memory_allocated() - before if cuda else None
    del base
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    run = build_trainer(cfg)
    trainer = run.trainer
    marks: dict[int, tuple[float, int]] = {}
    tokens_per_sample = shape["words_per_sample"] + 3

    class Clock(TrainerCallback):
        """(time, tokens trained) at the end of the warm-up and of the timed steps."""

        def on_step_end(self, a, state, control, **kwargs):
            if state.global_step in (args.warmup, args.warmup + args.steps):
                if cuda:
                    torch.cuda.synchronize()
                # trl counts the tokens of every batch; equal-length samples make the fallback exact too
                seen = getattr(trainer, "_total_train_tokens", None)
                if seen is None:
                    seen = state.global_step * args.batch_size * tokens_per_sample
                marks[state.global_step] = (time.perf_counter(), int(seen))

    trainer.add_callback(Clock())
    trainer.train()
    (t0, n0), (t1, n1) = marks[args.warmup], marks[args.warmup + args.steps]
    trainable, _ = trainer.model.get_nb_trainable_parameters()
    peak = torch.cuda.max_memory_allocated() if cuda else None
    gib = 2**30
    return {
        "tokens_per_s": round((n1 - n0) / (t1 - t0), 1),
        "step_s": round((t1 - t0) / args.steps, 4),
        "peak_gpu_memory_gb": round(peak / gib, 3) if cuda else None,
        "base_footprint_gb": round(footprint / gib, 4),
        "base_allocated_gb": round(allocated / gib, 4) if allocated is not None else None,
        "trained_footprint_gb": round(trainer.model.get_memory_footprint() / gib, 4),
        "bytes": {"peak": peak, "base_footprint": footprint, "base_allocated": allocated},
        "trainable_params": trainable,
        "optimizer": trainer.args.optim.value
        if hasattr(trainer.args.optim, "value")
        else str(trainer.args.optim),
        "tokens_timed": n1 - n0,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per mode")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny model on the CPU: checks the plumbing only"
    )
    parser.add_argument("--worker", choices=sorted(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dry_run and args.worker is None:
        args.steps, args.warmup, args.conversations, args.batch_size = 2, 1, 16, 2
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return 0

    import torch

    if not torch.cuda.is_available() and not args.dry_run:
        print(json.dumps({"bench": "train_gpu", "skipped": "no CUDA device"}))
        return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    shape = TINY if args.dry_run else FULL
    with tempfile.TemporaryDirectory(prefix="bench-train-gpu-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        params = build_model(work / "model", shape["model"], "cpu" if args.dry_run else "cuda")
        write_data(
            work / "data.jsonl", args.conversations, shape["words_per_sample"], shape["model"]["vocab_size"]
        )
        logging.info("model (%s parameters) and data in %.1f s", f"{params:,}", time.perf_counter() - t)
        results = {}
        for mode in MODES:
            cmd = [sys.executable, __file__, "--worker", mode, "--workdir", tmp, "--steps", str(args.steps)]
            cmd += ["--warmup", str(args.warmup), "--batch-size", str(args.batch_size)]
            cmd += ["--dry-run"] if args.dry_run else []
            done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    q, b = results["qlora"]["bytes"], results["bf16_lora"]["bytes"]
    print(
        json.dumps(
            {
                "bench": "train_gpu",
                "dry_run": args.dry_run,
                "device": torch.cuda.get_device_name() if not args.dry_run else "cpu",
                "model": {"params": params, **shape["model"]},
                "data": {
                    "conversations": args.conversations,
                    "tokens_per_sample": shape["words_per_sample"] + 3,
                    "max_length": shape["max_length"],
                    "batch_size": args.batch_size,
                },
                "warmup_steps": args.warmup,
                "steps": args.steps,
                **results,
                "ratios": {
                    "base_footprint_qlora_over_bf16": ratio(q["base_footprint"], b["base_footprint"]),
                    "base_allocated_qlora_over_bf16": ratio(q["base_allocated"], b["base_allocated"]),
                    "peak_memory_qlora_over_bf16": ratio(q["peak"], b["peak"]),
                    "tokens_per_s_qlora_over_bf16": ratio(
                        results["qlora"]["tokens_per_s"], results["bf16_lora"]["tokens_per_s"]
                    ),
                },
                "expected": "base_footprint ratio about 0.25-0.35 (QLoRA holds the base in ~1/4 of bf16's memory)",
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
