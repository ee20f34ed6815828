"""The `factory eval` config: which model (and adapter), which benchmarks, how to sample, where results go.

Same rules as the pipeline config: unknown keys are refused, and every problem is a ConfigError naming the file
and the key. The keys the issue fixed (model, adapter, benchmarks, n_samples, k, temperature, max_new_tokens,
output_dir, limit) keep their names; the rest have defaults that suit a local model on one GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from factory.config import Section, key_table, load_model_config

BenchmarkName = Literal["humaneval", "mbpp", "gsm8k", "mmlu"]
CODE_BENCHMARKS = ("humaneval", "mbpp")


class SandboxSection(Section):
    """Limits of the process each generated program runs in (HumanEval, MBPP)."""

    timeout_s: float = Field(default=10.0, gt=0, description="Wall-clock seconds per program.")
    cpu_s: int = Field(default=10, ge=1, description="CPU seconds per program (RLIMIT_CPU).")
    memory_mb: int = Field(default=1024, ge=64, description="Address space per program in MB (RLIMIT_AS).")
    file_size_mb: int = Field(
        default=16, ge=1, description="Largest file a program may write, MB (RLIMIT_FSIZE)."
    )
    workers: int | None = Field(
        default=None, ge=1, description="Programs run at once (default: the number of cores)."
    )


class EvalConfig(Section):
    """`factory eval -c configs/eval/<name>.yaml`."""

    model: str = Field(
        description="transformers: a local model folder (or a hub name already in the local cache; nothing is "
        "downloaded); openai: the model name the endpoint serves."
    )
    adapter: str | None = Field(
        default=None,
        description="A LoRA adapter folder written by `factory train` (transformers only); its tokenizer is used "
        "when it saved one.",
    )
    backend: Literal["transformers", "openai"] = Field(
        default="transformers",
        description="`transformers`: run the model in-process; `openai`: any OpenAI-compatible endpoint (vLLM, "
        "Ollama, llama.cpp server, OpenAI; chat completions, or /v1/completions with prompt_style completion) "
        "through synth's client and cache.",
    )
    base_url: str | None = Field(
        default=None,
        description="openai: the endpoint, e.g. http://127.0.0.1:8000/v1 for a local vLLM server.",
    )
    api_key_env: str | None = Field(
        default="OPENAI_API_KEY",
        description="openai: name of the environment variable holding the API key (never written anywhere).",
    )
    max_in_flight: int = Field(default=32, ge=1, description="openai: requests in flight at once.")
    benchmarks: list[BenchmarkName] = Field(
        default_factory=lambda: ["humaneval", "mbpp", "gsm8k", "mmlu"],
        min_length=1,
        description="Benchmarks to score: humaneval and mbpp by pass@k in the sandbox, gsm8k by the final "
        "number, mmlu by the answer letter.",
    )
    benchmark_paths: dict[BenchmarkName, str] = Field(
        default_factory=dict,
        description="Where a benchmark's rows are, when not the copy shipped in data/benchmarks/ (JSONL, JSON, "
        "Parquet, CSV; the same loader as decontam).",
    )
    n_samples: int = Field(
        default=1,
        ge=1,
        description="Completions per task for humaneval and mbpp (pass@k needs n_samples >= k); gsm8k and mmlu "
        "take one answer per question.",
    )
    k: list[int] = Field(default_factory=lambda: [1, 10], min_length=1, description="The k of pass@k.")
    temperature: float = Field(
        default=0.0,
        ge=0.0,
        description="Sampling temperature; 0 is greedy (then every sample of a task is the same: use n_samples "
        "1). The Codex paper's pass@10 uses 0.8 with n_samples >= 10.",
    )
    top_p: float = Field(default=0.95, gt=0.0, le=1.0, description="Nucleus sampling (with temperature > 0).")
    max_new_tokens: int = Field(default=512, ge=1, description="Longest answer in tokens.")
    limit: int | None = Field(
        default=None, ge=1, description="Score only the first N tasks of each benchmark (a quick look)."
    )
    prompt_style: Literal["chat", "completion"] = Field(
        default="chat",
        description="`chat`: each task as a user message through the chat template (instruction-tuned models, "
        "what factory train makes). `completion`: the plain-text prompts base models are scored with (HumanEval's "
        "own prompt and Codex stop sequences, MBPP's 3-shot [BEGIN]/[DONE] prompt, few-shot `Question: ... Answer:`, MMLU's "
        "`Answer:`), no chat template; an endpoint gets /v1/completions.",
    )
    gsm8k_shots: int = Field(
        default=8,
        ge=0,
        le=8,
        description="prompt_style completion: solved GSM8K train examples before each question (`Question: ... "
        "Answer: ... #### N`), as base models are scored (8-shot); a chat model is asked zero-shot.",
    )
    mmlu_shots: int = Field(
        default=5,
        ge=0,
        le=5,
        description="Solved examples of the same subject before each MMLU question (from the dev split, as in the "
        "MMLU paper: 5-shot is how MMLU is reported); 0: zero-shot.",
    )
    chat_template: Literal["auto", "chatml", "llama3", "qwen", "alpaca"] = Field(
        default="auto",
        description="transformers: `auto` uses the tokenizer's chat template (chatml when it has none); a name "
        "uses that built-in template (the trainer's).",
    )
    batch_size: int = Field(default=16, ge=1, description="transformers: prompts per generate call.")
    device: Literal["auto", "cuda", "cpu"] = Field(default="auto", description="transformers: where to run.")
    seed: int = Field(default=0, description="Seed of sampling (and of the confidence-interval bootstrap).")
    output_dir: str = Field(description="Where results.json, completions.jsonl and the request cache go.")
    run_dir: str | None = Field(
        default=None,
        description="The pipeline run whose data trained this model: its decontam findings are attached as "
        "warnings and `factory report RUN_DIR` shows this eval. Default: found from the adapter's "
        "train_config.json `data` when that is a run's mix folder.",
    )
    sandbox: SandboxSection = Field(default_factory=SandboxSection, description="Program limits.")

    @field_validator("k")
    @classmethod
    def _positive_k(cls, value: list[int]) -> list[int]:
        if any(k < 1 for k in value):
            raise ValueError("every k must be at least 1")
        return sorted(set(value))

    @model_validator(mode="after")
    def _backend_fields(self) -> EvalConfig:
        if self.backend == "openai" and self.adapter:
            raise ValueError(
                "adapter: only the transformers backend loads an adapter (serve it with the endpoint)"
            )
        return self


def load_eval_config(path: str | Path) -> EvalConfig:
    """Read and validate an eval config; any problem is a ConfigError naming the file and the key."""
    return load_model_config(path, EvalConfig, "model and output_dir")


def reference_table() -> str:
    """The README's `factory eval` key table (a test keeps the two equal)."""
    return key_table(EvalConfig)
