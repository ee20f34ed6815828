"""Parquet shards on disk: atomic writes (temp file + rename), listing, reading, and file digests.

Nothing in a run directory is ever half-written: every file is written to a `.tmp-*` sibling and renamed into
place, so a crash leaves either the old file, the new file, or a stray temp file that `remove_temp_files` deletes.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from factory.errors import UserError

TEMP_PREFIX = ".tmp-"


def _temp_path(path: Path) -> Path:
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")


def write_table(table: pa.Table, path: Path, compression: str = "zstd", dictionary: bool = True) -> None:
    """Write a Parquet file atomically (zstd-compressed and dictionary-encoded unless told otherwise: random
    hashes gain nothing from either)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        pq.write_table(table, tmp, compression=compression, use_dictionary=dictionary)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_batches(batches: list[pa.RecordBatch], schema: pa.Schema, path: Path) -> None:
    """Write an Arrow IPC file atomically, one record batch per item: a reader that memory-maps it reads any
    one batch without touching the others (`read_batch`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_batch(path: Path, index: int) -> pa.RecordBatch:
    """One record batch of an Arrow IPC file, memory-mapped."""
    source = pa.memory_map(str(path), "r")  # stays open as long as the batch's buffers use it
    return pa.ipc.open_file(source).get_batch(index)


def write_json(obj: object, path: Path) -> None:
    """Write a JSON file atomically (indented, keys in insertion order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        tmp.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str) + b"\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(text: str, path: Path) -> None:
    """Write a UTF-8 text file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_npz(path: Path, **arrays) -> None:
    """Write numpy arrays to one .npz file atomically."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> dict | None:
    try:
        return orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def jsonl_objects(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a small JSONL file a user gives (seed tasks, eval
    completions); a line that is not a JSON object is a UserError naming `path:line`."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise UserError(f"{path}:{n}: not valid JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{n}: not a JSON object")
            yield n, obj


def read_table(path: Path) -> pa.Table:
    return pq.read_table(path)


def list_shards(directory: Path) -> list[Path]:
    """The finished data shards of a folder, in name order."""
    return sorted(directory.glob("part-*.parquet"))


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def remove_temp_files(directory: Path) -> int:
    """Delete temp files a crashed writer left behind; returns how many."""
    removed = 0
    if directory.exists():
        for tmp in directory.rglob(f"{TEMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
