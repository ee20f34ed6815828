"""Benchmark loading for decontamination: which texts of which items are protected, read from local files.

A benchmark is a list of items; an item has an id and one or more *views*, the protected texts it is matched
by: each protected field alone, and all of them together (`all`), as text, plus its code fields as code. Built in:

| name | protected by default | views | id |
| --- | --- | --- | --- |
| humaneval | all 164 | prompt, all (prompt + canonical solution), code (the whole function) | `HumanEval/3` |
| mbpp | all 974 (the sanitized subset spans train, validation and test) | text, tests, all, code | `mbpp/11` |
| gsm8k | test (train is training data) | question, answer, all | `gsm8k/test/17` |
| mmlu | test (auxiliary train, dev are not) | question, all (question + lettered choices) | `mmlu/<subject>/<idx>` |
| math | the given file (MATH test) | problem, solution, all | `math/<idx>` |
| arc | the given file (ARC test) | question, all (+ choices) | `arc/<id>` |
| truthfulqa | the given file | question, all (+ best answer) | `truthfulqa/<row>` |

MMLU's choices alone and HumanEval's solution alone are not views: they are too generic to identify an item.

Where the rows come from, first found: the spec's `path` (JSONL, JSON, Parquet, CSV/TSV, gzip or not, or a
`datasets` folder written by `save_to_disk`); for humaneval, mbpp, gsm8k and mmlu the copy shipped in
`data/benchmarks/` (see data/README.md for sources and licences); the Hugging Face hub cache (Parquet files of
the dataset's snapshot, `$HF_HUB_CACHE` or `$HF_HOME/hub`). Nothing is downloaded.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from factory.errors import UserError
from stages.decontam.config import BenchmarkSpec

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "benchmarks"

TEXT, CODE = "text", "code"


@dataclass
class View:
    name: str
    kind: str  # TEXT or CODE
    text: str


@dataclass
class Item:
    id: str
    views: list[View]


@dataclass
class Benchmark:
    name: str
    items: list[Item]
    source: str  # where the rows came from
    split: str | None
    rows: int = 0


def _join(*parts: str | None) -> str:
    return "\n".join(p for p in parts if p)


def _letters(choices: list) -> str:
    return "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))


def _humaneval(row: dict, i: int) -> Item:
    prompt, solution = row.get("prompt") or "", row.get("canonical_solution") or ""
    return Item(
        str(row.get("task_id") or f"HumanEval/{i}"),
        [
            View("prompt", TEXT, prompt),
            View("all", TEXT, prompt + solution),
            View("code", CODE, prompt + solution),
        ],
    )


def _mbpp(row: dict, i: int) -> Item:
    text = row.get("text") or row.get("prompt") or ""
    code = row.get("code") or ""
    tests = "\n".join(row.get("test_list") or [])
    return Item(
        f"mbpp/{row.get('task_id', i)}",
        [
            View("text", TEXT, text),
            View("tests", TEXT, tests),
            View("all", TEXT, _join(text, code, tests)),
            View("code", CODE, code),
        ],
    )


def _gsm8k(row: dict, i: int) -> Item:
    q, a = row.get("question") or "", row.get("answer") or ""
    return Item(
        f"gsm8k/test/{i}",
        [View("question", TEXT, q), View("answer", TEXT, a), View("all", TEXT, _join(q, a))],
    )


def _mmlu(row: dict, i: int) -> Item:
    q = row.get("question") or ""
    choices = [str(c) for c in row.get("choices") or []]
    idx = row.get("idx", i)
    return Item(
        f"mmlu/{row.get('subject', 'all')}/{idx}",
        [View("question", TEXT, q), View("all", TEXT, _join(q, _letters(choices)))],
    )


def _math(row: dict, i: int) -> Item:
    p, s = row.get("problem") or "", row.get("solution") or ""
    ident = row.get("unique_id") or row.get("idx", i)
    return Item(
        f"math/{ident}", [View("problem", TEXT, p), View("solution", TEXT, s), View("all", TEXT, _join(p, s))]
    )


def _arc(row: dict, i: int) -> Item:
    q = row.get("question") or ""
    if isinstance(q, dict):  # the original ARC layout: question: {stem, choices: [{label, text}]}
        choices = [c.get("text", "") for c in q.get("choices", [])]
        q = q.get("stem", "")
    else:
        ch = row.get("choices") or {}
        choices = ch.get("text", []) if isinstance(ch, dict) else list(ch)
    return Item(
        f"arc/{row.get('id', i)}", [View("question", TEXT, q), View("all", TEXT, _join(q, _letters(choices)))]
    )


def _truthfulqa(row: dict, i: int) -> Item:
    q = row.get("question") or row.get("Question") or ""
    best = row.get("best_answer") or row.get("Best Answer") or ""
    return Item(f"truthfulqa/{i}", [View("question", TEXT, q), View("all", TEXT, _join(q, best))])


@dataclass(frozen=True)
class Builtin:
    make: Callable[[dict, int], Item]
    shipped: str | None  # path under data/benchmarks
    hub: str  # hub dataset id, looked up in the local hub cache
    split: str | None  # protected split (None: every row)


BUILTINS: dict[str, Builtin] = {
    "humaneval": Builtin(_humaneval, "humaneval/HumanEval.jsonl.gz", "openai/openai_humaneval", None),
    "mbpp": Builtin(_mbpp, "mbpp/mbpp.jsonl.gz", "google-research-datasets/mbpp", None),
    "gsm8k": Builtin(_gsm8k, "gsm8k/test.jsonl.gz", "openai/gsm8k", "test"),
    "mmlu": Builtin(_mmlu, "mmlu/mmlu_test.jsonl.gz", "cais/mmlu", "test"),
    "math": Builtin(_math, None, "hendrycks/competition_math", "test"),
    "arc": Builtin(_arc, None, "allenai/ai2_arc", "test"),
    "truthfulqa": Builtin(_truthfulqa, None, "truthfulqa/truthful_qa", "validation"),
}


# ---- reading rows ----------------------------------------------------------------------------------------------


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8")
    return path.open(encoding="utf-8")


def rows_of_file(path: Path) -> Iterator[dict]:
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    elif name.endswith((".csv", ".tsv")):
        with _open_text(path) as f:
            yield from csv.DictReader(f, delimiter="\t" if name.endswith(".tsv") else ",")
    elif name.endswith(".json"):
        with _open_text(path) as f:
            data = orjson.loads(f.read())
        if isinstance(data, dict):  # {"data": [...]} or {split: [...]}
            data = next((v for v in data.values() if isinstance(v, list)), [])
        yield from data
    else:  # JSONL
        with _open_text(path) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        raise UserError(f"{path}:{n}: not valid JSON ({exc})") from None


def _rows_of_datasets_folder(path: Path, split: str | None) -> list[dict]:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    if isinstance(ds, DatasetDict):
        if split is None or split not in ds:
            raise UserError(f"{path}: a DatasetDict with splits {sorted(ds)}; name one with `split`")
        ds = ds[split]
    return ds.to_list()


def hub_cache_files(hub_id: str, split: str | None) -> list[Path]:
    """Parquet files of a dataset in the local Hugging Face hub cache (newest snapshot), for a split."""
    root = Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    )
    snaps = sorted(
        (root / f"datasets--{hub_id.replace('/', '--')}" / "snapshots").glob("*"), key=os.path.getmtime
    )
    for snap in reversed(snaps):
        files = sorted(snap.rglob("*.parquet"))
        if split:
            files = [
                f
                for f in files
                if f.name.startswith(split) or f"/{split}/" in str(f) or f"-{split}-" in f.name
            ]
        if files:
            return files
    return []


@dataclass(frozen=True)
class Source:
    """Where a benchmark's rows are, and a fingerprint of the spec and the files (size, mtime): the index cache
    key, known without reading the rows."""

    spec: BenchmarkSpec
    paths: tuple[Path, ...]
    split: str | None
    fingerprint: str


def locate(spec: BenchmarkSpec) -> Source:
    """Find a benchmark's files (see the module docstring for the order); a clear error when there are none."""
    builtin = BUILTINS.get(spec.name)
    split = spec.split if spec.split is not None else (builtin.split if builtin else None)
    paths: list[Path]
    if spec.path:
        path = Path(spec.path).expanduser()
        if not path.exists():
            raise UserError(f"stages.decontam.benchmarks: {spec.name}: {path} does not exist")
        paths = [path]
    elif builtin and builtin.shipped and (SHIPPED / builtin.shipped).exists():
        paths = [SHIPPED / builtin.shipped]
    elif builtin and (found := hub_cache_files(builtin.hub, split)):
        paths = found
    else:
        raise UserError(
            f"stages.decontam.benchmarks: {spec.name}: no local copy (give `path:` to a JSONL/JSON/Parquet/CSV "
            f"file or a datasets folder; nothing is downloaded)"
        )
    files = [f for p in paths for f in (sorted(p.rglob("*")) if p.is_dir() else [p]) if f.is_file()]
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    blob = orjson.dumps([spec.model_dump(mode="json"), split, stats])
    return Source(spec, tuple(paths), split, hashlib.blake2b(blob, digest_size=12).hexdigest())


def read_rows(source: Source) -> list[dict]:
    """The raw rows of a located benchmark (its protected split only, when the rows name their split); `factory
    eval` reads its prompts and answers from these."""
    split, paths = source.split, list(source.paths)
    if paths[0].is_dir():
        rows = _rows_of_datasets_folder(paths[0], split)
    else:
        rows = [r for p in paths for r in rows_of_file(p)]
    if split and rows and isinstance(rows[0], dict) and "split" in rows[0]:
        rows = [r for r in rows if r.get("split") == split]
    return rows


def load(spec: BenchmarkSpec, source: Source | None = None) -> Benchmark:
    """The items of one benchmark."""
    source = source or locate(spec)
    builtin = BUILTINS.get(spec.name)
    paths = list(source.paths)
    rows = read_rows(source)
    make = builtin.make if builtin and not spec.fields else _generic(spec)
    items = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"{paths[0]}: row {i} is not an object")
        item = make(row, i)
        if spec.id_field and spec.id_field in row:
            item.id = f"{spec.name}/{row[spec.id_field]}"
        items.append(item)
    where = str(paths[0]) if len(paths) == 1 else f"{paths[0].parent} ({len(paths)} files)"
    return Benchmark(spec.name, items, where, source.split, len(rows))


def _field(row: dict, dotted: str) -> str:
    value: object = row
    for part in dotted.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list):
            value = [v.get(part) if isinstance(v, dict) else v for v in value]
        else:
            return ""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(str(v) for v in value if v is not None)
    return str(value)


def _generic(spec: BenchmarkSpec) -> Callable[[dict, int], Item]:
    fields = spec.fields or []

    def make(row: dict, i: int) -> Item:
        texts = {f: _field(row, f) for f in fields}
        views = [View(f, TEXT, t) for f, t in texts.items()]
        if len(fields) > 1:
            views.append(View("all", TEXT, _join(*texts.values())))
        views += [View(f"code:{f}", CODE, _field(row, f)) for f in spec.code_fields]
        return Item(f"{spec.name}/{i}", views)

    return make


def specs(benchmarks: list[str | BenchmarkSpec]) -> list[BenchmarkSpec]:
    return [BenchmarkSpec(name=b) if isinstance(b, str) else b for b in benchmarks]
