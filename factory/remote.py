"""Input files on object stores and other filesystems pyarrow reads (`s3://`, `gs://`, `hdfs://`, `abfs://`,
`file://`, `fsspec+<protocol>://`): listing, reading, and showing their URIs safely. Used by `factory.ingest`.

Reading happens in the main process only (workers get chunks, never files: only the driver needs access to the
store, and `Remote` drops its filesystem, with its credentials, when pickled). A path's rules are those of local
paths: a prefix lists every readable object below it, a glob (`*`, `[...]`, `**`; `?` starts the URI's query)
matches keys under its fixed part, compressed files are decompressed while streaming in 8 MB reads, Parquet is
read by row group. Origins, logs and messages name an object by its URI without the query and without
`key:secret@` (`shown_uri`). Credentials come from the URI or the store's usual chain (AWS env vars and
profiles, `AWS_ENDPOINT_URL`); an endpoint such as MinIO's goes in the query (`?endpoint_override=...&scheme=http`).

A store that does not answer must fail in seconds: pyarrow's `from_uri` takes no timeouts and its S3 default
retries a refused connection for ~6 s (GCS: for up to 15 minutes), so the filesystem is rebuilt with the default
of pyarrow's own S3 constructor (3 attempts) and a bounded GCS retry time (`?retry_limit_seconds=` overrides it).
"""

from __future__ import annotations

import fnmatch
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

from factory.errors import InputError

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
GLOB_CHARS = "*?["
S3_ATTEMPTS = 3
GCS_RETRY_SECONDS = 10
REMOTE_READ = 8 << 20


@dataclass
class Remote:
    """Where a file on a pyarrow filesystem lies, and its size and mtime when listed (for the fingerprint)."""

    fs: Any  # pyarrow.fs.FileSystem
    path: str  # the path inside `fs` (bucket/key for object stores)
    size: int
    mtime_ns: int

    def __getstate__(self) -> dict:
        # Chunks travel to workers, which never open files: the filesystem (and its credentials) stays here.
        return {**self.__dict__, "fs": None}


def is_uri(path: str) -> bool:
    """A URI (`s3://...`, `file:///...`), read through pyarrow.fs, rather than a local path."""
    return URI.match(path) is not None


def shown_uri(uri: str) -> str:
    """The URI as origins, logs and messages show it: no query (endpoints, tokens), no `user:password@`."""
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, _shown_netloc(parts.netloc), parts.path, "", ""))


def _shown_netloc(netloc: str) -> str:
    userinfo, _, host = netloc.rpartition("@")
    return host if ":" in userinfo else netloc  # `container@account` (abfs) is no secret; `key:secret@` is


def list_uri(uri: str, where: str, readable: Callable[[str], bool]) -> list[tuple[str, Remote]]:
    """(shown URI, where to read it) of each object a URI names: one object, every `readable` object under a
    prefix, or a glob's matches; sorted. InputError naming `where` when there is none or the store fails."""
    shown = shown_uri(uri)
    parts = urlsplit(uri)
    base, pattern = _split_glob(parts.path)
    fs, root = filesystem(urlunsplit((parts.scheme, parts.netloc, base, parts.query, "")), uri, where)
    try:
        if pattern is None:
            info = fs.get_file_info(root)
            if info.type == pafs.FileType.File:
                infos = [info]
            elif info.type == pafs.FileType.Directory:
                infos = [x for x in _listing(fs, root, True) if readable(x.path)]
                if {x.path[len(root) :].strip("/") for x in infos} & {"state.json", "dataset_dict.json"}:
                    raise InputError(f"{where}: {shown}: `datasets` folders are read from local paths only")
                if not infos:
                    raise InputError(f"{where}: {shown}: the prefix holds no readable input files")
            else:
                raise InputError(
                    f"{where}: {shown}: {_missing_bucket(fs, root) or 'no such object or prefix'}"
                )
        else:
            recursive = "/" in pattern or "**" in pattern
            infos = [x for x in _listing(fs, root, recursive) if _glob_match(x.path[len(root) :], pattern)]
            if not infos:
                missing = _missing_bucket(fs, root)
                raise InputError(f"{where}: no files match {shown!r}" + (f" ({missing})" if missing else ""))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{where}: {shown}: {describe(exc, uri)}") from None
    # the object's URI: bucket stores list `bucket/key`, others (file, hdfs) an absolute path on the host
    head = f"{parts.scheme}://" + (_shown_netloc(parts.netloc) if root.startswith("/") else "")
    return [
        (head + info.path, Remote(fs, info.path, info.size or 0, info.mtime_ns or 0))
        for info in sorted(infos, key=lambda x: x.path)
    ]


def _split_glob(path: str) -> tuple[str, str | None]:
    """(the fixed part, the pattern below it, or None): `/data/*.jsonl` -> (`/data`, `*.jsonl`)."""
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if any(ch in segment for ch in GLOB_CHARS):
            return "/".join(segments[:i]), "/".join(segments[i:])
    return path, None


def _glob_match(relative: str, pattern: str) -> bool:
    """glob's rules on a key below the fixed part: `*` stays within one segment, `**` spans any number."""

    def match(names: list[str], pats: list[str]) -> bool:
        if not pats:
            return not names
        if pats[0] == "**":
            return any(match(names[i:], pats[1:]) for i in range(len(names) + 1))
        return bool(names) and fnmatch.fnmatchcase(names[0], pats[0]) and match(names[1:], pats[1:])

    return match(relative.strip("/").split("/"), pattern.strip("/").split("/"))


def filesystem(uri: str, raw: str, where: str) -> tuple[Any, str]:
    """pyarrow's filesystem for a URI (credentials from the URI or the usual chain) and the path in it."""
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
    except (OSError, pa.ArrowException) as exc:
        if str(exc).startswith("Unrecognized filesystem type"):
            raise InputError(
                f"{where}: {shown_uri(raw)}: pyarrow cannot read `{urlsplit(raw).scheme}://` URIs (it reads "
                "file://, s3://, gs://, hdfs://, abfs:// and fsspec+<protocol>://)"
            ) from None
        raise InputError(f"{where}: {shown_uri(raw)}: {describe(exc, raw)}") from None
    if fs.type_name in ("s3", "gcs"):  # rebuilt from the options from_uri parsed (pickling's own route)
        options = fs.__reduce__()[1][0]
        if fs.type_name == "s3":
            options["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=S3_ATTEMPTS)
        else:
            options["retry_time_limit"] = options["retry_time_limit"] or timedelta(seconds=GCS_RETRY_SECONDS)
        fs = type(fs)(**options)
    return fs, root


def _listing(fs: Any, root: str, recursive: bool) -> list:
    selector = pafs.FileSelector(root, recursive=recursive, allow_not_found=True)
    return [x for x in fs.get_file_info(selector) if x.type == pafs.FileType.File]


def _missing_bucket(fs: Any, root: str) -> str:
    """`no such bucket 'b'` when the bucket of an object-store path does not exist, else ``."""
    if fs.type_name not in ("s3", "gcs"):
        return ""
    bucket = root.strip("/").split("/", 1)[0]
    try:
        missing = fs.get_file_info(bucket).type == pafs.FileType.NotFound
    except (OSError, pa.ArrowException):
        return ""
    return f"no such bucket {bucket!r}" if missing else ""


def describe(exc: BaseException, raw: str) -> str:
    """One line for a filesystem error in the user's terms, never repeating credentials from the URI `raw`."""
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    text = text.replace(raw, shown_uri(raw))
    userinfo = urlsplit(raw).netloc.rpartition("@")[0]
    if ":" in userinfo:
        text = text.replace(userinfo, "***")
    text = re.sub(r"^When [^:]*: |\s*\(Request ID: [^)]*\)| error_info=.*", "", text)  # URI named already
    text = text if len(text) <= 300 else text[:300] + "..."
    upper = text.upper()
    if any(code in upper for code in ("NETWORK_CONNECTION", "COULD NOT CONNECT", "UNAVAILABLE")):
        return f"cannot reach the store (check the endpoint and the network): {text}"
    if any(code in upper for code in ("ACCESS_DENIED", "INVALID_ACCESS_KEY", "SIGNATURE", "FORBIDDEN")):
        return f"access denied (check the credentials): {text}"
    if "NO_SUCH_BUCKET" in upper:
        return f"no such bucket: {text}"
    if text.startswith("Cannot parse URI"):
        return f"{text} (percent-encode spaces and other special characters in a URI: %20)"
    return text


def open_stream(remote: Remote, shown: str, raw: str) -> io.BufferedReader:
    """A buffered binary stream of an object (line iteration and `peek`), decompressing .gz and .zst; `shown` is
    its URI for messages, `raw` the spec's URI (whose credentials messages must not repeat)."""
    compression = "gzip" if shown.endswith(".gz") else "zstd" if shown.endswith(".zst") else None
    try:  # 8 MB reads: one ranged GET each (unbuffered, a gzip stream asks the store for every 64 KB)
        stream = remote.fs.open_input_stream(remote.path, compression=compression, buffer_size=REMOTE_READ)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{shown}: cannot open: {describe(exc, raw)}") from None
    return io.BufferedReader(stream, buffer_size=1 << 20)  # pyarrow's streams have no readline


def open_file(remote: Remote, shown: str, raw: str):
    """A random-access file of an object (Parquet: the footer, then one row group at a time)."""
    try:
        return remote.fs.open_input_file(remote.path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{shown}: cannot open: {describe(exc, raw)}") from None
