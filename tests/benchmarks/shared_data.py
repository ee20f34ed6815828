"""Reading the public data of ../shared/data for the benchmarks: JSON arrays and JSON Lines, plain or gzipped.

$FACTORY_SHARED_DATA names another copy of that folder (a machine where the checkout has no ../shared beside it)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

SHARED_DATA = Path(
    os.environ.get("FACTORY_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data"
)


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_json(path: Path) -> list[dict]:
    """A JSON array file (.json or .json.gz)."""
    with _open(path) as f:
        return json.load(f)


def read_jsonl(path: Path) -> list[dict]:
    """A JSON Lines file (.jsonl or .jsonl.gz); blank lines skipped."""
    with _open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
