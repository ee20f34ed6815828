"""The generation loops of `synth`: each method's rounds of requests, with the prompts and parsers of its module.

A loop only decides what to ask next and where each answer goes (`Output.record` or `Output.reject`); prompts and
parsing are in self_instruct.py / evol_instruct.py / oss_instruct.py, the requests in factory/llm. Every random
choice (which instructions a prompt shows, which operation, which snippet) comes from one
`random.Random(cfg.seed)`, a request depends on its prompt only, and answers come back in request order, so
replaying a loop asks the same requests in the same order: after a crash they are all answered by the cache.

Each loop stops at exactly `target` records; answers that would overshoot it are counted as `surplus`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from factory import shards
from factory.errors import UserError
from factory.llm.client import ChatRequest, ChatResult, Client
from factory.shards import jsonl_objects
from stages.synth import evol_instruct, oss_instruct, self_instruct
from stages.synth.config import SynthConfig
from stages.synth.rouge import RougePool
from stages.synth.templates import Messages

DEFAULT_SEEDS = Path(__file__).resolve().parents[2] / "data" / "seeds" / "self_instruct_seed_tasks.jsonl"


def _request(messages: Messages) -> ChatRequest:
    """A request with the backend's sampling parameters (its seed too): a request depends on its prompt only, so
    a run with another target or more rounds asks the same requests for the same prompts (cache hits)."""
    return ChatRequest(messages=tuple(messages))


def _failed(out, res: ChatResult, req: ChatRequest, lineage: dict) -> bool:
    """Reject a failed request; True when it failed."""
    if res.error or not res.texts:
        detail = {"error": res.error or "empty", "detail": res.detail}
        out.reject("request_failed", list(req.messages), res.key, lineage, detail)
        return True
    return False


def _cut(res: ChatResult) -> bool:
    """The reply stopped at max_tokens (its last item may be cut off)."""
    return bool(res.finish_reasons) and res.finish_reasons[0] == "length"


def read_seed_tasks(path: str | Path) -> list[dict]:
    """Self-Instruct seed tasks: JSONL of {instruction, instances: [{input, output}], is_classification}."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"stages.synth.seeds: {path}: no such file")
    tasks = []
    for n, task in jsonl_objects(path):
        if not isinstance(task.get("instruction"), str):
            raise UserError(f"{path}:{n}: a seed task needs a string `instruction`")
        tasks.append(task)
    if not tasks:
        raise UserError(f"{path}: no seed tasks")
    return tasks


def _upstream_records(paths: list[Path]) -> Iterator[dict]:
    for path in paths:
        for batch in shards.parquet_file(path).iter_batches(
            columns=["id", "messages", "meta"], batch_size=2048
        ):
            yield from batch.to_pylist()


# ---- Self-Instruct --------------------------------------------------------------------------------------------


def run_self_instruct(cfg: SynthConfig, client: Client, out, inputs: list[Path], progress) -> dict:
    si = cfg.self_instruct
    rng = random.Random(cfg.seed)
    tasks = read_seed_tasks(cfg.seeds or DEFAULT_SEEDS)
    human = [t["instruction"].strip() for t in tasks]
    machine: list[str] = []
    pool = RougePool(human)
    rounds = surplus = 0
    tpl_dir = cfg.templates  # the methods take the override folder as given (None: the built-in ones)
    with progress("synth: self_instruct", cfg.target) as advance:
        while out.records < cfg.target and rounds < si.max_rounds:
            rounds += 1
            prompts = [
                self_instruct.sample_prompt_instructions(
                    human, machine, rng, si.human_per_prompt, si.machine_per_prompt
                )
                for _ in range(si.requests_per_round)
            ]
            reqs = [_request(self_instruct.encode_prompt(p, tpl_dir)) for p in prompts]
            new: list[tuple[str, str]] = []  # (instruction, key)
            need = cfg.target - out.records
            for req, shown, res in zip(reqs, prompts, client.complete_all(reqs), strict=True):
                lineage = {"round": rounds, "step": "instructions", "request": res.key}
                if _failed(out, res, req, lineage):
                    continue
                found = self_instruct.parse_instructions(res.texts[0], len(shown) + 1, _cut(res))
                if not found:
                    out.reject("no_parse", list(req.messages), res.key, lineage, {"raw": res.texts[0]})
                    continue
                for i, inst in enumerate(found):
                    if len(new) >= need:
                        surplus += 1
                        continue
                    verdict = self_instruct.filter_instruction(inst, pool, si.rouge_threshold)
                    if verdict is not None:
                        reason, detail = verdict
                        out.reject(
                            reason,
                            [("user", inst)],
                            f"{res.key}:{i}",
                            lineage,
                            {**detail, "raw": res.texts[0]},
                        )
                        continue
                    pool.add(inst)
                    machine.append(inst)
                    new.append((inst, f"{res.key}:{i}"))
            before = out.records
            _self_instruct_instances(client, out, new, rounds, tpl_dir)
            advance(out.records - before)
    return {"rounds": rounds, "seeds": len(human), "pool": len(human) + len(machine), "surplus": surplus}


def _self_instruct_instances(client, out, new, rounds, tpl_dir) -> None:
    """Classification check, then instances (output-first for classification tasks), then records."""
    cls_reqs = [_request(self_instruct.is_classification_prompt(inst, tpl_dir)) for inst, _ in new]
    is_cls = []
    for res in client.complete_all(cls_reqs):
        is_cls.append(
            bool(not res.error and res.texts and self_instruct.parse_is_classification(res.texts[0]))
        )
    inst_reqs = [
        _request(self_instruct.instances_prompt(inst, c, tpl_dir))
        for (inst, _), c in zip(new, is_cls, strict=True)
    ]
    for (inst, parent), c, req, res in zip(
        new, is_cls, inst_reqs, client.complete_all(inst_reqs), strict=True
    ):
        lineage = {
            "round": rounds,
            "step": "instances",
            "parent": parent,
            "request": res.key,
            "classification": c,
        }
        if _failed(out, res, req, lineage):
            continue
        instances = self_instruct.parse_instances(res.texts[0], c, truncated=_cut(res))
        if not instances:
            out.reject("no_instances", [("user", inst)], res.key, lineage, {"raw": res.texts[0]})
            continue
        first_input, first_output = instances[0]
        user = inst if not first_input.strip() else f"{inst}\n\n{first_input}"
        out.record([("user", user), ("assistant", first_output)], res.key, lineage, instances=len(instances))


# ---- Evol-Instruct --------------------------------------------------------------------------------------------


def run_evol_instruct(cfg: SynthConfig, client: Client, out, inputs: list[Path], progress) -> dict:
    ev = cfg.evol_instruct
    rng = random.Random(cfg.seed)
    tpl_dir = cfg.templates  # the methods take the override folder as given (None: the built-in ones)
    population: list[tuple[str, str]] = []  # (instruction, parent id)
    for rec in _upstream_records(inputs):
        user = next((m["content"] for m in rec["messages"] if m["role"] == "user"), "")
        if user.strip():
            population.append((user, rec["id"]))
        if len(population) >= cfg.target:
            break
    if not population:
        raise UserError("synth evol_instruct: the run's inputs hold no user turn to evolve")
    seeds, rounds, surplus = len(population), 0, 0
    with progress("synth: evol_instruct", cfg.target) as advance:
        while rounds < ev.rounds and out.records < cfg.target:
            rounds += 1
            before = out.records
            population, surplus_round = _evolve_round(cfg, client, out, population, rounds, rng, tpl_dir)
            surplus += surplus_round
            advance(out.records - before)
    return {"rounds": rounds, "seeds": seeds, "surplus": surplus}


def _evolve_round(cfg, client, out, population, rounds, rng, tpl_dir):
    ev = cfg.evol_instruct
    ops = [
        "breadth" if rng.random() < ev.breadth_share else evol_instruct.choose_operation(rng, depth_only=True)
        for _ in population
    ]
    reqs = [
        _request(evol_instruct.evol_prompt(op, inst, tpl_dir))
        for op, (inst, _) in zip(ops, population, strict=True)
    ]
    evolved: list[tuple[int, str, str]] = []  # (population index, evolved instruction, key)
    for i, (req, res) in enumerate(zip(reqs, client.complete_all(reqs), strict=True)):
        lineage = {"round": rounds, "operation": ops[i], "parent": population[i][1], "request": res.key}
        if _failed(out, res, req, lineage):
            continue
        text = evol_instruct.parse_evolved(res.texts[0])
        if not text:
            out.reject("no_parse", list(req.messages), res.key, lineage, {"raw": res.texts[0]})
            continue
        evolved.append((i, text, res.key))
    if ev.equality_check and evolved:
        eq_reqs = [
            _request(evol_instruct.equality_prompt(population[i][0], text, tpl_dir)) for i, text, _ in evolved
        ]
        kept = []
        for (i, text, key), res in zip(evolved, client.complete_all(eq_reqs), strict=True):
            if not res.error and res.texts and evol_instruct.parse_equality(res.texts[0]) is True:
                lineage = {"round": rounds, "operation": ops[i], "parent": population[i][1], "request": key}
                out.reject(
                    "no_information_gain",
                    [("user", text)],
                    key,
                    lineage,
                    {"raw": res.texts[0], "before": population[i][0]},
                )
                continue
            kept.append((i, text, key))
        evolved = kept
    ans_reqs = [_request(evol_instruct.answer_prompt(text, tpl_dir)) for _, text, _ in evolved]
    survivors = {}
    surplus = 0
    for (i, text, key), req, res in zip(evolved, ans_reqs, client.complete_all(ans_reqs), strict=True):
        lineage = {
            "round": rounds,
            "operation": ops[i],
            "parent": population[i][1],
            "request": res.key,
            "evolved_by": key,
        }
        if _failed(out, res, req, lineage):
            continue
        verdict = evol_instruct.failed_evolution(text, res.texts[0])
        if verdict is not None:
            reason, detail = verdict
            out.reject(reason, [("user", text), ("assistant", res.texts[0])], res.key, lineage, detail)
            continue
        if out.records >= cfg.target:
            surplus += 1
            continue
        out.record([("user", text), ("assistant", res.texts[0])], res.key, lineage)
        survivors[i] = (text, res.key)
    # a failed evolution leaves its parent in the population for the next round (WizardLM keeps the original)
    return [survivors.get(i, population[i]) for i in range(len(population))], surplus


# ---- OSS-Instruct ---------------------------------------------------------------------------------------------

FENCE = re.compile(r"```([\w+#.-]*)[^\n]*\n(.*?)```", re.S)


def code_documents(inputs: list[Path]) -> Iterator[tuple[str, str, str]]:
    """(code, language hint, record id) from the run's inputs: fenced blocks of any turn, or the whole text of a
    `code` or `text` record."""
    for rec in _upstream_records(inputs):
        meta = orjson.loads(rec["meta"]) if rec["meta"] else {}
        found = False
        for m in rec["messages"]:
            for tag, body in FENCE.findall(m["content"]):
                if body.strip():
                    found = True
                    yield body, tag.lower(), rec["id"]
        if not found and meta.get("kind") in ("code", "text"):
            text = "\n".join(m["content"] for m in rec["messages"])
            yield text, str(meta.get("language", "")), rec["id"]


def run_oss_instruct(cfg: SynthConfig, client: Client, out, inputs: list[Path], progress) -> dict:
    oc = cfg.oss_instruct
    rng = random.Random(cfg.seed)
    tpl_dir = cfg.templates  # the methods take the override folder as given (None: the built-in ones)
    docs = []
    for code, hint, rid in code_documents(inputs):
        docs.append((code, hint, rid))
        if len(docs) >= 4 * cfg.target:
            break
    if not docs:
        raise UserError(
            "synth oss_instruct: the run's inputs hold no code (fenced blocks, or code/text records)"
        )
    rounds = surplus = 0
    batch = max(8, 2 * (cfg.backend.max_in_flight if cfg.backend else 8))
    with progress("synth: oss_instruct", cfg.target) as advance:
        while out.records < cfg.target and rounds < 100:
            rounds += 1
            picks = []
            for _ in range(min(batch, 2 * (cfg.target - out.records))):
                code, hint, rid = docs[rng.randrange(len(docs))]
                snippets = oss_instruct.extract_snippets(code, rng, oc.min_lines, oc.max_lines)
                if snippets:
                    snippet = snippets[0]
                    picks.append((snippet, oss_instruct.language_of(snippet, hint), rid))
            if not picks:
                break
            reqs = [_request(oss_instruct.oss_prompt(s, lang, tpl_dir)) for s, lang, _ in picks]
            before = out.records
            for (snippet, lang, rid), req, res in zip(picks, reqs, client.complete_all(reqs), strict=True):
                lineage = {"round": rounds, "parent": rid, "request": res.key, "language": lang}
                if _failed(out, res, req, lineage):
                    continue
                parsed = oss_instruct.parse_problem_solution(res.texts[0])
                if parsed is None:
                    out.reject(
                        "no_parse",
                        list(req.messages),
                        res.key,
                        lineage,
                        {"raw": res.texts[0], "snippet": snippet},
                    )
                    continue
                if out.records >= cfg.target:
                    surplus += 1
                    continue
                problem, solution = parsed
                out.record(
                    [("user", problem), ("assistant", solution)],
                    res.key,
                    lineage,
                    language=lang,
                    seed_snippet=snippet,
                )
            advance(out.records - before)
    return {"rounds": rounds, "seeds": len(docs), "surplus": surplus}


LOOPS: dict[str, Callable] = {
    "self_instruct": run_self_instruct,
    "evol_instruct": run_evol_instruct,
    "oss_instruct": run_oss_instruct,
}
