"""The backend section of a generating stage's config (`stages.synth.backend`): which model, where, how hard.

`RUNTIME_FIELDS` names the fields that change how requests are sent but never what comes back, so that a stage
can leave them out of its config hash (raising `max_in_flight` must not redo a finished synth run).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from factory.config import Section

RUNTIME_FIELDS = frozenset(
    {
        "base_url",
        "api_key_env",
        "max_in_flight",
        "timeout_s",
        "max_retries",
        "backoff_s",
        "requests_per_minute",
        "tokens_per_minute",
        "max_total_tokens",
        "batch_size",
        "device",
    }
)


class BackendConfig(Section):
    """An OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server, TGI) or a local transformers model."""

    kind: Literal["openai", "transformers"] = Field(
        default="openai",
        description="`openai`: any OpenAI-compatible chat-completions endpoint; `transformers`: a local model "
        "folder run in-process.",
    )
    base_url: str | None = Field(
        default=None,
        description="openai: the endpoint, e.g. http://127.0.0.1:8000/v1 for a local vLLM server. None: the "
        "openai package's default (api.openai.com).",
    )
    model: str = Field(
        description="openai: the model name the server knows; transformers: a local folder written by "
        "`save_pretrained` (never downloaded)."
    )
    api_key_env: str | None = Field(
        default="OPENAI_API_KEY",
        description="Name of the environment variable holding the API key (the key itself is never written to a "
        "file or a log). With `base_url` set, a missing variable means no key (local servers).",
    )
    max_in_flight: int = Field(default=32, ge=1, description="openai: requests in flight at once.")
    timeout_s: float = Field(default=60, gt=0, description="openai: seconds before one attempt times out.")
    max_retries: int = Field(
        default=6,
        ge=0,
        description="openai: retries of a request after a 429, a 5xx, a timeout or a connection error (backoff "
        "with jitter, honouring Retry-After).",
    )
    backoff_s: float = Field(
        default=1.0,
        ge=0,
        description="openai: the first retry waits up to this many seconds (full jitter), doubling each retry, "
        "at most 60 s; a Retry-After header (also capped at 60 s) takes precedence.",
    )
    requests_per_minute: int | None = Field(
        default=None, ge=1, description="openai: at most this many requests a minute (None: no limit)."
    )
    tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="openai: at most this many tokens (prompt + completion) a minute, counting a request's "
        "max_tokens until its usage is known (None: no limit).",
    )
    max_total_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Spending cap in tokens (prompt + completion) for this run; once reached, every further "
        "request fails as `budget` without being sent. Requests in flight at that moment may pass it by their "
        "completions. Cache hits cost nothing.",
    )
    temperature: float = Field(default=0.7, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling probability mass.")
    max_tokens: int = Field(default=1024, ge=1, description="Maximum completion tokens per choice.")
    seed: int | None = Field(
        default=0,
        description="Sampling seed sent with every request unless the request sets its own (None: none). It is "
        "part of the cache key.",
    )
    batch_size: int = Field(default=8, ge=1, description="transformers: prompts per generate() call.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="transformers: where the model runs (auto: cuda when available)."
    )
