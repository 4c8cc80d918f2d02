# Two commands: `make run` (the pipeline on embedded defaults) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MINUTES ?=
PYTEST_ARGS ?=

.PHONY: run test venv system-deps bench clean help

help:
	@echo "make run [MINUTES=N]   start PostgreSQL, ingestion, simulator and Airflow (stop after N minutes)"
	@echo "make test              run the whole test suite"
	@echo "make bench             run the benchmarks under bench/"

venv: $(STAMP)

# Re-install only when the pinned requirements or the project metadata change.
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

# Debian packages the tests drive for real: Chromium (UI test), PostgreSQL 15 (portability, the deploy test's warehouse),
# Prometheus and Alertmanager (system alerts), Redis (the deploy test's Celery broker).
system-deps:
	@bash .ci/system-deps

run: $(STAMP)
	$(BIN)/kidjamo run $(if $(MINUTES),--minutes $(MINUTES))

PG15_BIN := /usr/lib/postgresql/15/bin

# The whole suite on embedded PostgreSQL 18, then the warehouse suite again on Debian's PostgreSQL 15.
test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	KIDJAMO_TEST_PG_BIN_DIR=$(PG15_BIN) $(BIN)/python -m pytest -q tests/warehouse

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	-$(BIN)/kidjamo db stop
	rm -rf .kidjamo
