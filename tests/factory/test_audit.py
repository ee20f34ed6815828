"""`factory audit`: the summary, benchmark and item views of a decontam stage, as data, JSON, CSV and tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory import audit
from factory.audit import excerpt, load_run, query_item_records, query_items, summary_view
from factory.records import REJECT_SCHEMA
from tests.conftest import run_cli

Q17 = "Janet has 3 apples and buys 5 more apples at the market every single morning"
Q17_PART = "buys 5 more apples at the market every single morning"
HE0 = "def has_close_elements(numbers, threshold): check if any two numbers are closer than threshold"


def _reject(
    rid: str, messages: list[tuple[str, str]], detail: dict | None, reason: str = "contaminated"
) -> dict:
    return {
        "id": rid,
        "source": "math",
        "messages": [{"role": r, "content": c} for r, c in messages],
        "meta": "{}",
        "origin": f"data/train.jsonl:{rid[-1]}",
        "reason": reason,
        "detail": json.dumps(detail) if detail else "not JSON: other stages' evidence is not parsed",
    }


def _hit(messages, benchmark, item, item_text, matched_text, score, view="question") -> dict:
    """The detail the decontam stage writes, spans computed from where `matched_text` sits in both texts."""
    text = "\n".join(c for _, c in messages)
    start, istart = text.index(matched_text), item_text.index(matched_text)
    return {
        "benchmark": benchmark,
        "item": item,
        "view": view,
        "method": "ngram",
        "n": 13,
        "score": score,
        "matched": 9,
        "of": 10,
        "ngrams": [matched_text.lower()],
        "spans": [[start, start + len(matched_text)]],
        "item_text": item_text,
        "item_spans": [[istart, istart + len(matched_text)]],
        "also": [],
    }


def _rejects() -> list[dict]:
    m1 = [("user", "Quick one. " + Q17 + ". How many apples?"), ("assistant", "Eight apples.")]
    m2 = [("user", "Solve:"), ("assistant", "Well, " + Q17_PART + ", so the answer is 8.")]
    m3 = [("user", "Write it.\n" + HE0), ("assistant", "def has_close_elements(...): ...")]
    hit2 = _hit(m2, "gsm8k", "gsm8k/test/17", Q17, Q17_PART, 0.7)
    hit2["also"] = [{"benchmark": "gsm8k", "item": "gsm8k/test/18", "score": 0.55}]
    return [
        _reject("rec-1", m1, _hit(m1, "gsm8k", "gsm8k/test/17", Q17, Q17, 0.92)),
        _reject("rec-2", m2, hit2),
        _reject("rec-3", m3, _hit(m3, "humaneval", "HumanEval/0", HE0, HE0, 1.0, view="prompt")),
        _reject("rec-4", [("user", "hi"), ("assistant", "ok")], None, reason="too_short"),
    ]


def _benchmarks(g_removed: int = 2) -> dict:
    return {
        "gsm8k": {
            "items": 1319,
            "split": "test",
            "source": "data/benchmarks/gsm8k/test.jsonl.gz",
            "items_hit": 1,
            "records_removed": g_removed,
            "by_item": {"gsm8k/test/17": g_removed},
        },
        "humaneval": {
            "items": 164,
            "split": "test",
            "source": "data/benchmarks/humaneval/test.jsonl.gz",
            "items_hit": 1,
            "records_removed": 1,
            "by_item": {"HumanEval/0": 1},
        },
    }


def make_run(root: Path, rejects: list[dict] | None, status: str = "done", **bench) -> Path:
    """A run directory whose decontam stage removed `rejects` (None: no rejects folder at all)."""
    stage = root / "run" / "decontam"
    stage.mkdir(parents=True)
    contaminated = sum(r["reason"] == "contaminated" for r in rejects or [])
    manifest = {
        "stage": "decontam",
        "status": status,
        "counts": {"in": 100, "out": 100 - len(rejects or []), "rejected": len(rejects or [])},
        "rejected_by_reason": {"contaminated": contaminated} if contaminated else {},
        "decontam": {
            "method": "ngram",
            "ngram": 13,
            "code_ngram": 10,
            "threshold": 0.5,
            "benchmarks": _benchmarks(**bench),
        },
    }
    (stage / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    if rejects is not None:
        (stage / "rejects").mkdir()
        pq.write_table(
            pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), stage / "rejects" / "part-00000.parquet"
        )
    return root / "run"


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return make_run(tmp_path, _rejects())


def audit_json(capsys, *args: str) -> dict:
    assert run_cli("audit", *args, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_summary_counts_from_rejects(run_dir, capsys):
    doc = audit_json(capsys, str(run_dir))
    assert doc["view"] == "summary" and doc["method"] == "ngram" and doc["threshold"] == 0.5
    rows = {r["benchmark"]: r for r in doc["rows"]}
    assert rows["gsm8k"] == {
        "benchmark": "gsm8k",
        "split": "test",
        "items": 1319,
        "items_hit": 1,
        "records_removed": 2,
    }
    assert rows["humaneval"]["items"] == 164 and rows["humaneval"]["records_removed"] == 1
    assert doc["totals"] == {"items": 1483, "items_hit": 2, "records_removed": 3}
    assert doc["warnings"] == []


def test_summary_table(run_dir, capsys):
    assert run_cli("audit", str(run_dir)) == 0
    out = capsys.readouterr().out
    assert "gsm8k" in out and "humaneval" in out and "1,319" in out and "threshold 0.5" in out
    assert "3 of 100 records removed" in out


def test_manifest_disagreeing_with_rejects_warns(tmp_path, capsys):
    run = make_run(tmp_path, _rejects(), g_removed=5)
    assert run_cli("audit", str(run)) == 0
    err = capsys.readouterr().err
    assert "warning: gsm8k: manifest says records_removed 5, the rejects hold 2" in err


def test_benchmark_view_lists_items_and_record_ids(run_dir, capsys):
    doc = audit_json(capsys, str(run_dir), "--benchmark", "gsm8k")
    assert doc["view"] == "benchmark" and doc["items_hit"] == 1 and doc["records_removed"] == 2
    assert doc["rows"] == [
        {
            "item": "gsm8k/test/17",
            "records": 2,
            "best_score": 0.92,
            "method": "ngram",
            "record_ids": ["rec-1", "rec-2"],
        }
    ]
    assert run_cli("audit", str(run_dir), "--benchmark", "humaneval") == 0
    assert "HumanEval/0" in capsys.readouterr().out


def test_item_view_has_both_texts_and_spans(run_dir, capsys):
    doc = audit_json(capsys, str(run_dir), "--item", "gsm8k/test/17")
    assert doc["benchmark"] == "gsm8k" and [r["id"] for r in doc["rows"]] == ["rec-1", "rec-2"]
    best, second = doc["rows"]
    assert best["origin"] == "data/train.jsonl:1" and best["score"] == 0.92 and best["view"] == "question"
    assert best["text"].startswith("Quick one. Janet") and "\nEight apples." in best["text"]
    assert best["item_text"] == Q17
    (s, e), (i_s, i_e) = best["spans"][0], best["item_spans"][0]
    assert best["text"][s:e] == Q17 and best["item_text"][i_s:i_e] == Q17
    (s, e) = second["spans"][0]
    assert second["text"][s:e] == Q17_PART and second["also"][0]["item"] == "gsm8k/test/18"
    # with --benchmark as well: the same records; an item of another benchmark: none
    assert audit_json(capsys, str(run_dir), "--benchmark", "gsm8k", "--item", "gsm8k/test/17")["rows"]
    assert run_cli("audit", str(run_dir), "--benchmark", "humaneval", "--item", "gsm8k/test/17") == 2


def test_item_text_output_shows_matched_text(run_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # wide enough that no cell wraps
    assert run_cli("audit", str(run_dir), "--item", "HumanEval/0") == 0
    out = capsys.readouterr().out
    assert HE0 in out and "rec-3" in out and "data/train.jsonl:3" in out and "view prompt" in out


def test_csv_rows_per_view(run_dir, tmp_path, capsys):
    path = tmp_path / "out.csv"
    assert run_cli("audit", str(run_dir), "--csv", str(path)) == 0
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [(r["benchmark"], r["items"], r["items_hit"], r["records_removed"]) for r in rows] == [
        ("gsm8k", "1319", "1", "2"),
        ("humaneval", "164", "1", "1"),
    ]
    assert run_cli("audit", str(run_dir), "--benchmark", "gsm8k", "--csv", str(path)) == 0
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert len(rows) == 1 and rows[0]["item"] == "gsm8k/test/17" and rows[0]["records"] == "2"
    assert json.loads(rows[0]["record_ids"]) == ["rec-1", "rec-2"]
    assert run_cli("audit", str(run_dir), "--item", "gsm8k/test/17", "--csv", str(path)) == 0
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [r["id"] for r in rows] == ["rec-1", "rec-2"] and "\nEight apples." in rows[0]["text"]
    assert json.loads(rows[0]["spans"]) == [[11, 11 + len(Q17)]]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_user_errors_exit_2_one_line(run_dir, tmp_path, capsys):
    assert run_cli("audit", str(tmp_path / "nope")) == 2
    assert "does not exist" in _error_line(capsys)
    (tmp_path / "bare").mkdir()
    assert run_cli("audit", str(tmp_path / "bare")) == 2
    assert "has no decontam stage" in _error_line(capsys)
    assert run_cli("audit", str(run_dir), "--benchmark", "gsm9k") == 2
    assert "unknown benchmark 'gsm9k'; known benchmarks: gsm8k, humaneval" in _error_line(capsys)
    assert run_cli("audit", str(run_dir), "--item", "gsm8k/test/99") == 2
    assert "no record matched item 'gsm8k/test/99'" in _error_line(capsys)


def test_unfinished_stage_is_refused(tmp_path, capsys):
    run = make_run(tmp_path, _rejects(), status="running")
    assert run_cli("audit", str(run)) == 2
    assert "not finished" in _error_line(capsys)


@pytest.mark.parametrize("rejects", [None, []], ids=["no-rejects-folder", "empty-parquet"])
def test_zero_rejects(tmp_path, capsys, rejects):
    run = make_run(tmp_path, rejects, g_removed=0)
    manifest = json.loads((run / "decontam" / "manifest.json").read_text())
    manifest["decontam"]["benchmarks"]["humaneval"].update(items_hit=0, records_removed=0)
    manifest["decontam"]["benchmarks"]["gsm8k"]["items_hit"] = 0
    (run / "decontam" / "manifest.json").write_text(json.dumps(manifest))
    doc = audit_json(capsys, str(run))
    assert doc["totals"] == {"items": 1483, "items_hit": 0, "records_removed": 0} and doc["warnings"] == []
    assert run_cli("audit", str(run)) == 0
    assert "no contamination found" in capsys.readouterr().out
    assert audit_json(capsys, str(run), "--benchmark", "gsm8k")["rows"] == []
    assert run_cli("audit", str(run), "--csv", str(tmp_path / "s.csv")) == 0
    assert len(list(csv.DictReader((tmp_path / "s.csv").open()))) == 2


def test_query_functions_return_plain_rows(run_dir):
    run = load_run(run_dir)
    assert [r["item"] for r in query_items(run, "humaneval")] == ["HumanEval/0"]
    assert summary_view(run)["totals"]["records_removed"] == 3  # the too_short reject is not counted
    # an empty --item CSV gets the same header as a full one
    assert list(query_item_records(run, "HumanEval/0")[0]) == audit._CSV_COLUMNS["item"]


def test_excerpt_windows_long_text():
    text = "a" * 1000 + "MATCH" + "b" * 1000 + "HIT" + "c" * 1000
    shown, spans = excerpt(text, [[1000, 1005], [2005, 2008]], context=10)
    assert shown == "…" + "a" * 10 + "MATCH" + "b" * 10 + "…" + "b" * 10 + "HIT" + "c" * 10 + "…"
    assert [shown[s:e] for s, e in spans] == ["MATCH", "HIT"]
    assert excerpt("short MATCH", [[6, 11]]) == ("short MATCH", [(6, 11)])


def test_help_names_views_and_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli("audit", "--help")
    out = capsys.readouterr().out
    assert exc.value.code == 0
    for word in ("--benchmark", "--item", "--json", "--csv", "--full", "examples", "gsm8k/test/17"):
        assert word in out
    with pytest.raises(SystemExit):
        run_cli("--help")
    assert "audit" in capsys.readouterr().out
