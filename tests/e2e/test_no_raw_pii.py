"""No raw PII value survives anywhere in the run directory: outputs, rejects of every stage, manifests, the log."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import alpaca, read_stage, run_cli, write_config

EMAIL = "jane.doe.private@gmail.com"
PHONE = "+1 415-555-0199"
TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
SSN = "536-22-8817"


def everything_in(run_dir: Path) -> str:
    """Every string of every file under the run directory (Parquet decoded, others as text)."""
    parts = []
    for path in sorted(run_dir.rglob("*")):
        if path.is_dir():
            continue
        if path.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(path).to_pylist(), ensure_ascii=False))
        else:
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def test_no_raw_pii_in_any_file(tmp_path):
    rows = [
        {
            "instruction": f"Write a short note to {EMAIL} about the meeting.",
            "input": "",
            "output": f"Hi Jane, see you at ten. Call me at {PHONE} if anything changes.",
            "owner": EMAIL,
        },
        {
            "instruction": "Configure the deploy script with my token please.",
            "input": TOKEN,
            "output": f"export GITHUB_TOKEN={TOKEN}\n\nThen run the script.",
        },
        # rejected by a quality rule (refusal): its stored copy must be scrubbed too
        {
            "instruction": f"What is the SSN {SSN} used for?",
            "input": "",
            "output": f"As an AI language model, I cannot discuss {SSN} or anything about it.",
        },
    ]
    lines = [json.dumps(r) for r in rows]
    lines.append(
        '{"instruction": "Email ' + EMAIL + ' now", "output": '
    )  # malformed: raw text kept in ingest rejects
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    cfg = write_config(
        tmp_path / "c.yaml", tmp_path / "run", [{"path": tmp_path / "in.jsonl", "format": "alpaca"}]
    )
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1") == 0

    text = everything_in(tmp_path / "run")
    for value in (EMAIL, PHONE, TOKEN, SSN, TOKEN[:12]):
        assert value not in text, f"raw {value!r} survived in the run directory"

    _, ingest_rejects, _ = read_stage(tmp_path / "run", "ingest")
    assert [r["reason"] for r in ingest_rejects] == ["malformed_json"]
    assert "Email" in json.loads(ingest_rejects[0]["detail"])["raw"]  # the rest of the line is kept
    records, rejects, manifest = read_stage(tmp_path / "run", "clean")
    assert manifest["pii"]["entities"] and manifest["pii"]["records_redacted"] >= 3
    assert len(records) + len(rejects) == 3


def test_keep_raw_in_rejects_keeps_values_only_in_rejects(tmp_path):
    rows = [
        {
            "instruction": f"What is the SSN {SSN} used for?",
            "input": "",
            "output": f"As an AI language model, I cannot discuss {SSN}.",
        }
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = write_config(
        tmp_path / "c.yaml",
        tmp_path / "run",
        [{"path": tmp_path / "in.jsonl"}],
        stages={"clean": {"pii": {"keep_raw_in_rejects": True, "actions": {"us_ssn": "reject"}}}},
    )
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1") == 0
    records, rejects, _ = read_stage(tmp_path / "run", "clean")
    assert not records and len(rejects) == 1
    assert rejects[0]["reason"].startswith("pii_")
    assert SSN in json.dumps(rejects[0])


def test_pii_hidden_by_zero_width_characters_is_found_after_normalisation(tmp_path):
    """The door cannot see `jane@gm<ZWSP>ail.com`; clean normalises it into an address and scans again."""
    hidden = "jane.doe.private@gm\u200bail.com"
    rows = [
        {"instruction": f"Forward the invoice to {hidden} today.", "input": "", "output": "Done, it is sent."}
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", [{"path": tmp_path / "in.jsonl"}])
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1") == 0
    records, _, manifest = read_stage(tmp_path / "run", "clean")
    assert records[0]["messages"][0]["content"] == "Forward the invoice to <EMAIL> today."
    assert json.loads(records[0]["meta"])["pii"] == {"email": 1}
    assert manifest["pii"]["entities"] == {"email": 1}
    assert EMAIL not in everything_in(tmp_path / "run" / "clean")


def test_clean_does_not_rescan_what_the_door_scanned(tmp_path):
    rows = [alpaca(i) for i in range(30)]
    rows[0]["output"] = f"Write to {EMAIL}."
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", [{"path": tmp_path / "in.jsonl"}])
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1") == 0
    records, _, manifest = read_stage(tmp_path / "run", "clean")
    assert manifest["pii"]["texts_scanned"] == 0  # everything was scanned at the door
    assert manifest["pii"]["entities"] == {"email": 1} and manifest["pii"]["records_redacted"] == 1
    assert [json.loads(r["meta"]).get("pii") for r in records[:2]] == [{"email": 1}, None]
