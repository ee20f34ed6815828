"""Ingest: reading `inputs` into canonical record shards.

Reading is split in two so that both cores work even on one big file:
- the main process resolves paths, detects file types and record formats, and reads each file sequentially into
  chunks of `shard_rows` raw items (raw lines for JSONL, objects for a JSON array, Arrow batches for tables);
- each chunk is a task for a worker, which parses, converts and validates its items (`convert_chunk`) and
  returns canonical records plus rejects. One chunk becomes one shard, numbered in input order, so a resumed run
  skips the chunks whose shards are done without parsing them again.

Memory: bounded by the chunks in flight, except for JSON arrays, which are parsed whole (a JSON array has no
record boundaries to stream by; use JSONL for large corpora) and `hf` datasets, which `datasets` memory-maps.

Remote inputs: a `path` that is a URI (`s3://bucket/prefix/`, `gs://...`, `file:///...`) is listed and read by
`factory.remote` through pyarrow's filesystem layer, with the rules of local paths. Local paths keep their own
code path (`open`, `glob`, `os.stat`): pyarrow.fs adds nothing there.

Reject reasons: `bad_encoding`, `malformed_json`, `malformed_csv_row`, plus the conversion faults of
`factory.records` (`missing_field`, `wrong_type`, `empty_conversation`, `bad_role`, `bad_role_order`,
`non_text_content`). Bad files (missing, unreadable, no records) raise `InputError`.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import gzip
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from factory.config import IngestConfig, InputSpec
from factory.errors import InputError, StrictError
from factory.records import RecordFault, detect_format, to_record
from factory.remote import Remote, describe, is_uri, list_uri, open_file, open_stream, shown_uri
from factory.stage import ShardResult, reject_row

TEXT_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv"}
COMPRESSIONS = (".gz", ".zst")


@dataclass
class InputFile:
    """One resolved input file with the spec it came from. `path` is what origins and logs show: the local
    path, or the object's URI without query or credentials (then `remote` says where to read it)."""

    path: str
    type: str
    spec: InputSpec
    format: str | None = None
    detected: bool = False
    remote: Remote | None = None


@dataclass
class Chunk:
    """Up to `shard_rows` raw items of one file: the unit of work and of resume."""

    file: InputFile
    items: Any  # list[bytes] (jsonl: raw lines), list[Any] (json array), pa.Table (tables), list[dict] (csv faults)
    positions: list[int]  # line numbers (jsonl) or row/item indexes (the rest)
    strict: bool = False
    max_raw: int = 2000
    faults: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # (origin, reason, message) found while reading
    redact: Redactor | None = None


_REDACTORS: dict[tuple, Any] = {}


@dataclass(frozen=True)
class Redactor:
    """Scrubs records, and the raw text of bad lines, as they enter the run directory (no raw PII on disk).

    `build(config)` returns an object with `record(rec) -> rec` and `text(str) -> str`; it is built once per
    worker process (scrubbers are costly to build). The composition root (the CLI) supplies it from the clean
    stage's PII settings: this module knows no stage by name.
    """

    build: Callable[[dict], Any]
    config: dict

    def _impl(self) -> Any:
        key = (
            self.build.__module__,
            self.build.__qualname__,
            orjson.dumps(self.config, option=orjson.OPT_SORT_KEYS),
        )
        impl = _REDACTORS.get(key)
        if impl is None:
            impl = _REDACTORS[key] = self.build(self.config)
        return impl

    def record(self, rec: dict) -> dict:
        return self._impl().record(rec)

    def text(self, text: str) -> str:
        return self._impl().text(text)


# ---- resolving paths -----------------------------------------------------------------------------------------


def file_type(path: str) -> str | None:
    """jsonl/json/csv/tsv/parquet from the extension, looking through .gz/.zst."""
    p = path.lower()
    for comp in COMPRESSIONS:
        if p.endswith(comp):
            p = p[: -len(comp)]
    if p.endswith(".parquet"):
        return "parquet"
    return TEXT_SUFFIXES.get(os.path.splitext(p)[1])


def resolve_inputs(specs: list[InputSpec]) -> list[InputFile]:
    """Expand every spec's path (file, directory or glob; local or a URI) into files, in a stable order."""
    files: list[InputFile] = []
    for i, spec in enumerate(specs):
        where = f"inputs[{i}].path"
        if is_uri(spec.path):
            if spec.type in ("hf", "hf_disk"):
                raise InputError(
                    f"{where}: {shown_uri(spec.path)}: `type: {spec.type}` reads local `datasets` folders "
                    "only; copy the dataset to a local path, or point `path` at its Parquet/JSONL files on the store"
                )
            listed = list_uri(spec.path, where, lambda p, spec=spec: bool(spec.type or file_type(p)))
            files += [InputFile(p, _typed(p, spec), spec, format=spec.format, remote=r) for p, r in listed]
            continue
        if spec.type == "hf":
            if not os.path.exists(spec.path):
                raise InputError(f"{where}: {spec.path}: no such dataset directory")
            files.append(InputFile(spec.path, "hf", spec, format=spec.format))
            continue
        if os.path.isdir(spec.path):
            if spec.type == "hf_disk" or _is_saved_dataset(spec.path):
                files.append(InputFile(spec.path, "hf_disk", spec, format=spec.format))
                continue
            paths = sorted(
                str(p) for p in Path(spec.path).rglob("*") if p.is_file() and (spec.type or file_type(str(p)))
            )
            if not paths:
                raise InputError(f"{where}: {spec.path}: the directory holds no readable input files")
        elif any(ch in spec.path for ch in "*?["):
            paths = sorted(p for p in glob.glob(spec.path, recursive=True) if os.path.isfile(p))
            if not paths:
                raise InputError(f"{where}: no files match {spec.path!r}")
        elif os.path.isfile(spec.path):
            paths = [spec.path]
        else:
            raise InputError(f"{where}: {spec.path}: no such file or directory")
        for path in paths:
            files.append(InputFile(path, _typed(path, spec), spec, format=spec.format))
    return files


def _typed(path: str, spec: InputSpec) -> str:
    ftype = spec.type or file_type(path)
    if ftype is None:
        raise InputError(
            f"{path}: unknown file type; name it .jsonl, .json, .csv, .tsv or .parquet, or set `type`"
        )
    return ftype


def _is_saved_dataset(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, name)) for name in ("state.json", "dataset_dict.json"))


def fingerprint(files: list[InputFile], specs: list[InputSpec]) -> str:
    """Changes when an input file or spec changes (path, size, modification time)."""
    h = hashlib.blake2b(digest_size=12)
    h.update(orjson.dumps([s.model_dump(mode="json") for s in specs]))
    for f in files:
        if f.remote is not None:  # as listed by resolve_inputs: no second round of requests
            h.update(f"{f.path}\0{f.remote.size}\0{f.remote.mtime_ns}\n".encode())
            continue
        paths = (
            [f.path]
            if os.path.isfile(f.path)
            else sorted(str(p) for p in Path(f.path).rglob("*") if p.is_file())
        )
        for p in paths:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# ---- reading files into chunks (main process) ----------------------------------------------------------------


def open_binary(path: str):
    """A binary stream, decompressing .gz and .zst."""
    try:
        if path.endswith(".gz"):
            return gzip.open(path, "rb")
        if path.endswith(".zst"):
            import zstandard

            return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")))
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from None


def _open(f: InputFile):
    """A binary stream of an input file, decompressing .gz and .zst."""
    return open_binary(f.path) if f.remote is None else open_stream(f.remote, f.path, f.spec.path)


def read_chunks(
    f: InputFile, cfg: IngestConfig, strict: bool, redact: Redactor | None = None
) -> Iterator[Chunk]:
    """Yield the chunks of one file; detects the record format from its first record when none is given."""
    readers = {
        "jsonl": _jsonl_chunks,
        "json": _json_chunks,
        "csv": _csv_chunks,
        "tsv": _csv_chunks,
        "parquet": _parquet_chunks,
        "hf_disk": _dataset_chunks,
        "hf": _dataset_chunks,
    }
    count = 0
    try:
        for items, positions, faults in readers[f.type](f, cfg.shard_rows):
            if f.format is None:
                _detect(f, items)
            count += len(positions) + len(faults)
            yield Chunk(f, items, positions, strict, cfg.max_raw_in_detail, faults, redact)
    except (OSError, EOFError) as exc:
        raise InputError(
            f"{f.path}: cannot read: {describe(exc, f.spec.path) if f.remote else exc}"
        ) from None
    except pa.ArrowInvalid as exc:
        raise InputError(f"{f.path}: unreadable {f.type} file: {str(exc).splitlines()[0]}") from None
    if count == 0:
        raise InputError(f"{f.path}: no records")


def _detect(f: InputFile, items: Any) -> None:
    first: Any = None
    if isinstance(items, pa.Table):
        first = items.slice(0, 1).to_pylist()[0] if items.num_rows else None
    else:
        for item in items:
            if isinstance(item, bytes):
                try:
                    first = orjson.loads(item)
                except orjson.JSONDecodeError:
                    continue
            else:
                first = item
            break
    fmt = detect_format(first)
    if fmt is None:
        keys = sorted(first) if isinstance(first, dict) else type(first).__name__
        raise InputError(
            f"{f.path}: cannot detect the record format from the first record (keys: {keys}); "
            "set `format` to alpaca, sharegpt, messages or text"
        )
    f.format, f.detected = fmt, True


def _jsonl_chunks(f: InputFile, rows: int):
    with _open(f) as stream:
        items: list[bytes] = []
        positions: list[int] = []
        for lineno, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            items.append(line)
            positions.append(lineno)
            if len(items) >= rows:
                yield items, positions, []
                items, positions = [], []
        if items:
            yield items, positions, []


def _json_chunks(f: InputFile, rows: int):
    with _open(f) as stream:
        head = stream.peek(64)[:64] if hasattr(stream, "peek") else b""
    if not head.lstrip().startswith(b"["):
        yield from _jsonl_chunks(f, rows)  # JSON Lines saved as .json, as many datasets are
        return
    with _open(f) as stream:
        data = stream.read()
    try:
        array = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{f.path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    del data
    if not isinstance(array, list):
        raise InputError(f"{f.path}: expected a JSON array of records or JSON Lines")
    for start in range(0, len(array), rows):
        yield array[start : start + rows], list(range(start, min(start + rows, len(array)))), []


def _csv_chunks(f: InputFile, rows: int):
    delimiter = "\t" if f.type == "tsv" else ","
    with _open(f) as stream:
        header_line = stream.readline().decode("utf-8-sig", "replace")
    names = next(csv.reader([header_line], delimiter=delimiter), [])
    if not names:
        raise InputError(f"{f.path}: no header row")
    faults: list[tuple[str, str, str]] = []

    def on_invalid(row: Any) -> str:
        where = f"{f.path}:{row.number}" if row.number is not None else f.path
        faults.append(
            (
                where,
                "malformed_csv_row",
                f"expected {row.expected_columns} columns, got {row.actual_columns}: {row.text[:200]}",
            )
        )
        return "skip"

    with _open(f) as stream:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=1 << 22),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        row = 0
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for batch in reader:
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= rows:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, rows), list(range(row, row + rows)), faults
                faults = []
                row += rows
                rest = table.slice(rows)
                pending, pending_rows = rest.to_batches(), rest.num_rows
    if pending_rows or faults:
        table = (
            pa.Table.from_batches(pending)
            if pending
            else pa.table({n: pa.array([], pa.string()) for n in names})
        )
        yield table, list(range(row, row + pending_rows)), faults


def _parquet_chunks(f: InputFile, rows: int):
    source: Any = f.path
    if f.remote is not None:  # a random-access file on the store: the footer, then one row group at a time
        source = open_file(f.remote, f.path, f.spec.path)
    with source if isinstance(source, pa.NativeFile) else contextlib.nullcontext():
        try:
            pf = pq.ParquetFile(source, pre_buffer=f.remote is not None)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{f.path}: unreadable Parquet file: {str(exc).splitlines()[0]}") from None
        row = 0
        for batch in pf.iter_batches(batch_size=rows):
            table = pa.Table.from_batches([batch])
            yield table, list(range(row, row + table.num_rows)), []
            row += table.num_rows


def _dataset_chunks(f: InputFile, rows: int):
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    try:
        if f.type == "hf_disk":
            ds = datasets.load_from_disk(f.path)
        else:
            ds = datasets.load_dataset(f.path, split=f.spec.split or "train")
    except Exception as exc:  # datasets raises many kinds; all mean the same to the user
        raise InputError(f"{f.path}: cannot load dataset: {str(exc).splitlines()[0]}") from None
    if isinstance(ds, datasets.DatasetDict):
        split = f.spec.split or ("train" if "train" in ds else next(iter(ds)) if len(ds) == 1 else None)
        if split not in ds:
            raise InputError(f"{f.path}: choose a split with `split` (has: {', '.join(ds)})")
        ds = ds[split]
    ds = ds.flatten_indices() if getattr(ds, "_indices", None) is not None else ds
    row = 0
    for batch in ds.data.table.to_batches(max_chunksize=rows):
        table = pa.Table.from_batches([batch])
        yield table, list(range(row, row + table.num_rows)), []
        row += table.num_rows


# ---- converting a chunk (worker) -----------------------------------------------------------------------------


def convert_chunk(chunk: Chunk) -> ShardResult:
    """Parse and convert the raw items of one chunk into canonical records and rejects."""
    f, spec = chunk.file, chunk.file.spec
    line_based = f.type in ("jsonl",) or (
        f.type == "json" and chunk.items and isinstance(chunk.items[0], bytes)
    )
    sep = ":" if line_based else "#"
    items = chunk.items.to_pylist() if isinstance(chunk.items, pa.Table) else chunk.items
    kept: list[dict] = []
    rejected: list[dict] = []

    def fault(origin: str, reason: str, message: str, raw: str) -> None:
        if chunk.strict:
            raise StrictError(f"{origin}: {reason}: {message}")
        raw = raw[: chunk.max_raw]
        if chunk.redact is not None:
            message, raw = chunk.redact.text(message), chunk.redact.text(raw)
        detail = {"error": message, "raw": raw}
        row = {
            "id": hashlib.blake2b(f"{origin}\0{raw}".encode(), digest_size=16).hexdigest(),
            "source": spec.source,
            "messages": [],
            "meta": "{}",
            "origin": origin,
        }
        rejected.append(reject_row(row, reason, detail))

    for origin, reason, message in chunk.faults:
        fault(origin, reason, message, "")
    for item, pos in zip(items, chunk.positions, strict=True):
        origin = f"{f.path}{sep}{pos}"
        if isinstance(item, bytes):
            try:
                text = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                fault(
                    origin, "bad_encoding", f"not UTF-8 at byte {exc.start}", item.decode("utf-8", "replace")
                )
                continue
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                fault(origin, "malformed_json", f"column {exc.colno}: {exc.msg}", text.rstrip("\n"))
                continue
        else:
            obj = item
        try:
            rec = to_record(obj, f.format, spec.source, origin, spec.kind, spec.fields)
            kept.append(chunk.redact.record(rec) if chunk.redact is not None else rec)
        except RecordFault as exc:
            fault(origin, exc.reason, exc.message, orjson.dumps(obj, default=str).decode())
    return ShardResult.from_rows(kept, rejected, {"read_from": {f.path: len(items) + len(chunk.faults)}})
