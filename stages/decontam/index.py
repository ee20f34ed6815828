"""The n-gram index of a benchmark set: built once, cached on disk, shared by every worker, and the lookup of a
batch of records in it.

On disk (one folder per benchmark set and settings, under the cache dir, named by a hash of both, written to a
temp folder and renamed): `grams.npy` (every indexed n-gram hash, sorted, unique), `post_off.npy` and
`post_view.npy` (the views holding each n-gram: CSR postings), `views.parquet` (benchmark, item, view, kind,
text and number of n-grams of each view), `meta.json` (per benchmark: rows, items, views, n-grams, source).
Workers memory-map the arrays: about 12 bytes per distinct n-gram plus 4 per posting (the four built-in
benchmarks: ~1.6 M n-grams, ~25 MB).

Scoring (`Index.match`): for every pair of a record and a view that share n-grams, `score` is the share of the
view's n-grams found in the record, and for text views also `part`, the share of the record's text n-grams
found in the view (the record is a piece of the item); the record is contaminated when either reaches the
threshold (`part` only with at least `_MIN_PART_MATCHES` shared n-grams: a 15-word run).
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from factory import shards, store
from factory.shards import RunPath
from stages.decontam import benchmarks as bm
from stages.decontam.benchmarks import CODE, TEXT, Benchmark, Source
from stages.decontam.ngrams import STOP_WORDS, Grams, Short, code_grams, text_grams
from stages.dedup.code_tokens import code_tokens

log = logging.getLogger("factory")

FORMAT = 12  # bump when the index layout or hashing changes: old caches are then ignored
_MIN_PART_MATCHES = 3


@dataclass(frozen=True)
class Settings:
    """What the index depends on besides the benchmarks."""

    n: int
    code_n: int
    min_content: int
    min_code_tokens: int
    code_language: str = "python"
    min_code_grams: int = 8


def default_cache_dir() -> Path:
    return store.cache_dir("decontam")


def cache_key(sources: list[Source], settings: Settings) -> str:
    blob = orjson.dumps(
        {
            "format": FORMAT,
            "settings": settings.__dict__,
            "stop": STOP_WORDS,
            "benchmarks": [s.fingerprint for s in sources],
        }
    )
    return hashlib.blake2b(blob, digest_size=10).hexdigest()


# Names a renamed copy keeps: Python's builtins (and, in `code_tokens_of`, every attribute after a `.`: library
# calls such as `hq.heapify`). They make short programs tell apart where identifier-blind tokens cannot.
KEEP_NAMES = frozenset(n.encode() for n in dir(builtins) if not n.startswith("_"))


def code_tokens_of(text: str, language: str) -> list[str]:
    """Tokens of code in `language` (parsed with its grammar, no detection: one parse), builtins and attributes
    kept as written."""
    return code_tokens(text, language, keep=KEEP_NAMES, attributes=True)[0]


def whole_hashes(token_lists: list[list[str]]) -> np.ndarray:
    """One hash per program: its whole token list, identifiers numbered over the whole program, so a copy with
    every name changed has the same hash. Short programs are matched this way even when their n-grams are too
    common across the benchmark to be indexed (`_distinctive`)."""
    out = np.empty(len(token_lists), dtype=np.uint64)
    for i, tokens in enumerate(token_lists):  # identifiers are already numbered per program (code_tokens)
        digest = hashlib.blake2b("\0".join(tokens).encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little")
    return out


def view_grams(kind: str, texts: list[str], settings: Settings) -> Grams:
    """N-grams of a list of view texts of one kind (the sequence index is the position in `texts`)."""
    if kind == TEXT:
        return text_grams(pa.array(texts, pa.string()), settings.n, settings.min_content)[0]
    tokens = [code_tokens_of(t, settings.code_language) for t in texts]
    tokens = [t if len(t) >= settings.min_code_tokens else [] for t in tokens]
    return code_grams(tokens, settings.code_n)


def build(benchmarks: list[Benchmark], settings: Settings, folder: Path) -> dict:
    """Write the index of `benchmarks` to `folder` (atomically); returns its meta."""
    started = time.perf_counter()
    rows: dict[str, list] = {"benchmark": [], "item": [], "view": [], "kind": [], "text": []}
    for b in benchmarks:
        for item in b.items:
            for v in item.views:
                rows["benchmark"].append(b.name)
                rows["item"].append(item.id)
                rows["view"].append(v.name)
                rows["kind"].append(v.kind)
                rows["text"].append(v.text)
    kinds = np.array(rows["kind"])
    all_h, all_v = [], []
    short_widths: list[int] = []
    short_first = np.zeros(0, dtype=np.uint64)
    for kind in (TEXT, CODE):
        ids = np.flatnonzero(kinds == kind)
        if len(ids) == 0:
            continue
        g = view_grams(kind, [rows["text"][i] for i in ids], settings)
        if kind == TEXT:
            is_short = g.n < settings.n
            short_widths = sorted({int(w) for w in np.unique(g.n[is_short])})
            short_first = np.unique(g.first[is_short])
        hashes, views = g.hashes, ids[g.seq]
        if kind == CODE:
            hashes, views = _distinctive(
                hashes, views, np.array(rows["item"])[views], settings.min_code_grams
            )
        all_h.append(hashes)
        all_v.append(views)
    code_ids = np.flatnonzero(kinds == CODE)
    code_tokens = [code_tokens_of(rows["text"][i], settings.code_language) for i in code_ids]
    long_enough = np.array([len(t) >= settings.min_code_tokens for t in code_tokens], dtype=bool)
    whole_h = whole_hashes([t for t, ok in zip(code_tokens, long_enough, strict=True) if ok])
    whole_order = np.argsort(whole_h, kind="stable")
    whole_v = code_ids[long_enough][whole_order].astype(np.int64)
    whole_h = whole_h[whole_order]
    h = np.concatenate(all_h) if all_h else np.zeros(0, dtype=np.uint64)
    v = np.concatenate(all_v) if all_v else np.zeros(0, dtype=np.int64)
    pairs = (
        np.unique(np.stack([h, v.astype(np.uint64)], axis=1), axis=0)
        if len(h)
        else np.zeros((0, 2), np.uint64)
    )
    h, v = pairs[:, 0], pairs[:, 1].astype(np.int32)
    total = np.bincount(v, minlength=len(kinds)).astype(np.int64)
    grams, first = np.unique(h, return_index=True)
    post_off = np.concatenate((first, [len(h)])).astype(np.int64)

    meta = {
        "format": FORMAT,
        "settings": settings.__dict__,
        "benchmarks": {},
        "ngrams": int(len(grams)),
        "short_widths": short_widths,  # lengths of protected texts shorter than n: records are cut to them too
    }
    bench_of = np.array(rows["benchmark"])
    for b in benchmarks:
        mine = bench_of == b.name
        meta["benchmarks"][b.name] = {
            "items": len(b.items),
            "rows": b.rows,
            "split": b.split,
            "source": b.source,
            "views": int(mine.sum()),
            "views_indexed": int((total[mine] > 0).sum()),
            "ngrams": int(total[mine].sum()),
        }
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    np.save(tmp / "grams.npy", grams)
    np.save(tmp / "bitmap.npy", bitmap(grams))
    np.save(tmp / "short_first.npy", short_first)
    np.save(tmp / "post_off.npy", post_off)
    np.save(tmp / "post_view.npy", v)
    np.save(tmp / "whole_hash.npy", whole_h)
    np.save(tmp / "whole_view.npy", whole_v)
    table = pa.table({**{k: pa.array(x, pa.string()) for k, x in rows.items()}, "total": pa.array(total)})
    pq.write_table(table, tmp / "views.parquet")
    meta["build_s"] = round(time.perf_counter() - started, 2)
    shards.write_json(meta, tmp / "meta.json")
    try:
        tmp.rename(folder)
    except OSError:  # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _distinctive(
    hashes: np.ndarray, views: np.ndarray, items: np.ndarray, min_grams: int
) -> tuple[np.ndarray, np.ndarray]:
    """The code n-grams found in one benchmark item only, of the views that keep at least `min_grams` of them.

    Identifier-blind token windows of short programs are generic (`for v in range(len(v)):`, `if v not in v:
    v.append(v)` occur in many MBPP solutions and in any code corpus); a window that several benchmark items share
    says nothing about which item a record copies, so only windows unique to one item count."""
    if len(hashes) == 0:
        return hashes, views
    _, item_id = np.unique(items, return_inverse=True)
    pairs = np.unique(np.stack([hashes, item_id.astype(np.uint64)], axis=1), axis=0)
    gram, df = np.unique(pairs[:, 0], return_counts=True)
    unique_grams = gram[df == 1]
    keep = np.isin(hashes, unique_grams)
    hashes, views = hashes[keep], views[keep]
    per_view = np.unique(np.stack([hashes, views.astype(np.uint64)], axis=1), axis=0)[:, 1].astype(np.int64)
    counts = np.bincount(per_view, minlength=int(views.max()) + 1 if len(views) else 0)
    keep = counts[views] >= min_grams
    return hashes[keep], views[keep]


_BITMAP_BITS = 26  # 8 MB: with a few million n-grams, ~5% of lookups go on to the binary search


def bitmap(grams: np.ndarray) -> np.ndarray:
    """A one-hash Bloom filter of the n-grams (the top bits of each hash), to skip most binary searches."""
    bits = np.zeros(1 << (_BITMAP_BITS - 3), dtype=np.uint8)
    top = (grams >> np.uint64(64 - _BITMAP_BITS)).astype(np.int64)
    np.bitwise_or.at(bits, top >> 3, (1 << (top & 7)).astype(np.uint8))
    return bits


def ensure(sources: list[Source], settings: Settings, cache_dir: Path) -> tuple[Path, dict, bool]:
    """(index folder, meta, built now) for a benchmark set: from the cache (nothing is read but the meta), or
    loaded and built into it."""
    folder = cache_dir / cache_key(sources, settings)
    meta = shards.read_json(folder / "meta.json")
    if meta is not None:
        return folder, meta, False
    benchmarks = [bm.load(s.spec, s) for s in sources]
    return folder, build(benchmarks, settings, folder), True


@dataclass
class Matches:
    """Per (record, view) pair that shares n-grams: counts and scores."""

    rec: np.ndarray
    view: np.ndarray
    matched: np.ndarray
    score: np.ndarray  # share of the view's n-grams in the record
    part: np.ndarray  # share of the record's n-grams of that kind in the view (text views)


class Index:
    """A loaded index (memory-mapped arrays and the views table)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.grams = np.load(folder / "grams.npy", mmap_mode="r")
        self.bitmap = np.load(folder / "bitmap.npy", mmap_mode="r")
        self.post_off = np.load(folder / "post_off.npy", mmap_mode="r")
        self.post_view = np.load(folder / "post_view.npy", mmap_mode="r")
        head = pq.read_table(folder / "views.parquet", columns=["kind", "total"])
        self.total = head.column("total").to_numpy()
        self.kind_is_text = pc.equal(head.column("kind"), TEXT).to_numpy()
        self._views: pa.Table | None = None  # with the texts: read when a record is first flagged
        self.meta = shards.read_json(folder / "meta.json") or {}
        self.settings = Settings(**self.meta["settings"])
        self.short = Short(tuple(self.meta.get("short_widths", ())), np.load(folder / "short_first.npy"))
        self.whole_hash = np.load(folder / "whole_hash.npy")
        self.whole_view = np.load(folder / "whole_view.npy")

    @property
    def views(self) -> pa.Table:
        if self._views is None:
            self._views = pq.read_table(self.folder / "views.parquet")
        return self._views

    def view_row(self, view: int) -> dict:
        return self.views.slice(int(view), 1).to_pylist()[0]

    def lookup(self, h: np.ndarray, rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(record, view) of every posting hit by the n-grams `h` of records `rec`, each (record, n-gram) once."""
        if len(h) == 0 or len(self.grams) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        top = (h >> np.uint64(64 - _BITMAP_BITS)).astype(np.int64)
        maybe = np.flatnonzero((self.bitmap[top >> 3] >> (top & 7).astype(np.uint8)) & 1)
        h, rec = h[maybe], rec[maybe]
        pos = np.minimum(np.searchsorted(self.grams, h), len(self.grams) - 1)
        hit = self.grams[pos] == h
        key = np.unique(
            (rec[hit].astype(np.int64) << 32) | pos[hit].astype(np.int64)
        )  # few: most n-grams miss
        rec, pos = key >> 32, key & 0xFFFFFFFF
        lo, hi = self.post_off[pos], self.post_off[pos + 1]
        counts = hi - lo
        reps = np.repeat(np.arange(len(pos)), counts)
        within = np.arange(len(reps)) - np.repeat(np.cumsum(counts) - counts, counts)
        return rec[reps], np.asarray(self.post_view[lo[reps] + within], dtype=np.int64)

    def match(self, text: Grams, code: Grams, n_records: int) -> Matches:
        """Score every (record, view) pair sharing n-grams; `text` and `code` are the records' n-grams (their
        `seq` is the record index). A record's own n-gram count (for `part`) counts repeats."""
        recs, views = [], []
        rec_text_total = np.bincount(text.seq, minlength=n_records)
        for g in (text, code):
            r, v = self.lookup(g.hashes, g.seq)
            recs.append(r)
            views.append(v)
        r, v = np.concatenate(recs), np.concatenate(views)
        if len(r) == 0:
            z = np.zeros(0, dtype=np.int64)
            return Matches(z, z, z, np.zeros(0), np.zeros(0))
        pair, matched = np.unique(r * len(self.total) + v, return_counts=True)
        rec, view = pair // len(self.total), pair % len(self.total)
        score = matched / np.maximum(self.total[view], 1)
        is_text = self.kind_is_text[view]
        part = np.where(
            is_text & (matched >= _MIN_PART_MATCHES), matched / np.maximum(rec_text_total[rec], 1), 0.0
        )
        return Matches(rec, view, matched, score, part)

    def match_whole(self, hashes: np.ndarray, seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(record, view) of each code block (hash, record) that is a whole protected program, renamed or not."""
        lo = np.searchsorted(self.whole_hash, hashes, side="left")
        hi = np.searchsorted(self.whole_hash, hashes, side="right")
        rec = np.repeat(seq, hi - lo)
        view = np.concatenate(
            [self.whole_view[a:b] for a, b in zip(lo, hi, strict=True)] or [np.zeros(0, np.int64)]
        )
        return rec.astype(np.int64), view.astype(np.int64)


def publish(folder: Path, target: RunPath) -> None:
    """Put the index at `folder` (this machine's cache) into the run directory at `target`, so that workers on
    other machines find it (`fetch`): hard links when both are on one filesystem, else copies or uploads (~35 MB
    for the four built-ins, embeddings cached next to it included). Kept when `target` holds it already."""
    if (shards.read_json(target / "meta.json") or {}).get("folder") == folder.name:
        return
    shards.remove_tree(target)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != "meta.json")
    for path in files:
        dest = target / path.name
        if isinstance(dest, Path):
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, dest)
            except OSError:
                shutil.copyfile(path, dest)
        else:
            dest.write_bytes(path.read_bytes())
    meta = shards.read_json(folder / "meta.json") or {}
    shards.write_json({**meta, "folder": folder.name}, target / "meta.json")  # last: says the copy is whole


def fetch(cache_folder: str, published: RunPath) -> Path:
    """The local folder of an index: the cache folder it was built in when this machine has it, else its copy
    in the run directory (`publish`): used in place when local, downloaded once into this machine's cache when on
    an object store."""
    local = Path(cache_folder)
    if (local / "meta.json").exists():
        return local
    if isinstance(published, Path):
        return published
    local = default_cache_dir() / local.name
    if (local / "meta.json").exists():
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{local.name}.", dir=local.parent))
    for path in published.iterdir():
        (tmp / path.name).write_bytes(path.read_bytes())
    try:
        tmp.rename(local)
    except OSError:  # another process fetched it first
        shutil.rmtree(tmp, ignore_errors=True)
    return local


_LOADED: dict[str, Index] = {}


def load(folder: Path) -> Index:
    """The index at `folder`, loaded once per process."""
    key = str(folder)
    if key not in _LOADED:
        _LOADED[key] = Index(folder)
    return _LOADED[key]
