# Two commands for a new user: `make demo` and `make test`. Every target installs from the
# committed lock (uv.lock) only, into .venv, when .venv is missing or the lock changed.
# The lock tool, uv, is bootstrapped into .tools/ with the machine's python3 (no root needed).
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced
EXTRAS := --extra dev --extra bench
EXPORT := requirements-lock.txt
# uv never downloads an interpreter: it uses $(PYTHON) (3.10 to 3.12).
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

.PHONY: demo notebooks study test lab bench lock check-lock clean-data help

help:
	@echo "make demo       - run the main job on the embedded corpus (profile: demo)"
	@echo "make notebooks  - after make demo: notebook 03's collapse runs, every notebook executed into HTML (~5 min)"
	@echo "make study      - the clustering study: DINO, its remedies and SimCLR, SEEDS=3 seeds each (~40 min on 2 cores)"
	@echo "make test       - lint (ruff) and run the whole test suite (profile: smoke)"
	@echo "make lab        - open the notebooks in JupyterLab"
	@echo "make bench      - print the benchmark figures"
	@echo "make lock       - re-resolve uv.lock after editing pyproject.toml (and re-export $(EXPORT))"
	@echo "make check-lock - fail if uv.lock or $(EXPORT) no longer match pyproject.toml"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked $(EXTRAS) --python $(PYTHON)
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	WORKBENCH_PROFILE=$${WORKBENCH_PROFILE:-demo} $(PY) -m workbench demo

notebooks: $(STAMP)
	WORKBENCH_PROFILE=$${WORKBENCH_PROFILE:-demo} $(PY) -m workbench demo --notebooks

study: $(STAMP)
	WORKBENCH_PROFILE=$${WORKBENCH_PROFILE:-demo} $(PY) -m workbench study --seeds $${SEEDS:-3}

test: $(STAMP)
	$(VENV)/bin/ruff check workbench tests
	WORKBENCH_PROFILE=smoke $(PY) -m pytest -q tests

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) -m workbench.bench all

lock: | $(UV)
	$(UV) lock
	$(UV) export --frozen --no-hashes --no-header --no-emit-project $(EXTRAS) -o $(EXPORT) >/dev/null

check-lock: | $(UV)
	@$(UV) lock --check || { echo "uv.lock does not match pyproject.toml: run 'make lock' and commit uv.lock and $(EXPORT)"; exit 1; }
	@$(UV) export --frozen --no-hashes --no-header --no-emit-project $(EXTRAS) 2>/dev/null | diff -q - $(EXPORT) >/dev/null \
	  || { echo "$(EXPORT) is not the export of uv.lock: run 'make lock' and commit it"; exit 1; }
	@echo "uv.lock and $(EXPORT) match pyproject.toml"

clean-data:
	rm -rf data/corpus data/runs data/reports data/cache data/stores
