# ably-bridge developer commands. Every target sets up what it needs, so each
# works on a fresh machine with Python 3.11+ (with venv), make and redis-server;
# `make test` also needs rabbitmq-server, Node.js and npm (README: Prerequisites).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install interop dev test test-lowest lint core-coverage services ci clean simulate

$(STAMP): pyproject.toml
	@$(PYTHON) scripts/setup_venv.py $(VENV) dev
	@touch $(STAMP)

install: $(STAMP)

services:
	bash scripts/ensure-services.sh

## The official SDKs the interop tests drive (ably-js from npm; `ably` from PyPI is a dev extra).
interop:
	bash scripts/install-interop.sh

## Run the local stack: Redis, the Ably emulator, the bridge, a Celery worker and a demo
## publisher, with a live summary (Ctrl-C stops it). Options: make dev DEV_ARGS="--port 0 --json".
DEV_ARGS ?=
dev: install
	$(BIN)/ably-bridge dev $(DEV_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy ably_bridge workers
	$(BIN)/python scripts/gen_error_codes.py --check

## Run the whole test suite (sets up the venv and the services first).
test: install interop services
	$(BIN)/python -m pytest -q

## The sink and transport tests in a second venv (.venv-lowest) holding the lowest versions
## pyproject.toml declares, with the library shortcuts and with each on its public path.
test-lowest: services
	bash scripts/test-lowest.sh

## The sans-I/O core (protocol/, encoding/) must be near-totally branch-covered by its own tests.
core-coverage: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/protocol tests/encoding tests/test_sans_io.py \
		--cov=ably_bridge.protocol --cov=ably_bridge.encoding --cov-branch \
		--cov-report=term:skip-covered --cov-fail-under=97

## The bridge's deterministic simulation (tests/bridge/sim): SEEDS seeds through overlapping
## faults; a failing seed prints a one-line reproduction. CI runs 2,000 (in the test suite).
SEEDS ?= 10000
simulate: install
	$(BIN)/python -m tests.bridge.sim --seeds $(SEEDS)

ci: lint core-coverage test

clean:
	rm -rf $(VENV) .venv-lowest .mypy_cache .pytest_cache .ruff_cache build *.egg-info
