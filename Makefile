# fourm: `make demo` runs the main job, `make test` runs the tests; both install first (idempotent and quick when
# nothing changed). The gates CI runs before the tests: `make lint` (ruff check and ruff format --check) and
# `make typecheck` (mypy on the plugin contract, the registry and the key table; configured in pyproject.toml).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.install-stamp
PLUGIN_DIRS := $(sort $(dir $(wildcard modalities/*/pyproject.toml plugins/*/pyproject.toml)))
INSTALL_INPUTS := pyproject.toml constraints.txt Makefile $(wildcard modalities/*/pyproject.toml plugins/*/pyproject.toml)
DEMO_DIR ?= demo
LINT_PATHS := fourm_core modalities plugins tests benchmarks

.PHONY: install test demo lint format typecheck check clean

install: $(STAMP)

$(STAMP): $(INSTALL_INPUTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -c constraints.txt --no-build-isolation -e ".[test]" $(addprefix -e ./,$(PLUGIN_DIRS))
	$(PY) -c "import fourm_core.registry as r; reg = r.Registry(strict=True); print(f'fourm installed: {len(reg.modalities())} modalities')"
	@touch $(STAMP)

# Every test, the end-to-end ones included: they run on tiny configurations (the demo's test trains for a second), so
# there is no slow tier to skip.
test: install
	FOURM_STRICT_PLUGINS=1 $(PY) -m pytest -q

demo: install
	$(VENV)/bin/fourm demo --out $(DEMO_DIR)

lint: install
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

format: install
	$(PY) -m ruff check --fix $(LINT_PATHS)
	$(PY) -m ruff format $(LINT_PATHS)

typecheck: install
	$(PY) -m mypy

# Everything CI checks, in its order.
check: lint typecheck test

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
