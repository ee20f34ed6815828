"""Benchmark: the OpenAI-compatible client (factory/llm) against the fake chat-completions server. One JSON line.

Figures:
- `throughput`: requests/s at `max_in_flight` 1, 8, 32 and 64 against a server that takes `--latency` (200 ms) per
  request, and each as a ratio of the ideal, in_flight / latency (target >= 0.9 at 64), in the steady state (every
  connection open; 15 rounds of requests). The server runs in its own process (tests/fake_openai.py), so that its
  threads do not compete with the client for one interpreter lock; it still spends ~0.5 ms of CPU per request
  under one lock, which is part of what the ratio measures.
- `overhead_ms`: the client's own cost per request (the openai SDK, parsing and validation, the SQLite cache write,
  bookkeeping): one request at a time against a server with no latency, minus the same bodies posted by a bare
  aiohttp loop that only parses the JSON. `cache_hit_ms`: a request answered from the cache.
- `kill_resume`: a child process runs `complete_all` over `--kill-n` requests (32 in flight, 50 ms latency) and is
  killed with SIGKILL after a third of them are answered; the same requests are then run again on the same cache.
  `repeated_answered` counts requests that the killed run had recorded and that reached the server again (target
  0); `resent_in_flight` those in flight at the kill (sent again because their answers were never recorded; at
  most 32).

Usage: python tests/benchmarks/bench_synth.py [--latency 0.2] [--overhead-n 500] [--kill-n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from factory.llm.client import ChatRequest, make_client  # noqa: E402
from factory.llm.config import BackendConfig  # noqa: E402
from tests.fake_openai import serve  # noqa: E402


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def requests(n: int, tag: str) -> list[ChatRequest]:
    return [
        ChatRequest(messages=(("system", "Be brief."), ("user", f"{tag} question number {i}")))
        for i in range(n)
    ]


def throughput(base_url: str, latency: float) -> dict:
    out = {}
    for in_flight in (1, 8, 32, 64):
        n = max(20, in_flight * 15)
        client = make_client(BackendConfig(base_url=base_url, model="m", max_in_flight=in_flight), None)
        client.complete_all(
            requests(in_flight, f"warm{in_flight}")
        )  # every connection open: the steady state
        start = time.perf_counter()
        results = client.complete_all(requests(n, f"c{in_flight}"))
        wall = time.perf_counter() - start
        client.close()
        assert all(r.error is None for r in results)
        rps = n / wall
        out[str(in_flight)] = {
            "requests": n,
            "rps": round(rps, 1),
            "ratio": round(rps / (in_flight / latency), 3),
        }
    return out


async def bare_loop(base_url: str, bodies: list[dict]) -> float:
    async with aiohttp.ClientSession() as http:
        url = f"{base_url}/chat/completions"
        async with http.post(url, json=bodies[0]) as response:
            await response.read()
        start = time.perf_counter()
        for body in bodies:
            async with http.post(url, json=body) as response:
                json.loads(await response.read())["choices"][0]["message"]["content"]
        return time.perf_counter() - start


def overhead(base_url: str, n: int, tmp: Path) -> dict:
    reqs = requests(n, "overhead")
    cfg = BackendConfig(base_url=base_url, model="m", max_in_flight=1)
    client = make_client(cfg, tmp / "overhead.sqlite")
    client.complete_all(requests(5, "warm"))
    start = time.perf_counter()
    client.complete_all(reqs)
    client_s = time.perf_counter() - start
    start = time.perf_counter()
    hits = client.complete_all(reqs)
    hit_s = time.perf_counter() - start
    client.close()
    assert all(r.cached for r in hits)
    defaults = {
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "max_tokens": cfg.max_tokens,
        "seed": cfg.seed,
    }
    bodies = [
        {"model": "m", "messages": [{"role": ro, "content": c} for ro, c in r.messages], "n": 1}
        | r.effective_params(defaults)
        for r in reqs
    ]
    bare_s = asyncio.run(bare_loop(base_url, bodies))
    return {
        "requests": n,
        "client_ms": round(client_s / n * 1000, 3),
        "bare_aiohttp_ms": round(bare_s / n * 1000, 3),
        "overhead_ms": round((client_s - bare_s) / n * 1000, 3),
        "cache_hit_ms": round(hit_s / n * 1000, 4),
    }


CHILD = """
import sys
from pathlib import Path
from factory.llm.client import ChatRequest, make_client
from factory.llm.config import BackendConfig
client = make_client(BackendConfig(base_url=sys.argv[1], model="m", max_in_flight=32), Path(sys.argv[2]))
reqs = [ChatRequest(messages=(("user", f"kill question {i}"),)) for i in range(int(sys.argv[3]))]
client.complete_all(reqs, on_result=lambda i, r: print(i, flush=True))
"""


def kill_resume(n: int, tmp: Path) -> dict:
    cache = tmp / "kill.sqlite"
    with serve(latency_s=0.05) as server:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, server.base_url, str(cache), str(n)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        recorded = {int(child.stdout.readline()) for _ in range(n // 3)}
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        sent_before = len(server.requests)
        client = make_client(BackendConfig(base_url=server.base_url, model="m", max_in_flight=32), cache)
        results = client.complete_all(
            [ChatRequest(messages=(("user", f"kill question {i}"),)) for i in range(n)]
        )
        stats = client.stats()
        client.close()
        asked = [b["messages"][-1]["content"] for b in server.requests]
    assert all(r.error is None for r in results)
    repeated_answered = sum(asked.count(f"kill question {i}") - 1 for i in recorded)
    return {
        "requests": n,
        "recorded_before_kill": len(recorded),
        "sent_before_kill": sent_before,
        "cache_hits_on_resume": stats["cache_hits"],
        "sent_on_resume": stats["requests"],
        "repeated_answered": repeated_answered,
        "resent_in_flight": len(asked) - len(set(asked)) - repeated_answered,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--overhead-n", type=int, default=500)
    parser.add_argument("--kill-n", type=int, default=300)
    args = parser.parse_args()
    out: dict = {"bench": "synth_client", "latency_s": args.latency, "cpus": os.cpu_count()}
    slow, slow_url = start_server(args.latency)
    fast, fast_url = start_server(0.0)
    try:
        out["throughput"] = throughput(slow_url, args.latency)
        with tempfile.TemporaryDirectory() as tmp:
            out["overhead"] = overhead(fast_url, args.overhead_n, Path(tmp))
            out["kill_resume"] = kill_resume(args.kill_n, Path(tmp))
    finally:
        for proc in (slow, fast):
            proc.kill()
            proc.wait()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
