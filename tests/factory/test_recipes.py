"""Every recipe shipped in configs/ validates against the current config models (a renamed key breaks a test,
not a user's first run)."""

from __future__ import annotations

import pytest

from factory.config import load_config
from stages import STAGES
from tests.conftest import ROOT

RECIPES = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_recipes():
    assert any(p.name == "demo.yaml" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(path):
    cfg = load_config(path, {name: cls.Config for name, cls in STAGES.items()})
    assert cfg.run_dir


EVAL_RECIPES = sorted((ROOT / "configs" / "eval").glob("*.yaml"))


@pytest.mark.parametrize("path", EVAL_RECIPES, ids=lambda p: p.name)
def test_eval_recipe_validates(path):
    from evals.config import load_eval_config

    cfg = load_eval_config(path)
    assert cfg.output_dir and cfg.benchmarks


def test_there_are_eval_recipes():
    assert {p.name for p in EVAL_RECIPES} >= {"adapter.yaml", "endpoint.yaml"}
