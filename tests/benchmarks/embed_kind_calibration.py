"""Calibrates the embedding thresholds of `decontam` per kind of benchmark item (programs vs text); one JSON line.

Why: the single threshold (0.83, embed_calibration.py) was calibrated against HumanEval, GSM8K and MMLU. Against
all four built-in benchmarks the planted benchmark flagged 16 of 3,000 clean SFT records, 15 of them generic
coding tasks near a one-line MBPP or HumanEval task ("recursive Fibonacci", "remove duplicates from a list") at
cosine 0.85-0.89: a program's task statement is short and generic, so a clean coding record lands closer to it.

What: the stage's own item embeddings (the four built-in benchmarks, each item's `all` view, exactly what
`paraphrase.item_embeddings` embeds and caches) and the calibration negatives of embed_calibration.py (3,000
clean SFT records, seed 0). For each negative, its best cosine among program items (HumanEval, MBPP) and among
text items (GSM8K, MMLU). `fp_rate` per threshold per kind; `proposed`: the lowest threshold (0.01 steps) with at
most 0.1% of the negatives flagged by that kind (so at most 0.2% together). Hard positives at the proposed code
threshold: LMSYS's rephrased HumanEval (Python) rows whose best program item is their original.

Usage: .venv/bin/python tests/benchmarks/embed_kind_calibration.py [--cache-dir DIR] [--seed 0]
(--cache-dir: where the decontam index and its item embeddings are cached; reusing one saves ~20 minutes.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from embed_calibration import REPHRASED, load_negatives  # noqa: E402
from shared_data import read_jsonl  # noqa: E402

GRID = [round(x, 2) for x in np.arange(0.75, 0.991, 0.01)]
MAX_FP_PER_KIND = 0.001


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.cache_dir:
        os.environ["FACTORY_CACHE_DIR"] = args.cache_dir
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from stages.decontam import benchmarks as bm
    from stages.decontam import index as ix
    from stages.decontam import paraphrase
    from stages.decontam.config import DecontamConfig
    from stages.decontam.embed import top_matches
    from stages.decontam.stage import DecontamStage, _code_views

    cfg = DecontamConfig(embedding={"enabled": True}, cache_dir=args.cache_dir)
    t0 = time.perf_counter()
    sources = [bm.locate(spec) for spec in bm.specs(cfg.benchmarks)]
    cache = Path(cfg.cache_dir) if cfg.cache_dir else ix.default_cache_dir()
    folder, _, _ = ix.ensure(sources, DecontamStage(cfg).settings(), cache)
    index = ix.load(folder)
    views, items = paraphrase.item_embeddings(index, cfg.embedding)
    item_names = index.views.column("item").take(views).to_pylist()
    is_code = _code_views(index)[views]
    items_s = time.perf_counter() - t0

    neg_texts, _ = load_negatives(args.seed)
    model = paraphrase.embedder(cfg.embedding)
    t1 = time.perf_counter()
    neg = model.encode(neg_texts)
    neg_s = time.perf_counter() - t1

    out: dict = {
        "bench": "embed_kind_calibration",
        "items": {"code": int(is_code.sum()), "text": int((~is_code).sum())},
    }
    for kind, mask in (("code", is_code), ("text", ~is_code)):
        _, score = top_matches(neg, items[mask], 1)
        top = score[:, 0]
        fp = {t: float((top >= t).mean()) for t in GRID}
        proposed = next((t for t in GRID if fp[t] <= MAX_FP_PER_KIND), None)
        out[kind] = {
            "proposed": proposed,
            "fp_rate": {
                str(t): round(fp[t], 5) for t in GRID if t in (0.8, 0.83, 0.85, 0.87, 0.88, 0.89, 0.9, 0.92)
            },
            "top1_quantiles": {
                q: round(float(np.quantile(top, float(q))), 4) for q in ("0.5", "0.99", "0.999", "1.0")
            },
        }
    # hard positives: rephrased HumanEval in Python, row i = HumanEval/i
    rows = [
        (i, r["text"])
        for i, r in enumerate(read_jsonl(REPHRASED / "humaneval_python.jsonl"))
        if r["text"].strip()
    ]
    emb = model.encode([t for _, t in rows])
    code_idx = np.flatnonzero(is_code)
    idx, score = top_matches(emb, items[code_idx], 1)
    names = [item_names[code_idx[j]] for j in idx[:, 0]]
    own = np.array([n == f"HumanEval/{i}" for (i, _), n in zip(rows, names, strict=True)])
    out["rephrased_humaneval_python"] = {
        "n": len(rows),
        "recall": {
            str(t): round(float((own & (score[:, 0] >= t)).mean()), 4) for t in (0.83, 0.85, 0.88, 0.9, 0.92)
        },
    }
    out["seconds"] = {"items": round(items_s, 1), "negatives": round(neg_s, 1), "negatives_n": len(neg_texts)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
