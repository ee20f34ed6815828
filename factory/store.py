"""Run directories on object stores: `StorePath`, the part of `pathlib.Path` that run-directory code uses, on a
pyarrow filesystem (`s3://bucket/runs/x`, `gs://...`, `hdfs://...`), and `location(text)`, which makes a local
`Path` or a `StorePath` of a `run_dir`.

Code that reads and writes a run directory (the runner, the stages' work folders, report, audit) takes either
kind and goes through `factory.shards` for file contents: there a `Path` is written to a temp file and renamed,
a `StorePath` is written with one upload of the finished bytes (an object exists once its upload is closed; a
shard's marker, written last, says its files are complete). `/`, `name`, `parent`, `exists()`, `glob()`, `mkdir()`,
`read_bytes()`, `write_bytes()` and `unlink()` behave as on a Path; there is deliberately no `__fspath__`, so
code that would `open()` a store path fails loudly instead of writing a local file named `s3:`.

A StorePath pickles as its URI: a Ray worker resolves the filesystem itself, with its own credentials (the
store's usual chain: AWS env vars, profiles, instance roles), once per process. What cannot live on an object
store stays on the machine that needs it, under `local_dir(run_dir)`: the driver's log file before it is
uploaded, the LLM response caches (SQLite), a worker's copy of the decontamination index.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

from factory.errors import UserError
from factory.remote import describe, filesystem, is_uri, shown_uri

_FILESYSTEMS: dict[str, tuple[Any, str]] = {}  # root URI -> (filesystem, its path of the root), per process


def location(text: str | os.PathLike) -> Path | StorePath:
    """A run directory or a path in one: a StorePath for a URI (`s3://...`), else a local Path."""
    if isinstance(text, StorePath | Path):
        return text
    text = str(text)
    if is_uri(text) and not text.startswith("file://"):
        return StorePath(text.rstrip("/") if "?" not in text else text)
    if text.startswith("file://"):
        return Path(urlsplit(text).path)
    return Path(text)


def cache_dir(*parts: str) -> Path:
    """factory's cache folder on this machine: $FACTORY_CACHE_DIR, else $XDG_CACHE_HOME/factory, else
    ~/.cache/factory (then `parts`)."""
    base = os.environ.get("FACTORY_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "factory"
    )
    return Path(base, *parts)


def local_dir(run_dir: Path | StorePath, *parts: str) -> Path:
    """A local folder for what a run keeps on this machine: the run directory itself when it is local, else
    `cache_dir("runs", <hash of the run's URI>)`."""
    if isinstance(run_dir, Path):
        return run_dir.joinpath(*parts)
    return cache_dir("runs", hashlib.blake2b(run_dir.uri.encode(), digest_size=8).hexdigest(), *parts)


class StorePath:
    """A file or folder on a pyarrow filesystem: `StorePath("s3://bucket/runs/x?endpoint_override=...")`, and
    paths below it made with `/`. The root URI (query included: endpoints, options) travels with every path."""

    __slots__ = ("root", "rel")

    def __init__(self, root: str, rel: str = ""):
        self.root = root
        self.rel = rel.strip("/")

    # ---- naming ------------------------------------------------------------------------------------------------

    def __truediv__(self, other: str) -> StorePath:
        other = str(other).strip("/")
        return StorePath(self.root, f"{self.rel}/{other}" if self.rel else other)

    def joinpath(self, *parts: str) -> StorePath:
        path = self
        for part in parts:
            path = path / part
        return path

    @property
    def name(self) -> str:
        if self.rel:
            return self.rel.rsplit("/", 1)[-1]
        parts = urlsplit(self.root)
        return parts.path.rstrip("/").rsplit("/", 1)[-1] or parts.netloc.rpartition("@")[2]

    @property
    def stem(self) -> str:
        return self.name.split(".", 1)[0] if not self.name.startswith(".") else self.name

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.name)[1]

    @property
    def parent(self) -> StorePath:
        if self.rel:
            return StorePath(self.root, self.rel.rpartition("/")[0])
        parts = urlsplit(self.root)  # above the root: the same URI with one path segment less
        path = parts.path.rstrip("/")
        if not path:
            raise ValueError(f"{self}: the top of the store has no parent")
        return StorePath(urlunsplit(parts._replace(path=path.rpartition("/")[0])))

    @property
    def uri(self) -> str:
        """The full URI, query included (what a worker needs to reach it)."""
        parts = urlsplit(self.root)
        path = parts.path.rstrip("/") + ("/" + self.rel if self.rel else "")
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))

    def __str__(self) -> str:
        return shown_uri(self.uri)

    def __repr__(self) -> str:
        return f"StorePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorePath) and (self.root, self.rel) == (other.root, other.rel)

    def __lt__(self, other: StorePath) -> bool:
        return (self.root, self.rel) < (other.root, other.rel)

    def __hash__(self) -> int:
        return hash((self.root, self.rel))

    def __reduce__(self):
        return StorePath, (self.root, self.rel)

    # ---- the filesystem ----------------------------------------------------------------------------------------

    @property
    def fs(self) -> Any:
        return self._resolved()[0]

    @property
    def root_path(self) -> str:
        return self._resolved()[1]

    @property
    def path(self) -> str:
        """The path inside the filesystem (`bucket/key` on object stores)."""
        root = self.root_path.rstrip("/")
        return f"{root}/{self.rel}" if self.rel else root

    def _resolved(self) -> tuple[Any, str]:
        if self.root not in _FILESYSTEMS:
            _FILESYSTEMS[self.root] = filesystem(self.root, self.root, "run_dir")
        return _FILESYSTEMS[self.root]

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise UserError(f"{self}: cannot {what}: {describe(exc, self.root)}") from None

    def _info(self) -> Any:
        return self._call("read", self.fs.get_file_info, self.path)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def size(self) -> int:
        return self._info().size or 0

    def iterdir(self) -> list[StorePath]:
        """The files and folders right below this folder (none when it does not exist), sorted."""
        selector = pafs.FileSelector(self.path, recursive=False, allow_not_found=True)
        infos = self._call("list", self.fs.get_file_info, selector)
        return sorted(self / info.base_name for info in infos)

    def glob(self, pattern: str) -> list[StorePath]:
        """The files and folders right below this folder whose names match `pattern` (no `/`, no `**`)."""
        return [p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern)]

    def rglob(self, pattern: str) -> list[StorePath]:
        """Every file below this folder whose name matches `pattern`."""
        selector = pafs.FileSelector(self.path, recursive=True, allow_not_found=True)
        infos = self._call("list", self.fs.get_file_info, selector)
        prefix = self.path.rstrip("/") + "/"
        return sorted(
            self / info.path[len(prefix) :]
            for info in infos
            if info.type == pafs.FileType.File and fnmatch.fnmatchcase(info.base_name, pattern)
        )

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        if self.fs.type_name in ("s3", "gcs"):  # prefixes, not folders: nothing to make
            return
        self._call("create", lambda: self.fs.create_dir(self.path, recursive=True))

    def read_bytes(self) -> bytes:
        try:
            with self.fs.open_input_stream(self.path) as f:
                return f.read()
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise UserError(f"{self}: cannot read: {describe(exc, self.root)}") from None

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes | pa.Buffer) -> None:
        """One upload: the object exists once the stream is closed."""
        try:
            if self.fs.type_name not in (
                "s3",
                "gcs",
            ):  # filesystems with real folders (hdfs, local) need them
                self.fs.create_dir(self.path.rpartition("/")[0], recursive=True)
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
        except (OSError, pa.ArrowException) as exc:
            raise UserError(f"{self}: cannot write: {describe(exc, self.root)}") from None

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def open_input_file(self) -> Any:
        """A random-access pyarrow file (Parquet footers, Arrow IPC batches: ranged reads)."""
        return self._call("read", self.fs.open_input_file, self.path)

    def open_input_stream(self) -> Any:
        return self._call("read", self.fs.open_input_stream, self.path)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self) -> None:
        """Delete this folder and everything below it (nothing when it does not exist)."""
        if self.exists():
            self._call("delete", self.fs.delete_dir, self.path)


def check_writable(run_dir: StorePath) -> None:
    """Fail in seconds, with one line, when a run directory on a store cannot be written (no bucket, no access,
    no answer): write and delete a small object."""
    probe = run_dir / ".factory-write-check"
    probe.write_bytes(b"")
    probe.unlink(missing_ok=True)


# ---- duckdb over a run directory -----------------------------------------------------------------------------

SQL_SCHEME = (
    "factory-run"  # how duckdb names a store path: its own s3 reader (httpfs) is not installed offline
)


def sql_path(path: Path | StorePath) -> str:
    """The name duckdb reads a run-directory file by: the local path, or `factory-run://<bucket/key>` served by
    the filesystem `duckdb_connect` registers."""
    return f"{SQL_SCHEME}://{path.path}" if isinstance(path, StorePath) else str(path)


def duckdb_connect(run_dir: Path | StorePath):
    """An in-memory duckdb connection that reads `sql_path`s of the run directory (a store's through fsspec's
    wrapper of the same pyarrow filesystem, so credentials and endpoints are those of the run)."""
    import duckdb

    con = duckdb.connect()
    if isinstance(run_dir, StorePath):
        from fsspec.implementations.arrow import ArrowFSWrapper

        class RunFS(ArrowFSWrapper):
            protocol = SQL_SCHEME

            @classmethod
            def _strip_protocol(cls, path):
                path = path[0] if isinstance(path, list) else path
                return path.removeprefix(f"{SQL_SCHEME}://").rstrip("/")

        con.register_filesystem(RunFS(run_dir.fs))
    return con
