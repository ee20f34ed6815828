"""The OpenAI-compatible client against a real local HTTP server: answers, retries per fault, Retry-After,
timeouts, rate and spending limits, the response cache (including a kill -9 mid-run) and the API key's secrecy."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from factory.errors import UserError
from factory.llm.client import ChatRequest, make_client
from factory.llm.config import BackendConfig
from tests.fake_openai import serve

ROOT = Path(__file__).resolve().parents[2]


def cfg(server, **over) -> BackendConfig:
    return BackendConfig(
        **{"base_url": server.base_url, "model": "fake-model", "backoff_s": 0.01, "timeout_s": 5, **over}
    )


def ask(i: int | str, **kw) -> ChatRequest:
    return ChatRequest(messages=(("system", "Be brief."), ("user", f"question {i}")), **kw)


def test_answers_come_back_in_request_order_with_usage():
    seen = []
    with serve(latency_s=0.01) as server:
        client = make_client(cfg(server), None)
        results = client.complete_all([ask(i) for i in range(20)], on_result=lambda i, r: seen.append(i))
        client.close()
    assert [r.texts for r in results] == [[f"answer to: question {i}"] for i in range(20)]
    assert sorted(seen) == list(range(20))
    assert all(r.error is None and not r.cached and r.finish_reasons == ["stop"] for r in results)
    stats = client.stats()
    assert stats["requests"] == 20 and stats["cache_hits"] == 0 and stats["failures"] == {}
    assert stats["prompt_tokens"] == 20 * 4 and stats["completion_tokens"] == 20 * 4  # words, per the server
    assert server.repeated() == 0


def test_n_choices_and_sampling_parameters_are_sent():
    with serve(lambda messages, body: [f"choice {k}" for k in range(body["n"])]) as server:
        client = make_client(cfg(server, temperature=0.5, max_tokens=64, seed=7), None)
        plain, custom = client.complete_all(
            [ask(1, n=3), ask(2, params=(("temperature", 0), ("seed", 99), ("stop", "END")))]
        )
        client.close()
    assert plain.texts == ["choice 0", "choice 1", "choice 2"]
    assert custom.texts == ["choice 0"]
    first, second = sorted(server.requests, key=lambda b: b["messages"][-1]["content"])
    assert first["n"] == 3 and first["model"] == "fake-model"
    assert (first["temperature"], first["top_p"], first["max_tokens"], first["seed"]) == (0.5, 1.0, 64, 7)
    assert (second["temperature"], second["seed"], second["stop"]) == (0.0, 99, ["END"])


def test_plain_text_completions_go_to_the_completions_endpoint(tmp_path):
    def answer(messages, body):
        if "prompt" not in body:
            return "a chat answer"
        assert messages == [{"role": "prompt", "content": body["prompt"]}]
        return [f"{body['prompt']} continued {k}" for k in range(body["n"])]

    with serve(answer) as server:
        client = make_client(cfg(server, max_tokens=16), tmp_path / "cache.sqlite")
        raw, chat = client.complete_all([ChatRequest.completion("def f():", n=2), ask(1)])
        again = client.complete_all([ChatRequest.completion("def f():", n=2)])
        client.close()
    assert (
        raw.texts == ["def f(): continued 0", "def f(): continued 1"] and raw.finish_reasons == ["stop"] * 2
    )
    assert chat.texts == ["a chat answer"] and again[0].cached and again[0].texts == raw.texts
    completion, chat_body = sorted(server.requests, key=lambda b: "prompt" in b, reverse=True)
    assert completion["prompt"] == "def f():" and "messages" not in completion and completion["n"] == 2
    assert "prompt" not in chat_body and chat_body["messages"][-1]["content"] == "question 1"
    assert ChatRequest.completion("x").raw_prompt == "x" and ask(1).raw_prompt is None


@pytest.mark.parametrize(
    "fault, kind",
    [
        ("429:0", "rate_limited"),
        ("500", "http_5xx"),
        ("malformed", "malformed"),
        ("truncated", "connection"),
        ("drop", "connection"),
        ("hang:2", "timeout"),
    ],
)
def test_each_transient_fault_is_retried_once_then_answered(fault, kind, caplog):
    caplog.set_level(logging.DEBUG, logger="factory")
    with serve(faults=[fault]) as server:
        client = make_client(cfg(server, timeout_s=0.5), None)
        (result,) = client.complete_all([ask(1)])
        client.close()
    assert result.error is None and result.texts == ["answer to: question 1"]
    assert len(server.requests) == 2 and server.faults_served[fault.split(":")[0]] == 1
    assert client.stats()["retries"] == 1 and client.stats()["requests"] == 1
    assert f"llm: {kind}" in caplog.text


@pytest.mark.parametrize("fault, kind", [("schema", "schema"), ("400", "http_4xx"), ("refuse", "refused")])
def test_permanent_faults_are_not_retried(fault, kind):
    with serve(faults=[fault]) as server:
        client = make_client(cfg(server), None)
        (result,) = client.complete_all([ask(1)])
        client.close()
    assert result.error == kind and result.texts == [] and result.detail
    assert len(server.requests) == 1
    assert client.stats()["failures"] == {kind: 1}


def test_malformed_bodies_are_retried_at_most_twice():
    with serve(faults=lambda body, seen: "malformed") as server:
        client = make_client(cfg(server, max_retries=6), None)
        (result,) = client.complete_all([ask(1)])
        client.close()
    assert result.error == "malformed" and "not json" in result.detail
    assert len(server.requests) == 3


def test_retries_stop_at_max_retries():
    with serve(faults=lambda body, seen: "500") as server:
        client = make_client(cfg(server, max_retries=2), None)
        (result,) = client.complete_all([ask(1)])
        client.close()
    assert result.error == "http_5xx" and result.detail.startswith("500:")
    assert len(server.requests) == 3 and client.stats()["retries"] == 2


def test_retry_after_is_honoured():
    with serve(faults=["429:0.6"]) as server:
        client = make_client(cfg(server, backoff_s=0), None)
        start = time.perf_counter()
        (result,) = client.complete_all([ask(1)])
        elapsed = time.perf_counter() - start
        client.close()
    assert result.error is None and len(server.requests) == 2
    assert 0.55 <= elapsed < 3


def test_a_hanging_server_times_out():
    with serve(faults=lambda body, seen: "hang:5") as server:
        client = make_client(cfg(server, timeout_s=0.3, max_retries=1), None)
        start = time.perf_counter()
        (result,) = client.complete_all([ask(1)])
        elapsed = time.perf_counter() - start
        client.close()
    assert result.error == "timeout" and len(server.requests) == 2
    assert elapsed < 2


def test_in_flight_requests_are_bounded():
    with serve(latency_s=0.1) as server:
        client = make_client(cfg(server, max_in_flight=4), None)
        start = time.perf_counter()
        results = client.complete_all([ask(i) for i in range(12)])
        elapsed = time.perf_counter() - start
        client.close()
    assert all(r.error is None for r in results)
    assert server.max_concurrent == 4
    assert 0.28 <= elapsed < 1.5  # three waves of 0.1 s


def test_requests_per_minute_limit():
    with serve() as server:
        client = make_client(cfg(server, requests_per_minute=240), None)  # 4/s, bursts of 24
        start = time.perf_counter()
        results = client.complete_all([ask(i) for i in range(28)])
        elapsed = time.perf_counter() - start
        client.close()
    assert all(r.error is None for r in results)
    assert 0.9 <= elapsed < 3


def test_spending_cap_stops_sending():
    # every request costs 4 prompt + 10 completion tokens (the server counts words)
    with serve(lambda m, b: " ".join(["word"] * 10)) as server:
        client = make_client(cfg(server, max_in_flight=1, max_total_tokens=30), None)
        results = client.complete_all([ask(i) for i in range(10)])
        client.close()
    assert [r.error for r in results] == [None] * 3 + ["budget"] * 7
    assert len(server.requests) == 3
    stats = client.stats()
    assert stats["failures"] == {"budget": 7} and stats["prompt_tokens"] + stats["completion_tokens"] == 42


def test_second_run_is_answered_from_the_cache(tmp_path):
    cache = tmp_path / "llm.sqlite"
    with serve() as server:
        first = make_client(cfg(server), cache)
        answers = first.complete_all([ask(i) for i in range(10)])
        first.close()
        second = make_client(cfg(server, max_in_flight=3, timeout_s=9), cache)  # runtime knobs: same keys
        again = second.complete_all([ask(i) for i in range(10)] + [ask(10)])
        second.close()
    assert [r.texts for r in again[:10]] == [r.texts for r in answers]
    assert all(r.cached for r in again[:10]) and not again[10].cached
    assert again[0].prompt_tokens == answers[0].prompt_tokens
    assert len(server.requests) == 11 and server.repeated() == 0
    assert second.stats()["requests"] == 1 and second.stats()["cache_hits"] == 10


def test_failures_are_not_cached_and_duplicates_are_sent_once(tmp_path):
    cache = tmp_path / "llm.sqlite"
    with serve(faults=["400"]) as server:
        client = make_client(cfg(server, max_in_flight=1), cache)
        first = client.complete_all([ask(1), ask(1), ask(2)])
        second = client.complete_all([ask(1), ask(2)])
        client.close()
    assert [r.error for r in first] == ["http_4xx", "http_4xx", None]
    assert first[1].cached and client.stats()["cache_hits"] == 2  # the duplicate and ask(2) the second time
    assert second[0].error is None and second[1].cached
    assert len(server.requests) == 3  # ask(1) failed, ask(2), ask(1) again


def test_cache_key_covers_only_what_changes_the_answer():
    defaults = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 1024, "seed": 0}
    key = ask(1).key("m", defaults)
    assert ask(1, params=(("temperature", 0.7),)).key("m", defaults) == key
    assert ask(1, params=(("top_p", 1),)).key("m", defaults) == key
    for other in (
        ask(1).key("m2", defaults),
        ask(2).key("m", defaults),
        ask(1, n=2).key("m", defaults),
        ask(1, params=(("seed", 1),)).key("m", defaults),
        ask(1, params=(("stop", ["x"]),)).key("m", defaults),
        ask(1).key("m", {**defaults, "max_tokens": 10}),
    ):
        assert other != key


CHILD = """
import sys
from pathlib import Path
from factory.llm.client import ChatRequest, make_client
from factory.llm.config import BackendConfig
client = make_client(BackendConfig(base_url=sys.argv[1], model="fake-model", max_in_flight=4), Path(sys.argv[2]))
reqs = [ChatRequest(messages=(("user", f"question {i}"),)) for i in range(50)]
client.complete_all(reqs, on_result=lambda i, r: print(i, flush=True))
"""


def test_kill_9_mid_run_then_resume_never_repeats_an_answered_request(tmp_path):
    cache = tmp_path / "llm.sqlite"
    with serve(latency_s=0.1) as server:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, server.base_url, str(cache)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        done = [int(child.stdout.readline()) for _ in range(12)]
        killed_at = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        sent_before = len(server.requests)
        assert sent_before < 50  # it was cut off mid-run
        client = make_client(
            BackendConfig(base_url=server.base_url, model="fake-model", max_in_flight=4), cache
        )
        results = client.complete_all([ChatRequest(messages=(("user", f"question {i}"),)) for i in range(50)])
        client.close()
    assert all(r.error is None for r in results)
    assert {b["messages"][-1]["content"] for b in server.requests} == {f"question {i}" for i in range(50)}
    for i in done:  # every result the killed run reported was never asked again
        assert sum(b["messages"][-1]["content"] == f"question {i}" for b in server.requests) == 1
    assert server.repeated() <= 4  # at most the requests in flight at the kill
    assert server.repeated_answered(before=killed_at - 0.05) == 0
    assert client.stats()["cache_hits"] >= len(done)


def test_api_key_is_used_but_never_written(tmp_path, monkeypatch, caplog):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("FACTORY_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "llm.sqlite"
    with serve(faults=["401", "500"]) as server:
        client = make_client(cfg(server, api_key_env="FACTORY_TEST_KEY", max_in_flight=1), cache)
        results = client.complete_all([ask(1), ask(2)])
        client.close()
    assert server.headers[0]["authorization"] == f"Bearer {secret}"
    assert results[0].error == "http_4xx" and "***" in results[0].detail and secret not in results[0].detail
    assert results[1].error is None
    assert secret not in caplog.text and secret not in repr(client.stats())
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path


def test_missing_key_variable(monkeypatch):
    monkeypatch.delenv("FACTORY_NO_SUCH_KEY", raising=False)
    with pytest.raises(UserError, match="FACTORY_NO_SUCH_KEY is not set"):
        make_client(BackendConfig(model="gpt-x", api_key_env="FACTORY_NO_SUCH_KEY"), None)
    with pytest.raises(UserError, match="needs a key"):
        make_client(BackendConfig(model="gpt-x", api_key_env=None), None)
    with serve() as server:  # a local server: no key needed
        client = make_client(cfg(server, api_key_env="FACTORY_NO_SUCH_KEY"), None)
        (result,) = client.complete_all([ask(1)])
        client.close()
    assert result.error is None and server.headers[0]["authorization"] == "Bearer EMPTY"


def test_bad_backend_config(tmp_path):
    with pytest.raises(ValidationError):
        BackendConfig(model="m", max_in_flight=0)
    with pytest.raises(ValidationError):
        BackendConfig(model="m", max_inflight=3)
    with pytest.raises(ValidationError):
        BackendConfig(kind="vllm", model="m")
    with pytest.raises(UserError, match="not a local model folder"):
        make_client(BackendConfig(kind="transformers", model=str(tmp_path / "nope")), None)


def test_complete_all_works_inside_a_running_event_loop():
    with serve() as server:
        client = make_client(cfg(server), None)

        async def main():
            return client.complete_all([ask(1)])

        (result,) = asyncio.run(main())
        client.close()
    assert result.texts == ["answer to: question 1"]
