"""Config validation: unknown keys, wrong types and bad YAML are refused with the key path and a hint."""

from __future__ import annotations

import pytest

from factory.config import IngestConfig, Section, load_config
from factory.errors import ConfigError
from stages import STAGES

SECTIONS = {name: cls.Config for name, cls in STAGES.items()}


def load(tmp_path, text: str) -> Section:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return load_config(path, SECTIONS)


def test_minimal_config_runs_every_stage_on_defaults(tmp_path):
    cfg = load(tmp_path, "run_dir: runs/x\ninputs:\n  - {path: a.jsonl}\n")
    assert cfg.run_dir == "runs/x"
    assert cfg.inputs[0].source == "default" and cfg.inputs[0].format is None
    assert cfg.stages.ingest == IngestConfig()
    assert cfg.stages.clean == STAGES["clean"].Config()
    assert cfg.executor == "local"


def test_unknown_stage_key_names_full_path_and_suggests(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(
            tmp_path, "run_dir: r\ninputs: [{path: a}]\nstages:\n  clean:\n    too_shortt: {enabled: false}\n"
        )
    msg = str(err.value)
    assert "stages.clean.too_shortt" in msg
    assert "did you mean `stages.clean.too_short`" in msg


def test_unknown_key_in_input_list_item(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "run_dir: r\ninputs:\n  - {path: a, sorce: code}\n")
    assert "inputs.0.sorce" in str(err.value) and "inputs.0.source" in str(err.value)


def test_unknown_top_level_key_without_close_match(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "run_dir: r\ninputs: [{path: a}]\nzzz: 1\n")
    assert "unknown key `zzz`" in str(err.value) and "did you mean" not in str(err.value)


def test_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "run_dir: r\ninputs: [{path: a}]\nstages:\n  ingest: {shard_rows: lots}\n")
    assert "stages.ingest.shard_rows" in str(err.value) and "'lots'" in str(err.value)


def test_bad_enum_value(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "run_dir: r\ninputs: [{path: a, format: csvv}]\n")
    assert "inputs.0.format" in str(err.value)


def test_missing_required_keys(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "inputs: [{path: a}]\n")
    assert "missing required key `run_dir`" in str(err.value)


def test_empty_inputs_are_refused_unless_synth_runs(tmp_path, capsys):
    from tests.conftest import run_cli

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\ninputs: []\n")
    assert run_cli("run", "clean", "-c", str(cfg)) == 2
    assert "inputs: empty" in capsys.readouterr().err
    assert not (tmp_path / "run" / "ingest").exists()


def test_invalid_yaml_names_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "run_dir: r\ninputs: [{path: a}\nfoo: : bar\n")
    assert "cfg.yaml:" in str(err.value) and "invalid YAML" in str(err.value)


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="must be a mapping"):
        load(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", SECTIONS)


def test_readme_config_reference_matches_the_models():
    """The README's config table is generated from the models (`make docs`); it must not drift from them."""
    import re

    from factory.config import reference_markdown
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- config-reference:start -->\n(.*?)\n<!-- config-reference:end -->", readme, re.S)
    assert block, "README.md lacks the config reference block"
    assert block[1] == reference_markdown(SECTIONS), "README config reference is stale: run `make docs`"
