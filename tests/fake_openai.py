"""A real OpenAI-compatible HTTP server for the tests and benchmarks: POST /v1/chat/completions and
/v1/completions (plain text: `answer` gets `[{"role": "prompt", "content": prompt}]`), non-streaming.

`serve(answer, latency_s=0, faults=None)` runs a `ThreadingHTTPServer` on a free 127.0.0.1 port in a background
thread and yields a `FakeServer` with `.base_url` (ends in /v1), `.requests` (every body received, faulted ones
too), `.count_by_body` (a Counter over canonical JSON bodies), `.answered` (bodies answered with a good 200),
`.repeated()` (how many bodies arrived more than once), `.repeated_answered(before)` (arrivals of a body whose good
answer had been fully written before `before`, a `time.monotonic()`), `.max_concurrent` (most requests handled at
once) and `.headers` (each request's headers, names lower-cased).

A client killed mid-run always asks again for what it had in flight (and for an answer written in the last
instant before the kill, which it never read): `repeated()` counts those, so a "no request paid twice" check is
`repeated_answered(before=kill_time - margin) == 0`, with `repeated() <= max_in_flight`. `answer(messages, body)` returns the reply text, or a list
of n texts; usage counts words.

Faults are specs `"name"` or `"name:arg"`: `429` (arg: Retry-After seconds, default 1), `500`, `400`, `hang` (arg:
seconds to sleep before answering, default 30), `malformed` (200, body not JSON), `truncated` (Content-Length of
the full body, half of it sent, connection closed), `schema` (200, JSON without choices), `refuse` (a refusal
message), `drop` (connection closed with no response), `401` (an error body that echoes the Authorization
header, as a careless proxy might). `faults` is either a list consumed one per request in
arrival order (None entries answer normally), or a callable `(body, times_seen_before) -> spec | None`.

`python tests/fake_openai.py --latency 0.2` serves an echo answer until killed, printing its base URL first (the
benchmark runs the server in its own process, so that its threads do not share the client's interpreter lock).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[[list[dict], dict], "str | list[str]"]


def echo(messages: list[dict], body: dict) -> str:
    return f"answer to: {messages[-1]['content']}"


class FakeServer:
    def __init__(self, answer: Answer, latency_s: float = 0.0, faults=None) -> None:
        self.answer = answer
        self.latency_s = latency_s
        self.faults = faults if callable(faults) else list(faults or [])
        self.requests: list[dict] = []
        self.count_by_body: Counter[str] = Counter()
        self.answered: list[dict] = []
        self.answered_at: dict[
            str, float
        ] = {}  # canonical body -> monotonic time its first good answer was sent
        self.arrivals: list[tuple[str, float]] = []  # (canonical body, monotonic time) of every request
        self.faults_served: Counter[str] = Counter()
        self.headers: list[dict] = []
        self.max_concurrent = 0
        self._active = 0
        self.lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.fake = self
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def repeated(self) -> int:
        """Requests whose exact body had been received before."""
        return sum(c - 1 for c in self.count_by_body.values())

    def repeated_answered(self, before: float | None = None) -> int:
        """Arrivals of a body whose good answer had been fully sent earlier (and before `before`, if given)."""
        with self.lock:
            return sum(
                1
                for canonical, at in self.arrivals
                if canonical in self.answered_at
                and self.answered_at[canonical] < at
                and (before is None or self.answered_at[canonical] < before)
            )

    def _fault_for(self, body: dict, canonical: str) -> str | None:
        with self.lock:
            seen = self.count_by_body[canonical]
            self.requests.append(body)
            self.arrivals.append((canonical, time.monotonic()))
            self.count_by_body[canonical] += 1
            if callable(self.faults):
                return self.faults(body, seen)
            return self.faults.pop(0) if self.faults else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 drops connections when 64 clients connect at once
    fake: FakeServer

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed client resets its connections
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = (
        True  # headers and body go out in two writes: Nagle + delayed ACK would add 40 ms
    )

    def log_message(self, format, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        fake = self.server.fake
        with fake.lock:
            fake._active += 1
            fake.max_concurrent = max(fake.max_concurrent, fake._active)
        try:
            self._post(fake)
        finally:
            with fake.lock:
                fake._active -= 1

    def _post(self, fake: FakeServer) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        text_completion = self.path.rstrip("/").endswith("/v1/completions")
        if not (text_completion or self.path.rstrip("/").endswith("/chat/completions")):
            return self._send(404, b'{"error": {"message": "not found"}}')
        body = json.loads(raw)
        with fake.lock:
            fake.headers.append({k.lower(): v for k, v in self.headers.items()})
        canonical = json.dumps(body, sort_keys=True)
        spec = fake._fault_for(body, canonical)
        name, _, arg = (spec or "").partition(":")
        if name:
            with fake.lock:
                fake.faults_served[name] += 1
        if fake.latency_s:
            time.sleep(fake.latency_s)
        if name == "429":
            return self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": arg or "1"})
        if name == "401":
            auth = self.headers.get("Authorization", "")
            return self._send(401, json.dumps({"error": {"message": f"bad key {auth}"}}).encode())
        if name in ("500", "400"):
            return self._send(int(name), b'{"error": {"message": "fault injected"}}')
        if name == "malformed":
            return self._send(200, b'{"id": "x", "choices": [ not json')
        if name == "schema":
            return self._send(200, b'{"id": "x", "object": "chat.completion", "result": "hello"}')
        if name == "drop":
            self.close_connection = True
            return
        if name == "hang":
            time.sleep(float(arg or 30))
        messages = (
            [{"role": "prompt", "content": body.get("prompt", "")}]
            if text_completion
            else body.get("messages", [])
        )
        n = int(body.get("n") or 1)
        texts = fake.answer(messages, body)
        texts = [texts] * n if isinstance(texts, str) else list(texts)
        choices = [
            {"index": i, "text": t, "finish_reason": "stop"}
            if text_completion
            else {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ]
        if name == "refuse":
            choices = [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
                }
            ]
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_words = sum(len(t.split()) for t in texts)
        payload = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": completion_words,
                "total_tokens": prompt_words + completion_words,
            },
        }
        data = json.dumps(payload).encode()
        if name == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if self._send(200, data) and name in ("", "hang"):
            with fake.lock:
                fake.answered.append(body)
                fake.answered_at.setdefault(canonical, time.monotonic())

    def _send(self, status: int, data: bytes, headers: dict | None = None) -> bool:
        """Write a whole response; False when the client had gone."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            return True
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            self.close_connection = True
            return False


@contextlib.contextmanager
def serve(answer: Answer = echo, latency_s: float = 0.0, faults=None) -> Iterator[FakeServer]:
    fake = FakeServer(answer, latency_s, faults)
    thread = threading.Thread(target=fake.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.httpd.shutdown()
        fake.httpd.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    with serve(echo, args.latency) as fake:
        print(fake.base_url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
