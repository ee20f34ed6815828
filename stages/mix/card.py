"""The dataset card of a mix: `RUN_DIR/mix/README.md`, Hugging Face YAML front matter plus what a reader of the
dataset needs to trust it.

Front matter: license, language, task categories, size category, the `configs` entry mapping the train and
validation folders to splits, and `dataset_info` (features, split sizes). Body: how to load it (`datasets`,
LLaMA-Factory), the format and how multi-turn records are written, the mixture table (planned, achieved, copies,
dropped per source), the funnel of the whole run (records in and out per stage, top reject reasons, following
each manifest's `upstream` back to ingest), decontamination per benchmark, and the synth models used. Everything
is read from the run's manifests; nothing is recomputed.
"""

from __future__ import annotations

import yaml

from factory import shards
from factory.shards import RunPath
from stages.mix import formats
from stages.mix.config import MixConfig

SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
MULTI_TURN = {
    "sharegpt": "Multi-turn conversations are kept whole: `conversations` alternates `human` and `gpt`, the "
    "system prompt is in `system`.",
    "alpaca": "A multi-turn conversation becomes one row: its last user turn is `instruction`, its final answer "
    "`output`, and the earlier turns are `history`, a list of [user, assistant] pairs, oldest first "
    "(LLaMA-Factory trains on the history's answers too). `input` is empty: an Alpaca input was folded into the "
    "instruction at ingest.",
}


def size_category(n: int) -> str:
    for limit, name in SIZE_CATEGORIES:
        if n < limit:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def run_chain(run_dir: RunPath, last: dict) -> list[dict]:
    """The manifests of the stages that led to `last`, first stage first (each names its `upstream`)."""
    chain = [last]
    seen = {last["stage"]}
    while (up := chain[0].get("upstream")) and up not in seen:
        manifest = shards.read_json(run_dir / up / "manifest.json")
        if not manifest:
            break
        chain.insert(0, manifest)
        seen.add(up)
    return chain


def front_matter(cfg: MixConfig, manifest: dict) -> dict:
    split = manifest["split"]
    folders = [f for f in ("train", "validation") if split[f]]
    return {
        "license": cfg.license,
        "language": cfg.language,
        "task_categories": ["text-generation"],
        "tags": ["sft", "instruction-tuning", cfg.format],
        "size_categories": [size_category(sum(split.values()))],
        "pretty_name": cfg.name,
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": f, "path": f"{f}/*.parquet"} for f in folders],
            }
        ],
        "dataset_info": {
            "features": formats.card_features(cfg.format),
            "splits": [{"name": f, "num_examples": split[f]} for f in folders],
        },
    }


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def mixture_section(manifest: dict) -> str:
    mix = manifest["mixture"]
    unit = manifest["unit"]
    weights = mix.get("weights") or {}
    total = sum(mix["achieved"].values()) or 1
    rows = []
    for s, info in mix["sources"].items():
        rows.append(
            [
                s,
                weights.get(s, "natural") if weights else "natural",
                info["planned"],
                mix["achieved"].get(s, 0),
                mix["achieved"].get(s, 0) / total,
                info["unique"],
                info["copies"],
                info["validation"],
                info["available"]["records"],
                info["dropped"],
            ]
        )
    text = _table(
        [
            "source",
            "weight",
            f"planned ({unit})",
            f"achieved ({unit})",
            "share",
            "distinct records",
            "extra copies",
            "in validation",
            "available",
            "dropped",
        ],
        rows,
    )
    notes = [
        f"Sampling policy `{manifest['policy']}`; up-sampled records occur at most {manifest['max_repeats']} "
        "times in train; validation records occur once."
    ]
    for s, want in manifest.get("short", {}).items():
        notes.append(
            f"**{s} is short of its share**: {want:,} {unit} planned, {mix['achieved'].get(s, 0):,} reached."
        )
    return text + "\n\n" + "\n".join(f"- {n}" for n in notes)


def funnel_section(chain: list[dict]) -> str:
    rows = []
    for m in chain:
        c = m.get("counts", {})
        reasons = ", ".join(f"{r} {n:,}" for r, n in list(m.get("rejected_by_reason", {}).items())[:4])
        rows.append([m["stage"], c.get("in", 0), c.get("out", 0), c.get("rejected", 0), reasons or "-"])
    return _table(["stage", "in", "out", "rejected", "top reasons"], rows)


def decontam_section(chain: list[dict]) -> str:
    found = next((m for m in chain if m["stage"] == "decontam"), None)
    if found is None:
        return "No `decontam` stage ran: this data was **not checked** against evaluation benchmarks."
    d = found.get("decontam", {})
    rows = [
        [name, b.get("items", 0), b.get("items_hit", 0), b.get("records_removed", 0)]
        for name, b in d.get("benchmarks", {}).items()
    ]
    method = f"word {d.get('ngram')}-grams (code: {d.get('code_ngram')}-token windows), threshold {d.get('threshold')}"
    if (d.get("embedding") or {}).get("model"):
        method += f", plus embedding similarity ({d['embedding']['model']}, cosine >= {d['embedding']['threshold']})"
    return (
        f"Checked by {method}. Records that matched a benchmark item were removed; `factory audit RUN_DIR` "
        "shows each one beside the item.\n\n"
        + _table(["benchmark", "items", "items found", "records removed"], rows)
    )


def synth_section(chain: list[dict]) -> str:
    found = next((m for m in chain if m["stage"] == "synth"), None)
    if found is None:
        return "No synthetic records: every record comes from the inputs."
    synth = found.get("synth", {})
    models = [m for m in synth.get("models") or [synth.get("model")] if m]
    method = synth.get("method", "?")
    return (
        f"Generated with `{method}` by " + (", ".join(f"`{m}`" for m in models) or "an unnamed model") + "."
    )


def render(cfg: MixConfig, manifest: dict, run_dir: RunPath, dataset_names: list[str]) -> str:
    chain = run_chain(run_dir, manifest)
    split = manifest["split"]
    head = yaml.safe_dump(front_matter(cfg, manifest), sort_keys=False, allow_unicode=True)
    loads = 'load_dataset("parquet", data_files={"train": "train/*.parquet"'
    if split["validation"]:
        loads += ', "validation": "validation/*.parquet"'
    loads += "})"
    parts = [
        f"---\n{head}---",
        f"# {cfg.name}",
        cfg.description or "A supervised fine-tuning dataset made by factory from the inputs below.",
        "## Contents",
        f"{split['train']:,} train and {split['validation']:,} validation rows in **{cfg.format}** format "
        f"(Parquet). {MULTI_TURN[cfg.format]} Every row keeps its record's `id` and `source`.",
        "```python\nfrom datasets import load_dataset\n\nds = " + loads + "\n```",
        "LLaMA-Factory: point `dataset_dir` at this folder and use "
        + " and ".join(f"`{n}`" for n in dataset_names)
        + " (`dataset_info.json`).",
        "## Mixture",
        mixture_section(manifest),
        "## How it was made",
        funnel_section(chain),
        "## Decontamination",
        decontam_section(chain),
        "## Synthetic data",
        synth_section(chain),
    ]
    return "\n\n".join(parts) + "\n"
