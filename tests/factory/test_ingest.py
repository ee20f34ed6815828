"""Ingest: every file type and record format, format detection, per-record faults and bad files."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.conftest import alpaca, read_stage, run_cli, write_config, write_jsonl

SHAREGPT = {
    "conversations": [{"from": "human", "value": "What is two plus two?"}, {"from": "gpt", "value": "Four."}]
}
MESSAGES = {
    "messages": [{"role": "user", "content": "What is two plus two?"}, {"role": "assistant", "content": "4"}]
}


def ingest(tmp_path, inputs, *extra) -> tuple[int, list, list, dict]:
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path / "run", inputs)
    code = run_cli("run", "ingest", "-c", str(cfg), "--workers", "1", *extra)
    if code != 0:
        return code, [], [], {}
    return (code, *read_stage(tmp_path / "run", "ingest"))


def test_jsonl_plain_gz_zst_give_the_same_records(tmp_path):
    rows = [alpaca(i) for i in range(5)]
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (tmp_path / "a.jsonl").write_bytes(text)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(text))
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
    code, records, rejects, manifest = ingest(
        tmp_path,
        [{"path": tmp_path / n, "format": "alpaca"} for n in ("a.jsonl", "b.jsonl.gz", "c.jsonl.zst")],
    )
    assert code == 0 and not rejects
    assert len(records) == 15
    by_file = [
        [r["id"] for r in records if r["origin"].startswith(str(tmp_path / n))] for n in ("a", "b", "c")
    ]
    assert by_file[0] == by_file[1] == by_file[2]
    assert records[2]["origin"] == f"{tmp_path / 'a.jsonl'}:3"
    assert manifest["counts"] == {"in": 15, "out": 15, "rejected": 0}


def test_json_array_and_json_lines_named_json(tmp_path):
    (tmp_path / "arr.json").write_text(json.dumps([SHAREGPT, SHAREGPT]))
    (tmp_path / "lines.json").write_text(json.dumps(MESSAGES) + "\n" + json.dumps(MESSAGES) + "\n")
    code, records, _, manifest = ingest(
        tmp_path, [{"path": tmp_path / "arr.json"}, {"path": tmp_path / "lines.json"}]
    )
    assert code == 0 and len(records) == 4
    assert records[1]["origin"].endswith("arr.json#1") and records[3]["origin"].endswith("lines.json:2")
    formats = {i["path"].rsplit("/", 1)[1]: (i["format"], i["format_detected"]) for i in manifest["inputs"]}
    assert formats == {"arr.json": ("sharegpt", True), "lines.json": ("messages", True)}


def test_parquet_csv_tsv(tmp_path):
    rows = [alpaca(i) for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    csv_text = (
        "instruction,input,output\n"
        + "".join(f'"{r["instruction"]}","","{r["output"]}"\n' for r in rows)
        + '"Multi-line ""quoted"" instruction here","","line one\nline two"\n'
    )
    (tmp_path / "b.csv").write_text(csv_text)
    (tmp_path / "c.tsv.gz").write_bytes(
        gzip.compress(
            (
                "instruction\tinput\toutput\n"
                + "".join(f"{r['instruction']}\t\t{r['output']}\n" for r in rows)
            ).encode()
        )
    )
    code, records, rejects, _ = ingest(
        tmp_path, [{"path": tmp_path / n} for n in ("a.parquet", "b.csv", "c.tsv.gz")]
    )
    assert code == 0 and not rejects and len(records) == 13
    multi = [r for r in records if "quoted" in r["messages"][0]["content"]][0]
    assert multi["messages"][0]["content"] == 'Multi-line "quoted" instruction here'
    assert multi["messages"][1]["content"] == "line one\nline two"
    assert multi["origin"].endswith("b.csv#4")
    assert records[0]["origin"].endswith("a.parquet#0")


def test_csv_row_with_wrong_column_count_is_a_reject(tmp_path):
    (tmp_path / "a.csv").write_text("instruction,input,output\nWhat is one plus one?,,Two.\na,b,c,d\n")
    code, records, rejects, _ = ingest(tmp_path, [{"path": tmp_path / "a.csv"}])
    assert code == 0 and len(records) == 1
    assert [r["reason"] for r in rejects] == ["malformed_csv_row"]


def test_datasets_save_to_disk_and_load_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [alpaca(i) for i in range(6)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows[:2]), "test": datasets.Dataset.from_list(rows[2:])}
    ).save_to_disk(str(tmp_path / "dd"))
    (tmp_path / "hub").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "hub" / "train.parquet")
    code, records, _, manifest = ingest(
        tmp_path,
        [
            {"path": tmp_path / "saved"},
            {"path": tmp_path / "dd", "split": "test"},
            {"path": tmp_path / "hub", "type": "hf"},
        ],
    )
    assert code == 0
    assert [i["records"] for i in manifest["inputs"]] == [6, 4, 6]
    assert [i["type"] for i in manifest["inputs"]] == ["hf_disk", "hf_disk", "hf"]
    assert len(records) == 16


def test_directory_and_glob_inputs_with_sources(tmp_path):
    write_jsonl(tmp_path / "d" / "x.jsonl", [alpaca(1)])
    write_jsonl(tmp_path / "d" / "y.jsonl", [alpaca(2)])
    write_jsonl(tmp_path / "g1.jsonl", [alpaca(3)])
    write_jsonl(tmp_path / "g2.jsonl", [alpaca(4)])
    code, records, _, _ = ingest(
        tmp_path,
        [
            {"path": tmp_path / "d", "source": "general"},
            {"path": str(tmp_path / "g*.jsonl"), "source": "code"},
        ],
    )
    assert code == 0
    assert [r["source"] for r in records] == ["general", "general", "code", "code"]


def test_bad_records_become_rejects_with_file_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps(alpaca(0)).encode(),
        b'{"instruction": "unterminated',
        b'{"instruction": "Bad bytes here \xff\xfe", "output": "x"}',
        json.dumps({"instruction": "No output field at all here."}).encode(),
        json.dumps({"instruction": "Wrong type of output field.", "output": 5.5j if False else [1]}).encode(),
        b"",
        json.dumps(alpaca(1)).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, records, rejects, manifest = ingest(tmp_path, [{"path": path, "format": "alpaca"}])
    assert code == 0 and len(records) == 2
    got = {r["reason"]: r for r in rejects}
    assert set(got) == {"malformed_json", "bad_encoding", "missing_field", "wrong_type"}
    assert got["malformed_json"]["origin"] == f"{path}:2"
    assert got["bad_encoding"]["origin"] == f"{path}:3"
    detail = json.loads(got["malformed_json"]["detail"])
    assert detail["raw"] == '{"instruction": "unterminated' and detail["error"]
    assert manifest["counts"] == {"in": 6, "out": 2, "rejected": 4}
    assert manifest["rejected_by_reason"]["missing_field"] == 1


def test_strict_makes_a_bad_record_fatal_naming_file_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(alpaca(0)) + "\n{oops\n")
    code, *_ = ingest(tmp_path, [{"path": path, "format": "alpaca"}], "--strict")
    assert code == 2
    err = capsys.readouterr().err
    assert f"{path}:2" in err and "malformed_json" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "no such file"),
        ("empty.jsonl", b"\n\n", "no records"),
        ("broken.parquet", b"PAR1 this is not parquet", "unreadable"),
        ("broken.json", b'[{"instruction": "a",', "invalid JSON"),
        ("unknown.jsonl", json.dumps({"foo": 1}).encode() + b"\n", "cannot detect the record format"),
        ("what.xyz", b"hello", "unknown file type"),
    ],
)
def test_bad_files_exit_2_with_one_line(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, *_ = ingest(tmp_path, [{"path": path}])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and name in err and "Traceback" not in err


def test_glob_matching_nothing_is_a_user_error(tmp_path, capsys):
    code, *_ = ingest(tmp_path, [{"path": str(tmp_path / "nothing*.jsonl")}])
    assert code == 2 and "no files match" in capsys.readouterr().err


def test_shards_split_by_shard_rows(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [alpaca(i) for i in range(25)])
    cfg = write_config(
        tmp_path / "cfg.yaml",
        tmp_path / "run",
        [{"path": tmp_path / "a.jsonl"}],
        stages={"ingest": {"shard_rows": 10}},
    )
    assert run_cli("run", "ingest", "-c", str(cfg), "--workers", "2") == 0
    records, _, manifest = read_stage(tmp_path / "run", "ingest")
    assert [s["rows"] for s in manifest["shards"]] == [10, 10, 5]
    assert [r["origin"].rsplit(":", 1)[1] for r in records] == [str(i) for i in range(1, 26)]


def test_strict_after_a_lenient_run_still_fails(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(alpaca(0)) + "\n{oops\n")
    code, _, rejects, _ = ingest(tmp_path, [{"path": path, "format": "alpaca"}])
    assert code == 0 and len(rejects) == 1
    code, *_ = ingest(tmp_path, [{"path": path, "format": "alpaca"}], "--strict")
    assert code == 2 and f"{path}:2: malformed_json" in capsys.readouterr().err
