# `make demo` and `make test` are the two commands: each sets up .venv first (nothing else to install by hand).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench docs clean-runs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0  # first, pinned: the CPU build; an unpinned torch pulls CUDA wheels
	$(PY) -m pip install -q -e ".[dev,embed,train,ray]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/factory run clean dedup decontam mix -c configs/demo.yaml
	$(VENV)/bin/factory report runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check factory stages trainers evals tests
	$(VENV)/bin/ruff format --check factory stages trainers evals tests

format: $(STAMP)
	$(VENV)/bin/ruff format factory stages trainers evals tests
	$(VENV)/bin/ruff check --fix factory stages trainers evals tests

bench: $(STAMP)
	$(PY) tests/benchmarks/bench_clean.py

docs: $(STAMP)
	$(PY) -c "import re; from pathlib import Path; from factory.config import reference_markdown; from stages import STAGES; \
	from trainers.config import reference_table as train_table; from evals.config import reference_table as eval_table; \
	p = Path('README.md'); text = p.read_text(); \
	tables = {'config-reference': reference_markdown({n: c.Config for n, c in STAGES.items()}), 'train-config-reference': train_table(), 'eval-config-reference': eval_table()}; \
	text = [text := re.sub(rf'(<!-- {k}:start -->\n).*?(<!-- {k}:end -->)', lambda m: m[1] + t.rstrip() + '\n' + m[2], text, flags=re.S) for k, t in tables.items()][-1]; \
	p.write_text(text)"

clean-runs:
	rm -rf runs
