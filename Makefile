# Two entry points (see README): `make run` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: run test lint typecheck pytest fuzz bench bench-fanout clean

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

# Property-based fuzzing of the message path on both endpoints with a high example count
# (minutes; CI runs the same module at a small count). FUZZ_EXAMPLES per endpoint.
FUZZ_EXAMPLES ?= 5000
fuzz: $(STAMP)
	TRADEWIRE_FUZZ_PROFILE=fuzz TRADEWIRE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
		$(BIN)/python -m pytest -q tests/integration/test_fuzz.py --hypothesis-show-statistics

bench: $(STAMP)
	$(BIN)/python bench/rr_heartbeat.py
	$(BIN)/python bench/engine_throughput.py

bench-fanout: $(STAMP)
	$(BIN)/python bench/fanout.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
