# The README's two commands are `make run` and `make test`; .ci/run calls `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install lint typecheck unit system-deps bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "keyrack needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Install into ./.venv and start the server on the embedded SQLite default.
run: install
	$(BIN)/keyrack serve

## Lint, type-check and run the whole test suite.
test: install system-deps lint typecheck
	$(BIN)/pytest

system-deps:
	@bash scripts/system-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

## Benchmarks (not tests; see docs/PERFORMANCE.md). BENCH_POSTGRES_URL adds PostgreSQL to (4).
bench: install system-deps
	$(BIN)/python bench/bench_http.py
	$(BIN)/python bench/bench_inprocess.py
	$(BIN)/python bench/bench_revocation.py $(if $(BENCH_POSTGRES_URL),--postgres $(BENCH_POSTGRES_URL))

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
