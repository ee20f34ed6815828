"""The optional LLM judge of `decontam`: asks a chat model whether a flagged record and the benchmark item it
matched are the same question (LMSYS llm-decontaminator's second step, after embedding similarity).

The prompt is `judge_prompt.txt`, three sections: `system` (text items), `system_code` (items of a benchmark
with code: HumanEval, MBPP) and `user`, whose `{item}` and `{record}` are the item's text and the record's
text (its turns joined by newlines), each cut to `judge.max_chars`. Source: lm-sys/llm-decontaminator,
`detect_instruct.py` at commit 019f3dab (`knowledge_instruct`, the same text as `math_instruct`, and
`code_instruct`) and the user message of `llm_detect.py` at 16721323 (`"part1: \\{\\n" + test + ...`),
word for word, less the backslashes that the Python source left before the braces (`"\\{"` is not an escape).
As there, the test item is part 1 and the training text part 2.

Parsing the reply (`parse`): the first word, else the last word, lower-cased and stripped of quotes, asterisks
and punctuation: `true`/`yes` is contaminated, `false`/`no` is not (LMSYS accepts only the exact `True` or
`False` and retries anything else; a chat model often says `True.` or `**False**`). Anything else is
unparsed: the candidate keeps the verdict that made it one (it is removed) and is counted as `unparsed`, with
the raw reply in the reject's detail, so a reviewer sees what the judge said. A failed request (an HTTP error
after the client's retries, a timeout, the spending cap) is the same: removed, counted as `failed`, the error
kind in the detail. Only a clear "not the same" keeps a record: a judge that cannot answer never lets a
candidate through.

The client is made lazily once per worker process (`process` runs in forked or spawned workers) and keyed by
the backend config, the cache path and the process id (a connection must not cross a fork); every answer goes
to the SQLite response cache first (`factory/llm/cache.py`), so a re-run of the stage asks nothing twice.
`max_total_tokens` applies per worker process, and a `transformers` backend loads its model in every worker that
meets a candidate (use `--workers 1` with a local model on one GPU).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from factory import store
from factory.errors import UserError
from factory.llm.client import ChatRequest, Client, make_client
from stages.decontam.config import JudgeConfig

PROMPT_FILE = Path(__file__).resolve().parent / "judge_prompt.txt"
MAX_REPLY = 300  # characters of the reply kept in a reject's detail
MAX_ERROR = 300

_SECTION = re.compile(r"^=== (\w+) ===\n", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(item|record)\}")
_YES = {"true", "yes"}
_NO = {"false", "no"}

_CLIENTS: dict[tuple, Client] = {}
_PROMPTS: dict[str, str] = {}


@dataclass(frozen=True)
class Question:
    item: str  # the benchmark item's text
    record: str  # the training record's text
    code: bool  # the item is a program: LMSYS's code instruction


def prompts() -> dict[str, str]:
    """The sections of `judge_prompt.txt`: system, system_code, user (each less its final newline)."""
    if not _PROMPTS:
        text = PROMPT_FILE.read_text(encoding="utf-8")
        parts = _SECTION.split(text)[1:]
        _PROMPTS.update(
            {name: body.removesuffix("\n") for name, body in zip(parts[::2], parts[1::2], strict=True)}
        )
    return _PROMPTS


def request(q: Question, max_chars: int) -> ChatRequest:
    p = prompts()
    values = {"item": q.item[:max_chars], "record": q.record[:max_chars]}
    user = _PLACEHOLDER.sub(
        lambda m: values[m.group(1)], p["user"]
    )  # one pass: a text holding `{item}` stays
    return ChatRequest(messages=(("system", p["system_code" if q.code else "system"]), ("user", user)))


def parse(reply: str) -> bool | None:
    """True (same question), False (not the same) or None (unparseable): the first word, else the last."""
    words = reply.split()
    for word in (words[:1] + words[-1:]) if words else []:
        w = word.strip("\"'`*_.,:;!()[]{}").lower()
        if w in _YES:
            return True
        if w in _NO:
            return False
    return None


def cache_path(cfg: JudgeConfig, run_dir: Path) -> Path:
    return Path(cfg.cache) if cfg.cache else store.local_dir(run_dir, "_cache", "llm.sqlite")


def client(cfg: JudgeConfig, run_dir: Path) -> Client:
    """This process's client for `cfg` (made on first use)."""
    assert cfg.backend is not None
    path = cache_path(cfg, run_dir)
    key = (cfg.backend.model_dump_json(), str(path), os.getpid())
    if key not in _CLIENTS:
        _CLIENTS[key] = make_client(cfg.backend, path)
    return _CLIENTS[key]


def check(cfg: JudgeConfig, run_dir: Path) -> None:
    """Fail before any shard runs on what a worker would fail on: an openai client is made and closed (a missing
    package or API key variable); a local model folder is only looked at (loading it twice would cost minutes)."""
    assert cfg.backend is not None
    if cfg.backend.kind == "openai":
        make_client(cfg.backend, cache_path(cfg, run_dir)).close()
    elif not (Path(cfg.backend.model) / "config.json").is_file():
        raise UserError(
            f"stages.decontam.judge.backend.model: {cfg.backend.model} is not a local model folder (no "
            "config.json); the transformers backend never downloads"
        )


def close_all() -> None:
    """Close the clients this process made (the runner's process: a run with one worker, or the tests)."""
    pid = os.getpid()
    for key in [k for k in _CLIENTS if k[2] == pid]:
        _CLIENTS.pop(key).close()


def empty_counts() -> dict:
    return {
        "asked": 0,
        "confirmed": 0,
        "overruled": 0,
        "failed": 0,
        "unparsed": 0,
        "cache_hits": 0,
        "tokens": {"prompt": 0, "completion": 0},
        "failures": {},  # error kind -> requests
        "overruled_items": {},  # benchmark item -> records kept against its embedding (or n-gram) verdict
    }


def ask(cfg: JudgeConfig, run_dir: Path, questions: list[Question]) -> tuple[list[dict], dict]:
    """One verdict per question, in order ({verdict: True/False/None, reply, model, cached, and error on a
    failure}), and the counters (`empty_counts`), with one `complete_all` for all of them."""
    counts = empty_counts()
    if not questions:
        return [], counts
    llm = client(cfg, run_dir)
    results = llm.complete_all([request(q, cfg.max_chars) for q in questions])
    verdicts = []
    for res in results:
        counts["asked"] += 1
        counts["cache_hits"] += int(res.cached)
        if not res.cached:  # paid now; a cached answer cost nothing this time
            counts["tokens"]["prompt"] += res.prompt_tokens
            counts["tokens"]["completion"] += res.completion_tokens
        out: dict = {"verdict": None, "model": llm.model, "cached": res.cached}
        if res.error is not None:
            counts["failed"] += 1
            counts["failures"][res.error] = counts["failures"].get(res.error, 0) + 1
            out.update(error=res.error, error_detail=(res.detail or "")[:MAX_ERROR])
        else:
            reply = res.texts[0] if res.texts else ""
            verdict = parse(reply)
            out.update(verdict=verdict, reply=reply[:MAX_REPLY])
            counts[{True: "confirmed", False: "overruled", None: "unparsed"}[verdict]] += 1
        verdicts.append(out)
    return verdicts, counts
