"""What each clean rule drops on the shared SFT sets, and how fast the rules run (one core).

Prints ONE JSON line: per file the record count, the keep rate with the default config (first-failing-rule
funnel, as the stage applies it), each rule's drop share when evaluated on its own, the funnel counts, 2-3
example drops per rule (id, evidence), and records/s for normalisation + all rules, plus per rule group.

    .venv/bin/python tests/benchmarks/clean_rule_shares.py [--data ../shared/data/sft] [--examples 3]

`rule_shares(records)` is the reusable part: records are dicts with `id`, `messages` and optionally `meta`
(dict or JSON string) and `kind`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared_data import SHARED_DATA, read_json  # noqa: E402

from factory.records import detect_format, to_record  # noqa: E402
from stages.clean.config import CleanConfig  # noqa: E402
from stages.clean.normalize import normalize_messages  # noqa: E402
from stages.clean.rules import RULES, RecordView, applies, check  # noqa: E402

FILES = {
    "alpaca": "alpaca/alpaca_data_subset5000.json",
    "alpaca_gpt4_sample": "alpaca_gpt4_sample/alpaca_en_demo.json",
    "lima": "lima/lima.json.gz",
    "codealpaca": "codealpaca/code_alpaca_2k.json",
    "gpteacher_codegen": "gpteacher/codegen-instruct.json.gz",
    "gpteacher_roleplay": "gpteacher/roleplay-simple-deduped-roleplay-instruct.json.gz",
    "gpteacher_toolformer": "gpteacher/toolformer-dedupe-only-dataset.json.gz",
    "sharegpt_dummy": "sharegpt/dummy_conversation.json",
}


def load_file(path: Path, name: str) -> list[dict[str, Any]]:
    """A shared SFT JSON file (optionally gzipped) -> canonical records, converted as ingest converts them."""
    rows = read_json(path)
    fmt = detect_format(rows[0])
    return [to_record(row, fmt, name, f"{name}:{row.get('id', i)}", None, {}) for i, row in enumerate(rows)]


def _meta(record: dict) -> dict:
    meta = record.get("meta") or {}
    return json.loads(meta) if isinstance(meta, str) else meta


def _example(record_id: str, detail: dict) -> dict:
    return {"id": record_id, **detail}


def rule_shares(records: list[dict], cfg: CleanConfig | None = None, examples: int = 3) -> dict:
    """Drop shares per rule (independent and funnel), examples, keep rate and speed for a list of records."""
    cfg = cfg or CleanConfig()
    n = len(records)
    # Pass 1: the stage's path, timed: normalise + check (first failing rule).
    t0 = time.perf_counter()
    views = []
    funnel: dict[str, int] = {}
    funnel_examples: dict[str, list] = {}
    normalized_steps: dict[str, int] = {}
    for r in records:
        meta = _meta(r)
        messages, steps = normalize_messages(r["messages"], cfg.normalize)
        view = RecordView(messages, meta.get("kind", r.get("kind", "chat")), meta)
        verdict = check(view, cfg)
        views.append(view)
        for s in steps:
            normalized_steps[s] = normalized_steps.get(s, 0) + 1
        if verdict:
            reason, detail = verdict
            funnel[reason] = funnel.get(reason, 0) + 1
            ex = funnel_examples.setdefault(reason, [])
            if len(ex) < examples:
                ex.append(_example(r["origin"], detail))
    total_s = time.perf_counter() - t0
    # Normalisation alone, timed.
    t0 = time.perf_counter()
    for r in records:
        normalize_messages(r["messages"], cfg.normalize)
    norm_s = time.perf_counter() - t0
    # Pass 2: every rule on its own (prose cache cleared so each rule pays for its own analysis).
    independent: dict[str, int] = {}
    indep_examples: dict[str, list] = {}
    group_s: dict[str, float] = {}
    for rule in RULES:
        section = getattr(cfg, rule.name)
        if not section.enabled:
            continue
        hits = 0
        t0 = time.perf_counter()
        for r, view in zip(records, views, strict=True):
            view.cache.clear()
            if not applies(rule, view):
                continue
            verdict = rule.fn(view, cfg)
            if verdict:
                hits += 1
                ex = indep_examples.setdefault(rule.name, [])
                if len(ex) < examples:
                    ex.append(_example(r["origin"], verdict[1]))
        group_s[rule.group] = group_s.get(rule.group, 0.0) + time.perf_counter() - t0
        independent[rule.name] = hits
    kept = n - sum(funnel.values())
    chars = sum(len(m["content"]) for r in records for m in r["messages"])
    return {
        "records": n,
        "mean_chars_per_record": round(chars / n) if n else 0,
        "kept": kept,
        "keep_rate": round(kept / n, 4) if n else None,
        "drop_share_independent": {k: round(v / n, 4) for k, v in independent.items()} if n else {},
        "drop_count_independent": independent,
        "drop_count_funnel": funnel,
        "normalized_records_by_step": normalized_steps,
        "examples_funnel": funnel_examples,
        "examples_independent": {k: v for k, v in indep_examples.items() if k not in funnel_examples},
        "records_per_s": round(n / total_s) if total_s else None,
        "mb_per_s": round(chars / total_s / 1e6, 2) if total_s else None,
        "records_per_s_normalize": round(n / norm_s) if norm_s else None,
        "records_per_s_by_group": {g: round(n / s) if s else None for g, s in group_s.items()},
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED_DATA / "sft"), help="The SFT data folder.")
    ap.add_argument("--examples", type=int, default=3, help="Example drops kept per rule.")
    args = ap.parse_args(argv)
    cfg = CleanConfig()
    out: dict[str, Any] = {
        "benchmark": "clean_rule_shares",
        "python": sys.version.split()[0],
        "notes": "one core; records_per_s = normalisation + check() (first failing rule), as the stage runs them; "
        "records_per_s_by_group = each group's rules alone over all records, each rule paying for its own prose "
        "extraction; drop_share_independent = each rule evaluated on its own; drop_count_funnel = reasons "
        "check() gives (first failing rule in RULES order)",
        "files": {},
    }
    all_n = 0
    all_s = 0.0
    for name, rel in FILES.items():
        path = Path(args.data) / rel
        if not path.exists():
            out["files"][name] = {"missing": str(path)}
            continue
        records = load_file(path, name)
        res = rule_shares(records, cfg, args.examples)
        out["files"][name] = res
        all_n += res["records"]
        all_s += res["records"] / res["records_per_s"] if res["records_per_s"] else 0.0
    out["records_per_s_all_files"] = round(all_n / all_s) if all_s else None
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
