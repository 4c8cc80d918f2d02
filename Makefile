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
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

# Debian packages the tests drive for real: Chromium (UI test) and PostgreSQL 15 (portability).
system-deps:
	@bash .ci/system-deps

run: $(STAMP)
	$(BIN)/kidjamo run $(if $(MINUTES),--minutes $(MINUTES))

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	-$(BIN)/kidjamo db stop
	rm -rf .kidjamo
