# Two entry points (see README): `make run` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: run test lint typecheck pytest bench bench-fanout soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tradewire serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/tradewire

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/rr_heartbeat.py
	$(BIN)/python bench/engine_throughput.py

bench-fanout: $(STAMP)
	$(BIN)/python bench/fanout.py

# Not in CI: 30 min at 1000 connections on loopback (SOAK_MINUTES=5 make soak for a short run).
SOAK_MINUTES ?= 30
soak: $(STAMP)
	$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
