"""Config of the `dedup` stage: which text counts, exact and near-duplicate settings, code shingles, which record
of a cluster is kept.

Where the defaults come from:
- Jaccard threshold 0.8 on word 5-grams: the setting of the large-scale LLM dedup pipelines (Lee et al. 2022,
  "Deduplicating Training Data Makes Language Models Better", 5-grams and 0.8; the BigCode/StarCoder MinHash
  dedup, 5-grams, 0.7-0.85; the GPT-3 paper's fuzzy dedup and datatrove's defaults, 5-grams, ~0.72-0.8).
- 128 permutations: datasketch's default, and the budget of the loop it is compared with.
- Bands and rows: datasketch's `_optimal_param` (the band/row choice `MinHashLSH` makes for a threshold), with the
  weights tilted to recall (false positive 0.05, false negative 0.95): 16 bands x 8 rows at 0.8, which finds a
  pair at Jaccard 0.87 with probability 0.998 where the balanced choice (9 x 13) finds 0.80 of them. The extra
  candidates cost one signature comparison each; the verification step restores precision.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from factory.config import Section
from stages.clean.code import LANGUAGES, LanguageName


class ExactConfig(Section):
    """Exact duplicates: one hash of the normalised text of the counted turns."""

    enabled: bool = Field(default=True, description="Remove exact repeats (`exact_duplicate`).")
    case: bool = Field(default=True, description="Fold case before hashing ('Hello' == 'hello').")
    whitespace: bool = Field(
        default=True, description="Fold runs of whitespace to one space and trim the ends."
    )
    punctuation: bool = Field(
        default=True,
        description="Drop punctuation and symbols (ASCII and the common Unicode quotes, dashes, ellipses), so "
        "'Hello, world!' == 'hello world'. Digits are never folded here: '2+2=4' and '2+2=5' are different.",
    )


class NearConfig(Section):
    """Near duplicates: MinHash signatures of shingles, LSH banding, verification, clustering."""

    enabled: bool = Field(default=True, description="Remove near duplicates (`near_duplicate`).")
    threshold: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="Jaccard similarity of the shingle sets at or above which two records are duplicates; "
        "checked on the MinHash estimate of every candidate pair (0.8: Lee et al. 2022; see the module "
        "docstring of stages/dedup/config.py).",
    )
    ngram: int = Field(
        default=5,
        ge=1,
        description="Words per shingle (text is lower-cased, punctuation dropped, digit runs folded to 0). "
        "Records shorter than this are one shingle.",
    )
    num_perm: int = Field(
        default=128, ge=16, le=1024, description="MinHash permutations (signature length, 4 bytes each)."
    )
    seed: int = Field(default=1, description="Seed of the MinHash permutations (datasketch's `seed`).")
    weights: tuple[float, float] = Field(
        default=(0.05, 0.95),
        description="(false positive, false negative) weights of datasketch's band/row optimisation. Tilted to "
        "recall: a missed pair is lost for good, a false candidate is dropped by verification.",
    )
    bands: int | None = Field(
        default=None, ge=1, description="Bands; set with `rows` to override the derived choice."
    )
    rows: int | None = Field(
        default=None, ge=1, description="Rows (permutations) per band; set with `bands`."
    )

    @model_validator(mode="after")
    def _bands_and_rows(self) -> NearConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows ({self.bands} x {self.rows}) exceeds num_perm ({self.num_perm})")
        if not (0 <= self.weights[0] <= 1 and 0 <= self.weights[1] <= 1 and sum(self.weights) > 0):
            raise ValueError("weights must be two numbers in [0, 1], not both 0")
        return self


class CodeShingleConfig(Section):
    """Code-aware shingles: code compared by its syntax tokens, not its spelling."""

    enabled: bool = Field(
        default=True,
        description="Shingle fenced code blocks (and `code` records) as tree-sitter tokens with comments dropped, "
        "identifiers numbered by first appearance (v0, v1, ...) and literals as placeholders, so that renamed "
        "variables, changed comments and reformatting do not hide a duplicate. False: code is text.",
    )
    detect_unfenced: bool = Field(
        default=True,
        description="Also treat a final answer without fences that looks like code (CodeAlpaca and GPTeacher "
        "write code answers unfenced) as code; its language is detected. Costs a line scan per multi-line answer "
        "with a bracket or `=`.",
    )
    ngram: int = Field(default=5, ge=1, description="Tokens per code shingle.")
    languages: list[LanguageName] = Field(
        default_factory=lambda: list(LANGUAGES),
        description="Languages parsed with tree-sitter; other code is tokenised by a generic lexer with the same "
        "placeholders.",
    )


class DedupConfig(Section):
    """Exact and MinHash-LSH near-duplicate removal, code-aware."""

    turns: Literal["user_and_final", "all", "user", "final"] = Field(
        default="user_and_final",
        description="Which turns are compared: the user turns plus the final assistant answer (default: two "
        "conversations that ask the same and end with the same answer are duplicates), every turn, the user "
        "turns only, or the final answer only. System prompts count only with `all`.",
    )
    keep: Literal["longest", "first", "score"] = Field(
        default="longest",
        description="Which record of a cluster is kept: the longest (characters of the compared turns), the "
        "first in input order, or the highest `meta[score_key]` (ties: longest, then first).",
    )
    score_key: str = Field(
        default="quality_score",
        description="The meta key read when keep is `score`; a record without it ranks last.",
    )
    exact: ExactConfig = Field(default_factory=ExactConfig)
    near: NearConfig = Field(default_factory=NearConfig)
    code: CodeShingleConfig = Field(default_factory=CodeShingleConfig)
    keep_work: bool = Field(
        default=False,
        description="Keep RUN_DIR/dedup/_work (signatures, band partitions, candidate pairs) after the stage "
        "finishes, e.g. to inspect them. It takes about 4 x num_perm bytes per record.",
    )
