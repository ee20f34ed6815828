"""The OpenAI-compatible backend: chat completions over HTTP with the `openai` package, many requests in flight
(plain-text completion requests, `ChatRequest.completion`, go to /completions and read each choice's `text`).

`complete_all` is synchronous for its callers and runs the requests on a private asyncio event loop (kept for the
client's life, so connections are reused between calls), at most `max_in_flight` at once. The SDK's own retries
are off (`max_retries=0`); this module decides:

- 429, 408, 409, 5xx, timeouts and connection errors (a refused connection, a body cut off mid-way) are retried up
  to `max_retries` times, waiting `backoff_s * 2**attempt` with full jitter (at most 60 s), or what a Retry-After
  header says (capped the same). A 429 pauses every request of the client until its wait is over, so a rate-limited
  server is not hammered by the other requests in flight. A request keeps its slot while it waits.
- A 200 whose body is not JSON (`malformed`) is retried at most twice: a proxy or a server under load garbles a
  body now and then, but a server that always does should not cost `max_retries` round trips per request.
- A JSON body without choices/message/content (`schema`) is not retried: it is the wrong endpoint or an
  incompatible server, and asking again gives the same answer. Neither is a refusal (`refused`: the message's
  `refusal` field, or finish_reason `content_filter`), nor any other 4xx (`http_4xx`: a bad model name, a bad key).
- Optional token buckets hold requests to `requests_per_minute` and `tokens_per_minute` (a request counts its
  prompt estimate plus max_tokens * n until its usage is known), and `max_total_tokens` caps the run's spending:
  once the tokens used reach it, requests fail as `budget` without being sent.

Token counts come from the response's `usage`; a server that sends none is estimated at 4 characters a token. The
API key is read from the environment variable the config names, passed to the SDK and otherwise only used to
scrub error bodies before they land in a reject's detail or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import orjson

from factory.errors import UserError
from factory.llm.cache import ResponseCache
from factory.llm.client import BaseClient, ChatRequest, ChatResult, defaults_of
from factory.llm.config import BackendConfig

log = logging.getLogger("factory")

MAX_WAIT_S = 60.0  # longest single wait between two attempts, whatever Retry-After says
MALFORMED_RETRIES = 2
DETAIL_CHARS = 500


class OpenAIClient(BaseClient):
    def __init__(self, cfg: BackendConfig, cache: ResponseCache | None) -> None:
        try:
            import openai
        except ImportError:
            raise UserError("backend.kind openai needs the `openai` package (pip install openai)") from None
        self._key = _api_key(cfg)
        super().__init__(cfg.model, defaults_of(cfg), cache)
        self.cfg = cfg
        self._openai = openai
        self._loop = asyncio.new_event_loop()
        self._api = openai.AsyncOpenAI(
            api_key=self._key,
            base_url=cfg.base_url,
            timeout=cfg.timeout_s,
            max_retries=0,
            http_client=_http_client(openai, cfg.timeout_s),
        )
        self._reserved = 0  # prompt-token estimates of the requests in flight, for the spending cap
        self._pause_until = 0.0  # monotonic time before which no request starts (after a 429)
        self._rpm = _Bucket(cfg.requests_per_minute) if cfg.requests_per_minute else None
        self._tpm = _Bucket(cfg.tokens_per_minute) if cfg.tokens_per_minute else None
        self._warned: set[str] = set()

    def _run(self, todo: list[tuple[str, ChatRequest]], deliver: Callable[[ChatResult], None]) -> None:
        coro = self._run_async(todo, deliver)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._loop.run_until_complete(coro)
            return
        with ThreadPoolExecutor(1) as pool:  # called from inside an event loop (a notebook): use a thread
            pool.submit(self._loop.run_until_complete, coro).result()

    async def _run_async(
        self, todo: list[tuple[str, ChatRequest]], deliver: Callable[[ChatResult], None]
    ) -> None:
        slots = asyncio.Semaphore(self.cfg.max_in_flight)

        async def one(key: str, request: ChatRequest) -> None:
            async with slots:
                result = await self._send(key, request)
            deliver(result)

        try:
            async with asyncio.TaskGroup() as group:
                for key, request in todo:
                    group.create_task(one(key, request))
        except BaseExceptionGroup as exc:  # a caller's on_result raised: re-raise it as it was
            raise exc.exceptions[0] from None

    async def _send(self, key: str, request: ChatRequest) -> ChatResult:
        params = request.effective_params(self.defaults)
        estimate = sum(len(c) for _, c in request.messages) // 4 + 4 * len(request.messages)
        rate_tokens = estimate + params.get("max_tokens", 0) * request.n
        attempt = malformed = 0
        while True:
            await self._wait_turn(rate_tokens)
            cap = self.cfg.max_total_tokens
            if cap is not None and self._prompt_tokens + self._completion_tokens + self._reserved >= cap:
                self._warn_once(
                    "budget", f"spending cap of {cap:,} tokens reached; the remaining requests fail"
                )
                return ChatResult(key, [], error="budget", detail=f"spending cap of {cap:,} tokens reached")
            if attempt == 0:
                self._requests += 1
            else:
                self._retries += 1
            self._reserved += estimate
            try:
                result, retry, retry_after = await self._attempt(key, request, params)
            finally:
                self._reserved -= estimate
            if self._tpm is not None:
                self._tpm.give_back(rate_tokens - result.prompt_tokens - result.completion_tokens)
            kind = result.error
            retry = retry and not (kind == "malformed" and malformed >= MALFORMED_RETRIES)
            if kind is None or not retry or attempt >= self.cfg.max_retries:
                if kind is not None:
                    self._warn_once(kind, f"{kind}: {result.detail}")
                return result
            attempt += 1
            malformed += kind == "malformed"
            backoff = random.uniform(0, self.cfg.backoff_s * 2 ** (attempt - 1))
            wait = min(MAX_WAIT_S, retry_after if retry_after is not None else backoff)
            if kind == "rate_limited":
                self._pause_until = max(self._pause_until, time.monotonic() + wait)
            log.debug("llm: %s (%s), retry %d in %.2f s", kind, result.detail, attempt, wait)
            await asyncio.sleep(wait)

    async def _wait_turn(self, tokens: int) -> None:
        while (pause := self._pause_until - time.monotonic()) > 0:
            await asyncio.sleep(pause)
        if self._rpm is not None:
            await self._rpm.take(1)
        if self._tpm is not None:
            await self._tpm.take(tokens)

    async def _attempt(
        self, key: str, request: ChatRequest, params: dict
    ) -> tuple[ChatResult, bool, float | None]:
        """One HTTP round trip: the result (maybe a failure), whether a failure is worth another try, and the
        server's Retry-After in seconds, if any. A plain-text completion request goes to /completions."""
        openai = self._openai
        raw = request.raw_prompt
        if raw is None:
            path, payload = (
                "/chat/completions",
                {"messages": [{"role": r, "content": c} for r, c in request.messages]},
            )
        else:
            path, payload = "/completions", {"prompt": raw}
        try:
            body = await self._api.post(
                path, cast_to=bytes, body={"model": self.model, **payload, "n": request.n, **params}
            )
        except openai.APIStatusError as exc:
            status = exc.status_code
            kind = "rate_limited" if status == 429 else "http_5xx" if status >= 500 else "http_4xx"
            retry = status in (408, 409, 429) or status >= 500  # other 4xx: asking again changes nothing
            text = exc.response.text if exc.response is not None else str(exc)
            return self._failed(key, kind, f"{status}: {text}"), retry, _retry_after(exc.response)
        except openai.APIConnectionError as exc:  # APITimeoutError included
            root = _root_cause(exc)
            if isinstance(root, TimeoutError) or "Timeout" in type(root).__name__:
                return self._failed(key, "timeout", f"no answer within {self.cfg.timeout_s:g} s"), True, None
            return (
                self._failed(key, "connection", f"{type(root).__name__}: {' '.join(str(root).split())}"),
                True,
                None,
            )
        result = self._parse(key, body, request)
        return result, result.error == "malformed", None

    def _parse(self, key: str, body: bytes, request: ChatRequest) -> ChatResult:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._failed(key, "malformed", body.decode("utf-8", "replace"))
        texts, reasons = [], []
        try:
            for choice in sorted(data["choices"], key=lambda c: c.get("index", 0)):
                message = {"content": choice["text"]} if request.raw_prompt is not None else choice["message"]
                content = message.get("content")
                if choice.get("finish_reason") == "content_filter" or (
                    not content and message.get("refusal")
                ):
                    return self._failed(key, "refused", str(message.get("refusal") or "content_filter"))
                if not isinstance(content, str):
                    raise TypeError("content is not a string")
                texts.append(content)
                reasons.append(choice.get("finish_reason") or "stop")
            if not texts:
                raise ValueError("no choices")
            usage = data.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
        except (KeyError, TypeError, ValueError, AttributeError):
            return self._failed(key, "schema", body.decode("utf-8", "replace"))
        if not usage:
            prompt_tokens = sum(len(content) for _, content in request.messages) // 4
            completion_tokens = sum(len(t) for t in texts) // 4
        if len(texts) < request.n:
            self._warn_once("fewer_choices", f"asked for n={request.n} choices, the server sent {len(texts)}")
        return ChatResult(
            key,
            texts,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reasons=reasons,
        )

    def _failed(self, key: str, kind: str, detail: str) -> ChatResult:
        detail = detail[:DETAIL_CHARS]
        if self._key != "EMPTY" and len(self._key) >= 8:
            detail = detail.replace(self._key, "***")
        return ChatResult(key, [], error=kind, detail=detail)

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("llm: %s", message)

    def close(self) -> None:
        if not self._loop.is_closed():
            # requests left running by an interrupted complete_all (Ctrl-C) are cancelled, not finished
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(_wait(pending))
            self._loop.run_until_complete(self._api.close())
            self._loop.close()
        super().close()


async def _wait(tasks) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


class _Bucket:
    """A token bucket: `per_minute` units a minute, in bursts of up to a tenth of that (at least 1). A take larger
    than a burst waits for a full bucket and leaves it in debt, so that the average rate still holds."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60
        self.capacity = max(1.0, per_minute / 10)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, amount: float) -> None:
        while True:
            self._refill()
            need = min(amount, self.capacity)
            if self.level >= need:
                self.level -= amount
                return
            await asyncio.sleep((need - self.level) / self.rate)

    def give_back(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)


def _http_client(openai, timeout_s: float):
    """The SDK's aiohttp transport (`openai[aiohttp]`) where installed: at 64 requests in flight the default
    httpx pool spends a third of the client's time checking its idle connections. None: the SDK's default."""
    try:
        return openai.DefaultAioHttpClient(timeout=timeout_s)
    except (AttributeError, RuntimeError):  # an openai without it, or aiohttp not installed
        return None


def _api_key(cfg: BackendConfig) -> str:
    name = cfg.api_key_env
    value = os.environ.get(name) if name else None
    if value:
        return value
    if cfg.base_url:
        return "EMPTY"  # a local server (vLLM, Ollama, llama.cpp) that wants no key
    if name:
        raise UserError(
            f"backend.api_key_env: the environment variable {name} is not set (it must hold the API key; "
            "set backend.base_url for a local server that needs none)"
        )
    raise UserError("backend: api_key_env is null and base_url is not set: the default endpoint needs a key")


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost `raise ... from` cause. The aiohttp transport reports a dropped connection as a ConnectTimeout
    (so the SDK raises APITimeoutError); what really happened is at the root."""
    for _ in range(20):
        if exc.__cause__ is None:
            break
        exc = exc.__cause__
    return exc


def _retry_after(response) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header; None when absent or not a number."""
    if response is None:
        return None
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        if "retry-after" in headers:
            return max(0.0, float(headers["retry-after"]))
    except ValueError:
        return None  # an HTTP date: rare from API servers; fall back to backoff
    return None
