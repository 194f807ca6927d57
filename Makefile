# remitflow developer entry points. `make demo` and `make test` are the README's quick start.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 13), "remitflow needs CPython 3.11 or 3.12 (bytewax 0.21.1 wheels)"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,validate,bench]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Generate a month for a mid-size network and run it through remitflow, embedded (no servers).
demo: $(STAMP)
	$(BIN)/remitflow demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q

# The whole suite: lint, types, then every test with the local Kafka broker and Redis started
# (loopback only; the tests that need them fail rather than skip) and stopped afterwards,
# whatever the result. `make unit` runs the tests without starting anything.
test: lint typecheck
	bash scripts/chromium.sh ensure
	bash scripts/services.sh start
	REMITFLOW_SERVICES=1 $(BIN)/python -m pytest -q; rc=$$?; \
	  bash scripts/services.sh stop; exit $$rc

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
