"""The files of a run directory, local or on an object store: atomic writes, listing, reading, and digests.

Nothing in a run directory is ever half-written: a local file is written to a `.tmp-*` sibling and renamed into
place, so a crash leaves either the old file, the new file, or a stray temp file that `remove_temp_files` deletes.
A file on a store (`factory.store.StorePath`) is serialised in memory, then uploaded: an object exists only once
its upload is closed, so a crash mid-upload leaves none (a store error mid-upload may leave a partial one, which,
as the shard's marker is written last, is redone on resume). Every function takes a `Path` or a `StorePath`
(`RunPath`).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from factory.errors import UserError
from factory.store import StorePath

RunPath = Path | StorePath

TEMP_PREFIX = ".tmp-"


def _temp_path(path: Path) -> Path:
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")


def _write(path: RunPath, write) -> None:
    """Call `write(target)` on a temp sibling renamed into place (local), or on an in-memory buffer uploaded in
    one piece (store); `target` is a path string or a pyarrow output stream."""
    if isinstance(path, StorePath):
        sink = pa.BufferOutputStream()
        write(sink)
        path.write_bytes(sink.getvalue())
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(table: pa.Table, path: RunPath, compression: str = "zstd", dictionary: bool = True) -> str:
    """Write a Parquet file atomically (zstd-compressed and dictionary-encoded unless told otherwise: random
    hashes gain nothing from either); returns the file's digest (`file_digest`)."""
    if isinstance(path, StorePath):
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression=compression, use_dictionary=dictionary)
        data = sink.getvalue()
        path.write_bytes(data)
        return hashlib.blake2b(memoryview(data), digest_size=16).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        pq.write_table(table, tmp, compression=compression, use_dictionary=dictionary)
        digest = file_digest(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def write_batches(batches: list[pa.RecordBatch], schema: pa.Schema, path: RunPath) -> None:
    """Write an Arrow IPC file atomically, one record batch per item: a reader reads any one batch without
    touching the others (`read_batch`: memory-mapped locally, ranged reads on a store)."""

    def write(target) -> None:
        sink = pa.OSFile(target, "wb") if isinstance(target, str) else target
        with pa.ipc.new_file(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
        if isinstance(target, str):
            sink.close()

    _write(path, write)


def read_batch(path: RunPath, index: int) -> pa.RecordBatch:
    """One record batch of an Arrow IPC file, memory-mapped (local) or read by range (store)."""
    if isinstance(path, StorePath):
        return pa.ipc.open_file(path.open_input_file()).get_batch(index)
    source = pa.memory_map(str(path), "r")  # stays open as long as the batch's buffers use it
    return pa.ipc.open_file(source).get_batch(index)


def _write_bytes(data: bytes, path: RunPath) -> None:
    def write(target) -> None:
        if isinstance(target, str):
            with open(target, "wb") as f:
                f.write(data)
        else:
            target.write(data)

    _write(path, write)


def write_json(obj: object, path: RunPath) -> None:
    """Write a JSON file atomically (indented, keys in insertion order)."""
    _write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str) + b"\n", path)


def write_text(text: str, path: RunPath) -> None:
    """Write a UTF-8 text file atomically."""
    _write_bytes(text.encode("utf-8"), path)


def write_npz(path: RunPath, **arrays) -> None:
    """Write numpy arrays to one .npz file atomically."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _write_bytes(buf.getvalue(), path)


def read_npz(path: RunPath) -> dict:
    """The arrays of an .npz file, as a dict."""
    import numpy as np

    source = io.BytesIO(path.read_bytes()) if isinstance(path, StorePath) else path
    with np.load(source, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def read_json(path: RunPath) -> dict | None:
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


def read_table(path: RunPath, columns: list[str] | None = None) -> pa.Table:
    if isinstance(path, StorePath):
        return pq.read_table(path.path, filesystem=path.fs, columns=columns)
    return pq.read_table(path, columns=columns)


def parquet_file(path: RunPath) -> pq.ParquetFile:
    """A Parquet file opened for reading by row group or in batches (`iter_batches`)."""
    return pq.ParquetFile(path.open_input_file() if isinstance(path, StorePath) else path)


def list_shards(directory: RunPath) -> list[RunPath]:
    """The finished data shards of a folder, in name order."""
    return sorted(directory.glob("part-*.parquet"))


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def remove_temp_files(directory: RunPath) -> int:
    """Delete temp files a crashed writer left behind; returns how many (a store has none: uploads are whole)."""
    removed = 0
    if isinstance(directory, Path) and directory.exists():
        for tmp in directory.rglob(f"{TEMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def remove_tree(directory: RunPath) -> None:
    """Delete a folder and everything in it; nothing when it does not exist."""
    if isinstance(directory, StorePath):
        directory.rmtree()
    elif directory.exists():
        shutil.rmtree(directory)


def file_digest(path: RunPath) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open_input_stream() if isinstance(path, StorePath) else open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
