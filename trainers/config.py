"""The `factory train` config: one typed model of the SFT recipe, validated on load like the pipeline config.

Owns the recipe's keys and defaults (the usual QLoRA recipe: 4-bit NF4 base with double quantisation and bf16
compute, LoRA r 16 / alpha 32 / dropout 0.05 on every linear layer, lr 2e-4, cosine, warmup 3 %, 3 epochs) and
`load_train_config`, which turns every problem into a one-line `ConfigError` naming the key (exit 2), with the
same wording as `factory.config` (unknown keys refused, the close key suggested). Relative paths are taken from
the current directory. Nothing here imports torch: the config is checked before anything heavy loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from factory.config import Section, key_table, load_model_config

TemplateName = Literal["auto", "chatml", "llama3", "qwen", "alpaca"]


class QuantConfig(Section):
    """bitsandbytes settings of the quantised base (used with `quantization: 4bit`)."""

    quant_type: Literal["nf4", "fp4"] = Field(
        default="nf4", description="4-bit data type: NF4 (QLoRA's normal-float, the default) or FP4."
    )
    double_quant: bool = Field(
        default=True,
        description="Quantise the quantisation constants too (QLoRA's double quantisation: ~0.4 bit/param saved).",
    )
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        default="bfloat16",
        description="dtype of the matmuls on a GPU. On a CPU float32 is used whatever this says (bf16 is ~25x "
        "slower there), and the log says so.",
    )


class LoraSection(Section):
    """The LoRA adapter (peft `LoraConfig`)."""

    r: int = Field(default=16, ge=1, description="Rank of the update matrices.")
    alpha: int = Field(default=32, ge=1, description="Scaling numerator: the update is scaled by alpha / r.")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the adapter's input.")
    target_modules: str | list[str] = Field(
        default="all-linear",
        description="Modules that get an adapter: `all-linear` (every linear layer but the output head, the "
        "QLoRA paper's choice) or a list of module names such as [q_proj, v_proj].",
    )


class EvalSection(Section):
    """Evaluation on the validation split, early stopping and sample generations."""

    steps: int = Field(
        default=100, ge=1, description="Evaluate (and save a checkpoint) every this many optimizer steps."
    )
    early_stopping_patience: int | None = Field(
        default=3,
        ge=1,
        description="Stop after this many evaluations without a lower eval loss, and keep the best checkpoint "
        "(None: never stop early). Needs a validation split.",
    )
    early_stopping_threshold: float = Field(
        default=0.0, ge=0.0, description="An eval loss must improve by more than this to count as better."
    )
    sample_prompts: list[str] = Field(
        default_factory=list,
        description="User prompts answered by the model every `sample_every` steps and logged (console and "
        "samples.jsonl): seeing the answers beats reading loss curves.",
    )
    sample_every: int = Field(
        default=100, ge=1, description="Generate the sample answers every this many steps."
    )
    sample_max_new_tokens: int = Field(default=128, ge=1, description="Longest sample answer, in tokens.")


class TrainConfig(Section):
    """A `factory train` recipe."""

    model: str = Field(
        description="The base model: a local folder written by `save_pretrained`, or a hub name already in the "
        "local Hugging Face cache (nothing is downloaded)."
    )
    data: str | list[str] = Field(
        description="Training data: a `mix` output folder (its train/ and validation/ are used), or Parquet/JSONL "
        "files, folders or globs in ShareGPT, Alpaca or messages format. A folder or file may be on an object "
        "store (`s3://bucket/runs/x/mix`)."
    )
    validation: str | list[str] | None = Field(
        default=None,
        description="Validation data when `data` is not a mix folder (same formats). None: the mix folder's "
        "validation/ when there is one, else no evaluation.",
    )
    output_dir: str = Field(
        description="Where the adapter, tokenizer, resolved config, metrics.json, trainer_log.jsonl and "
        "checkpoints go."
    )
    quantization: Literal["4bit", "8bit", "none"] = Field(
        default="4bit",
        description="Load the frozen base in 4-bit (QLoRA), 8-bit, or unquantised (plain LoRA) with bitsandbytes.",
    )
    bnb: QuantConfig = Field(default_factory=QuantConfig, description="bitsandbytes settings.")
    lora: LoraSection = Field(default_factory=LoraSection, description="The LoRA adapter.")
    chat_template: TemplateName = Field(
        default="auto",
        description="How conversations become text: `auto` uses the tokenizer's chat template (chatml when it has "
        "none); a name (chatml, llama3, qwen, alpaca) uses that built-in template instead. A built-in template's "
        "markers the tokenizer lacks are added as special tokens, their embedding rows trained with the adapter.",
    )
    max_length: int = Field(
        default=2048,
        ge=8,
        description="Longest training sequence in tokens; longer samples are cut at the end. A sample whose cut "
        "leaves no assistant token to learn is dropped and counted.",
    )
    packing: bool = Field(
        default=False,
        description="Pack several samples into each `max_length` row (trl's best-fit-decreasing, padding-free). "
        "position_ids restart at each sample, so attention stays within it with sdpa, eager, flex or flash "
        "attention (the log says so).",
    )
    epochs: float = Field(
        default=3.0, gt=0, description="Passes over the training data (ignored if max_steps > 0)."
    )
    max_steps: int = Field(
        default=-1, description="Stop after this many optimizer steps (-1: run `epochs` instead)."
    )
    learning_rate: float = Field(default=2e-4, gt=0, description="Peak learning rate (QLoRA's 2e-4).")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        default="cosine", description="Learning-rate schedule after warm-up."
    )
    warmup_ratio: float = Field(
        default=0.03, ge=0.0, lt=1.0, description="Share of the steps spent warming the learning rate up."
    )
    batch_size: int = Field(default=4, ge=1, description="Micro-batch: samples per device per forward pass.")
    grad_accum: int = Field(
        default=4,
        ge=1,
        description="Micro-batches per optimizer step (effective batch = batch_size x grad_accum).",
    )
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping norm.")
    weight_decay: float = Field(
        default=0.0, ge=0.0, description="AdamW weight decay on the adapter (QLoRA's recipe uses none)."
    )
    optim: str = Field(
        default="auto",
        description="transformers optimizer name. `auto`: paged_adamw_8bit on a GPU with a quantised base, "
        "adamw_torch otherwise.",
    )
    gradient_checkpointing: bool = Field(
        default=True, description="Recompute activations in the backward pass: less memory, ~30 % more time."
    )
    eval: EvalSection = Field(default_factory=EvalSection, description="Evaluation and samples.")
    logging_steps: int = Field(
        default=10, ge=1, description="Log loss, grad norm, lr and tokens/s every N steps."
    )
    save_total_limit: int = Field(
        default=2, ge=1, description="Checkpoints kept in output_dir (oldest removed)."
    )
    resume: bool = Field(
        default=True, description="Resume from the last checkpoint in output_dir when there is one."
    )
    seed: int = Field(default=42, description="Seed of initialisation, shuffling and dropout.")
    device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="Where to train: auto uses CUDA when available."
    )

    @field_validator("max_steps")
    @classmethod
    def _steps_or_epochs(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("must be -1 (train `epochs`) or a positive number of steps")
        return value


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a train recipe; any problem is a ConfigError naming the file and the key."""
    return load_model_config(path, TrainConfig, "model, data and output_dir")


def reference_table() -> str:
    """The README's `factory train` key table (a test keeps the two equal)."""
    return key_table(TrainConfig)
