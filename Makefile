# Two entry points (see README): `make run` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest browser asyncapi fuzz bench bench-fanout soak clean

# `make run` installs the package only; `make test` (and the other dev targets) add the dev tools.
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/tradewire serve

# Debian's Chromium for the browser tests (installed when missing and possible; see the script).
browser:
	.ci/ensure-chromium

# Regenerate the AsyncAPI document from the protocol's schemas (a test checks it is current).
asyncapi: $(STAMP)
	$(BIN)/python -m tradewire.protocol.asyncapi > docs/asyncapi.yaml

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/tradewire

pytest: $(STAMP) browser
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
	$(BIN)/python bench/backtest_throughput.py

bench-fanout: $(STAMP)
	$(BIN)/python bench/fanout.py

# Not in CI: 30 min at 1000 connections on loopback (SOAK_MINUTES=5 make soak for a short run).
SOAK_MINUTES ?= 30
soak: $(STAMP)
	$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
