"""Config of the `mix` stage: the mixture (total, weights, sampling policy, repeats), the split, the output format
and the dataset card's metadata.

Defaults: ShareGPT (what LLaMA-Factory, axolotl and trl's conversational datasets read without a mapping), 5% of
the records for validation (enough for an eval-loss curve on a few thousand records, small enough not to starve
training), up-sampling capped at 3 occurrences of a record (repeating a record more than a few times in one
epoch mostly teaches the model to memorise it; Muennighoff et al. 2023 find up to ~4 repeats of data nearly as
good as new data).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from factory.config import Section


class MixConfig(Section):
    """Mixture balancing by source, a train/validation split, and Alpaca or ShareGPT Parquet with a dataset card."""

    total: int | None = Field(
        default=None,
        ge=1,
        description="Records in the mixture (train + validation). Omitted, with `weights`: the largest mixture "
        "the weights allow without up-sampling; without weights: every record.",
    )
    total_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Instead of `total`: approximate tokens in the mixture (all turns; see factory/tokens.py).",
    )
    weights: dict[str, float] | None = Field(
        default=None,
        description="Target share of each `source` tag (normalised to sum 1), e.g. {general: 0.5, code: 0.4, "
        "math: 0.1}. A source left out is dropped. Omitted: the natural proportions.",
    )
    policy: Literal["random", "quality"] = Field(
        default="random",
        description="Which records a down-sampled source keeps (and an up-sampled one repeats first): a seeded "
        "random choice, or the highest `meta[score_key]` first (records without it last, ties at random).",
    )
    score_key: str = Field(default="quality_score", description="The meta key read when policy is `quality`.")
    max_repeats: int = Field(
        default=3,
        ge=1,
        description="Up-sampling cap: how many times one record may occur in train. A source that cannot reach "
        "its share within the cap stays short, and the manifest and log say so.",
    )
    validation: float | int = Field(
        default=0.05,
        ge=0,
        description="Validation split: a fraction of the mixture (0 < x < 1) or a number of records (>= 1; 0: "
        "no split). Stratified by source; validation records are never repeated.",
    )
    cluster_key: str = Field(
        default="dedup_cluster",
        description="The meta key naming a near-duplicate cluster (written by dedup): records of one cluster "
        "always land in the same split.",
    )
    format: Literal["sharegpt", "alpaca"] = Field(
        default="sharegpt",
        description="`sharegpt`: conversations [{from: human|gpt, value}] plus system; `alpaca`: instruction, "
        "input, output, system, history (earlier turns of a multi-turn record as [user, assistant] pairs).",
    )
    seed: int = Field(default=0, description="Seed of every random choice: the same seed, the same mixture.")
    name: str = Field(
        default="factory_sft",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Dataset name in the card and in LLaMA-Factory's dataset_info.json (`<name>` and "
        "`<name>_validation`).",
    )
    license: str = Field(
        default="other",
        description="License id for the card's front matter (the inputs' licences decide it; `other` until "
        "you say).",
    )
    language: list[str] = Field(default_factory=lambda: ["en"], description="Language codes for the card.")
    description: str = Field(default="", description="A paragraph for the top of the dataset card.")

    @model_validator(mode="after")
    def _check(self) -> MixConfig:
        if self.total is not None and self.total_tokens is not None:
            raise ValueError("give `total` (records) or `total_tokens`, not both")
        if self.weights is not None:
            if not self.weights:
                raise ValueError("`weights` is empty: name at least one source, or leave it out")
            bad = {k: v for k, v in self.weights.items() if not v >= 0}
            if bad:
                raise ValueError(f"weights must be >= 0: {bad}")
            if sum(self.weights.values()) <= 0:
                raise ValueError("weights sum to 0")
        if isinstance(self.validation, float) and not self.validation < 1:
            raise ValueError("validation as a fraction must be below 1 (a count is a whole number)")
        return self
