"""`factory report RUN_DIR`: the data-quality report of a run, read with duckdb straight from its files.

Owns the figures of a run as a whole, gathered from what the stages left in RUN_DIR:
- the funnel: records in, out and rejected per stage (manifests; a stage still `running` is counted from its
  per-shard markers and shown as unfinished), and which stages of the pipeline are missing;
- rejects by reason per stage with the first few examples of each (a snippet of the record and its `detail`);
- two profiles of the canonical records, "before" (the first finished stage: ingest, or synth when it ran:
  ingest then only held synth's seeds) and "after"
  (the last finished stage before `mix`): instruction (user turns) and response (assistant turns) lengths in
  tokens (`factory.tokens`, the count `mix` uses), user turns per conversation, records and tokens per source;
- the stage-specific figures of the manifests: dedup cluster sizes, PII entities by type, contamination per
  benchmark, synth requests / cache hits / tokens (whatever numbers its manifest holds), and the mix stage's
  format, splits, copies and planned vs achieved mixture (records per split and source counted in its shards);
- the `factory eval` results registered with the run (`RUN_DIR/evals/*.json`): scores of the models trained on
  its data, with how many of each benchmark's items decontam found in that data.

Sources: `RUN_DIR/<stage>/manifest.json` (tiny; read with json), and, queried in place by duckdb,
`RUN_DIR/<stage>/part-*.parquet`, `.../rejects/part-*.parquet`, `.../_shards/*.json` (an unfinished stage's
markers) and `RUN_DIR/mix/<split>/part-*.parquet`. A profile is one scan of a stage's shards into a small
per-record table of counts; only aggregates and a few examples come back to Python. Outputs:
`RUN_DIR/report/index.html` (`factory.report_html`), `RUN_DIR/report/summary.json` (the same figures), a rich
summary on stdout, or with --json the summary itself. Nothing else in RUN_DIR is written.

Layers, as in `factory.audit`: `load_run` finds and validates the stages; `query_*` run duckdb queries and
return lists of dicts; `build_summary` assembles the JSON-ready summary; `report_html.render` and
`print_summary` present it; `report` is what the CLI calls.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import duckdb
from rich.console import Console
from rich.table import Table
from rich.text import Text

from factory import shards, store
from factory.errors import UserError
from factory.runner import existing_run_dir
from factory.shards import RunPath
from factory.tokens import sql_count_tokens

log = logging.getLogger("factory")

STAGE_ORDER = ("ingest", "synth", "clean", "dedup", "decontam", "mix")
OUTPUT_STAGE = "mix"  # writes train/validation in an output format, not canonical records
EXAMPLES_PER_REASON = 3
SNIPPET_CHARS = 300
DETAIL_CHARS = 400
TURN_BINS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 6), (7, 10), (11, None))
# Manifest keys every stage has: the rest are the stage's own figures.
COMMON_KEYS = frozenset(
    "stage status counts rejected_by_reason config config_hash input_fingerprint shards started_at "
    "finished_at duration_s records_per_s inputs".split()
)
MAX_FIGURES = 80  # numeric manifest leaves listed per stage
SKIP_FIGURES = frozenset({"by_item", "index"})  # long per-item lists and cache paths


@dataclass(frozen=True)
class StageDir:
    """One stage folder of a run: its name, path and manifest."""

    name: str
    path: RunPath
    manifest: dict

    @property
    def status(self) -> str:
        return str(self.manifest.get("status") or "unknown")

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def shard_files(self) -> list[str]:
        return [store.sql_path(p) for p in shards.list_shards(self.path)]

    @property
    def reject_files(self) -> list[str]:
        return [store.sql_path(p) for p in shards.list_shards(self.path / "rejects")]


@dataclass(frozen=True)
class ReportRun:
    """A run directory and the stage folders found in it, in pipeline order."""

    run_dir: RunPath
    stages: tuple[StageDir, ...]

    def stage(self, name: str) -> StageDir | None:
        return next((s for s in self.stages if s.name == name), None)

    @property
    def canonical(self) -> list[StageDir]:
        """Finished stages whose shards are canonical records (everything but mix), in pipeline order."""
        return [s for s in self.stages if s.done and s.name != OUTPUT_STAGE]

    @cached_property
    def con(self) -> duckdb.DuckDBPyConnection:
        return store.duckdb_connect(self.run_dir)


def load_run(run_dir: str | RunPath) -> ReportRun:
    """Find the stage folders of RUN_DIR (those with a manifest.json); UserError (exit 2) if none."""
    run_dir = existing_run_dir(run_dir)
    found = []
    for path in sorted(run_dir.iterdir()):
        manifest_path = path / "manifest.json"
        if not path.is_dir() or path.name.startswith((".", "_")) or not manifest_path.is_file():
            continue
        try:
            manifest = json.loads(manifest_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {manifest_path}: {exc}") from None
        if not isinstance(manifest, dict):
            raise UserError(f"{manifest_path} is not a manifest (not a JSON object)")
        found.append(StageDir(path.name, path, manifest))
    if not found:
        raise UserError(
            f"{run_dir} has no stage manifests (no <stage>/manifest.json): "
            "run `factory run STAGE ... -c CONFIG` first"
        )
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    found.sort(key=lambda s: (order.get(s.name, len(order)), s.name))
    return ReportRun(run_dir, tuple(found))


# --- queries: duckdb over the files, plain rows back --------------------------------------------------------


def query_funnel(run: ReportRun) -> list[dict]:
    """Per stage: `{stage, status, in, out, rejected, copies, shards, duration_s, rejected_by_reason}`. A
    stage that is not done is counted from its shard markers (what it has finished so far)."""
    rows = []
    for s in run.stages:
        m = s.manifest
        counts = m.get("counts") or {}
        if not s.done:
            counts = _marker_counts(run, s)
        rows.append(
            {
                "stage": s.name,
                "status": s.status,
                "in": int(counts.get("in") or 0),
                "out": int(counts.get("out") or 0),
                "rejected": int(counts.get("rejected") or 0),
                "copies": int(m.get("copies") or 0),
                "shards": len(m.get("shards") or []) if s.done else counts.get("shards", 0),
                "duration_s": m.get("duration_s"),
                "rejected_by_reason": dict(m.get("rejected_by_reason") or {}),
            }
        )
    return rows


def _marker_counts(run: ReportRun, s: StageDir) -> dict:
    files = sorted(store.sql_path(p) for p in (s.path / "_shards").glob("part-*.json"))
    if not files:
        return {"in": 0, "out": 0, "rejected": 0, "shards": 0}
    columns = "{'in': 'BIGINT', 'rows': 'BIGINT', 'rejected': 'BIGINT'}"
    sql = f"""SELECT count(*) AS shards, sum("in") AS "in", sum("rows") AS out, sum(rejected) AS rejected
              FROM read_json({_list(files)}, columns = {columns})"""
    return _rows(run.con.execute(sql))[0]


def query_rejects(run: ReportRun, per_reason: int = EXAMPLES_PER_REASON) -> list[dict]:
    """Per finished stage and reason, as found in the rejects files: `{stage, reason, records, examples: [{id,
    source, origin, text, detail}]}`, the examples the first rejects in file order; stages in pipeline order,
    reasons most frequent first. `text` is the record's turns ("role: content"), or for an ingest reject
    that never became a record the raw line from its detail; cut to SNIPPET_CHARS, `detail` to
    DETAIL_CHARS."""
    out = []
    for s in run.stages:
        files = s.reject_files
        if not s.done or not files:
            continue
        cols = _columns(run, files)
        pick = ", ".join(c if c in cols else f"NULL AS {c}" for c in ("id", "source", "origin", "messages"))
        key = "{'f': filename, 'r': file_row_number}"
        sql = f"""
            WITH picked AS (
                SELECT reason, count(*) AS records,
                       min_by({{'id': id, 'source': source, 'origin': origin, 'messages': messages,
                                'detail': detail}}, {key}, {int(per_reason)}) AS ex
                FROM (SELECT {pick}, reason, detail, filename, file_row_number
                      FROM {_parquet(files, meta=True)})
                GROUP BY reason
            )
            SELECT reason, records,
                   [{{'id': e.id, 'source': e.source, 'origin': e.origin,
                      'text': {_snippet("e.messages", "e.detail")},
                      'detail': left(coalesce(e.detail, ''), {DETAIL_CHARS})}} FOR e IN ex] AS examples
            FROM picked ORDER BY records DESC, reason
        """
        out += [{"stage": s.name, **r} for r in _rows(run.con.execute(sql))]
    return out


def _snippet(messages: str, detail: str) -> str:
    turns = f"array_to_string([m.role || ': ' || coalesce(m.content, '') FOR m IN {messages}], chr(10))"
    raw = f"CASE WHEN json_valid({detail}) THEN json_extract_string({detail}, '$.raw') END"
    text = f"CASE WHEN len(coalesce({messages}, [])) > 0 THEN {turns} ELSE coalesce({raw}, '') END"
    return f"left({text}, {SNIPPET_CHARS})"


def query_profile(run: ReportRun, stage: StageDir) -> dict:
    """The records of a canonical stage in one scan: `{stage, records, instruction_tokens, response_tokens,
    user_turns, sources}`; the token figures are `length_figures`, `user_turns` a list of `{turns, records}`
    bins, `sources` a list of `{source, records, share, tokens}`, most records first."""
    table = "profile_" + re.sub(r"\W", "_", stage.name)
    files = stage.shard_files
    if files:
        user, assistant = (
            f"coalesce(list_sum([{sql_count_tokens('m.content')} FOR m IN messages IF m.role = '{role}']), 0)"
            for role in ("user", "assistant")
        )
        run.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE "{table}" AS
                SELECT source, {user} AS instruction_tokens, {assistant} AS response_tokens,
                       len([1 FOR m IN messages IF m.role = 'user']) AS user_turns
                FROM {_parquet(files)}"""
        )
    else:  # a stage that kept nothing: the same columns, empty
        run.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE "{table}" (source VARCHAR, instruction_tokens BIGINT,
                response_tokens BIGINT, user_turns BIGINT)"""
        )
    records = run.con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    turns = _rows(
        run.con.execute(
            f'SELECT user_turns AS turns, count(*) AS records FROM "{table}" GROUP BY 1 ORDER BY 1'
        )
    )
    sources = _rows(
        run.con.execute(
            f"""SELECT coalesce(source, '(none)') AS source, count(*) AS records,
                       sum(instruction_tokens + response_tokens) AS tokens
                FROM "{table}" GROUP BY 1 ORDER BY records DESC, source"""
        )
    )
    for r in sources:
        r["share"] = r["records"] / records if records else 0.0
    return {
        "stage": stage.name,
        "records": records,
        "instruction_tokens": length_figures(run, table, "instruction_tokens"),
        "response_tokens": length_figures(run, table, "response_tokens"),
        "user_turns": _turn_bins(turns),
        "sources": sources,
    }


def length_figures(run: ReportRun, table: str, column: str) -> dict:
    """`{records, total, mean, p50, p90, p99, max, histogram: [{lo, hi, label, records}]}` of one token
    column; histogram bins are 0 then powers of two (1, 2-3, 4-7, ...), every bin from the first to the last
    non-empty one, so their records add up to the table's."""
    stats = _rows(
        run.con.execute(
            f"""SELECT count(*) AS records, coalesce(sum({column}), 0) AS total, avg({column}) AS mean,
                       quantile_disc({column}, [0.5, 0.9, 0.99]) AS q, max({column}) AS max
                FROM "{table}" """
        )
    )[0]
    bins = dict(
        run.con.execute(
            f"""SELECT CASE WHEN {column} <= 0 THEN -1 ELSE floor(log2({column}))::INT END AS b, count(*)
                FROM "{table}" GROUP BY 1"""
        ).fetchall()
    )
    histogram = []
    if bins:
        for b in range(min(bins), max(bins) + 1):
            lo, hi = (0, 0) if b < 0 else (2**b, 2 ** (b + 1) - 1)
            label = str(lo) if lo == hi else f"{lo}-{hi}"
            histogram.append({"lo": lo, "hi": hi, "label": label, "records": int(bins.get(b, 0))})
    q = stats.pop("q") or [None, None, None]
    mean = stats["mean"]
    return {
        **stats,
        "mean": round(mean, 1) if mean is not None and not math.isnan(mean) else None,
        "p50": q[0],
        "p90": q[1],
        "p99": q[2],
        "histogram": histogram,
    }


def _turn_bins(counts: list[dict]) -> list[dict]:
    by_turns = {r["turns"]: r["records"] for r in counts}
    out = []
    for lo, hi in TURN_BINS:
        n = sum(v for t, v in by_turns.items() if t >= lo and (hi is None or t <= hi))
        label = f"{lo}+" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}")
        out.append({"label": label, "lo": lo, "hi": hi, "records": n})
    if zero := sum(v for t, v in by_turns.items() if t < 1):
        out.insert(0, {"label": "0", "lo": 0, "hi": 0, "records": zero})
    while len(out) > 1 and out[-1]["records"] == 0:  # no empty tail bins
        out.pop()
    return out


def query_mix_splits(run: ReportRun, s: StageDir) -> list[dict]:
    """Records per split and source in the mix stage's output shards: `{split, source, records}`."""
    out = []
    for split_dir in sorted(
        p for p in s.path.iterdir() if p.is_dir() and p.name not in ("rejects", "_shards", "_work")
    ):
        files = [store.sql_path(p) for p in shards.list_shards(split_dir)]
        if not files:
            continue
        source = "coalesce(source, '(none)')" if "source" in _columns(run, files) else "'(none)'"
        sql = f"""SELECT {source} AS source, count(*) AS records FROM {_parquet(files)}
                  GROUP BY 1 ORDER BY records DESC, source"""
        out += [{"split": split_dir.name, **r} for r in _rows(run.con.execute(sql))]
    return out


def _columns(run: ReportRun, files: list[str]) -> set[str]:
    return {r[0] for r in run.con.execute(f"DESCRIBE SELECT * FROM {_parquet(files)}").fetchall()}


def _parquet(files: list[str], meta: bool = False) -> str:
    extra = ", filename = true, file_row_number = true" if meta else ""
    return f"read_parquet({_list(files)}, union_by_name = true{extra})"


def _list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


# --- stage figures from the manifests -----------------------------------------------------------------------


def dedup_figures(m: dict) -> dict:
    d = m.get("dedup") or {}
    sizes = d.get("cluster_sizes") or {}
    return {
        "clusters": d.get("clusters"),
        "largest_cluster": d.get("largest_cluster"),
        "cluster_sizes": [{"size": k, "clusters": v} for k, v in sizes.items()],
        "exact_removed": (d.get("exact") or {}).get("removed"),
        "near_removed": (d.get("near") or {}).get("removed"),
        "kept_by_chaining_guard": (d.get("near") or {}).get("kept_by_chaining_guard"),
        "threshold": (d.get("lsh") or {}).get("threshold"),
    }


def pii_figures(m: dict) -> dict:
    pii = m.get("pii") or {}
    entities = sorted((pii.get("entities") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "entities": [{"type": k, "count": v} for k, v in entities],
        "records_redacted": pii.get("records_redacted"),
    }


def decontam_figures(m: dict) -> dict:
    d = m.get("decontam") or {}
    rows = [
        {
            "benchmark": name,
            "split": b.get("split"),
            "items": b.get("items"),
            "items_hit": b.get("items_hit"),
            "records_removed": b.get("records_removed"),
        }
        for name, b in (d.get("benchmarks") or {}).items()
    ]
    return {
        "method": d.get("method"),
        "ngram": d.get("ngram"),
        "threshold": d.get("threshold"),
        "benchmarks": rows,
    }


def eval_figures(run_dir: RunPath) -> list[dict]:
    """One row per score of each `factory eval` registered with the run (RUN_DIR/evals/*.json), newest first."""
    rows = []
    for path in sorted((run_dir / "evals").glob("*.json")):
        entry = shards.read_json(path) or {}
        model = (entry.get("model") or {}).get("name", "?")
        adapter = (entry.get("adapter") or {}).get("path")
        for name, bench in (entry.get("benchmarks") or {}).items():
            hit = (bench.get("contamination") or {}).get("items_hit")
            for label, value in (bench.get("scores") or {}).items():
                if not isinstance(value, dict):
                    continue
                rows.append(
                    {
                        "eval": path.stem,
                        "model": model,
                        "adapter": adapter,
                        "finished_at": entry.get("finished_at"),
                        "benchmark": name,
                        "metric": label,
                        "score": value.get("score"),
                        "ci95": value.get("ci95"),
                        "tasks": value.get("tasks"),
                        "items_hit_in_training_data": hit,
                        "results": entry.get("results"),
                    }
                )
    rows.sort(key=lambda r: r["finished_at"] or "", reverse=True)
    return rows


def synth_figures(m: dict) -> dict:
    """Whatever numbers the synth manifest holds (its `synth` section, else its own top-level figures), with
    requests, cache hits and tokens picked out by name where present."""
    section = (
        m.get("synth")
        if isinstance(m.get("synth"), dict)
        else {k: v for k, v in m.items() if k not in COMMON_KEYS}
    )
    figures = _numeric_leaves(section)
    last = {k.rsplit(".", 1)[-1]: v for k, v in figures.items()}
    requests, hits = last.get("requests"), last.get("cache_hits")
    return {
        "requests": requests,
        "cache_hits": hits,
        "cache_hit_rate": round(hits / requests, 4) if requests and hits is not None else None,
        "tokens": {k: v for k, v in figures.items() if "token" in k},
        "cost": {k: v for k, v in figures.items() if "cost" in k},
        "models": sorted(
            {str(v) for k, v in _leaves(section).items() if k.rsplit(".", 1)[-1] in ("model", "models")}
        ),
        "figures": figures,
    }


def mix_figures(run: ReportRun, s: StageDir) -> dict:
    m = s.manifest
    mixture = m.get("mixture") or {}
    planned, achieved = mixture.get("planned") or {}, mixture.get("achieved") or {}
    per_source = mixture.get("sources") or {}
    splits = query_mix_splits(run, s) if s.path.is_dir() else []
    return {
        "status": s.status,
        "format": m.get("format"),
        "unit": m.get("unit") or "records",
        "split": m.get("split") or {},
        "copies": m.get("copies"),
        "mixture": [
            {
                "source": src,
                "planned": planned.get(src),
                "achieved": achieved.get(src),
                "tokens": (per_source.get(src) or {}).get("tokens"),
            }
            for src in list(planned) + [k for k in achieved if k not in planned]
        ],
        "shards": splits,
    }


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k not in SKIP_FIGURES:
                out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value} if prefix else {}


def _numeric_leaves(value: Any) -> dict[str, float | int]:
    leaves = _leaves(value)
    nums = {k: v for k, v in leaves.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return dict(list(nums.items())[:MAX_FIGURES])


# --- the summary --------------------------------------------------------------------------------------------


def build_summary(run: ReportRun) -> dict:
    """Every figure of the report as one JSON-ready dict (what summary.json holds and index.html shows)."""
    started = time.perf_counter()
    funnel = query_funnel(run)
    rejects = query_rejects(run)
    canonical = [
        s for s in run.canonical if s.shard_files or (s.manifest.get("counts") or {}).get("out") == 0
    ]
    if any(
        s.name == "synth" for s in canonical
    ):  # synth's records are the run's records; ingest held its seeds
        canonical = [s for s in canonical if s.name != "ingest"]
    before = query_profile(run, canonical[0]) if canonical else None
    after = None
    if len(canonical) > 1:
        after = query_profile(run, canonical[-1])
    elif before is not None:
        after = before
    present = {s.name for s in run.stages}
    stage = {s.name: s for s in run.stages if s.done}
    mix = run.stage(OUTPUT_STAGE)
    summary = {
        "run_dir": str(run.run_dir),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "stages": funnel,
        "inputs": _inputs(stage.get("ingest")),
        "missing": [name for name in STAGE_ORDER if name not in present],
        "unfinished": [s.name for s in run.stages if not s.done],
        "rejects": rejects,
        "before": before,
        "after": after,
        "dedup": dedup_figures(stage["dedup"].manifest) if "dedup" in stage else None,
        "pii": pii_figures(stage["clean"].manifest)
        if "clean" in stage and "pii" in stage["clean"].manifest
        else None,
        "decontam": decontam_figures(stage["decontam"].manifest) if "decontam" in stage else None,
        "synth": synth_figures(stage["synth"].manifest) if "synth" in stage else None,
        "mix": mix_figures(run, mix) if mix is not None else None,
        "evals": eval_figures(run.run_dir),
        "figures": {
            s.name: _numeric_leaves({k: v for k, v in s.manifest.items() if k not in COMMON_KEYS})
            for s in run.stages
        },
        "warnings": _warnings(run, funnel, rejects, canonical, before, after),
    }
    summary["build_s"] = round(time.perf_counter() - started, 3)
    return summary


def _inputs(ingest: StageDir | None) -> list[dict]:
    """The ingest manifest's inputs: `{path, format, source, records}` per input file."""
    keys = ("path", "format", "source", "records")
    return [{k: i.get(k) for k in keys} for i in (ingest.manifest.get("inputs") or [])] if ingest else []


def _warnings(run, funnel, rejects, canonical, before, after) -> list[str]:
    """Where the files disagree with the manifests, and what the report cannot show."""
    warnings = []
    found: dict[tuple[str, str], int] = {(r["stage"], r["reason"]): r["records"] for r in rejects}
    for row in funnel:
        if row["status"] != "done":
            warnings.append(
                f"{row['stage']} is unfinished (status {row['status']!r}): its counts are partial"
            )
            continue
        said = row["rejected_by_reason"]
        for reason in sorted(set(said) | {r for s, r in found if s == row["stage"]}):
            held = found.get((row["stage"], reason), 0)
            if said.get(reason, 0) != held:
                warnings.append(
                    f"{row['stage']}: manifest says {said.get(reason, 0)} rejected as {reason}, "
                    f"the rejects hold {held}"
                )
        if row["stage"] != OUTPUT_STAGE and row["in"] != row["out"] + row["rejected"]:
            warnings.append(
                f"{row['stage']}: {row['in']} in != {row['out']} out + {row['rejected']} rejected"
            )
    for profile, s in ((before, canonical[:1]), (after, canonical[-1:])):
        if profile is not None and s:
            said = (s[0].manifest.get("counts") or {}).get("out")
            if said is not None and said != profile["records"]:
                warnings.append(
                    f"{s[0].name}: manifest says {said} records out, its shards hold {profile['records']}"
                )
    if not canonical:
        warnings.append("no finished stage with canonical records: no length or source profile")
    return sorted(set(warnings), key=warnings.index)


# --- output -------------------------------------------------------------------------------------------------


def write_report(run: ReportRun, summary: dict) -> RunPath:
    """Write RUN_DIR/report/index.html and summary.json atomically; returns the report folder."""
    from factory.report_html import render

    folder = run.run_dir / "report"
    try:
        shards.write_json(summary, folder / "summary.json")
        shards.write_text(render(summary), folder / "index.html")
    except OSError as exc:
        raise UserError(f"cannot write the report to {folder}: {exc.strerror or exc}") from None
    return folder


def print_summary(summary: dict, folder: RunPath, console: Console) -> None:
    console.print(Text(f"report of {summary['run_dir']}", style="bold"))
    table = Table("stage", "status", "in", "out", "rejected", "top reasons")
    for r in summary["stages"]:
        reasons = sorted(r["rejected_by_reason"].items(), key=lambda kv: -kv[1])[:3]
        copies = f" (+{r['copies']:,} copies)" if r["copies"] else ""
        table.add_row(
            r["stage"],
            Text(r["status"], style="green" if r["status"] == "done" else "yellow"),
            f"{r['in']:,}",
            f"{r['out']:,}{copies}",
            f"{r['rejected']:,}",
            ", ".join(f"{k} {v:,}" for k, v in reasons),
        )
    console.print(table)
    if summary["missing"]:
        console.print(Text(f"not run: {', '.join(summary['missing'])}", style="dim"))
    before, after = summary["before"], summary["after"]
    if before and after:
        table = Table("", f"before ({before['stage']})", f"after ({after['stage']})")
        for key, name in (
            ("instruction_tokens", "instruction tokens"),
            ("response_tokens", "response tokens"),
        ):
            for stat in ("p50", "p90", "max"):
                table.add_row(f"{name} {stat}", _num(before[key][stat]), _num(after[key][stat]))
        table.add_row("records", f"{before['records']:,}", f"{after['records']:,}")
        table.add_row("sources", _shares(before["sources"]), _shares(after["sources"]))
        console.print(table)
    lines = []
    if d := summary["dedup"]:
        lines.append(f"dedup: {_num(d['clusters'])} clusters, largest {_num(d['largest_cluster'])}")
    if p := summary["pii"]:
        ents = ", ".join(f"{e['type']} {e['count']:,}" for e in p["entities"]) or "none"
        lines.append(f"PII: {ents}")
    if c := summary["decontam"]:
        hit = ", ".join(
            f"{b['benchmark']} {b['records_removed']}" for b in c["benchmarks"] if b["records_removed"]
        )
        lines.append(f"contamination: {hit or 'none found'}")
    if s := summary["synth"]:
        lines.append(f"synth: {_num(s['requests'])} requests, {_num(s['cache_hits'])} cache hits")
    if m := summary["mix"]:
        split = ", ".join(f"{k} {v:,}" for k, v in m["split"].items())
        lines.append(f"mix: {m['format'] or '?'} format, {split or 'no splits'}, {_num(m['copies'])} copies")
    for e in summary.get("evals") or []:
        hit = (
            f" ({e['items_hit_in_training_data']} items were in the training data)"
            if e["items_hit_in_training_data"]
            else ""
        )
        lines.append(f"eval {e['eval']}: {e['benchmark']} {e['metric']} {e['score']:.3f}{hit}")
    for line in lines:
        console.print(Text(line))
    console.print(
        Text(f"report: {folder / 'index.html'} (built in {summary['build_s']:.2f} s)", style="bold")
    )


def _shares(sources: list[dict]) -> str:
    return ", ".join(f"{r['source']} {100 * r['share']:.0f}%" for r in sources[:5])


def _num(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def report(run_dir: str | RunPath, as_json: bool = False, console: Console | None = None) -> dict:
    """Build the summary, write RUN_DIR/report/, print the rich summary (or the summary as JSON); returns
    the summary."""
    run = load_run(run_dir)
    summary = build_summary(run)
    for warning in summary["warnings"]:
        log.warning("%s", warning)
    folder = write_report(run, summary)
    if as_json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2, default=str) + "\n")
    else:
        print_summary(summary, folder, console or Console())
    return summary
