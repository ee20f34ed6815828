"""`factory audit RUN_DIR`: what the decontam stage removed and why, read with duckdb straight from the run.

Owns the three views of a finished decontam stage's evidence:
- summary: per benchmark, its items, the items found in the training data and the records removed;
- benchmark: the items of one benchmark that were hit, each with its records, best score and method;
- item: every record that hit one item, its text beside the item's text with the matched spans.

Sources: `RUN_DIR/decontam/manifest.json` (its `decontam` section) and `RUN_DIR/decontam/rejects/part-*.parquet`
(rows with reason `contaminated`, their evidence in the `detail` JSON), queried in place by duckdb; nothing is
loaded whole and nothing in RUN_DIR is written. The counts shown come from the rejects; where the manifest says
otherwise the view carries a warning.

Layers, so tests can check data without parsing tables: `load_run` validates the run; `query_*` run one duckdb
query each and return lists of dicts; `*_view` assemble one JSON-ready dict per view (its `rows` are what --csv
writes); `print_*` render a view with rich; `write_csv` writes a view's rows with duckdb's COPY; `audit` is what
the CLI calls.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from rich.console import Console
from rich.table import Table
from rich.text import Text

from factory import store
from factory.errors import UserError
from factory.runner import existing_run_dir
from factory.shards import RunPath

log = logging.getLogger("factory")

STAGE = "decontam"
REASON = "contaminated"
CONTEXT_CHARS = 300  # characters of context kept around matched text unless --full
RECORD_STYLE, ITEM_STYLE = "bold red", "bold yellow"
MAX_IDS_SHOWN = 10  # record ids listed per item in the benchmark table (JSON and CSV list them all)

# One row per contaminated reject, the evidence fields pulled out of `detail`. The same columns, empty, stand in
# when the stage wrote no rejects file, so every query works unchanged on a clean run. duckdb may push a filter
# on these fields below `reason = 'contaminated'`, so a reject of another reason whose detail is not JSON must
# not be parsed: hence the json_valid guard.
_HITS_COLUMNS = """
    id, source, origin, messages, detail,
    d->>'benchmark' AS benchmark, d->>'item' AS item, d->>'view' AS view,
    d->>'method' AS method, TRY_CAST(d->>'score' AS DOUBLE) AS score
"""
_EMPTY_HITS = """
    SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS source, NULL::VARCHAR AS origin,
           NULL::STRUCT(role VARCHAR, content VARCHAR)[] AS messages, NULL::VARCHAR AS detail,
           NULL::VARCHAR AS benchmark, NULL::VARCHAR AS item, NULL::VARCHAR AS view,
           NULL::VARCHAR AS method, NULL::DOUBLE AS score
    WHERE false
"""


@dataclass(frozen=True)
class DecontamRun:
    """A finished decontam stage: its run directory, manifest and rejects files."""

    run_dir: RunPath
    manifest: dict
    reject_files: tuple[str, ...]

    @property
    def section(self) -> dict:
        return self.manifest.get(STAGE) or {}

    @property
    def benchmarks(self) -> dict[str, dict]:
        return self.section.get("benchmarks") or {}

    @cached_property
    def con(self) -> duckdb.DuckDBPyConnection:
        """An in-memory duckdb with a `hits` view over the contaminated rejects (read lazily from Parquet)."""
        con = store.duckdb_connect(self.run_dir)
        if self.reject_files:
            files = ", ".join(_sql_str(f) for f in self.reject_files)
            source = f"read_parquet([{files}], union_by_name = true)"
            rejects = f"SELECT *, CASE WHEN json_valid(detail) THEN detail END AS d FROM {source}"
            con.execute(
                f"CREATE VIEW hits AS SELECT {_HITS_COLUMNS} FROM ({rejects}) WHERE reason = '{REASON}'"
            )
        else:
            con.execute(f"CREATE VIEW hits AS {_EMPTY_HITS}")
        return con


def load_run(run_dir: str | RunPath) -> DecontamRun:
    """Check that RUN_DIR holds a finished decontam stage; UserError (exit 2) naming what is missing if not."""
    run_dir = existing_run_dir(run_dir)
    stage_dir = run_dir / STAGE
    hint = f"run `factory run ... {STAGE} -c CONFIG` first"
    if not stage_dir.is_dir():
        raise UserError(f"{run_dir} has no {STAGE} stage: {hint}")
    path = stage_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{run_dir} has no finished {STAGE} stage (no {path}): {hint}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    status = manifest.get("status") if isinstance(manifest, dict) else None
    if status != "done":
        raise UserError(
            f"the {STAGE} stage of {run_dir} is not finished (status {status!r}): "
            "run the same `factory run` command again to finish it"
        )
    if not isinstance(manifest.get(STAGE), dict):
        raise UserError(f"{path} has no `{STAGE}` section: run the {STAGE} stage again with this factory")
    files = tuple(sorted(store.sql_path(p) for p in (stage_dir / "rejects").glob("part-*.parquet")))
    return DecontamRun(run_dir=run_dir, manifest=manifest, reject_files=files)


# --- queries: one duckdb query each, plain rows back -------------------------------------------------------


def query_benchmark_counts(run: DecontamRun) -> list[dict]:
    """Per benchmark found in the rejects: `{benchmark, items_hit, records_removed}`, by benchmark name."""
    sql = """
        SELECT benchmark, count(DISTINCT item) AS items_hit, count(*) AS records_removed
        FROM hits GROUP BY benchmark ORDER BY benchmark
    """
    return _rows(run.con.execute(sql))


def query_items(run: DecontamRun, benchmark: str) -> list[dict]:
    """The items of `benchmark` that records hit: `{item, records, best_score, method, record_ids}`, the most
    hit first; `record_ids` best score first, `method` the distinct methods joined by ","."""
    sql = """
        SELECT item, count(*) AS records, max(score) AS best_score,
               array_to_string(list_sort(list_distinct(list(method))), ',') AS method,
               list(id ORDER BY score DESC NULLS LAST, id) AS record_ids
        FROM hits WHERE benchmark = $benchmark
        GROUP BY item ORDER BY records DESC, best_score DESC NULLS LAST, item
    """
    return _rows(run.con.execute(sql, {"benchmark": benchmark}))


def query_item_records(run: DecontamRun, item: str, benchmark: str | None = None) -> list[dict]:
    """Every record that hit `item` (of `benchmark`, if given), best score first: `{id, source, origin,
    benchmark, item, view, method, score, n, matched, of, kind, direction, ngrams, spans, item_spans, also,
    text, item_text}`.
    `text` is the record's checked text ("\\n".join of its turns), which `spans` index into."""
    sql = """
        SELECT id, source, origin, benchmark, item, view, method, score, detail, messages FROM hits
        WHERE item = $item AND ($benchmark IS NULL OR benchmark = $benchmark)
        ORDER BY score DESC NULLS LAST, id
    """
    rows = _rows(run.con.execute(sql, {"item": item, "benchmark": benchmark}))
    return [_item_record(row) for row in rows]


def query_totals(run: DecontamRun) -> dict:
    """`{records_removed, distinct_ids}` over all contaminated rejects."""
    sql = "SELECT count(*) AS records_removed, count(DISTINCT id) AS distinct_ids FROM hits"
    return _rows(run.con.execute(sql))[0]


def _item_record(row: dict) -> dict:
    detail = _json_object(row.pop("detail"))
    messages = row.pop("messages") or []
    return {
        **row,
        "n": detail.get("n"),
        "matched": detail.get("matched"),
        "of": detail.get("of"),
        "kind": detail.get("kind"),
        "direction": detail.get("direction"),
        "ngrams": detail.get("ngrams") or [],
        "spans": detail.get("spans") or [],
        "item_spans": detail.get("item_spans") or [],
        "also": detail.get("also") or [],
        "text": "\n".join(m["content"] or "" for m in messages),
        "item_text": detail.get("item_text") or "",
        "judge": detail.get("judge"),  # the LLM judge's verdict and reply, when it was asked
    }


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def _json_object(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --- views: one JSON-ready dict each; `rows` is what --csv writes -------------------------------------------


def summary_view(run: DecontamRun) -> dict:
    """`{view: "summary", run_dir, method, threshold, ngram, code_ngram, records_in, rows: [{benchmark, split,
    items, items_hit, records_removed}], totals: {items, items_hit, records_removed}, warnings: [str]}`.
    Rows follow the manifest's benchmarks (then any found only in the rejects); counts come from the rejects."""
    counts = {r["benchmark"]: r for r in query_benchmark_counts(run)}
    names = list(run.benchmarks) + sorted(set(counts) - set(run.benchmarks), key=str)
    rows = []
    for name in names:
        info, found = run.benchmarks.get(name, {}), counts.get(name, {})
        rows.append(
            {
                "benchmark": name,
                "split": info.get("split"),
                "items": info.get("items"),
                "items_hit": found.get("items_hit", 0),
                "records_removed": found.get("records_removed", 0),
            }
        )
    totals = query_totals(run)
    section = run.section
    return {
        "view": "summary",
        "run_dir": str(run.run_dir),
        "method": section.get("method"),
        "threshold": section.get("threshold"),
        "ngram": section.get("ngram"),
        "code_ngram": section.get("code_ngram"),
        "records_in": (run.manifest.get("counts") or {}).get("in"),
        "rows": rows,
        "totals": {
            "items": sum(r["items"] or 0 for r in rows),
            "items_hit": sum(r["items_hit"] for r in rows),
            "records_removed": totals["records_removed"],
        },
        "warnings": _manifest_warnings(run, counts, totals),
    }


def _manifest_warnings(run: DecontamRun, counts: dict[str, dict], totals: dict) -> list[str]:
    """Where the manifest's figures disagree with what the rejects hold."""
    warnings = []
    for name in sorted(set(run.benchmarks) | set(counts), key=str):
        info, found = run.benchmarks.get(name), counts.get(name, {})
        if info is None:
            warnings.append(f"benchmark {name!r} is in the rejects but not in the manifest")
            continue
        for key in ("records_removed", "items_hit"):
            said, held = info.get(key), found.get(key, 0)
            if said is not None and said != held:
                warnings.append(f"{name}: manifest says {key} {said}, the rejects hold {held}")
    said = (run.manifest.get("rejected_by_reason") or {}).get(REASON, 0)
    if said != totals["records_removed"]:
        warnings.append(
            f"manifest says {said} records rejected as {REASON}, the rejects hold {totals['records_removed']}"
        )
    if totals["distinct_ids"] != totals["records_removed"]:
        warnings.append(
            f"{totals['records_removed']} contaminated rejects but {totals['distinct_ids']} distinct record ids"
        )
    return warnings


def benchmark_view(run: DecontamRun, benchmark: str) -> dict:
    """`{view: "benchmark", benchmark, split, items, items_hit, records_removed, rows: [{item, records,
    best_score, method, record_ids}]}`; UserError for a benchmark neither the manifest nor the rejects know."""
    _check_benchmark(run, benchmark)
    rows = query_items(run, benchmark)
    info = run.benchmarks.get(benchmark, {})
    return {
        "view": "benchmark",
        "run_dir": str(run.run_dir),
        "benchmark": benchmark,
        "split": info.get("split"),
        "items": info.get("items"),
        "items_hit": len(rows),
        "records_removed": sum(r["records"] for r in rows),
        "rows": rows,
    }


def item_view(run: DecontamRun, item: str, benchmark: str | None = None) -> dict:
    """`{view: "item", item, benchmark, rows: [query_item_records rows]}`; UserError if no record hit it."""
    if benchmark is not None:
        _check_benchmark(run, benchmark)
    rows = query_item_records(run, item, benchmark)
    if not rows:
        where = f" of benchmark {benchmark!r}" if benchmark else ""
        raise UserError(
            f"no record matched item {item!r}{where}: `factory audit {run.run_dir} --benchmark NAME` "
            "lists the items that were hit"
        )
    return {
        "view": "item",
        "run_dir": str(run.run_dir),
        "item": item,
        "benchmark": benchmark or rows[0]["benchmark"],
        "rows": rows,
    }


def _check_benchmark(run: DecontamRun, benchmark: str) -> None:
    known = set(run.benchmarks) | {r["benchmark"] for r in query_benchmark_counts(run)}
    if benchmark not in known:
        names = ", ".join(sorted(known, key=str)) or "none"
        raise UserError(f"unknown benchmark {benchmark!r}; known benchmarks: {names}")


# --- output -----------------------------------------------------------------------------------------------


def write_csv(view: dict, path: str | Path) -> int:
    """Write `view["rows"]` to `path` as CSV with a header (lists and objects as JSON); returns rows written."""
    rows = view["rows"]
    if rows:
        table = pa.table({c: [_csv_cell(r[c]) for r in rows] for c in rows[0]})
    else:  # a header alone
        table = pa.table({c: pa.array([], pa.string()) for c in _CSV_COLUMNS[view["view"]]})
    con = duckdb.connect()
    con.register("view_rows", table)
    try:
        con.execute(f"COPY view_rows TO {_sql_str(str(path))} (FORMAT CSV, HEADER)")
    except duckdb.Error as exc:
        raise UserError(f"cannot write {path}: {str(exc).splitlines()[0]}") from None
    return len(rows)


_CSV_COLUMNS = {
    "summary": ["benchmark", "split", "items", "items_hit", "records_removed"],
    "benchmark": ["item", "records", "best_score", "method", "record_ids"],
    "item": (
        "id source origin benchmark item view method score n matched of kind direction ngrams spans item_spans "
        "also text item_text judge"
    ).split(),
}


def _csv_cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def excerpt(text: str, spans: list, context: int = CONTEXT_CHARS) -> tuple[str, list[tuple[int, int]]]:
    """The parts of `text` within `context` characters of a span, gaps shown as "…", and the spans moved to
    index the excerpt. Without spans: the first 2 * context characters."""
    spans = _clean_spans(spans, len(text))
    if not spans:
        cut = len(text) > 2 * context
        return (text[: 2 * context] + "…" if cut else text), []
    windows: list[list[int]] = []
    for start, end in spans:
        lo, hi = max(0, start - context), min(len(text), end + context)
        if windows and lo <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], hi)
        else:
            windows.append([lo, hi])
    parts, moved, length = [], [], 0
    for lo, hi in windows:
        if lo > 0:
            parts.append("…")
            length += 1
        moved += [(s - lo + length, e - lo + length) for s, e in spans if lo <= s and e <= hi]
        parts.append(text[lo:hi])
        length += hi - lo
    if windows[-1][1] < len(text):
        parts.append("…")
    return "".join(parts), moved


def _clean_spans(spans: list, size: int) -> list[tuple[int, int]]:
    """Spans clamped to the text, empty ones dropped, sorted and merged (the stage merges them; be lenient)."""
    clamped = ((max(0, int(sp[0])), min(size, int(sp[1]))) for sp in spans or [] if len(sp) >= 2)
    clean = sorted((s, e) for s, e in clamped if e > s)
    merged: list[tuple[int, int]] = []
    for s, e in clean:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def print_summary(view: dict, console: Console) -> None:
    console.print(Text(f"decontam audit of {view['run_dir']}", style="bold"))
    console.print(Text(_method_line(view)))
    table = Table("benchmark", "split", "items", "items found", "records removed")
    for r in view["rows"]:
        table.add_row(
            r["benchmark"],
            r["split"] or "",
            _num(r["items"]),
            _num(r["items_hit"]),
            _num(r["records_removed"]),
        )
    t = view["totals"]
    table.add_section()
    table.add_row(
        "total", "", _num(t["items"]), _num(t["items_hit"]), _num(t["records_removed"]), style="bold"
    )
    console.print(table)
    if not t["records_removed"]:
        console.print(Text("no contamination found", style="green"))
    elif view["records_in"]:
        share = 100 * t["records_removed"] / view["records_in"]
        console.print(
            Text(f"{t['records_removed']:,} of {view['records_in']:,} records removed ({share:.2f}%)")
        )


def _method_line(view: dict) -> str:
    parts = [f"method {view['method'] or '?'}"]
    if view.get("ngram"):
        code = f", {view['code_ngram']}-grams for code" if view.get("code_ngram") else ""
        parts.append(f"{view['ngram']}-grams of words{code}")
    parts.append(f"threshold {view['threshold']}")
    return ", ".join(parts)


def print_benchmark(view: dict, console: Console) -> None:
    split = f" ({view['split']} split)" if view["split"] else ""
    of = f" of {view['items']:,}" if view["items"] is not None else ""
    line = (
        f"{view['benchmark']}{split}: {view['items_hit']:,}{of} items found in the training data, "
        f"{view['records_removed']:,} records removed"
    )
    console.print(Text(line, style="bold"))
    if not view["rows"]:
        console.print(Text(f"no item of {view['benchmark']} was found in the training data", style="green"))
        return
    table = Table("item", "records", "best score", "method", "record ids")
    for r in view["rows"]:
        ids = r["record_ids"]
        shown = ", ".join(ids[:MAX_IDS_SHOWN]) + (
            f", … (+{len(ids) - MAX_IDS_SHOWN})" if len(ids) > MAX_IDS_SHOWN else ""
        )
        table.add_row(r["item"], _num(r["records"]), _score(r["best_score"]), r["method"] or "", shown)
    console.print(table)
    console.print(Text(f"side by side: factory audit {view['run_dir']} --item ITEM", style="dim"))


def print_item(view: dict, console: Console, full: bool = False) -> None:
    rows = view["rows"]
    console.print(
        Text(f"item {view['item']} ({view['benchmark']}): hit by {len(rows)} record(s)", style="bold")
    )
    for r in rows:
        console.print()
        console.print(Text(_record_line(r)))
        table = Table(expand=True, show_lines=False)
        table.add_column(f"training record {r['id']}", ratio=1, overflow="fold")
        table.add_column(f"benchmark item ({r['view'] or 'text'})", ratio=1, overflow="fold")
        table.add_row(
            _highlighted(r["text"], r["spans"], RECORD_STYLE, full),
            _highlighted(r["item_text"], r["item_spans"], ITEM_STYLE, full),
        )
        console.print(table)
        if r["judge"]:
            console.print(Text(_judge_line(r["judge"]), style="dim"))
        if r["also"]:
            also = ", ".join(f"{a.get('item')} ({_score(a.get('score'))})" for a in r["also"])
            console.print(Text(f"also over the threshold: {also}", style="dim"))


def _record_line(r: dict) -> str:
    matched = f", matched {r['matched']}/{r['of']}" if r["matched"] is not None else ""
    n = f" (n={r['n']})" if r["n"] else ""
    direction = f" ({r['direction'].replace('_', ' ')})" if r["direction"] else ""
    return (
        f"record {r['id']}  origin {r['origin']}  source {r['source']}  score {_score(r['score'])}{direction}  "
        f"method {r['method']}{n}  view {r['view']}{matched}"
    )


def _judge_line(judge: dict) -> str:
    """`judge (model): confirmed "True"`; a failed request or unparsed reply says so."""
    verdict = judge.get("verdict")
    said = {True: "confirmed", False: "overruled"}.get(verdict, "no verdict")
    reply = (judge.get("reply") or judge.get("error") or "").strip().replace("\n", " ")
    return f"judge ({judge.get('model') or '?'}): {said}" + (f' "{reply[:200]}"' if reply else "")


def _highlighted(text: str, spans: list, style: str, full: bool) -> Text:
    shown, moved = (text, _clean_spans(spans, len(text))) if full else excerpt(text, spans)
    out = Text(shown)
    for start, end in moved:
        out.stylize(style, start, end)
    return out


def _num(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


# --- entry point ------------------------------------------------------------------------------------------


def audit(
    run_dir: str | RunPath,
    benchmark: str | None = None,
    item: str | None = None,
    as_json: bool = False,
    csv_path: str | Path | None = None,
    full: bool = False,
    console: Console | None = None,
) -> dict:
    """Build the chosen view (item if `item`, else benchmark if `benchmark`, else summary), print it to stdout
    as tables or JSON, write its rows to `csv_path` if given; returns the view."""
    run = load_run(run_dir)
    if item is not None:
        view = item_view(run, item, benchmark)
    elif benchmark is not None:
        view = benchmark_view(run, benchmark)
    else:
        view = summary_view(run)
    for warning in view.get("warnings", []):
        log.warning("%s", warning)
    if csv_path is not None:
        n = write_csv(view, csv_path)
        log.info("wrote %d rows to %s", n, csv_path)
    console = console or Console()
    if as_json:
        sys.stdout.write(json.dumps(view, ensure_ascii=False, indent=2) + "\n")
    elif view["view"] == "item":
        print_item(view, console, full=full)
    elif view["view"] == "benchmark":
        print_benchmark(view, console)
    else:
        print_summary(view, console)
    return view
