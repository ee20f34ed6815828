"""Ingest from URIs through pyarrow.fs: a real S3 server (moto's, on 127.0.0.1) and file:// URIs.

The S3 tests compare a run over objects with the same run over the same files on disk (ids, reasons,
origins), and check listing (prefix, glob), the fingerprint (an overwritten object redoes ingest), credentials
kept out of the run directory, and one-line errors (exit 2) for every way a store can be wrong.
"""

from __future__ import annotations

import gzip
import json
import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import alpaca, read_stage, run_cli, write_config

BAD_LINES = [b'{"instruction": "unterminated', json.dumps({"instruction": "No output field here."}).encode()]


def jsonl(rows: list[dict], bad: bool = False) -> bytes:
    lines = [json.dumps(r).encode() for r in rows]
    if bad:
        lines[1:1] = BAD_LINES
    return b"\n".join(lines) + b"\n"


def corpus() -> dict[str, bytes]:
    """The same files go to disk and to the store: JSONL with bad lines and a record clean drops, JSONL.gz,
    Parquet, a nested file and one no reader takes (skipped in a directory/prefix)."""
    parquet = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist([alpaca(i) for i in range(20, 30)]), parquet, row_group_size=4)
    return {
        "data/a.jsonl": jsonl([*(alpaca(i) for i in range(10)), alpaca(99, instruction="Hi.")], bad=True),
        "data/b.jsonl.gz": gzip.compress(jsonl([alpaca(i) for i in range(10, 20)])),
        "data/c.parquet": parquet.getvalue().to_pybytes(),
        "data/sub/d.jsonl": jsonl([alpaca(i) for i in range(30, 35)]),
        "data/notes.txt": b"not an input",
    }


def ingest(tmp_path: Path, inputs: list[dict], *stages: str, workers: str = "1") -> tuple[int, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    run_dir = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", run_dir, inputs)
    return run_cli("run", *(stages or ("ingest",)), "-c", str(cfg), "--workers", workers), run_dir


def outcome(run_dir: Path, stage: str, root: str) -> dict:
    """What a stage kept and rejected, with origins relative to `root` (a local folder or a URI)."""
    records, rejects, manifest = read_stage(run_dir, stage)

    def rel(origin: str) -> str:
        assert origin.startswith(root), (origin, root)
        return origin[len(root) :]

    return {  # an ingest reject's id hashes its origin: compared by reason and place instead
        "kept": sorted((r["id"], rel(r["origin"])) for r in records),
        "rejected": sorted(
            (r["id"] if r["messages"] else "", r["reason"], rel(r["origin"])) for r in rejects
        ),
        "inputs": [rel(i["path"]) for i in manifest.get("inputs", [])],
    }


def one_line_error(capsys) -> str:
    """The CLI's error: one line after the run's header line, no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    return errors[0]


# ---- S3 (moto's server) ------------------------------------------------------------------------------------


def write_local(root: Path, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)


def test_s3_prefix_reads_like_the_same_local_files_through_clean(s3, tmp_path):
    files = corpus()
    s3.put(files)
    write_local(tmp_path / "local", files)
    local_root, s3_root = f"{tmp_path / 'local'}/", f"s3://{s3.bucket}/"

    code, local_run = ingest(tmp_path / "l", [{"path": tmp_path / "local" / "data"}], "clean")
    assert code == 0
    code, s3_run = ingest(tmp_path / "s", [{"path": s3.uri("data/")}], "clean", workers="2")
    assert code == 0

    for stage in ("ingest", "clean"):
        assert outcome(s3_run, stage, s3_root) == outcome(local_run, stage, local_root)
    got = outcome(s3_run, "ingest", s3_root)
    assert got["inputs"] == ["data/a.jsonl", "data/b.jsonl.gz", "data/c.parquet", "data/sub/d.jsonl"]
    assert {reason for _, reason, _ in got["rejected"]} == {"malformed_json", "missing_field"}
    records, rejects, manifest = read_stage(s3_run, "ingest")
    assert records[2]["origin"] == f"s3://{s3.bucket}/data/a.jsonl:5"  # two bad lines before it
    assert f"s3://{s3.bucket}/data/c.parquet#3" in {r["origin"] for r in records}
    assert manifest["counts"] == {"in": 38, "out": 36, "rejected": 2}
    assert read_stage(s3_run, "clean")[2]["counts"]["rejected"] == 1
    run_files = [p.read_bytes() for p in s3_run.rglob("*") if p.is_file()]
    assert not any(b"endpoint_override" in data for data in run_files)  # the query is not in the run dir


def test_s3_glob_and_single_object(s3, tmp_path):
    s3.put(corpus())
    code, run_dir = ingest(
        tmp_path,
        [
            {"path": s3.uri("data/*.jsonl*"), "source": "glob"},
            {"path": s3.uri("data/**/d.jsonl"), "source": "deep"},
            {"path": s3.uri("data/c.parquet"), "source": "one"},
        ],
    )
    assert code == 0
    got = outcome(run_dir, "ingest", f"s3://{s3.bucket}/")
    assert got["inputs"] == ["data/a.jsonl", "data/b.jsonl.gz", "data/sub/d.jsonl", "data/c.parquet"]
    records, _, _ = read_stage(run_dir, "ingest")
    assert [sum(r["source"] == s for r in records) for s in ("glob", "deep", "one")] == [21, 5, 10]


def test_s3_rerun_is_skipped_and_an_overwritten_object_redoes_ingest(s3, tmp_path, monkeypatch):
    # the endpoint from AWS_ENDPOINT_URL, as pyarrow's S3 reads it, instead of the URI's query
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{s3.endpoint}")
    s3.put({"data/a.jsonl": jsonl([alpaca(i) for i in range(5)])})
    inputs = [{"path": s3.uri("data/", query=False)}]
    assert ingest(tmp_path, inputs)[0] == 0
    first = read_stage(tmp_path / "run", "ingest")[2]
    assert ingest(tmp_path, inputs)[0] == 0
    assert read_stage(tmp_path / "run", "ingest")[2]["started_at"] == first["started_at"]  # skipped
    s3.put({"data/a.jsonl": jsonl([alpaca(i) for i in range(6)])})
    assert ingest(tmp_path, inputs)[0] == 0
    again = read_stage(tmp_path / "run", "ingest")[2]
    assert again["input_fingerprint"] != first["input_fingerprint"]
    assert again["counts"]["out"] == 6


def test_credentials_in_the_uri_stay_out_of_the_run_dir_and_messages(s3, tmp_path, capsys):
    s3.put({"data/a.jsonl": jsonl([alpaca(i) for i in range(3)])})
    uri = s3.uri("data/a.jsonl").replace("s3://", "s3://AKIDEXAMPLE:s3cr3tvalue@")
    code, run_dir = ingest(tmp_path, [{"path": uri}])
    assert code == 0
    records, _, _ = read_stage(run_dir, "ingest")
    assert records[0]["origin"] == f"s3://{s3.bucket}/data/a.jsonl:1"
    assert not any(b"s3cr3tvalue" in p.read_bytes() for p in run_dir.rglob("*") if p.is_file())
    code, _ = ingest(tmp_path / "missing", [{"path": uri.replace("a.jsonl", "zz.jsonl")}])
    err = one_line_error(capsys)
    assert code == 2 and "s3cr3tvalue" not in err and "no such object" in err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("missing_bucket", "no such bucket 'no-such-bucket'"),
        ("missing_bucket_glob", "no such bucket 'no-such-bucket'"),
        ("no_match", "no files match"),
        ("missing_object", "no such object or prefix"),
        ("empty_prefix", "holds no readable input files"),
        ("unreachable", "cannot reach the store"),
        ("bad_credentials", "access denied"),
        ("hf_disk", "local"),
        ("bad_query", "Unexpected query parameter"),
    ],
)
def test_store_errors_exit_2_with_one_line_naming_the_key(s3, tmp_path, capsys, key, message):
    s3.put({"data/a.jsonl": jsonl([alpaca(0)]), "other/notes.txt": b"x"})
    spec = {
        "missing_bucket": {"path": s3.uri("data/").replace(s3.bucket, "no-such-bucket")},
        "missing_bucket_glob": {"path": s3.uri("data/*.jsonl").replace(s3.bucket, "no-such-bucket")},
        "no_match": {"path": s3.uri("data/*.csv")},
        "missing_object": {"path": s3.uri("data/zz.jsonl")},
        "empty_prefix": {"path": s3.uri("other/")},
        "unreachable": {"path": s3.uri("data/").replace(s3.endpoint, f"127.0.0.1:{closed_port()}")},
        "bad_credentials": {"path": s3.uri("data/")},
        "hf_disk": {"path": s3.uri("data/"), "type": "hf_disk"},
        "bad_query": {"path": s3.uri("data/") + "&bogus=1"},
    }[key]
    inputs = [{"path": s3.uri("data/a.jsonl")}, spec]
    started = time.monotonic()
    if key == "bad_credentials":  # moto checks signatures against its IAM users: "testing" is none of them
        from moto.core import enable_iam_authentication

        with enable_iam_authentication():
            code, _ = ingest(tmp_path, [spec])
        message, where = "access denied", "inputs[0].path"
    else:
        code, _ = ingest(tmp_path, inputs)
        where = "inputs[1].path"
    err = one_line_error(capsys)
    assert code == 2
    assert where in err and message in err, err
    assert time.monotonic() - started < 10


def test_unknown_scheme_is_a_user_error(tmp_path, capsys):
    code, _ = ingest(tmp_path, [{"path": "nosuchfs://bucket/data.jsonl"}])
    err = one_line_error(capsys)
    assert code == 2 and "inputs[0].path" in err and "pyarrow cannot read `nosuchfs://`" in err


# ---- file:// URIs (no server needed) -----------------------------------------------------------------------


def test_file_uris_read_like_local_paths(tmp_path):
    files = corpus()
    write_local(tmp_path / "local", files)
    local = tmp_path / "local"
    code, local_run = ingest(tmp_path / "l", [{"path": local / "data"}])
    assert code == 0
    code, uri_run = ingest(tmp_path / "u", [{"path": f"file://{local}/data/"}])
    assert code == 0
    assert outcome(uri_run, "ingest", f"file://{local}/") == outcome(local_run, "ingest", f"{local}/")
    code, glob_run = ingest(tmp_path / "g", [{"path": f"file://{local}/data/*.jsonl*"}])
    assert code == 0
    assert outcome(glob_run, "ingest", f"file://{local}/")["inputs"] == ["data/a.jsonl", "data/b.jsonl.gz"]


def test_a_missing_file_uri_and_a_datasets_type_are_user_errors(tmp_path, capsys):
    code, _ = ingest(tmp_path, [{"path": f"file://{tmp_path}/nothing/"}])
    assert code == 2 and "inputs[0].path" in one_line_error(capsys)
    code, _ = ingest(tmp_path, [{"path": f"file://{tmp_path}/", "type": "hf"}])
    err = one_line_error(capsys)
    assert code == 2 and "local `datasets` folders only" in err
