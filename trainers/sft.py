"""`factory train`: a thin QLoRA/LoRA SFT trainer over trl's `SFTTrainer` and peft (no home-made training loop).

Owns the wiring, in trl `scripts/sft.py`'s order: resolve the base model (a local folder, or a hub name already in
the local cache: nothing is downloaded), the device and dtypes, the tokenizer (pad token, chat template), the data
(`trainers.data`: `input_ids` + `labels` with loss on assistant tokens only), the quantised model, the LoRA config,
`SFTConfig`, the callbacks (console + trainer_log.jsonl, sample generations, early stopping), training (resumed
from the last checkpoint), and the outputs: adapter + tokenizer, `train_config.json` (the resolved config),
`metrics.json`, and with `merge=True` a merged model in OUTPUT_DIR/merged.

On a CPU the compute dtype is float32 and bf16 is off (bf16 matmuls are ~25x slower there), said in one log line;
bitsandbytes >= 0.49 runs NF4 on a CPU, so the 4-bit path is the same code there as on a GPU.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from factory.errors import UserError
from trainers.config import TrainConfig
from trainers.data import encode_all, ensure_pad, read_conversations, resolve_splits, resolve_template

log = logging.getLogger("factory")

DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


def _require_extra() -> None:
    try:
        import peft  # noqa: F401
        import trl  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f"factory train needs the `train` extra ({exc.name} is missing): pip install -e '.[train]'"
        ) from None


def resolve_model(name: str) -> Path:
    """The folder of the base model: a local folder, or a hub name already in the local cache (never downloaded)."""
    path = Path(name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"model {name}: the folder has no config.json (write it with save_pretrained)")
        return path
    if path.exists() or name.startswith((".", "/")) or name.count("/") > 1:
        raise UserError(f"model {name}: no such folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:
        raise UserError(
            f"model {name}: not a local folder and not in the local Hugging Face cache (nothing is downloaded; "
            "give the folder written by save_pretrained)"
        ) from None


def pick_device(cfg: TrainConfig) -> tuple[str, Any]:
    """(device, compute dtype): bf16 (or the configured dtype) on CUDA, float32 on a CPU."""
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda was asked for but no CUDA device is available")
    device = "cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu"
    if device == "cuda":
        dtype = getattr(torch, cfg.bnb.compute_dtype)
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            dtype = torch.float16
        return device, dtype
    return device, torch.float32


def _quantization_config(cfg: TrainConfig, dtype: Any) -> Any:
    from transformers import BitsAndBytesConfig

    if cfg.quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=cfg.bnb.quant_type,
            bnb_4bit_use_double_quant=cfg.bnb.double_quant,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=dtype,
        )
    if cfg.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_model(model_dir: Path, cfg: TrainConfig, device: str, dtype: Any) -> Any:
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    quant = _quantization_config(cfg, dtype)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=dtype,
        quantization_config=quant,
        device_map={"": device} if quant is not None else None,
        local_files_only=True,
    )
    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    model.config.use_cache = False  # the KV cache only costs memory while training
    return model


def _dataset(
    tokenizer: Any, template: str, files: list[Path], cfg: TrainConfig, split: str
) -> tuple[Any, dict]:
    from datasets import Dataset

    conversations = read_conversations(files)
    columns, stats = encode_all(tokenizer, template, conversations, cfg.max_length)
    log.info(
        "%s: %d samples from %d file(s) -> %d kept, %d truncated to %d tokens, %d dropped (no assistant token left "
        "after truncation); %d tokens, %d learned",
        split,
        stats.samples,
        len(files),
        stats.kept,
        stats.truncated,
        cfg.max_length,
        stats.dropped_no_learnable_tokens,
        stats.tokens,
        stats.learnable_tokens,
    )
    if stats.kept == 0:
        raise UserError(f"{split}: no sample left to train on (all {stats.samples} dropped)")
    return Dataset.from_dict(columns), stats.as_dict()


def _sft_config(cfg: TrainConfig, device: str, dtype: Any, has_eval: bool) -> Any:
    import importlib.util

    import torch
    from trl import SFTConfig

    quantized = cfg.quantization != "none"
    optim = cfg.optim
    if optim == "auto":
        optim = "paged_adamw_8bit" if device == "cuda" and quantized else "adamw_torch"
    early = has_eval and cfg.eval.early_stopping_patience is not None
    return SFTConfig(
        output_dir=cfg.output_dir,
        max_length=cfg.max_length,
        packing=cfg.packing,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the total steps
        max_grad_norm=cfg.max_grad_norm,
        weight_decay=cfg.weight_decay,
        optim=optim,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=device == "cuda" and dtype == torch.bfloat16,
        fp16=device == "cuda" and dtype == torch.float16,
        use_cpu=device == "cpu",
        logging_steps=cfg.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval.steps,
        save_strategy="steps",
        save_steps=cfg.eval.steps,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        seed=cfg.seed,
        report_to=["tensorboard"] if importlib.util.find_spec("tensorboard") else "none",
        disable_tqdm=True,
        dataset_num_proc=None,
    )


def _lora_config(cfg: TrainConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _callbacks(cfg: TrainConfig, tokenizer: Any, out: Path, has_eval: bool) -> list:
    from transformers import EarlyStoppingCallback, TrainerCallback

    class LogCallback(TrainerCallback):
        """Every log entry to the console (one line) and to trainer_log.jsonl, with tokens/s added."""

        def __init__(self) -> None:
            self.path = out / "trainer_log.jsonl"
            self.last = (time.monotonic(), 0)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            now = time.monotonic()
            if "num_tokens" in logs and "loss" in logs:
                t0, n0 = self.last
                logs["tokens_per_s"] = round((logs["num_tokens"] - n0) / max(now - t0, 1e-9), 1)
                self.last = (now, logs["num_tokens"])
            entry = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **logs}
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            keys = ("loss", "eval_loss", "grad_norm", "learning_rate", "tokens_per_s")
            shown = " ".join(f"{k}={_fmt(logs[k])}" for k in keys if k in logs)
            if shown:
                log.info("step %d/%d %s", state.global_step, state.max_steps, shown)

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = (time.monotonic(), 0)

    class SampleCallback(TrainerCallback):
        """Answers to the fixed prompts every N steps and at the end, to the console and samples.jsonl."""

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % cfg.eval.sample_every == 0:
                self.sample(state.global_step, model)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % cfg.eval.sample_every != 0:
                self.sample(state.global_step, model)

        def sample(self, step: int, model: Any) -> None:
            for prompt, answer in zip(cfg.eval.sample_prompts, generate(model, tokenizer, cfg), strict=True):
                log.info("sample at step %d: %r -> %r", step, prompt, answer)
                with (out / "samples.jsonl").open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": step, "prompt": prompt, "answer": answer}) + "\n")

    callbacks: list = [LogCallback()]
    if cfg.eval.sample_prompts:
        callbacks.append(SampleCallback())
    if has_eval and cfg.eval.early_stopping_patience is not None:
        callbacks.append(
            EarlyStoppingCallback(cfg.eval.early_stopping_patience, cfg.eval.early_stopping_threshold)
        )
    return callbacks


def generate(model: Any, tokenizer: Any, cfg: TrainConfig) -> list[str]:
    """Greedy answers of `model` to the config's sample prompts (one user turn each, in the training template)."""
    import torch

    was_training = model.training
    model.eval()
    answers = []
    try:
        for prompt in cfg.eval.sample_prompts:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            enc = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(model.device)
            with torch.no_grad():
                ids = model.generate(
                    **enc,
                    max_new_tokens=cfg.eval.sample_max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    use_cache=True,
                )
            answers.append(tokenizer.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))
    finally:
        model.train(was_training)
    return answers


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def train(cfg: TrainConfig, merge: bool = False) -> dict:
    """Train the adapter described by `cfg`; returns the metrics written to OUTPUT_DIR/metrics.json."""
    _require_extra()
    import torch
    from transformers import AutoTokenizer, PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTTrainer

    model_dir = resolve_model(cfg.model)
    train_files, val_files = resolve_splits(cfg.data, cfg.validation)
    device, dtype = pick_device(cfg)
    if device == "cpu":
        log.info(
            "no CUDA device: training on the CPU in float32 with bf16 off (bf16 is ~25x slower on a CPU)"
        )
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    pad_note = ensure_pad(tokenizer)
    template, template_note = resolve_template(tokenizer, cfg.chat_template)
    tokenizer.chat_template = template  # saved with the adapter: inference formats prompts as training did
    log.info("model %s on %s (%s, quantization %s); %s; %s", model_dir, device, dtype, cfg.quantization,
             template_note, pad_note)  # fmt: skip
    train_ds, train_stats = _dataset(tokenizer, template, train_files, cfg, "train")
    eval_ds, eval_stats = (
        _dataset(tokenizer, template, val_files, cfg, "validation") if val_files else (None, {})
    )
    if cfg.packing and device == "cpu":
        log.info("packing: attention is not kept within samples without a flash-attention backend")

    torch.manual_seed(cfg.seed)
    model = load_model(model_dir, cfg, device, dtype)
    trainer = SFTTrainer(
        model=model,
        args=_sft_config(cfg, device, dtype, eval_ds is not None),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=_lora_config(cfg),
        callbacks=_callbacks(cfg, tokenizer, out, eval_ds is not None),
    )
    trainer.remove_callback(PrinterCallback)
    if device == "cpu":
        # trl casts a quantised model's adapter to bf16 (QLoRA's recommendation on a GPU); on a CPU keep float32.
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    trainable, total = trainer.model.get_nb_trainable_parameters()
    log.info("LoRA r=%d on %s: %s trainable of %s parameters", cfg.lora.r, cfg.lora.target_modules,
             f"{trainable:,}", f"{total:,}")  # fmt: skip

    checkpoint = get_last_checkpoint(str(out)) if cfg.resume and out.is_dir() else None
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    if eval_ds is not None and (
        trainer.args.load_best_model_at_end or not evals or evals[-1]["step"] != trainer.state.global_step
    ):
        eval_metrics = trainer.evaluate()  # the final (or, with early stopping, the best) model
    else:
        eval_metrics = evals[-1] if evals else {}

    trainer.save_model(str(out))  # the adapter (adapter_config.json + adapter_model.safetensors)
    tokenizer.save_pretrained(out)
    (out / "train_config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
    metrics = _metrics(trainer, result, eval_metrics, train_stats, eval_stats, device, checkpoint)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info(
        "trained %d steps in %.1f s: train loss %.4f, eval loss %s, %s tokens/s -> %s",
        metrics["steps"],
        metrics["train_runtime_s"],
        metrics["train_loss"],
        _fmt(metrics["eval_loss"]),
        _fmt(metrics["tokens_per_s"]),
        out,
    )
    if merge:
        merge_adapter(model_dir, out, dtype)
    return metrics


def _metrics(trainer, result, eval_metrics, train_stats, eval_stats, device, checkpoint) -> dict:
    import torch

    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    tokens = max((h.get("num_tokens", 0) for h in history), default=0)
    runtime = result.metrics.get("train_runtime", 0.0)
    eval_loss = eval_metrics.get("eval_loss")
    return {
        "train_loss": result.training_loss,
        "first_logged_loss": losses[0] if losses else None,
        "last_logged_loss": losses[-1] if losses else None,
        "eval_loss": eval_loss,
        "eval_perplexity": math.exp(eval_loss) if eval_loss is not None and eval_loss < 50 else None,
        "best_eval_loss": trainer.state.best_metric,
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "tokens_seen": int(tokens),
        "train_runtime_s": runtime,
        "tokens_per_s": round(tokens / runtime, 1) if runtime and tokens else None,
        "steps_per_s": result.metrics.get("train_steps_per_second"),
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3)
        if device == "cuda"
        else None,
        "device": device,
        "resumed_from": checkpoint,
        "data": {"train": train_stats, "validation": eval_stats},
    }


def merge_adapter(model_dir: Path, out: Path, dtype: Any) -> Path:
    """Fold the adapter into an unquantised copy of the base and save it to OUTPUT_DIR/merged."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
    merged = PeftModel.from_pretrained(base, out).merge_and_unload()
    target = out / "merged"
    merged.save_pretrained(target)
    AutoTokenizer.from_pretrained(out).save_pretrained(target)
    log.info("merged model -> %s", target)
    return target
