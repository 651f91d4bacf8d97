# Two commands: `make demo` and `make test`. Everything else is set-up they share.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Installed before anything that depends on torch, so pip never resolves a CUDA build here.
# GPU users: make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
PLUGINS := $(wildcard plugins/*)
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint typecheck unit bench docs clean

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]' $(foreach p,$(PLUGINS),-e ./$(p))
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tlcore demo

lint: $(STAMP)
	$(BIN)/ruff check tlcore plugins tests conftest.py
	$(BIN)/ruff format --check tlcore plugins tests conftest.py
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck unit

# Wheel builds and installs into fresh environments: minutes, so not in `make test`; CI runs it.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow and not benchmark"

bench: $(STAMP)
	$(BIN)/python -m pytest -m benchmark -s tests/benchmarks

# The documentation site into site/ (mkdocs.yml); --strict: a broken link, a missing page or a
# docstring griffe cannot parse fails the build. Every code block in docs/ runs in
# tests/test_docs.py (part of `make test`).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site

# docs/performance.md from one run on this machine: throughput rows, plots, per-format rows.
# Needs the `bench` extra (matplotlib); `fast` (tensorstore, zarrs) adds the decoder rows.
.PHONY: bench-report
bench-report: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/report.py
