"""The client protocol every backend implements, its request and result types, and `make_client`.

A caller builds `ChatRequest`s and calls `complete_all(requests)`: the backend answers what it can from the
response cache, sends the rest (a request asked twice in one call is sent once), stores each success as it
arrives and returns one `ChatResult` per request, in request order. A failure is a result with `error` set to a
kind (`http_4xx`, `http_5xx`, `rate_limited`, `timeout`, `connection`, `malformed`, `schema`, `refused`,
`budget`) and `detail` holding the server's first words on it; nothing is raised for a failed request, so a
stage turns failures into rejects. `BaseClient` does the cache, the de-duplication and the counting; a backend
only implements `_run(todo, deliver)`.

A request whose only message has the role `prompt` (`ChatRequest.completion(text)`) is a plain-text completion,
for base models: no chat template, the model continues the text (`/v1/completions` on an OpenAI-compatible
server).

The cache key covers only what changes the answer: the model, the messages, `n` and the effective sampling
parameters (the config's defaults overridden by the request's). Concurrency, timeouts and the endpoint's URL
are left out, so tuning them never invalidates a cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from factory.llm.config import BackendConfig

if TYPE_CHECKING:
    from factory.llm.cache import ResponseCache

SAMPLING_PARAMS = ("temperature", "top_p", "max_tokens", "seed", "stop")
PROMPT_ROLE = "prompt"  # the role of a plain-text completion's one message


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    n: int = 1
    params: tuple[
        tuple[str, Any], ...
    ] = ()  # per-request overrides of temperature/top_p/max_tokens/seed/stop

    @classmethod
    def completion(cls, text: str, n: int = 1, params: tuple[tuple[str, Any], ...] = ()) -> ChatRequest:
        """A plain-text completion request: the model continues `text`, no chat template."""
        return cls(messages=((PROMPT_ROLE, text),), n=n, params=params)

    @property
    def raw_prompt(self) -> str | None:
        """The text of a plain-text completion request; None for a chat request."""
        if len(self.messages) == 1 and self.messages[0][0] == PROMPT_ROLE:
            return self.messages[0][1]
        return None

    def effective_params(self, defaults: dict) -> dict:
        """The sampling parameters actually used: the defaults overridden by `params`; None values dropped."""
        merged = {k: defaults.get(k) for k in SAMPLING_PARAMS} | dict(self.params)
        if isinstance(merged.get("stop"), str):
            merged["stop"] = [merged["stop"]]
        elif merged.get("stop") is not None:
            merged["stop"] = list(merged["stop"])
        for name in ("temperature", "top_p"):
            if merged.get(name) is not None:
                merged[name] = float(merged[name])  # 1 and 1.0 are the same request
        return {k: v for k, v in merged.items() if v is not None}

    def key(self, model: str, defaults: dict) -> str:
        """sha256 hex of what changes the result: model, messages, n and the effective parameters (seed too)."""
        payload = {
            "model": model,
            "messages": [[role, content] for role, content in self.messages],
            "n": self.n,
            "params": self.effective_params(defaults),
        }
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class ChatResult:
    key: str
    texts: list[str]  # the n choices ([] on failure)
    error: str | None = None  # failure kind, see the module docstring
    detail: str | None = None  # the raw body or first error line, for rejects
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    finish_reasons: list[str] = field(default_factory=list)  # per choice: "stop", "length", ...


class Client(Protocol):
    model: str

    def complete_all(
        self, requests: list[ChatRequest], on_result: Callable[[int, ChatResult], None] | None = None
    ) -> list[ChatResult]: ...

    def stats(self) -> dict: ...

    def close(self) -> None: ...


def defaults_of(cfg: BackendConfig) -> dict:
    return {
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "max_tokens": cfg.max_tokens,
        "seed": cfg.seed,
    }


class BaseClient:
    """Cache first, de-duplication and the counters; subclasses send what is left in `_run`."""

    def __init__(self, model: str, defaults: dict, cache: ResponseCache | None) -> None:
        self.model = model
        self.defaults = defaults
        self.cache = cache
        self._requests = 0  # sent to the backend (a retry is not a new request)
        self._cache_hits = 0
        self._retries = 0
        self._failures: Counter[str] = Counter()
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._wall_s = 0.0

    def complete_all(
        self, requests: list[ChatRequest], on_result: Callable[[int, ChatResult], None] | None = None
    ) -> list[ChatResult]:
        start = time.perf_counter()
        results: list[ChatResult | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}  # key -> indices of the requests that share it

        def give(i: int, result: ChatResult) -> None:
            results[i] = result
            if on_result is not None:
                on_result(i, result)

        for i, request in enumerate(requests):
            key = request.key(self.model, self.defaults)
            if key in todo:
                todo[key].append(i)
                continue
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                self._cache_hits += 1
                give(i, hit)
            else:
                todo[key] = [i]

        def deliver(result: ChatResult) -> None:
            """Count a backend's result, store it if it succeeded, and hand it to every request that asked it."""
            if result.error is None:
                if self.cache is not None:
                    self.cache.put(result)
            else:
                self._failures[result.error] += 1
            self._prompt_tokens += result.prompt_tokens
            self._completion_tokens += result.completion_tokens
            first, *copies = todo[result.key]
            give(first, result)
            for i in copies:
                self._cache_hits += 1
                give(i, dataclasses.replace(result, cached=True))

        try:
            if todo:
                self._run([(key, requests[idx[0]]) for key, idx in todo.items()], deliver)
        finally:
            self._wall_s += time.perf_counter() - start
        return results  # type: ignore[return-value]

    def _run(self, todo: list[tuple[str, ChatRequest]], deliver: Callable[[ChatResult], None]) -> None:
        raise NotImplementedError

    def stats(self) -> dict:
        return {
            "requests": self._requests,
            "cache_hits": self._cache_hits,
            "failures": dict(sorted(self._failures.items())),
            "retries": self._retries,
            "prompt_tokens": self._prompt_tokens,
            "completion_tokens": self._completion_tokens,
            "wall_s": round(self._wall_s, 3),
        }

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None


def make_client(cfg: BackendConfig, cache_path: Path | None) -> Client:
    """The backend `cfg` names, with its response cache at `cache_path` (None: no cache). UserError on a user's
    mistake (a missing API key variable, model folder or package)."""
    from factory.llm.cache import ResponseCache

    if cfg.kind == "openai":
        from factory.llm.openai_compat import OpenAIClient

        make = OpenAIClient
    else:
        from factory.llm.local import TransformersClient

        make = TransformersClient
    cache = ResponseCache(cache_path) if cache_path is not None else None
    try:
        return make(cfg, cache)
    except BaseException:
        if cache is not None:
            cache.close()
        raise
