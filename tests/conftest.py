"""Shared test helpers: write small inputs and configs, run the CLI in-process, read a stage's outputs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from factory.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Caches (the decontam index) go to a temp folder, never to the user's ~/.cache."""
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "factory-cache"))


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_config(path: Path, run_dir: Path, inputs: list[dict], **extra) -> Path:
    cfg = {"run_dir": str(run_dir), "inputs": [{**i, "path": str(i["path"])} for i in inputs], **extra}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def run_cli(*args: str) -> int:
    return main(list(args))


def read_stage(run_dir: Path, stage: str) -> tuple[list[dict], list[dict], dict]:
    """(records, rejects, manifest) of one stage."""
    d = Path(run_dir) / stage
    records = [r for p in sorted(d.glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    rejects = [
        r for p in sorted((d / "rejects").glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()
    ]
    manifest = json.loads((d / "manifest.json").read_text())
    return records, rejects, manifest


def alpaca(i: int, **over) -> dict:
    """A plain, good alpaca record; each i gives different content."""
    row = {
        "instruction": f"Explain in two sentences why the number {i} is interesting to mathematicians.",
        "input": "",
        "output": f"The number {i} has several properties worth noting. For example, it appears in many "
        f"well-known sequences and identities, which makes it a handy example in teaching.",
    }
    row.update(over)
    return row


@pytest.fixture
def good_rows() -> list[dict]:
    return [alpaca(i) for i in range(20)]


CORPUS_WORDS = [a + b + c for a in "bcdfghklmnprst" for b in "aeiou" for c in "lmnrstx"]


def chat_corpus(n: int = 3000) -> list[dict]:
    """n distinct two-turn conversations of random words, an exact and a near duplicate of every 50th, an empty
    answer (clean's reject) and a line that is not an object (ingest's reject)."""
    rng = random.Random(7)
    rows = []
    for i in range(n):
        text = " ".join(rng.choice(CORPUS_WORDS) for _ in range(40))
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Summarise item {i}."},
                    {"role": "assistant", "content": text},
                ]
            }
        )
    for i in range(0, n, 50):  # exact and near duplicates
        rows.append(rows[i])
        near = json.loads(json.dumps(rows[i + 1]))
        near["messages"][1]["content"] = near["messages"][1]["content"].replace(" ", "  ", 3) + " extra"
        rows.append(near)
    rows.append(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}
    )  # empty
    rows.append("not an object")
    return rows
