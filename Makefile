# ably-bridge developer commands. Every target sets up what it needs, so each
# works on a fresh machine with Python 3.11+, redis-server and rabbitmq-server.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install interop dev test lint services ci clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

services:
	bash scripts/ensure-services.sh

## The official SDKs the interop tests drive (ably-js from npm; `ably` from PyPI is a dev extra).
interop:
	bash scripts/install-interop.sh

## Run the local stack: the Ably emulator (the bridge and a worker join it as they land).
dev: install
	$(BIN)/ably-bridge dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy ably_bridge workers
	$(BIN)/python scripts/gen_error_codes.py --check

## Run the whole test suite (sets up the venv and the services first).
test: install interop services
	$(BIN)/python -m pytest -q

ci: lint test

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
