"""Calibrates the embedding threshold of `decontam` and measures encode speed; prints one JSON line.

Hard positives: LMSYS llm-decontaminator's rephrased benchmark items (../shared/data/benchmarks/
rephrased_llm_decontaminator; row i of a file is a rewrite of item i of its benchmark: HumanEval rewritten in
Python, C, JS and `multi` = 5 languages x 164, GSM8K test, MMLU test of abstract_algebra, high_school_us_history
and sociology, each in English and in Chinese). Empty rows are left out. Items: the originals (HumanEval
prompt + canonical solution, GSM8K question + answer, MMLU question + lettered choices), 1,988 in all, searched
together.
Negatives: 3,000 clean SFT records (750 each of alpaca, codealpaca, GPTeacher codegen + roleplay, LIMA;
instruction + input + output), seeded sample.

For each threshold t: `recall` = share of a file's rows whose top-1 item is their own original with cosine >= t,
`flagged` = share whose top-1 cosine >= t (any item: what the stage would remove), and `fp_rate` = share of
negatives whose top-1 cosine >= t. `proposed_threshold` is the lowest t (0.01 steps) with fp_rate <= 0.2%.
`mmlu_items_as_question_last_line` repeats it with MMLU items embedded as the question's last line only (no
reading passage, no choices), as the rephrased MMLU texts are. `throughput`: on every 5th negative (600),
fp32 at the default thread count, fp32 at 1 thread, and bf16 autocast. Takes ~10 minutes on 2 cores.

Usage: .venv/bin/python tests/benchmarks/embed_calibration.py [--model all-MiniLM-L6-v2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np
from shared_data import SHARED_DATA, read_json, read_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from stages.decontam.embed import Embedder, top_matches  # noqa: E402

BENCH = SHARED_DATA / "benchmarks"
REPHRASED = BENCH / "rephrased_llm_decontaminator"
MMLU_SUBJECTS = ["abstract_algebra", "high_school_us_history", "sociology"]
NEGATIVE_SOURCES = {  # name -> (files, records taken)
    "alpaca": (["alpaca/alpaca_data_subset5000.json"], 750),
    "codealpaca": (["codealpaca/code_alpaca_2k.json"], 750),
    "gpteacher": (
        ["gpteacher/codegen-instruct.json.gz", "gpteacher/roleplay-simple-deduped-roleplay-instruct.json.gz"],
        750,
    ),
    "lima": (["lima/lima.json.gz"], 750),
}
GRID = [round(x, 2) for x in np.arange(0.50, 0.991, 0.01)]
SHOWN = [0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
MAX_FP = 0.002


def mmlu_text(row: dict, variant: str) -> str:
    if variant == "question_last_line":  # the question sentence alone, without a passage before it
        return row["question"].rstrip().split("\n")[-1]
    return row["question"] + "\n" + "\n".join(f"{'ABCD'[i]}. {c}" for i, c in enumerate(row["choices"]))


def load_items(mmlu_variant: str = "question+choices") -> tuple[list[str], dict[str, int]]:
    """The original items, and the offset of each benchmark (or MMLU subject) in the list."""
    texts: list[str] = []
    offsets: dict[str, int] = {}
    offsets["humaneval"] = len(texts)
    texts += [
        r["prompt"] + r["canonical_solution"] for r in read_jsonl(BENCH / "humaneval/HumanEval.jsonl.gz")
    ]
    offsets["gsm8k"] = len(texts)
    texts += [r["question"] + "\n" + r["answer"] for r in read_jsonl(BENCH / "gsm8k/test.jsonl")]
    mmlu = read_jsonl(BENCH / "mmlu/mmlu_test.jsonl.gz")
    for subject in MMLU_SUBJECTS:
        offsets[subject] = len(texts)
        rows = sorted((r for r in mmlu if r["subject"] == subject), key=lambda r: r["idx"])
        texts += [mmlu_text(r, mmlu_variant) for r in rows]
    return texts, offsets


def load_rephrased(offsets: dict[str, int]) -> dict[str, tuple[list[str], np.ndarray]]:
    """file stem -> (non-empty texts, index of each one's original in the item list)."""
    out = {}
    for path in sorted(REPHRASED.glob("*.jsonl")):
        stem = path.stem
        if stem.startswith("humaneval"):
            base, period = offsets["humaneval"], 164
        elif stem == "rephrase_gsm8k":
            base, period = offsets["gsm8k"], None
        else:
            subject = next(s for s in MMLU_SUBJECTS if stem.startswith(s + "_test"))
            base, period = offsets[subject], None
        rows = [(i, r["text"]) for i, r in enumerate(read_jsonl(path)) if r["text"].strip()]
        truth = np.array([base + (i % period if period else i) for i, _ in rows])
        out[stem] = ([t for _, t in rows], truth)
    return out


def load_negatives(seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, sources = [], []
    for name, (files, n) in NEGATIVE_SOURCES.items():
        rows = [r for f in files for r in read_json(SHARED_DATA / "sft" / f)]
        for r in rng.sample(rows, n):
            parts = [r.get("instruction", ""), r.get("input", ""), r.get("output", r.get("response", ""))]
            texts.append("\n".join(p for p in parts if p and p.strip()))
            sources.append(name)
    return texts, sources


def timed_encode(embedder: Embedder, texts: list[str]) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    emb = embedder.encode(texts)
    return emb, time.perf_counter() - t0


def evaluate(item_emb, neg_emb, neg_sources, rephrased, reph_emb) -> dict:
    """FP rate per threshold, the proposed threshold, and per rephrased file recall / flagged."""
    neg_idx, neg_score = top_matches(neg_emb, item_emb, 1)
    neg_top = neg_score[:, 0]
    fp = {t: float((neg_top >= t).mean()) for t in GRID}
    proposed = next((t for t in GRID if fp[t] <= MAX_FP), None)
    shown = sorted(set(SHOWN + ([proposed] if proposed else [])))
    per_file = {}
    for stem, (_, truth) in rephrased.items():
        idx, score = top_matches(reph_emb[stem], item_emb, 1)
        hit, s = idx[:, 0] == truth, score[:, 0]
        per_file[stem] = {
            "n": len(truth),
            "top1_is_original": round(float(hit.mean()), 4),
            "median_cosine_to_original": round(
                float(np.median(np.einsum("ij,ij->i", reph_emb[stem], item_emb[truth]))), 4
            ),
            "recall": {str(t): round(float((hit & (s >= t)).mean()), 4) for t in shown},
            "flagged": {str(t): round(float((s >= t).mean()), 4) for t in shown},
        }
    sources = np.array(neg_sources)
    return {
        "proposed_threshold": proposed,
        "fp_rate": {str(t): round(fp[t], 5) for t in shown},
        "fp_rate_by_source_at_proposed": {
            name: round(float((neg_top[sources == name] >= proposed).mean()), 5) for name in NEGATIVE_SOURCES
        }
        if proposed
        else None,
        "negative_top1_quantiles": {
            q: round(float(np.quantile(neg_top, float(q))), 4) for q in ["0.5", "0.9", "0.99", "0.998", "1.0"]
        },
        "worst_negatives": [
            (int(i), int(neg_idx[i, 0]), round(float(neg_top[i]), 4)) for i in np.argsort(-neg_top)[:8]
        ],
        "rephrased": per_file,
    }


def throughput(embedder: Embedder, texts: list[str]) -> dict:
    """texts/s and tokens/s (after truncation) on one sample: fp32 at the default threads, at 1 thread, bf16."""
    import torch

    tokens = sum(
        len(ids)
        for ids in embedder.tokenizer(texts, truncation=True, max_length=embedder.max_length)["input_ids"]
    )
    out = {"texts": len(texts), "mean_tokens": round(tokens / len(texts), 1)}
    ref, secs = timed_encode(embedder, texts)
    out[f"fp32_{embedder.threads}_threads"] = {
        "texts_per_s": round(len(texts) / secs, 1),
        "tokens_per_s": round(tokens / secs),
    }
    torch.set_num_threads(1)
    _, secs = timed_encode(embedder, texts)
    out["fp32_1_thread"] = {"texts_per_s": round(len(texts) / secs, 1), "tokens_per_s": round(tokens / secs)}
    torch.set_num_threads(embedder.threads)
    embedder.bf16 = True
    emb, secs = timed_encode(embedder, texts)
    embedder.bf16 = False
    out[f"bf16_{embedder.threads}_threads"] = {
        "texts_per_s": round(len(texts) / secs, 1),
        "tokens_per_s": round(tokens / secs),
        "max_abs_cosine_change": round(float(np.abs(np.einsum("ij,ij->i", emb, ref) - 1).max()), 5),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    load_start = os.getloadavg()[0]

    items, offsets = load_items()
    alt_items, _ = load_items("question_last_line")
    mmlu_slice = slice(offsets[MMLU_SUBJECTS[0]], len(items))
    rephrased = load_rephrased(offsets)
    negatives, neg_sources = load_negatives(args.seed)

    t0 = time.perf_counter()
    embedder = Embedder(args.model, batch_size=args.batch_size)
    load_s = time.perf_counter() - t0
    rss_loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    item_emb, item_s = timed_encode(embedder, items)
    alt_item_emb = item_emb.copy()
    alt_item_emb[mmlu_slice] = embedder.encode(alt_items[mmlu_slice])
    neg_emb, neg_s = timed_encode(embedder, negatives)
    reph_emb = {stem: embedder.encode(texts) for stem, (texts, _) in rephrased.items()}
    rss_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    speed = throughput(embedder, negatives[::5])

    main_eval = evaluate(item_emb, neg_emb, neg_sources, rephrased, reph_emb)
    alt_eval = evaluate(alt_item_emb, neg_emb, neg_sources, rephrased, reph_emb)
    for ev in (main_eval, alt_eval):
        ev["worst_negatives"] = [
            {"source": neg_sources[i], "cosine": c, "text": negatives[i][:90], "item": items[j][:90]}
            for i, j, c in ev["worst_negatives"]
        ]
    alt_eval = {k: v for k, v in alt_eval.items() if k not in ("worst_negatives", "negative_top1_quantiles")}
    alt_eval["rephrased"] = {
        k: v for k, v in alt_eval["rephrased"].items() if k.startswith(tuple(MMLU_SUBJECTS))
    }
    result = {
        "benchmark": "embed_calibration",
        "model": args.model,
        "threads": embedder.threads,
        "batch_size": args.batch_size,
        "max_length": embedder.max_length,
        "items": len(items),
        "negatives": len(negatives),
        **main_eval,
        "mmlu_items_as_question_last_line": alt_eval,
        "encode_s": {"items": round(item_s, 1), "negatives": round(neg_s, 1)},
        "throughput": speed,
        "model_load_s": round(load_s, 2),
        "rss_after_load_mb": round(rss_loaded_mb),
        "rss_peak_mb": round(rss_peak_mb),
        "load_average_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
