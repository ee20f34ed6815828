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
	$(VENV)/bin/ruff check factory stages tests
	$(VENV)/bin/ruff format --check factory stages tests

format: $(STAMP)
	$(VENV)/bin/ruff format factory stages tests
	$(VENV)/bin/ruff check --fix factory stages tests

bench: $(STAMP)
	$(PY) tests/benchmarks/bench_clean.py

docs: $(STAMP)
	$(PY) -c "import re; from pathlib import Path; from factory.config import reference_markdown; from stages import STAGES; \
	p = Path('README.md'); table = reference_markdown({n: c.Config for n, c in STAGES.items()}); \
	p.write_text(re.sub(r'(<!-- config-reference:start -->\n).*?(<!-- config-reference:end -->)', lambda m: m[1] + table + '\n' + m[2], p.read_text(), flags=re.S))"

clean-runs:
	rm -rf runs
