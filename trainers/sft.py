"""`factory train`: a thin QLoRA/LoRA SFT trainer over trl's `SFTTrainer` and peft (no home-made training loop).

Owns the wiring, in trl `scripts/sft.py`'s order: resolve the base model (a local folder, or a hub name already in
the local cache: nothing is downloaded), the device and dtypes, the tokenizer (pad token, chat template, the
built-in template's markers added as special tokens when it lacks them), the data (`trainers.data`: `input_ids` +
`labels` with loss on assistant tokens only), the quantised model (embeddings resized for added markers), the LoRA
config (plus the added markers' embedding and output rows as peft trainable tokens), `SFTConfig`, the callbacks
(console + trainer_log.jsonl, TensorBoard when installed, sample generations, early stopping), training (resumed
from the last checkpoint), and the outputs: adapter + tokenizer, `train_config.json` (the resolved config),
`metrics.json`, and with `merge=True` a merged model in OUTPUT_DIR/merged. `build_trainer` does everything up to
training, so tests can look at what reaches the model.

Packing is trl's padding-free best-fit packing: a batch is one row of whole samples whose `position_ids` restart
at 0 at each sample, and whose first label of each sample is -100. transformers builds a block-diagonal causal
mask from those position_ids for sdpa/eager/flex attention (`masking_utils.find_packed_sequence_indices`), and
flash attention takes the boundaries as varlen lengths, so no sample attends to another; one log line says so, or
warns for an attention implementation that may not (tests/trainers compares packed logits with unpacked ones).

On a CPU the compute dtype is float32 and bf16 is off (bf16 matmuls are ~25x slower there), said in one log line;
bitsandbytes >= 0.49 runs NF4 on a CPU, so the 4-bit path is the same code there as on a GPU.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.errors import UserError
from trainers.config import TrainConfig
from trainers.data import (
    add_marker_tokens,
    encode_all,
    ensure_pad,
    read_conversations,
    resolve_splits,
    resolve_template,
)

log = logging.getLogger("factory")

DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}
# Attention implementations that keep packed samples apart: the first three get a block-diagonal mask built from
# position_ids, flash attention ("flash_attention_2", "kernels-community/flash-attn" ...) gets varlen boundaries.
PACKING_SAFE_ATTENTION = ("eager", "sdpa", "flex_attention")


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

        # HF_HUB_CACHE read now, not when huggingface_hub was imported (it caches the environment at import).
        cache = os.environ.get("HF_HUB_CACHE") or None
        return Path(snapshot_download(name, cache_dir=cache, local_files_only=True))
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


def quantization_config(cfg: TrainConfig, dtype: Any) -> Any:
    """The bitsandbytes config of the base (None without quantization)."""
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


def load_model(
    model_dir: Path, cfg: TrainConfig, device: str, dtype: Any, num_tokens: int | None = None
) -> Any:
    """The base model, quantised as configured, its embeddings grown to `num_tokens` rows when the tokenizer has
    more tokens than the model has rows (markers added); never shrunk (many models pad their vocabulary)."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    quant = quantization_config(cfg, dtype)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=dtype,
        quantization_config=quant,
        device_map={"": device} if quant is not None else None,
        local_files_only=True,
    )
    if num_tokens is not None and num_tokens > model.get_input_embeddings().num_embeddings:
        # New rows start at the mean of the old ones (transformers' mean_resizing); the adapter trains them.
        model.resize_token_embeddings(num_tokens, mean_resizing=True)
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


def tensorboard_available() -> bool:
    """Whether transformers' TensorBoard callback can write (it uses torch.utils.tensorboard or tensorboardX)."""
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def _sft_config(cfg: TrainConfig, device: str, dtype: Any, has_eval: bool) -> Any:
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
        report_to=["tensorboard"] if tensorboard_available() else "none",
        disable_tqdm=True,
        dataset_num_proc=None,
    )


def _lora_config(cfg: TrainConfig, trainable_tokens: dict[str, list[int]] | None = None) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
        trainable_token_indices=trainable_tokens,
    )


def trainable_token_layers(model: Any, token_ids: list[int]) -> dict[str, list[int]] | None:
    """peft `trainable_token_indices` for added tokens: their rows of the input embedding and, when it is not tied
    to it, of the output layer (to be read and to be emitted). None when no token was added.

    peft stores the trained rows whole (`trainable_tokens_delta` holds the values, not a difference), so the
    adapter alone carries the new tokens: a base resized to the tokenizer's length loads it, whatever values the
    resize gave the new rows. A tied output layer is tied to the trained rows by peft itself."""
    if not token_ids:
        return None
    names = {id(m): n for n, m in model.named_modules()}
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        # peft's trainable-tokens forward drops an output bias (peft issue 3649): the logits would be wrong.
        raise UserError(
            "the model's output layer has a bias, which peft's trainable tokens do not support, so the template's "
            "markers cannot be added: use `chat_template: auto` or a template whose markers the tokenizer has"
        )
    layers = {names[id(embed)]: list(token_ids)}
    if head is not None and head.weight is not embed.weight:
        layers[names[id(head)]] = list(token_ids)
    return layers


def packing_note(model: Any) -> str:
    """One log line on whether packed samples stay apart in attention (see the module docstring)."""
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    if impl in PACKING_SAFE_ATTENTION or "flash" in impl:
        return (
            f"packing: samples packed padding-free (position_ids restart at 0 in each, the first token of each is "
            f"not learned); {impl} attention stays within each sample"
        )
    return (
        f"packing: the {impl} attention implementation may attend across packed samples (only eager, sdpa, "
        "flex_attention and flash attention are known to keep them apart); set packing: false to be safe"
    )


def _callbacks(cfg: TrainConfig, tokenizer: Any, out: Path, has_eval: bool) -> list:
    from transformers import EarlyStoppingCallback, TrainerCallback

    class LogCallback(TrainerCallback):
        """Every log entry to the console (one line) and to trainer_log.jsonl, with tokens/s added."""

        def __init__(self) -> None:
            self.path = out / "trainer_log.jsonl"
            self.last = (time.monotonic(), 0)

        def on_log(self, args, state, control, logs=None, **kwargs):
            # tokens_per_s goes into the trainer's own dict so the TensorBoard callback, run after this one,
            # records it too (the trainer keeps its own copy in log_history).
            logs = logs if logs is not None else {}
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


@dataclass
class Prepared:
    """Everything `train` needs once the trainer is built (and tests look at)."""

    trainer: Any
    tokenizer: Any
    model_dir: Path
    out: Path
    device: str
    dtype: Any
    stats: dict = field(default_factory=dict)
    added_tokens: list[str] = field(default_factory=list)


def build_trainer(cfg: TrainConfig) -> Prepared:
    """Model, tokenizer, data, LoRA and callbacks wired into an `SFTTrainer`, ready to train."""
    _require_extra()
    import torch
    from transformers import AutoTokenizer, PrinterCallback
    from transformers.integrations import TensorBoardCallback
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
    added = add_marker_tokens(tokenizer, template)
    if added:
        log.info("added special tokens %s (the tokenizer lacked the template's markers): their embedding and "
                 "output rows are trained with the adapter", ", ".join(added))  # fmt: skip
    train_ds, train_stats = _dataset(tokenizer, template, train_files, cfg, "train")
    eval_ds, eval_stats = (
        _dataset(tokenizer, template, val_files, cfg, "validation") if val_files else (None, {})
    )

    torch.manual_seed(cfg.seed)
    model = load_model(model_dir, cfg, device, dtype, num_tokens=len(tokenizer) if added else None)
    if cfg.packing:
        log.info(packing_note(model))
    token_layers = trainable_token_layers(model, tokenizer.convert_tokens_to_ids(added))
    has_eval = eval_ds is not None
    trainer = SFTTrainer(
        model=model,
        args=_sft_config(cfg, device, dtype, has_eval),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=_lora_config(cfg, token_layers),
        callbacks=_callbacks(cfg, tokenizer, out, has_eval),
    )
    trainer.remove_callback(PrinterCallback)
    tensorboard = trainer.pop_callback(TensorBoardCallback)
    if tensorboard is not None:
        trainer.add_callback(tensorboard)  # after LogCallback, which adds tokens_per_s to the logs
        log.info("TensorBoard: tensorboard --logdir %s", out / "runs")
    else:
        log.info("TensorBoard is off (not installed: pip install tensorboard)")
    if device == "cpu":
        # trl casts a quantised model's adapter to bf16 (QLoRA's recommendation on a GPU); on a CPU keep float32.
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    if token_layers:
        # trl's fused LM head reads `lm_head.weight` and `lm_head.bias`; peft's wrapper of a trainable-token output
        # layer (untied, or tied to the embedding) serves `.weight` (the merged rows, so gradients reach the new
        # ones) but not `.bias`. The head has none (trainable_token_layers refuses one), so say so.
        head = trainer.model.get_output_embeddings()
        if head is not None and not hasattr(head, "bias"):
            head.bias = None
        # peft would save the whole resized embedding and output matrices with every checkpoint (fp32 after
        # prepare_model_for_kbit_training: ~1 GB for a 7B model), but the trainable tokens already hold the new
        # rows whole and the other rows are the base's, so the adapter alone restores the model.
        trainer.model.save_pretrained = functools.partial(
            trainer.model.save_pretrained, save_embedding_layers=False
        )
    trainable, total = trainer.model.get_nb_trainable_parameters()
    log.info("LoRA r=%d on %s: %s trainable of %s parameters", cfg.lora.r, cfg.lora.target_modules,
             f"{trainable:,}", f"{total:,}")  # fmt: skip
    return Prepared(
        trainer=trainer,
        tokenizer=tokenizer,
        model_dir=model_dir,
        out=out,
        device=device,
        dtype=dtype,
        stats={"train": train_stats, "validation": eval_stats},
        added_tokens=added,
    )


def train(cfg: TrainConfig, merge: bool = False) -> dict:
    """Train the adapter described by `cfg`; returns the metrics written to OUTPUT_DIR/metrics.json."""
    import torch
    from transformers import EarlyStoppingCallback
    from transformers.trainer_utils import get_last_checkpoint

    run = build_trainer(cfg)
    trainer, out = run.trainer, run.out
    checkpoint = get_last_checkpoint(str(out)) if cfg.resume and out.is_dir() else None
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    if run.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    has_eval = trainer.eval_dataset is not None
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    if has_eval and (
        trainer.args.load_best_model_at_end or not evals or evals[-1]["step"] != trainer.state.global_step
    ):
        eval_metrics = trainer.evaluate()  # the final (or, with early stopping, the best) model
    else:
        eval_metrics = evals[-1] if evals else {}

    early = next(
        (c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)), None
    )
    stopped_early = (
        early is not None
        and early.early_stopping_patience_counter >= early.early_stopping_patience
        and trainer.state.global_step < trainer.state.max_steps
    )
    if stopped_early:
        log.info(
            "early stopping at step %d of %d: eval loss did not improve by more than %g in %d evaluation(s); "
            "best %.4f at %s (loaded)",
            trainer.state.global_step,
            trainer.state.max_steps,
            cfg.eval.early_stopping_threshold,
            early.early_stopping_patience,
            trainer.state.best_metric,
            trainer.state.best_model_checkpoint,
        )

    trainer.save_model(str(out))  # the adapter (adapter_config.json + adapter_model.safetensors)
    run.tokenizer.save_pretrained(out)
    (out / "train_config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
    metrics = _metrics(trainer, result, eval_metrics, run, checkpoint, stopped_early)
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
        merge_adapter(run.model_dir, out, run.dtype)
    return metrics


def _metrics(trainer, result, eval_metrics, run: Prepared, checkpoint, stopped_early: bool) -> dict:
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
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "steps": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "stopped_early": stopped_early,
        "epochs": trainer.state.epoch,
        "tokens_seen": int(tokens),
        "train_runtime_s": runtime,
        "tokens_per_s": round(tokens / runtime, 1) if runtime and tokens else None,
        "steps_per_s": result.metrics.get("train_steps_per_second"),
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3)
        if run.device == "cuda"
        else None,
        "device": run.device,
        "resumed_from": checkpoint,
        "added_tokens": run.added_tokens,
        "data": run.stats,
    }


def merge_adapter(model_dir: Path, out: Path, dtype: Any) -> Path:
    """Fold the adapter into an unquantised copy of the base and save it to OUTPUT_DIR/merged (with the base's
    embeddings grown to the saved tokenizer's length first when markers were added)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
    if len(tokenizer) > base.get_input_embeddings().num_embeddings:
        base.resize_token_embeddings(len(tokenizer))  # the new rows' values come from the adapter
    merged = PeftModel.from_pretrained(base, out).merge_and_unload()
    target = out / "merged"
    merged.save_pretrained(target)
    tokenizer.save_pretrained(target)
    log.info("merged model -> %s", target)
    return target
