"""The `synth` stage: generates canonical records with an LLM (Self-Instruct, Evol-Instruct, OSS-Instruct).

A generating stage: its `prepare` runs the method's loop (`loops.py`) against the backend (`factory/llm`), every
answer cached on disk before it is used, and writes what it produced, records and rejects together, to
`_work/generated/part-NNNNN.parquet`; the runner then maps those shards through `process`, which splits them into
`part-NNNNN.parquet` and `rejects/`. A crashed or re-run synth replays the same loop: the requests are the same
(every random choice comes from the config's seed and the cached answers), so each is answered from the cache and
nothing is paid twice. Counts: `in` is every candidate the loop produced (a parsed instruction, an evolution, a
snippet's problem), `out` the records, `rejected` the candidates that failed, so `in == out + rejected`.

Input: the run's ingested records, as seeds for evol_instruct (their first user turn) and oss_instruct (the code
in them); self_instruct reads its seed tasks from `seeds`. Output columns: the canonical record, `origin`
`synth:<method>:<request key>`, `meta.synth` = {method, round, parent, model, template, request}.
Reject reasons: `request_failed` (detail: the error kind and body), `no_parse` (the raw reply), and the methods'
filters, each with the raw reply: Self-Instruct `too_short`, `too_long`, `blacklisted_keyword`,
`write_a_program`, `starts_with_punctuation`, `non_english`, `too_similar` (the most similar pooled instruction
and its ROUGE-L), `no_instances`; Evol-Instruct `no_information_gain`, `response_refusal`,
`response_too_short`, `copied_template`.
Config: `stages.synth` (`config.py`). Manifest figures (`synth`): method, model, requests sent, cache hits,
failures by kind, prompt and completion tokens, wall time, seeds, rounds.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from factory import shards, store
from factory.errors import UserError
from factory.llm.config import RUNTIME_FIELDS
from factory.records import RECORD_SCHEMA, REJECT_SCHEMA, dumps_meta
from factory.stage import GENERATED, PrepareContext, ShardContext, ShardResult
from stages.synth.config import SynthConfig

log = logging.getLogger("factory")

SHARD_ROWS = 5000


class Output:
    """What a loop produces, in order: records and rejects in one table per shard (reason null = a record)."""

    def __init__(self, folder: Path, method: str, model: str, source: str) -> None:
        self.folder = folder
        self.method, self.model, self.source = method, model, source
        self.template = ""  # a digest of the versions of the method's templates (lineage)
        self.rows: list[dict] = []
        self.index = 0
        self.records = 0
        self.rejected: dict[str, int] = {}

    def _row(self, messages: list[tuple[str, str]], key: str, lineage: dict[str, Any], extra: dict) -> dict:
        """`key`: the request's cache key, plus `:i` when one answer gives several candidates."""
        synth = {"method": self.method, "model": self.model, "template": self.template, **lineage}
        meta = {"kind": "chat", **extra, "synth": synth}
        return {
            "id": hashlib.blake2b(key.encode(), digest_size=16).hexdigest(),
            "source": self.source,
            "messages": [{"role": r, "content": c} for r, c in messages],
            "meta": dumps_meta(meta),
            "origin": f"synth:{self.method}:{key[:16]}{key[64:]}",
        }

    def record(self, messages: list[tuple[str, str]], key: str, lineage: dict, **extra: Any) -> None:
        self.rows.append({**self._row(messages, key, lineage, extra), "reason": None, "detail": None})
        self.records += 1
        self._flush_if_full()

    def reject(
        self, reason: str, messages: list[tuple[str, str]], key: str, lineage: dict, detail: dict
    ) -> None:
        row = self._row(messages, key, lineage, {})
        self.rows.append({**row, "reason": reason, "detail": orjson.dumps(detail, default=str).decode()})
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self._flush_if_full()

    def _flush_if_full(self) -> None:
        if len(self.rows) >= SHARD_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows or self.index == 0:
            table = pa.Table.from_pylist(self.rows, schema=REJECT_SCHEMA)
            shards.write_table(table, self.folder / shards.shard_name(self.index))
            self.index += 1
            self.rows = []


class SynthStage:
    name: ClassVar[str] = "synth"
    Config: ClassVar[type[SynthConfig]] = SynthConfig
    version: ClassVar[int] = 1
    generates: ClassVar[bool] = True  # the runner maps _work/generated/, not the upstream shards
    # how requests are sent, not what comes back: changing these does not redo a finished synth
    hash_exclude: ClassVar[dict] = {"cache": True, "backend": set(RUNTIME_FIELDS)}

    def __init__(self, config: SynthConfig) -> None:
        self.config = config
        self._figures: dict = {}

    @staticmethod
    def check(cfg: SynthConfig) -> None:
        """What a run of synth needs beyond a valid section (checked before the run starts)."""
        if cfg.backend is None:
            raise UserError(
                "stages.synth.backend: required to run synth (kind, model, and base_url for openai)"
            )
        if cfg.templates:
            from stages.synth import templates

            templates.check_dir(cfg.templates)

    def prepare(self, ctx: PrepareContext) -> dict:
        from factory.llm.client import make_client
        from stages.synth import loops, templates

        cfg = self.config
        self.check(cfg)
        run_dir = ctx.work_dir.parent.parent
        cache = Path(cfg.cache) if cfg.cache else store.local_dir(run_dir, "_cache", "llm.sqlite")
        cache.parent.mkdir(parents=True, exist_ok=True)
        folder = ctx.work_dir / GENERATED
        for old in shards.list_shards(folder):
            old.unlink()
        source = cfg.source or ("code" if cfg.method == "oss_instruct" else "general")
        out = Output(folder, cfg.method, cfg.backend.model, source)
        versions = templates.versions(cfg.method, cfg.templates)
        out.template = hashlib.blake2b(
            orjson.dumps(versions, option=orjson.OPT_SORT_KEYS), digest_size=4
        ).hexdigest()
        client = make_client(cfg.backend, cache)
        try:
            figures = loops.LOOPS[cfg.method](cfg, client, out, [s.path for s in ctx.inputs], ctx.progress)
        finally:
            client.close()
        out.flush()
        stats = client.stats()
        self._figures = {
            "method": cfg.method,
            "model": cfg.backend.model,
            "models": [cfg.backend.model],
            "backend": cfg.backend.kind,
            "cache": str(cache),
            "templates": versions,
            **figures,
            **stats,
        }
        failures = ", ".join(f"{k} {v}" for k, v in stats.get("failures", {}).items()) or "none"
        log.info(
            "synth: %d records; %d requests sent, %d answered from the cache; failures: %s; tokens %s in, %s out",
            out.records,
            stats.get("requests", 0),
            stats.get("cache_hits", 0),
            failures,
            f"{stats.get('prompt_tokens', 0):,}",
            f"{stats.get('completion_tokens', 0):,}",
        )
        if out.records < cfg.target:
            log.warning(
                "synth: %d of the %d records asked for (see the rejects and `rounds`)",
                out.records,
                cfg.target,
            )
        return {}

    def finish(self, merged: dict) -> dict:
        return {**merged, "synth": self._figures}

    def process(self, table: pa.Table, ctx: ShardContext) -> ShardResult:
        is_record = pc.is_null(table.column("reason")).to_numpy(zero_copy_only=False)
        kept = table.filter(pa.array(is_record)).select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA)
        rejected = table.filter(pa.array(~is_record))
        return ShardResult(kept, rejected)
