"""The response cache: successful results on disk, keyed by `ChatRequest.key`, so that no request is paid twice.

One SQLite file in WAL mode with one table `results(key, value)`, `value` a JSON object of the texts, token counts
and finish reasons. Every result is committed as it arrives (`synchronous=NORMAL`: a committed row survives the
process being killed; only a power cut may lose the last few), so a run killed with kill -9 loses at most the
requests that were in flight. Failures are never stored: a re-run asks again. Several processes may read the file;
SQLite serialises the writers (busy timeout 30 s), and a lock makes one connection safe across threads.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import orjson

from factory.llm.client import ChatResult


class ResponseCache:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value BLOB NOT NULL)")

    def get(self, key: str) -> ChatResult | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value = orjson.loads(row[0])
        return ChatResult(
            key=key,
            texts=value["texts"],
            prompt_tokens=value.get("prompt_tokens", 0),
            completion_tokens=value.get("completion_tokens", 0),
            finish_reasons=value.get("finish_reasons", []),
            cached=True,
        )

    def put(self, result: ChatResult) -> None:
        """Store a successful result (a failed one is ignored) and commit it at once."""
        if result.error is not None:
            return
        value = orjson.dumps(
            {
                "texts": result.texts,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "finish_reasons": result.finish_reasons,
                "created": round(time.time(), 3),
            }
        )
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)", (result.key, value))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
