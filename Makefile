# Tandem developer entry points. Everything installs into .venv from a clean clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PACKAGES := shared services/ingest services/mapper services/writer services/console simulators/mailchimp simulators/accessplanit devstack cli bench
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit lint typecheck stack-up stack-down bench bench-reconcile clean asyncapi

install: $(STAMP)

$(STAMP): requirements-dev.txt $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt $(foreach p,$(PACKAGES),-e ./$(p))
	@touch $(STAMP)

run: install
	$(PY) -m tandem_devstack run

test: install
	$(PY) -m tandem_devstack prerequisites
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy $(foreach p,$(PACKAGES),$(p)/src)

# The trace contract for dashboard teams; tests/unit/console/test_asyncapi.py fails when this file is stale.
asyncapi: install
	$(VENV)/bin/faststream docs gen tandem_console.trace_spec:app --yaml --out docs/asyncapi.yaml

# Not part of `make test`: starts the whole stack, loads it and writes bench/results/latest.{md,json}.
# BENCH_ARGS=--quick for a run under two minutes.
bench: install
	$(PY) -m tandem_devstack prerequisites
	$(PY) -m tandem_bench $(BENCH_ARGS)

# Not part of `make test` either: a backfill of 50,000 accessplanit users into an empty audience and a 50,000 ⇄
# 50,000 dry-run comparison; writes bench/results/reconcile-latest.md (BENCH_RECONCILE_USERS=N for another size).
bench-reconcile: install
	$(PY) -m tandem_devstack prerequisites
	$(PY) -m tandem_bench.reconcile --users $(or $(BENCH_RECONCILE_USERS),50000)

stack-up: install
	$(PY) -m tandem_devstack up

stack-down: install
	$(PY) -m tandem_devstack down

clean:
	rm -rf $(VENV) .tandem
