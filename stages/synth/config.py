"""Config of the `synth` stage: the method and its knobs, the target, the seeds, the backend (factory/llm).

Defaults follow the papers: Self-Instruct samples 6 human and 2 machine instructions per prompt and rejects a new
instruction whose ROUGE-L F against any pooled one is above 0.7; Evol-Instruct runs 4 rounds of evolution
(WizardLM's 4 epochs); OSS-Instruct draws snippets of 1-15 consecutive lines (Magicoder).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from factory.config import Section
from factory.llm.config import BackendConfig


class SelfInstructConfig(Section):
    """Self-Instruct (Wang et al. 2022): the pool, the prompt mix and the filters."""

    human_per_prompt: int = Field(default=6, ge=0, description="Seed (human) instructions shown per prompt.")
    machine_per_prompt: int = Field(
        default=2, ge=0, description="Generated (machine) instructions shown per prompt, once there are some."
    )
    requests_per_round: int = Field(
        default=8, ge=1, description="Prompts sent at once; the pool grows between rounds."
    )
    rouge_threshold: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="A new instruction with ROUGE-L F above this against the pool is dropped.",
    )
    max_rounds: int = Field(
        default=1000, ge=1, description="Stop after this many rounds even if short of target."
    )


class EvolInstructConfig(Section):
    """Evol-Instruct (WizardLM): rounds of in-depth or in-breadth evolution, elimination, then an answer."""

    rounds: int = Field(default=4, ge=1, description="Evolution rounds per seed instruction.")
    breadth_share: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Share of evolutions that are in-breadth (a new, rarer instruction).",
    )
    equality_check: bool = Field(
        default=True,
        description="Ask the model whether an evolved instruction adds information (the paper's first "
        "elimination case); costs one request per evolution.",
    )


class OssInstructConfig(Section):
    """OSS-Instruct (Magicoder): snippets from the run's inputs inspire a problem and its solution."""

    min_lines: int = Field(default=1, ge=1, description="Fewest consecutive lines in a seed snippet.")
    max_lines: int = Field(default=15, ge=1, description="Most consecutive lines in a seed snippet.")


class SynthConfig(Section):
    """Generate instruction data with an LLM (Self-Instruct, Evol-Instruct or OSS-Instruct)."""

    method: Literal["self_instruct", "evol_instruct", "oss_instruct"] = Field(
        default="self_instruct", description="The generation method."
    )
    target: int = Field(default=200, ge=1, description="Records to produce.")
    seeds: str | None = Field(
        default=None,
        description="self_instruct: a JSONL of seed tasks ({instruction, instances, is_classification}; default "
        "data/seeds/self_instruct_seed_tasks.jsonl, the paper's 175). evol and oss draw from the run's inputs.",
    )
    source: str | None = Field(
        default=None,
        description="`source` tag of the records (default: `code` for oss_instruct, else `general`).",
    )
    seed: int = Field(default=0, description="Seed of every random choice (sampling, operations, snippets).")
    templates: str | None = Field(
        default=None, description="A folder whose <name>.txt files replace the built-in prompt templates."
    )
    cache: str | None = Field(
        default=None,
        description="The response cache (SQLite); default RUN_DIR/_cache/llm.sqlite. A re-run or a resumed "
        "run never sends a request whose answer is in it.",
    )
    backend: BackendConfig | None = Field(
        default=None,
        description="The model: an OpenAI-compatible endpoint or a local folder (required to run).",
    )
    self_instruct: SelfInstructConfig = Field(default_factory=SelfInstructConfig)
    evol_instruct: EvolInstructConfig = Field(default_factory=EvolInstructConfig)
    oss_instruct: OssInstructConfig = Field(default_factory=OssInstructConfig)
