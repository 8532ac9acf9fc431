# vmtest: run `make test` (all tests) or `make e2e` (the e2e suite) on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: deps venv lint test test-unit e2e bench clean

deps:
	./scripts/install-system-deps.sh

$(VENV)/.installed: lib/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e 'lib/python[dev]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	cd lib/python && ../../$(VENV)/bin/ruff check src tests ../../e2e-test
	cd lib/python && ../../$(VENV)/bin/mypy

test-unit: venv
	cd lib/python && ../../$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

## The whole suite: lint, unit tests, and the integration tests that boot real VMs.
test: deps venv lint
	cd lib/python && ../../$(PY) -m pytest tests -v $(PYTEST_ARGS)

## The e2e suite (server + client VMs, 12 browser tests) on the portable runtime.
E2E_OUT ?= out/e2e
e2e: deps venv
	rm -rf $(E2E_OUT)
	$(VENV)/bin/vmtest run e2e-test/test_script.py --machines e2e-test/machines.toml --out $(E2E_OUT); \
	  status=$$?; echo "e2e: artifacts in $(abspath $(E2E_OUT)) (summary.json, junit.xml, logs/, screenshots/)"; \
	  exit $$status

bench: deps venv
	cd lib/python && ../../$(PY) -m vmtest.bench --cold \
	  --recipe tests/recipes/minimal.toml --recipe tests/recipes/minimal-arm64.toml \
	  --helpers-recipe tests/recipes/services.toml --output ../../bench/results.json

clean:
	rm -rf $(VENV) out bench/results.json
