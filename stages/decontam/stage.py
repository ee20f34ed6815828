"""The `decontam` stage: removes training records that hold benchmark items (or a large part of one).

`prepare` loads the protected benchmarks (`benchmarks.py`) and builds their n-gram index, or finds it in the
cache (`index.py`); `process` streams each shard through it on all workers: the n-grams of every record's text
(all turns: contamination hides in system prompts too) and of its code (`ngrams.py`) are looked up, every
(record, item view) pair sharing n-grams is scored, and a record is removed when a score reaches the threshold.

Input and output columns: the canonical record, unchanged. Reject reason: `contaminated`, with `detail`:
benchmark, item, view (which protected text matched), method (`ngram`), n, score (share of the view's n-grams
found in the record, or of the record's n-grams found in the view: `direction` says which), matched and of
(n-gram counts), ngrams (up to 10 matched passages of the record, 300 characters at most), spans (character offsets of the matched words
in the record's text: its turns' contents joined by newlines), item_text and item_spans (the same for the
protected text), also (other items over the threshold).
With `judge.enabled` (`judge.py`), every embedding candidate (with `applies_to: all`, every n-gram hit too) is put
to a chat model, one `complete_all` per shard: a record it judges not the same as its item is kept (counted as
`overruled`); a confirmed one is removed with `method` `embedding+judge` (or `ngram+judge`) and `judge` {verdict,
reply, model, cached} in its detail; a failed request or an unparseable reply leaves the first verdict (removed,
`judge` with the error or the raw reply).
Config: `stages.decontam` (`config.py`). Manifest (`decontam`): method, n, threshold, index (cache folder, built
or reused, seconds), embedding, judge (model, applies_to, cache, asked, confirmed, overruled, failed, unparsed,
cache_hits, tokens, failures by kind, overruled_items) and per benchmark: items, split, source, n-grams, items
hit, records removed, by item.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from factory import shards
from factory.llm.config import RUNTIME_FIELDS
from factory.records import REJECT_SCHEMA
from factory.stage import PrepareContext, ShardContext, ShardResult, merge_counters, reject_row
from stages.clean.code import tag_language
from stages.clean.text import fenced_blocks
from stages.decontam import benchmarks as bm
from stages.decontam import index as ix
from stages.decontam.config import DecontamConfig
from stages.decontam.ngrams import Grams, char_offsets, code_grams, text_grams
from stages.dedup.shingles import _is_code, _meta_language, _turns

log = logging.getLogger("factory")

INDEX_FILE = "index.json"  # in _work: where the driver's cache holds the index
INDEX_DIR = "index"  # in _work: the index's copy for workers on other machines
_MAX_NGRAMS_SHOWN = 10
_MAX_ALSO = 5
_MAX_PASSAGE = 300


class DecontamStage:
    name: ClassVar[str] = "decontam"
    Config: ClassVar[type[DecontamConfig]] = DecontamConfig
    version: ClassVar[int] = 1
    # how the judge's requests are sent, not what comes back: tuning them does not redo a finished decontam
    hash_exclude: ClassVar[dict] = {"judge": {"cache": True, "backend": set(RUNTIME_FIELDS)}}

    def __init__(self, config: DecontamConfig):
        self.config = config
        self.keep_work = False  # _work holds the index pointer and a copy of the index for workers
        self._figures: dict = {}

    def settings(self) -> ix.Settings:
        c = self.config
        return ix.Settings(c.text_n, c.code_ngram, c.min_content_words, c.min_code_tokens, c.code_language)

    # ---- the global pass: the index ----------------------------------------------------------------------------

    def prepare(self, ctx: PrepareContext) -> dict:
        cfg = self.config
        sources = [bm.locate(spec) for spec in bm.specs(cfg.benchmarks)]
        cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else ix.default_cache_dir()
        folder, meta, built = ix.ensure(sources, self.settings(), cache)
        embedding = None
        if cfg.embedding.enabled:
            from stages.decontam import paraphrase

            started = time.perf_counter()
            views, _ = paraphrase.item_embeddings(ix.load(folder), cfg.embedding)
            embedding = {
                "model": cfg.embedding.model,
                "threshold": cfg.embedding.threshold,
                "items": len(views),
                "seconds": round(time.perf_counter() - started, 2),
            }
            log.info("decontam: embeddings of %d items ready (%s s)", len(views), embedding["seconds"])
        ix.publish(folder, ctx.work_dir / INDEX_DIR)
        shards.write_json({"index": str(folder)}, ctx.work_dir / INDEX_FILE)
        judge_figures = None
        if cfg.judge.enabled:
            from stages.decontam import judge

            run_dir = ctx.work_dir.parent.parent
            judge.check(cfg.judge, run_dir)
            judge_figures = {
                "model": cfg.judge.backend.model,
                "applies_to": cfg.judge.applies_to,
                "cache": str(judge.cache_path(cfg.judge, run_dir)),
            }
        log.info(
            "decontam: %s n-grams of %s (%s), %d-word text and %d-token code n-grams, threshold %.2f",
            f"{meta['ngrams']:,}",
            ", ".join(f"{name} {b['items']:,} items" for name, b in meta["benchmarks"].items()),
            f"built in {meta.get('build_s', 0)} s" if built else "cached",
            cfg.text_n,
            cfg.code_ngram,
            cfg.threshold,
        )
        self._figures = {
            "method": "ngram",
            "mode": cfg.mode,
            "ngram": cfg.text_n,
            "code_ngram": cfg.code_ngram,
            "threshold": cfg.threshold,
            "code_threshold": cfg.code_threshold,
            "index": {
                "folder": str(folder),
                "built": built,
                "ngrams": meta["ngrams"],
                "build_s": meta.get("build_s"),
            },
            "embedding": embedding,
            "judge": judge_figures,
            "benchmarks": meta["benchmarks"],
        }
        return {}

    def finish(self, merged: dict) -> dict:
        """The manifest's `decontam` figures: the index's, plus hits per benchmark summed over shards."""
        hits = merged.pop("contaminated", {})
        judged = merged.pop("judge", {})
        out = dict(self._figures)
        if out.get("judge") is not None:
            from stages.decontam import judge

            judge.close_all()
            counts = merge_counters(judge.empty_counts(), judged)
            out["judge"] = {**out["judge"], **counts}
            log.info(
                "decontam: judge asked %d (%d from the cache): %d confirmed, %d overruled (kept), %d failed, "
                "%d unparsed",
                counts["asked"],
                counts["cache_hits"],
                counts["confirmed"],
                counts["overruled"],
                counts["failed"],
                counts["unparsed"],
            )
        benchmarks = {}
        for name, b in self._figures.get("benchmarks", {}).items():
            by_item = hits.get(name, {})
            benchmarks[name] = {
                **b,
                "items_hit": len(by_item),
                "records_removed": sum(by_item.values()),
                "by_item": dict(sorted(by_item.items(), key=lambda kv: (-kv[1], kv[0]))),
            }
        out["benchmarks"] = benchmarks
        return {**merged, "decontam": out}

    # ---- the map: one shard ------------------------------------------------------------------------------------

    def process(self, table: pa.Table, ctx: ShardContext) -> ShardResult:
        pointer = shards.read_json(ctx.work_dir / INDEX_FILE)
        index = ix.load(ix.fetch(pointer["index"], ctx.work_dir / INDEX_DIR))
        n = table.num_rows
        if n == 0:
            return ShardResult(table, REJECT_SCHEMA.empty_table())
        texts, final = _turns(table, "all")
        text, _, _ = text_grams(texts, index.settings.n, index.settings.min_content, index.short)
        code, whole, whole_rec = self._code_grams(table, texts, final, index.settings)
        m = _with_whole_programs(index.match(text, code, n), *index.match_whole(whole, whole_rec), index)
        best = np.maximum(m.score, m.part)
        is_text = index.kind_is_text[m.view]
        over = best >= np.where(is_text, self.config.threshold, self.config.code_threshold)
        removed = np.zeros(n, dtype=bool)
        removed[m.rec[over]] = True
        by_embedding = self._paraphrases(index, texts, removed)
        for r in by_embedding:
            removed[r] = True
        counters: dict = {}
        if not removed.any():
            return ShardResult(table, REJECT_SCHEMA.empty_table(), counters)

        order = np.lexsort((-m.matched[over], -best[over], m.rec[over]))  # best score, then most n-grams
        o_rec, o_view, o_score = m.rec[over][order], m.view[over][order], best[over][order]
        o_match, o_part, o_item = m.matched[over][order], m.part[over][order], m.score[over][order]
        judged = self._judge(index, texts, removed, by_embedding, o_rec, o_view, ctx, counters)

        rows = table.filter(pa.array(removed)).to_pylist()
        rec_ids = np.flatnonzero(removed)
        rejected = []
        starts = np.searchsorted(o_rec, rec_ids)
        ends = np.searchsorted(o_rec, rec_ids, side="right")
        for row, r, s, e in zip(rows, rec_ids, starts, ends, strict=True):
            if int(r) in by_embedding:
                view_id, cosine = by_embedding[int(r)]
                view = index.view_row(view_id)
                detail = {
                    **_found(view, "embedding", cosine),
                    "model": self.config.embedding.model,
                    "direction": "paraphrase",
                    "ngrams": [],
                    "spans": [],
                    "item_text": view["text"],
                    "item_spans": [],
                    "also": [],
                }
            else:
                view = index.view_row(int(o_view[s]))
                detail = {
                    **_found(view, "ngram", float(o_score[s])),
                    "n": index.settings.n if view["kind"] == bm.TEXT else index.settings.code_n,
                    "direction": "record_in_item" if o_part[s] > o_item[s] else "item_in_record",
                    "matched": int(o_match[s]),
                    "of": int(view["total"]),
                    **evidence(texts[int(r)].as_py(), view, index),
                    "also": _also(index, o_view[s + 1 : e], o_score[s + 1 : e], view["item"]),
                }
            if int(r) in judged:
                verdict = judged[int(r)]
                detail["judge"] = verdict
                if verdict["verdict"] is True:  # failed or unparsed: the first method's verdict stands alone
                    detail["method"] += "+judge"
            rejected.append(reject_row(row, "contaminated", detail))
            per = counters.setdefault("contaminated", {}).setdefault(view["benchmark"], {})
            per[view["item"]] = per.get(view["item"], 0) + 1
        kept = table.filter(pa.array(~removed))
        return ShardResult(kept, pa.Table.from_pylist(rejected, schema=REJECT_SCHEMA), counters)

    def _judge(
        self,
        index: ix.Index,
        texts: pa.Array,
        removed: np.ndarray,
        by_embedding: dict[int, tuple[int, float]],
        o_rec: np.ndarray,
        o_view: np.ndarray,
        ctx: ShardContext,
        counters: dict,
    ) -> dict[int, dict]:
        """record -> the judge's verdict on each candidate it is asked about (one request per candidate, one
        `complete_all` per shard); candidates judged not the same as their item are taken out of `removed`."""
        cfg = self.config.judge
        if not cfg.enabled:
            return {}
        from stages.decontam import judge

        candidates: list[tuple[int, int]] = []  # (record, view)
        for r in np.flatnonzero(removed).tolist():
            if r in by_embedding:
                candidates.append((r, by_embedding[r][0]))
            elif cfg.applies_to == "all":
                candidates.append((r, int(o_view[np.searchsorted(o_rec, r)])))  # its best view
        is_program = _code_views(index)
        questions = []
        for r, v in candidates:
            view = index.view_row(v)
            questions.append(judge.Question(view["text"], texts[r].as_py(), bool(is_program[v])))
        verdicts, counts = judge.ask(cfg, ctx.work_dir.parent.parent, questions)
        out = {}
        for (r, v), verdict in zip(candidates, verdicts, strict=True):
            if verdict["verdict"] is False:
                removed[r] = False
                item = index.view_row(v)["item"]
                counts["overruled_items"][item] = counts["overruled_items"].get(item, 0) + 1
            else:
                out[r] = verdict
        counters["judge"] = counts
        return out

    def _paraphrases(
        self, index: ix.Index, texts: pa.Array, removed: np.ndarray
    ) -> dict[int, tuple[int, float]]:
        """record -> (view, cosine) of the records not caught by n-grams whose embedding is close to an item's."""
        cfg = self.config.embedding
        if not cfg.enabled:
            return {}
        from stages.decontam import paraphrase

        todo = np.flatnonzero(~removed)
        if len(todo) == 0:
            return {}
        views, scores = paraphrase.nearest(index, cfg, texts.take(pa.array(todo)).to_pylist())
        hit = scores >= np.where(_code_views(index)[views], cfg.code_threshold, cfg.threshold)
        return {
            int(r): (int(v), float(c)) for r, v, c in zip(todo[hit], views[hit], scores[hit], strict=True)
        }

    def _code_grams(
        self, table: pa.Table, texts: pa.Array, final: pa.Array, settings: ix.Settings
    ) -> tuple[Grams, np.ndarray, np.ndarray]:
        """Code n-grams of every code block of the batch in the protected language: fenced blocks tagged with it
        or untagged, `kind: code` records, and final answers that look like its code without fences (CodeAlpaca
        and GPTeacher write code answers unfenced); `seq` is the record index. Also each block's whole-program
        hash and its record."""
        lang = settings.code_language
        is_code = _is_code(table, texts)
        unfenced = _unfenced(final, ~is_code, lang)
        token_lists, owner = [], []
        metas = table.column("meta")
        for r in np.flatnonzero(is_code | unfenced):
            text = texts[int(r)].as_py()
            if unfenced[r]:
                blocks = [("", final[int(r)].as_py())]
            else:
                blocks = [(b.info, b.body) for b in fenced_blocks(text)] or [
                    (_meta_language(metas[int(r)].as_py()), text)
                ]
            for info, body in blocks:
                tag, block_lang, _ = tag_language(info)
                if (tag and block_lang != lang) or (lang in _DEFINES and _DEFINES[lang] not in body):
                    continue
                tokens = ix.code_tokens_of(body, lang)
                if len(tokens) >= settings.min_code_tokens:
                    token_lists.append(tokens)
                    owner.append(int(r))
        g = code_grams(token_lists, settings.code_n)
        if len(g.seq):
            g.seq = np.asarray(owner, dtype=np.int64)[g.seq]
        return g, ix.whole_hashes(token_lists), np.asarray(owner, dtype=np.int64)


# Every protected program defines a function: code without this keyword cannot hold one (and is not parsed).
_DEFINES = {"python": "def "}
# Lines that start code, per language: a cheap test for unfenced code answers (no parse).
_CODE_LINE = {
    "python": r"(?m)^[ \t]*(?:def|class)[ \t]+\w+[ \t]*[(:]|^[ \t]*(?:import[ \t]+\w|from[ \t]+\S+[ \t]+import\b)",
}
_CODE_LINE_ANY = r"(?m)^[ \t]*(?:\w[\w<>\[\], *&]*[ \t]+)?\w+[ \t]*\([^()\n]*\)[ \t]*(?:\{|=>|->)"


_CODE_ITEMS: dict[str, frozenset[str]] = {}


def _with_whole_programs(m: ix.Matches, rec: np.ndarray, view: np.ndarray, index: ix.Index) -> ix.Matches:
    """The matches plus the records holding a whole protected program (renamed or not) at score 1.0: a short
    program's n-grams may be too common across the benchmark to be indexed, its whole token sequence is not."""
    if len(rec) == 0:
        return m
    total = np.maximum(index.total[view], 1)
    rec = np.concatenate([m.rec, rec])
    view = np.concatenate([m.view, view])
    matched = np.concatenate([m.matched, total])
    score = np.concatenate([m.score, np.ones(len(total))])
    part = np.concatenate([m.part, np.zeros(len(total))])
    key = rec * len(index.total) + view
    order = np.lexsort((-score, key))  # per (record, view): the best score first
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    keep = order[first]
    return ix.Matches(rec[keep], view[keep], matched[keep], score[keep], part[keep])


def _code_views(index: ix.Index) -> np.ndarray:
    """Per view: its item is a program (has a code view: HumanEval, MBPP). Such items get the embedding's
    `code_threshold` and the judge's instruction for programs."""
    key = str(index.folder)
    if key not in _CODE_VIEWS:
        views = index.views.select(["item", "kind"])
        is_code = pc.equal(views.column("kind"), bm.CODE)
        programs = pa.array(set(views.column("item").filter(is_code).to_pylist()), pa.string())
        _CODE_VIEWS[key] = pc.is_in(views.column("item"), value_set=programs).to_numpy(zero_copy_only=False)
    return _CODE_VIEWS[key]


_CODE_VIEWS: dict[str, np.ndarray] = {}


def _unfenced(final: pa.Array, candidates: np.ndarray, language: str) -> np.ndarray:
    """Records whose final answer is unfenced code in `language` (by its opening lines)."""
    pattern = _CODE_LINE.get(language, _CODE_LINE_ANY)
    hit = pc.fill_null(pc.match_substring_regex(final, pattern), False).to_numpy(zero_copy_only=False)
    return hit & candidates


def _found(view: dict, method: str, score: float) -> dict:
    return {
        "benchmark": view["benchmark"],
        "item": view["item"],
        "view": view["view"],
        "method": method,
        "kind": view["kind"],
        "score": round(score, 4),
    }


def _also(index: ix.Index, views: np.ndarray, scores: np.ndarray, item: str) -> list[dict]:
    out, seen = [], {item}
    for v, s in zip(views.tolist(), scores.tolist(), strict=True):
        row = index.view_row(v)
        if row["item"] in seen:
            continue
        seen.add(row["item"])
        out.append(
            {"benchmark": row["benchmark"], "item": row["item"], "view": row["view"], "score": round(s, 4)}
        )
        if len(out) >= _MAX_ALSO:
            break
    return out


def _spans(text: str, grams: Grams, bstart: np.ndarray, bend: np.ndarray, hit: np.ndarray) -> list[list[int]]:
    """Merged character spans of the words of the windows `hit` (a mask over `grams`)."""
    if not hit.any():
        return []
    first = grams.start[hit]
    last = first + grams.n[hit] - 1
    chars = char_offsets(text.lower())
    spans: list[list[int]] = []
    for a, b in zip(bstart[first].tolist(), bend[last].tolist(), strict=True):
        a, b = int(chars[min(a, len(chars) - 1)]), int(chars[min(b, len(chars) - 1)])
        if spans and a <= spans[-1][1] + 1:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    return spans


def evidence(record_text: str, view: dict, index: ix.Index) -> dict:
    """What matched, for a reviewer: passages and character spans in the record and in the protected text."""
    out: dict = {"ngrams": [], "spans": [], "item_text": view["text"], "item_spans": []}
    if view["kind"] != bm.TEXT:
        return out
    settings = index.settings
    rg, rs, re_ = text_grams(pa.array([record_text]), settings.n, settings.min_content, index.short)
    vg, vs, ve = text_grams(pa.array([view["text"]]), settings.n, settings.min_content)
    r_hit = np.isin(rg.hashes, vg.hashes)
    v_hit = np.isin(vg.hashes, rg.hashes)
    out["spans"] = _spans(record_text, rg, rs, re_, r_hit)
    out["item_spans"] = _spans(view["text"], vg, vs, ve, v_hit)
    out["ngrams"] = [record_text[a:b][:_MAX_PASSAGE] for a, b in out["spans"][:_MAX_NGRAMS_SHOWN]]
    return out
