"""The mix stage end to end through the CLI: the mixture, its rejects, the split, both output formats loaded by
`datasets`, LLaMA-Factory's dataset_info.json, the dataset card, determinism and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import read_stage, run_cli, write_config, write_jsonl


def chat(question: str, answer: str, **meta) -> dict:
    return {
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        **meta,
    }


def corpus(tmp_path: Path) -> list[dict]:
    general = [chat(f"General question number {i}?", f"General answer {i}.", tag=f"g{i}") for i in range(80)]
    general[0]["messages"].insert(0, {"role": "system", "content": "You are terse."})
    general[1]["messages"] += [
        {"role": "user", "content": "And a follow-up?"},
        {"role": "assistant", "content": "The follow-up answer."},
    ]
    code = [chat(f"Write function f{i}.", f"def f{i}():\n    return {i}", tag=f"c{i}") for i in range(20)]
    return [
        {"path": write_jsonl(tmp_path / "general.jsonl", general), "format": "messages", "source": "general"},
        {"path": write_jsonl(tmp_path / "code.jsonl", code), "format": "messages", "source": "code"},
    ]


def run_mix(tmp_path: Path, inputs: list[dict], mix: dict, name: str = "run", stages=("mix",)) -> Path:
    run_dir = tmp_path / name
    cfg = write_config(tmp_path / f"{name}.yaml", run_dir, inputs, stages={"mix": mix})
    assert run_cli("run", *stages, "-c", str(cfg), "--workers", "1") == 0
    return run_dir


def tags(run_dir: Path) -> dict[str, str]:
    """Record id -> the `tag` the test gave it (from the ingest shards: mix writes no canonical records)."""
    return {r["id"]: json.loads(r["meta"]).get("tag") for r in read_stage(run_dir, "ingest")[0]}


def split_rows(run_dir: Path, split: str) -> list[dict]:
    folder = run_dir / "mix" / split
    return [r for p in sorted(folder.glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]


def test_mixture_split_rejects_and_manifest(tmp_path):
    mix = {"total": 50, "weights": {"general": 0.4, "code": 0.6}, "validation": 0.1, "seed": 3}
    run_dir = run_mix(tmp_path, corpus(tmp_path), mix)
    _, rejects, manifest = read_stage(run_dir, "mix")
    train, val = split_rows(run_dir, "train"), split_rows(run_dir, "validation")
    assert len(train) + len(val) == 50 and len(val) == 5
    got = {s: sum(r["source"] == s for r in train + val) for s in ("general", "code")}
    assert got == {"general": 20, "code": 30}
    # code has 20 records for 30 places: every one once, 10 repeated once, none in validation twice
    assert manifest["copies"] == 10 and len({r["id"] for r in val}) == len(val)
    assert not {r["id"] for r in val} & {r["id"] for r in train}
    c = manifest["counts"]
    assert c["in"] == 100 and c["in"] == c["out"] + c["rejected"] and c["rejected"] == 60
    assert manifest["split"] == {"train": 45, "validation": 5}
    assert manifest["mixture"]["planned"] == {"code": 30, "general": 20}
    assert manifest["mixture"]["achieved"] == {"code": 30, "general": 20}
    assert {r["reason"] for r in rejects} == {"mix_downsampled"}
    detail = json.loads(rejects[0]["detail"])
    assert detail == {
        "source": "general",
        "policy": "random",
        "planned": 20,
        "available": 80,
        "why": "source over its share",
    }


def test_same_seed_same_mixture_other_seed_other(tmp_path):
    inputs = corpus(tmp_path)
    mix = {"total": 40, "validation": 4}
    ids = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        run_dir = run_mix(tmp_path, inputs, {**mix, "seed": seed}, name=name)
        ids.append([r["id"] for r in split_rows(run_dir, "train")])
    assert ids[0] == ids[1] and ids[0] != ids[2]


@pytest.mark.parametrize("fmt", ["sharegpt", "alpaca"])
def test_output_loads_with_datasets_and_describes_itself(tmp_path, fmt):
    datasets = pytest.importorskip("datasets")
    run_dir = run_mix(tmp_path, corpus(tmp_path), {"format": fmt, "validation": 10, "name": "my_sft"})
    mix_dir = run_dir / "mix"
    ds = datasets.load_dataset(
        "parquet",
        data_files={
            "train": str(mix_dir / "train/*.parquet"),
            "validation": str(mix_dir / "validation/*.parquet"),
        },
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert ds["train"].num_rows == 90 and ds["validation"].num_rows == 10
    rows = {r["id"]: r for r in list(ds["train"]) + list(ds["validation"])}
    by_tag = {tags(run_dir)[i]: r for i, r in rows.items()}
    if fmt == "sharegpt":
        assert by_tag["g0"]["system"] == "You are terse."
        assert [t["from"] for t in by_tag["g1"]["conversations"]] == ["human", "gpt", "human", "gpt"]
    else:
        assert by_tag["g1"]["history"] == [["General question number 1?", "General answer 1."]]
        assert by_tag["g1"]["output"] == "The follow-up answer." and by_tag["c3"]["output"].startswith(
            "def f3"
        )

    info = json.loads((mix_dir / "dataset_info.json").read_text())
    assert set(info) == {"my_sft", "my_sft_validation"}
    assert info["my_sft"]["file_name"] == "train" and info["my_sft"]["formatting"] == fmt
    columns = set(ds["train"].column_names)
    assert set(info["my_sft"]["columns"].values()) <= columns

    card = (mix_dir / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["configs"][0]["data_files"] == [
        {"split": "train", "path": "train/*.parquet"},
        {"split": "validation", "path": "validation/*.parquet"},
    ]
    assert {f["name"] for f in front["dataset_info"]["features"]} == columns
    assert front["dataset_info"]["splits"] == [
        {"name": "train", "num_examples": 90},
        {"name": "validation", "num_examples": 10},
    ]
    assert front["size_categories"] == ["n<1K"] and front["task_categories"] == ["text-generation"]
    assert "| general |" in card and "| mix | 100 | 100 | 0 |" in card
    assert "not checked" in card  # no decontam stage in this run


def test_clusters_never_straddle_the_split(tmp_path):
    rows = [chat(f"Q{i}?", f"A{i}.", tag=f"r{i}") for i in range(60)]
    for i in range(0, 60, 3):  # clusters of three, as dedup names them
        for j in range(3):
            rows[i + j]["dedup_cluster"] = f"cluster{i}"
    inputs = [{"path": write_jsonl(tmp_path / "in.jsonl", rows), "format": "messages", "source": "general"}]
    for seed in range(3):
        run_dir = run_mix(tmp_path, inputs, {"validation": 0.2, "seed": seed}, name=f"s{seed}")
        ingested = read_stage(run_dir, "ingest")[0]
        cluster = {r["id"]: json.loads(r["meta"])["dedup_cluster"] for r in ingested}
        val = {cluster[r["id"]] for r in split_rows(run_dir, "validation")}
        train = {cluster[r["id"]] for r in split_rows(run_dir, "train")}
        assert len(split_rows(run_dir, "validation")) == 12 and not val & train


def test_text_records_are_rejected_and_quality_policy_keeps_the_best(tmp_path):
    rows = [chat(f"Q{i}?", f"A{i}.", quality_score=i / 10, tag=f"r{i}") for i in range(10)]
    inputs = [
        {"path": write_jsonl(tmp_path / "in.jsonl", rows), "format": "messages", "source": "general"},
        {
            "path": write_jsonl(tmp_path / "t.jsonl", [{"text": "a raw document"}]),
            "format": "text",
            "source": "web",
        },
    ]
    run_dir = run_mix(tmp_path, inputs, {"total": 3, "policy": "quality", "validation": 0})
    _, rejects, manifest = read_stage(run_dir, "mix")
    assert sorted(tags(run_dir)[r["id"]] for r in split_rows(run_dir, "train")) == ["r7", "r8", "r9"]
    reasons = {r["reason"] for r in rejects}
    assert reasons == {"mix_downsampled", "mix_not_conversation"}
    assert not (run_dir / "mix" / "validation").exists()
    assert list(json.loads((run_dir / "mix" / "dataset_info.json").read_text())) == ["factory_sft"]


def test_a_finished_mix_is_skipped_and_a_changed_one_redone(tmp_path):
    inputs = corpus(tmp_path)
    run_dir = run_mix(tmp_path, inputs, {"total": 30})
    first = split_rows(run_dir, "train")
    run_mix(tmp_path, inputs, {"total": 30})
    assert "mix: skipped, up to date" in (run_dir / "factory.log").read_text()
    assert split_rows(run_dir, "train") == first
    run_mix(tmp_path, inputs, {"total": 20})
    assert len(split_rows(run_dir, "train")) + len(split_rows(run_dir, "validation")) == 20
    assert read_stage(run_dir, "mix")[2]["counts"]["out"] == 20


def test_bad_mix_config_is_a_one_line_error(tmp_path, capsys):
    inputs = corpus(tmp_path)
    cfg = write_config(
        tmp_path / "bad.yaml", tmp_path / "run", inputs, stages={"mix": {"total": 5, "total_tokens": 9}}
    )
    assert run_cli("run", "mix", "-c", str(cfg)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "total" in err[0]
