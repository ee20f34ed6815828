"""StorePath and the run-directory file functions on a pyarrow filesystem, here pyarrow's local one behind a
`file://` root (the filesystems with real folders: hdfs, local), beside the same calls on a pathlib.Path: the same
bytes, digests, listings and deletions. The S3 behaviour is tested against a real S3 server in
test_run_dir_remote.py."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest

from factory import shards, store
from factory.errors import UserError
from factory.store import StorePath


@pytest.fixture
def roots(tmp_path):
    """(a StorePath over tmp/store through pyarrow's local filesystem, a Path at tmp/local)."""
    return StorePath(f"file://{tmp_path / 'store'}"), tmp_path / "local"


def test_naming_and_pickling(tmp_path):
    root = StorePath("s3://bucket/runs/x?endpoint_override=127.0.0.1:9&scheme=http")
    shard = root / "clean" / "part-00000.parquet"
    assert str(shard) == "s3://bucket/runs/x/clean/part-00000.parquet"  # shown without the query
    assert (
        shard.uri == "s3://bucket/runs/x/clean/part-00000.parquet?endpoint_override=127.0.0.1:9&scheme=http"
    )
    assert (shard.name, shard.stem, shard.suffix) == ("part-00000.parquet", "part-00000", ".parquet")
    assert shard.parent == root / "clean" and shard.parent.parent == root
    assert (
        root.name == "x"
        and str(root.parent) == "s3://bucket/runs"
        and root.parent.uri.endswith("?endpoint_override=127.0.0.1:9&scheme=http")
    )
    assert pickle.loads(pickle.dumps(shard)) == shard and hash(shard) == hash(
        root / "clean/part-00000.parquet"
    )
    with pytest.raises(ValueError):
        _ = StorePath("s3://bucket").parent
    assert store.location("s3://bucket/runs/x/") == StorePath("s3://bucket/runs/x")
    assert store.location(str(tmp_path)) == tmp_path and store.location(f"file://{tmp_path}") == tmp_path
    with pytest.raises(TypeError):
        open(shard)  # noqa: SIM115 - no __fspath__: a store path is never opened as a local file


def test_files_on_a_store_path_match_a_local_path(roots):
    remote, local = roots
    table = pa.table({"id": ["a", "b", "c"], "n": [1, 2, 3]})
    digests = [shards.write_table(table, root / "clean" / "part-00000.parquet") for root in (remote, local)]
    assert digests[0] == digests[1] == shards.file_digest(remote / "clean" / "part-00000.parquet")
    for root in (remote, local):
        shards.write_json({"k": 1}, root / "clean" / "_shards" / "part-00000.json")
        shards.write_text("hello", root / "mix" / "README.md")
        shards.write_npz(root / "mix" / "_work" / "plan.npz", copies=np.arange(3))
        batches = [pa.record_batch({"x": [i, i]}) for i in range(3)]
        shards.write_batches(batches, batches[0].schema, root / "dedup" / "bands.arrow")
    for root in (remote, local):
        assert shards.read_table(root / "clean" / "part-00000.parquet", ["n"]).column(0).to_pylist() == [
            1,
            2,
            3,
        ]
        assert shards.read_json(root / "clean" / "_shards" / "part-00000.json") == {"k": 1}
        assert shards.read_json(root / "nothing.json") is None
        assert (root / "mix" / "README.md").read_text() == "hello"
        assert list(shards.read_npz(root / "mix" / "_work" / "plan.npz")["copies"]) == [0, 1, 2]
        assert shards.read_batch(root / "dedup" / "bands.arrow", 2).column(0).to_pylist() == [2, 2]
        assert shards.parquet_file(root / "clean" / "part-00000.parquet").metadata.num_rows == 3
        assert [p.name for p in shards.list_shards(root / "clean")] == ["part-00000.parquet"]
        assert sorted(p.name for p in root.glob("*")) == ["clean", "dedup", "mix"]
        assert (root / "clean").is_dir() and (root / "mix" / "README.md").is_file()
    assert [p.rel for p in remote.rglob("*.json")] == ["clean/_shards/part-00000.json"]
    assert (remote / "mix" / "README.md").size() == 5

    shards.remove_tree(remote / "mix")
    shards.remove_tree(remote / "no-such-folder")  # nothing to do
    assert not (remote / "mix").exists() and (remote / "clean").exists()
    (remote / "clean" / "_shards" / "part-00000.json").unlink()
    (remote / "clean" / "_shards" / "part-00000.json").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError):
        (remote / "clean" / "_shards" / "part-00000.json").unlink()
    (remote / "made" / "deep").mkdir()
    assert (remote / "made" / "deep").is_dir()


def test_local_dir_keeps_a_stores_local_files_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    a, b = StorePath("s3://bucket/runs/a"), StorePath("s3://bucket/runs/b")
    assert (
        store.local_dir(tmp_path / "run", "_cache", "llm.sqlite")
        == tmp_path / "run" / "_cache" / "llm.sqlite"
    )
    assert store.local_dir(a, "factory.log").parent.parent == tmp_path / "cache" / "runs"
    assert store.local_dir(a, "x") != store.local_dir(b, "x") and store.local_dir(a, "x") == store.local_dir(
        a, "x"
    )
    assert store.cache_dir("decontam") == tmp_path / "cache" / "decontam"


def test_a_store_error_is_one_line_naming_the_path(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    bad = StorePath(f"file://{tmp_path / 'file'}") / "sub" / "x.json"
    with pytest.raises(UserError, match=r"file://.*/file/sub/x\.json: cannot write"):
        bad.write_bytes(b"{}")
