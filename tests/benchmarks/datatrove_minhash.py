"""Datatrove's MinHash deduplication on a folder of JSONL files ({"id", "text"} per line), for bench_dedup.py.

Run with a Python that has datatrove installed (kept out of the project's virtualenv), e.g.
    /tmp/dtvenv/bin/python tests/benchmarks/datatrove_minhash.py --input DIR --work DIR --out result.json

The pipeline is datatrove's own four stages as in its examples/minhash_deduplication.py
(MinhashDedupSignature, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter) with the example's
settings (64-bit hashes, 14 buckets x 8 hashes: LSH threshold ~0.72, word 5-grams), run by
LocalPipelineExecutor with --tasks tasks and --workers processes (one input file per task). Cluster ids are
saved and loaded, so every document comes out with its cluster (-1: none). Writes {"seconds": {stage: s},
"total_s", "docs", "kept": {id: cluster}, "removed": {id: cluster}, "config"} to --out.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--buckets", type=int, default=14)
    parser.add_argument("--hashes-per-bucket", type=int, default=8)
    args = parser.parse_args()

    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.typeshelper import Languages

    config = MinhashConfig(
        hash_config=HashConfig(precision=64),
        num_buckets=args.buckets,
        hashes_per_bucket=args.hashes_per_bucket,
        n_grams=args.ngram,
    )
    work = Path(args.work)

    def reader():
        return JsonlReader(args.input, text_key="text", id_key="id")

    stages = {
        "signatures": LocalPipelineExecutor(
            pipeline=[
                reader(),
                MinhashDedupSignature(
                    output_folder=str(work / "signatures"), config=config, language=Languages.english
                ),
            ],
            tasks=args.tasks,
            workers=args.workers,
            logging_dir=str(work / "logs" / "signatures"),
        ),
        "buckets": LocalPipelineExecutor(
            pipeline=[
                MinhashDedupBuckets(
                    input_folder=str(work / "signatures"), output_folder=str(work / "buckets"), config=config
                )
            ],
            tasks=config.num_buckets,
            workers=args.workers,
            logging_dir=str(work / "logs" / "buckets"),
        ),
        "cluster": LocalPipelineExecutor(
            pipeline=[
                MinhashDedupCluster(
                    input_folder=str(work / "buckets"),
                    output_folder=str(work / "remove_ids"),
                    config=config,
                    save_cluster_id=True,
                )
            ],
            tasks=1,
            logging_dir=str(work / "logs" / "clusters"),
        ),
        "filter": LocalPipelineExecutor(
            pipeline=[
                reader(),
                MinhashDedupFilter(
                    input_folder=str(work / "remove_ids"),
                    exclusion_writer=JsonlWriter(str(work / "removed")),
                    load_cluster_ids=True,
                ),
                JsonlWriter(output_folder=str(work / "output")),
            ],
            tasks=args.tasks,
            workers=args.workers,
            logging_dir=str(work / "logs" / "filter"),
        ),
    }
    seconds = {}
    start = time.perf_counter()
    for name, executor in stages.items():
        t = time.perf_counter()
        executor.run()
        seconds[name] = round(time.perf_counter() - t, 3)
    total = time.perf_counter() - start

    def read(folder: Path) -> dict[str, int]:
        out = {}
        for path in sorted(folder.glob("*.jsonl*")) if folder.exists() else []:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as f:
                for line in f:
                    doc = json.loads(line)
                    out[doc["id"]] = doc.get("metadata", {}).get("minhash_cluster_id", -1)
        return out

    kept, removed = read(work / "output"), read(work / "removed")
    result = {
        "seconds": seconds,
        "total_s": round(total, 3),
        "docs": len(kept) + len(removed),
        "kept": kept,
        "removed": removed,
        "config": {
            "n_grams": config.n_grams,
            "num_buckets": config.num_buckets,
            "hashes_per_bucket": config.hashes_per_bucket,
            "lsh_threshold": round((1 / config.num_buckets) ** (1 / config.hashes_per_bucket), 3),
            "tasks": args.tasks,
            "workers": args.workers,
        },
    }
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
