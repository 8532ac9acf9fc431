# vmtest: run `make test` (all tests) or `make e2e` (the e2e suite) on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: deps venv lint test test-unit e2e e2e-ts e2e-containers bench clean test-vm-x86_64 test-vm-aarch64 test-vm-all test-vm-ci

deps:
	./scripts/install-system-deps.sh

$(VENV)/.installed: lib/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e 'lib/python[dev]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	cd lib/python && ../../$(VENV)/bin/ruff check src tests ../../e2e-test ../../tests/vm
	cd lib/python && ../../$(VENV)/bin/mypy

test-unit: venv
	cd lib/python && ../../$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

## The whole suite: lint, unit tests, and the integration tests that boot real VMs.
test: deps venv lint
	cd lib/python && ../../$(PY) -m pytest tests -v $(PYTEST_ARGS)

## The e2e suite (server + client VMs, 12 browser tests) on the portable runtime; a second run
## resumes the healthy stack from a checkpoint (E2E_FLAGS=--fresh boots cold). Progress: a live
## display on a terminal, else time-stamped lines at least every 10 s (VMTEST_PROGRESS=live|plain|off).
E2E_OUT ?= out/e2e
E2E_MACHINES ?= e2e-test/machines.toml
e2e: deps venv
	rm -rf $(E2E_OUT)
	$(VENV)/bin/vmtest run e2e-test/test_script.py --machines $(E2E_MACHINES) --out $(E2E_OUT) $(E2E_FLAGS); \
	  status=$$?; echo "e2e: artifacts in $(abspath $(E2E_OUT)) (summary.json, junit.xml, logs/, screenshots/)"; \
	  exit $$status

## The same suite with the client running the @playwright/test twin (e2e-test/client-ts) of the
## pytest browser suite: the runner contract's second implementation (docs/browser-runner.md).
e2e-ts:
	$(MAKE) e2e E2E_MACHINES=e2e-test/machines-ts.toml E2E_OUT=out/e2e-ts

## The same suite on systemd-nspawn containers of the same images (seconds instead of TCG boots;
## no desktop screenshot, no checkpoint): what a machine without KVM runs while iterating.
e2e-containers:
	$(MAKE) e2e E2E_MACHINES=e2e-test/machines-containers.toml E2E_OUT=out/e2e-containers

# The VM validation suites (seed 002): Nix when this Nix can build them, else the portable runtime.
# scripts/test-vm decides first, and sets up the portable runtime (apt as root, the venv) only
# when it uses it: under Nix nothing is installed.
VM_OUT ?= out/vm
VM_ARCHES ?= x86_64 aarch64
test-vm-x86_64 test-vm-aarch64: test-vm-%:
	./scripts/test-vm $* $(VM_OUT)/$*

# Both architectures; in parallel when there are cores for two TCG guests at once (>= 4), then
# with plain progress lines: two live displays on one terminal would draw over each other.
test-vm-all:
	jobs=$$( [ $$(nproc) -ge 4 ] && echo 2 || echo 1 ); \
	  if [ "$$jobs" = 2 ]; then export VMTEST_PROGRESS=$${VMTEST_PROGRESS:-plain}; fi; \
	  $(MAKE) --no-print-directory -j$$jobs test-vm-x86_64 test-vm-aarch64

# The CI set: every architecture in VM_ARCHES, then one JUnit file and summary for the job, by
# the venv's vmtest when the portable runtime made one, else by the flake's (Nix ran every suite).
test-vm-ci:
	status=0; for arch in $(VM_ARCHES); do ./scripts/test-vm $$arch $(VM_OUT)/$$arch || status=1; done; \
	  if [ -x $(VENV)/bin/vmtest ]; then $(VENV)/bin/vmtest report $(VM_OUT); \
	  else nix --extra-experimental-features 'nix-command flakes' run .#vmtest -- report $(VM_OUT); fi || status=1; \
	  exit $$status

bench: deps venv
	cd lib/python && ../../$(PY) -m vmtest.portable.bench --cold \
	  --recipe tests/recipes/minimal.toml --recipe tests/recipes/minimal-arm64.toml \
	  --helpers-recipe tests/recipes/services.toml \
	  --build-only ../../machines/debian-vm-aarch64.toml --vm-suites ../../tests/vm/machines-aarch64.toml \
	  --e2e ../../e2e-test/machines.toml --e2e-containers ../../e2e-test/machines-containers.toml \
	  --output ../../bench/results.json

clean:
	rm -rf $(VENV) out bench/results.json
