"""Answers to the eval's prompts: the model (and adapter) to a client, tasks to requests, replies back to tasks.

Generation goes through `factory.llm`, the client synth uses: the transformers backend (batched, left padding,
the tokenizer's chat template or a named one, stop strings) or an OpenAI-compatible endpoint (concurrency,
retries, rate limits). Both keep their answers in a response cache at OUTPUT_DIR/_cache/llm.sqlite, so an eval
that was cut off, or re-scored, never asks twice. The cache key names the model by content (`fingerprint`),
so a retrained adapter at the same path is asked afresh.

With `prompt_style: completion` a task is a plain-text completion request (no chat template; /v1/completions on
an endpoint) with the benchmark's stop strings (evals/tasks.py). A task with n_samples > 1 is one request with
`n` choices. Requests ask for `temperature`, `top_p`,
`max_new_tokens` and a per-request seed derived from the config's seed and the task id.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from evals.config import CODE_BENCHMARKS, EvalConfig
from evals.tasks import Task
from factory.errors import UserError
from factory.llm.client import ChatRequest, ChatResult, Client
from factory.llm.config import BackendConfig

SAMPLE_BYTES = 4 << 20  # bytes hashed at each end of a big weight file


def fingerprint(folder: Path) -> str:
    """A content hash of a model or adapter folder: every small file whole; for files over 8 MB (weights), their
    size plus their first and last 4 MB (the safetensors header names and shapes every tensor; hashing a 7B
    model whole would take a minute). Good enough to tell two trainings apart, not a cryptographic seal."""
    h = hashlib.blake2b(digest_size=12)
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "checkpoint-" not in str(p)):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(("_cache/", "merged/")) or rel.endswith((".jsonl", "metrics.json")):
            continue  # logs and outputs written next to an adapter do not change the model
        size = path.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        with path.open("rb") as f:
            if size <= 2 * SAMPLE_BYTES:
                h.update(f.read())
            else:
                h.update(f.read(SAMPLE_BYTES))
                f.seek(size - SAMPLE_BYTES)
                h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def resolve_model(cfg: EvalConfig) -> tuple[Path | None, Path | None]:
    """(model folder, adapter folder) for the transformers backend; (None, None) for an endpoint."""
    if cfg.backend == "openai":
        return None, None
    from trainers.sft import resolve_model as resolve

    model = resolve(cfg.model)
    adapter = None
    if cfg.adapter:
        adapter = Path(cfg.adapter)
        if not (adapter / "adapter_config.json").is_file():
            raise UserError(
                f"adapter: {cfg.adapter} is not an adapter folder (no adapter_config.json; give the output_dir "
                "of factory train)"
            )
    return model, adapter


def make_client(cfg: EvalConfig, model: Path | None, adapter: Path | None, model_key: str) -> Client:
    """The client for the config's backend, its cache in OUTPUT_DIR/_cache/llm.sqlite."""
    from factory.llm.cache import ResponseCache
    from factory.llm.client import make_client as make_endpoint

    cache_path = Path(cfg.output_dir) / "_cache" / "llm.sqlite"
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    backend = BackendConfig(
        kind=cfg.backend,
        model=str(model) if model is not None else cfg.model,
        base_url=cfg.base_url,
        api_key_env=cfg.api_key_env,
        max_in_flight=cfg.max_in_flight,
        batch_size=cfg.batch_size,
        device=cfg.device,
        temperature=cfg.temperature,
        top_p=cfg.top_p if cfg.temperature > 0 else 1.0,
        max_tokens=cfg.max_new_tokens,
    )
    if cfg.backend == "openai":
        return make_endpoint(backend, cache_path)
    from factory.llm.local import TransformersClient
    from trainers.data import TEMPLATES

    template = None if cfg.chat_template == "auto" else TEMPLATES[cfg.chat_template]
    cache = ResponseCache(cache_path)
    try:
        return TransformersClient(
            backend,
            cache,
            adapter=adapter,
            chat_template=template,
            model_key=model_key,
            fallback_template=TEMPLATES["chatml"],  # as the trainer does for a tokenizer without one
        )
    except BaseException:
        cache.close()
        raise


def request_for(task: Task, cfg: EvalConfig) -> ChatRequest:
    n = cfg.n_samples if task.benchmark in CODE_BENCHMARKS else 1
    seed = int.from_bytes(hashlib.blake2b(f"{cfg.seed}:{task.id}".encode(), digest_size=4).digest(), "big")
    params: list[tuple[str, object]] = [("seed", seed)]
    if task.stop:
        params.append(("stop", task.stop))
    if task.completion_style:
        return ChatRequest.completion(task.prompt, n=n, params=tuple(params))
    return ChatRequest(messages=(("user", task.prompt),), n=n, params=tuple(params))


def generate(
    client: Client, tasks: list[Task], cfg: EvalConfig, on_done: Callable[[int], None] | None = None
) -> list[ChatResult]:
    """One result per task, in order. Sent in chunks so that a progress bar moves and a crash loses little."""
    requests = [request_for(t, cfg) for t in tasks]
    results: list[ChatResult] = []
    chunk = max(cfg.batch_size if cfg.backend == "transformers" else cfg.max_in_flight, 1) * 4
    for start in range(0, len(requests), chunk):
        results += client.complete_all(requests[start : start + chunk])
        if on_done:
            on_done(len(results))
    return results


def api_key_note(cfg: EvalConfig) -> str | None:
    """Where the endpoint's key comes from, for the results (the name only, never the key)."""
    if cfg.backend != "openai" or not cfg.api_key_env:
        return None
    return f"${cfg.api_key_env} ({'set' if os.environ.get(cfg.api_key_env) else 'not set'})"
