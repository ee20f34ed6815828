"""How the clean stage's code parse check does on real code: false rejects, caught breakage, detection, speed.

Prints ONE JSON line. For each HumanEval-X language (python, cpp, java, js, go, rust) the reference program
(prompt + canonical solution; Rust's prompt is only a comment, so its declaration goes in between) is wrapped in
an SFT-like record, an assistant answer with the program in a fenced block, and checked:
- `valid`: tagged (alias tags alternate: py, c++, js, golang, rs) -> `false_rejects` must be 0;
- `broken`: variants with a closing brace, a closing parenthesis or a colon (Python) deleted, or a quote
  inserted -> `flagged` (tree-sitter finds an error in the variant however the checker tries it, bare or as a
  fragment, and none in the original) and `caught` (the record is rejected); every flagged variant should be
  caught (`missed` lists the ones that are not: placeholders and not-code blocks are counted, never rejected);
- `untagged`: the same valid programs without a tag -> detection accuracy, what they were detected as, and
  `false_rejects` (an untagged block must never reject);
- `checks_per_s`: records checked per second (valid, tagged; parsers already built).
CodeXGLUE's Java methods (classless fragments) are checked tagged and untagged the same way, and its C#
translations show what detection makes of a language it does not support (tagged `csharp`: unchecked).
`llm_answers`: GPT-written translations of HumanEval (lm-sys/llm-decontaminator, beside the code corpus under
benchmarks/) as they are, prose and fenced blocks in C, Go, Java, JavaScript, Rust and Python, each as an
assistant answer: what is rejected (all genuinely broken when last read: Python-style docstrings in Rust, a
fence inside a block comment), with examples, and the counters.

    .venv/bin/python tests/benchmarks/code_eval.py [--data ../shared/data/code] [--codexglue 1000]

`evaluate(data_dir)` is the reusable part.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared_data import SHARED_DATA, read_jsonl  # noqa: E402

from factory.stage import merge_counters  # noqa: E402
from stages.clean.code import _ATTEMPTS, CodeChecker, CodeParseConfig, _parse, _parser, _prepare  # noqa: E402
from stages.clean.rules import RecordView  # noqa: E402

# HumanEval-X file suffix -> (our language, the tags used in turn)
HUMANEVAL_X = {
    "python": ("python", ("python", "py")),
    "cpp": ("cpp", ("cpp", "c++")),
    "java": ("java", ("java",)),
    "js": ("javascript", ("javascript", "js")),
    "go": ("go", ("go", "golang")),
    "rust": ("rust", ("rust", "rs")),
}
PROMPT = "Complete the following function so that it passes its examples."


def record(code: str, tag: str) -> RecordView:
    answer = (
        f"Here is a solution:\n\n```{tag}\n{code}\n```\n\nIt walks the input once and returns the result."
    )
    messages = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": answer}]
    return RecordView(messages, "chat", {})


def program(row: dict) -> str:
    prompt, solution = row["prompt"], row["canonical_solution"]
    signature = row.get("declaration", "").rstrip().rsplit("\n", 1)[-1].strip()
    if signature and "".join(signature.split()) not in "".join(prompt.split()):  # Rust: prompt = doc comment
        prompt = prompt + row["declaration"]
    return prompt + solution


def broken_variants(code: str, lang: str, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, code) pairs: one deletion or insertion each, at a random place of the right kind."""
    out = []

    def delete_one(ch: str, kind: str, last: bool = False) -> None:
        positions = [i for i, c in enumerate(code) if c == ch]
        if positions:
            i = positions[-1] if last else rng.choice(positions)
            out.append((kind, code[:i] + code[i + 1 :]))

    if lang != "python":
        delete_one("}", "delete_last_brace", last=True)
        delete_one("}", "delete_brace")
    delete_one(")", "delete_paren")
    if lang == "python":
        lines = code.split("\n")
        heads = [i for i, line in enumerate(lines) if line.rstrip().endswith(":") and line.strip()[:1] != "#"]
        if heads:
            i = rng.choice(heads)
            lines[i] = lines[i].rstrip()[:-1]
            out.append(("drop_colon", "\n".join(lines)))
    lines = code.split("\n")
    stmt = [i for i, line in enumerate(lines) if "=" in line or "return" in line]
    if stmt:
        i = rng.choice(stmt)
        j = lines[i].find("=") if "=" in lines[i] else lines[i].find("return") + 6
        lines[i] = lines[i][: j + 1] + ' "' + lines[i][j + 1 :]
        out.append(("unbalanced_quote", "\n".join(lines)))
    return out


def flagged(code: str, lang: str) -> bool:
    """Whether tree-sitter finds an error in the program in every way the checker tries it (the language's
    grammar bare and inside its fragment wrappers, after the same preparation)."""
    return not _parse(_prepare(code, lang, lang), _ATTEMPTS[lang])[0]


def _snip(code: str, detail: dict | None = None) -> dict:
    return {"detail": detail, "code": code[:300]}


def evaluate_programs(
    checker: CodeChecker, programs: list[str], lang: str, tags: tuple[str, ...], rng: random.Random
) -> dict:
    res: dict = {"programs": len(programs)}
    # valid, tagged
    views = [record(code, tags[i % len(tags)]) for i, code in enumerate(programs)]
    t0 = time.perf_counter()
    verdicts = [checker.check(v)[0] for v in views]
    dt = time.perf_counter() - t0
    false = [_snip(code, v[1]) for code, v in zip(programs, verdicts, strict=True) if v is not None]
    res["valid"] = {"records": len(views), "false_rejects": len(false), "examples": false[:3]}
    res["checks_per_s"] = round(len(views) / dt) if dt else None
    # broken
    kinds: dict[str, Counter] = {}
    missed = []
    for code in programs:
        clean = not flagged(code, lang)  # a grammar gap in the original is not the variant's breakage
        for kind, bad in broken_variants(code, lang, rng):
            c = kinds.setdefault(kind, Counter())
            c["variants"] += 1
            if not (clean and flagged(bad, lang)):
                continue
            c["flagged"] += 1
            verdict, counts = checker.check(record(bad, tags[0]))
            if verdict is not None:
                c["caught"] += 1
            else:
                missed.append({"kind": kind, "unchecked": counts.get("unchecked"), "code": bad[:300]})
    total = sum(kinds.values(), Counter())
    res["broken"] = {
        "variants": total["variants"],
        "flagged": total["flagged"],
        "caught": total["caught"],
        "catch_rate": round(total["caught"] / total["flagged"], 4) if total["flagged"] else None,
        "by_kind": {k: dict(v) for k, v in kinds.items()},
        "missed": missed[:3],
    }
    res["untagged"] = untagged(checker, programs, lang)
    return res


def untagged(checker: CodeChecker, programs: list[str], lang: str | None) -> dict:
    detected: Counter = Counter()
    rejects = 0
    for code in programs:
        verdict, counts = checker.check(record(code, ""))
        rejects += verdict is not None
        got = next(iter(counts.get("detected", {})), None)
        detected[got or "unchecked"] += 1
    out = {"false_rejects": rejects, "detected_as": dict(detected.most_common())}
    if lang is not None:
        out["accuracy"] = round(detected[lang] / len(programs), 4) if programs else None
    return out


def llm_answers(checker: CodeChecker, rephrase_dir: Path) -> dict | None:
    """Check LLM-written answers (text with fenced code) as they are."""
    if not rephrase_dir.is_dir():
        return None
    out: dict = {}
    for name in ("humaneval_python", "humaneval_js", "humaneval_c", "humaneval_multi"):
        path = rephrase_dir / f"{name}.jsonl"
        with path.open(encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f if line.strip()]
        counts: dict = {}
        rejects = []
        for text in texts:
            messages = [
                {"role": "user", "content": "Rewrite this program."},
                {"role": "assistant", "content": text},
            ]
            verdict, c = checker.check(RecordView(messages, "chat", {}))
            merge_counters(counts, c)
            if verdict is not None:
                rejects.append(verdict[1])
        out[name] = {
            "records": len(texts),
            "rejected": len(rejects),
            "examples": rejects[:3],
            "counts": counts,
        }
    return out


def evaluate(data_dir: Path, codexglue: int = 1000, seed: int = 0) -> dict:
    """Run every measurement over the code corpus in `data_dir` (shared/data/code)."""
    checker = CodeChecker(CodeParseConfig())
    for grammar in ("python", "javascript", "typescript", "tsx", "java", "go", "rust", "c", "cpp", "bash"):
        _parser(grammar)  # speed figures leave out the one-time grammar load
    rng = random.Random(seed)
    out: dict = {"humaneval_x": {}}
    for suffix, (lang, tags) in HUMANEVAL_X.items():
        rows = read_jsonl(data_dir / "humaneval-x" / f"humaneval_{suffix}.jsonl.gz")
        out["humaneval_x"][lang] = evaluate_programs(checker, [program(r) for r in rows], lang, tags, rng)
    pairs = read_jsonl(data_dir / "codexglue_java_cs" / "test.jsonl.gz")[:codexglue]
    out["codexglue_java"] = evaluate_programs(checker, [p["java"] for p in pairs], "java", ("java",), rng)
    cs_views = [record(p["cs"], "csharp") for p in pairs]
    cs_rejects = sum(checker.check(v)[0] is not None for v in cs_views)
    out["codexglue_cs"] = {
        "tagged_csharp_rejects": cs_rejects,
        "untagged": untagged(checker, [p["cs"] for p in pairs], None),
    }
    out["llm_answers"] = llm_answers(checker, data_dir.parent / "benchmarks" / "rephrased_llm_decontaminator")
    sets = [*out["humaneval_x"].values(), out["codexglue_java"]]
    flagged_n = sum(s["broken"]["flagged"] for s in sets)
    caught_n = sum(s["broken"]["caught"] for s in sets)
    n_untagged = sum(s["programs"] for s in out["humaneval_x"].values())
    correct = sum(s["untagged"]["detected_as"].get(lang, 0) for lang, s in out["humaneval_x"].items())
    out["totals"] = {
        "valid_records": sum(s["valid"]["records"] for s in sets),
        "false_rejects": sum(s["valid"]["false_rejects"] + s["untagged"]["false_rejects"] for s in sets),
        "broken_flagged": flagged_n,
        "broken_caught": caught_n,
        "catch_rate": round(caught_n / flagged_n, 4) if flagged_n else None,
        "untagged_detection_accuracy_humaneval_x": round(correct / n_untagged, 4) if n_untagged else None,
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "code")
    ap.add_argument("--codexglue", type=int, default=1000, help="CodeXGLUE java/cs test pairs to use")
    args = ap.parse_args()
    print(json.dumps(evaluate(args.data, args.codexglue)))


if __name__ == "__main__":
    main()
