# Two commands for a new user: `make demo` and `make test`. Both create .venv and install the
# package with its pinned dependencies when it is missing or stale (pyproject.toml changed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lab bench clean-data help

help:
	@echo "make demo   - run the main job on the embedded corpus (profile: demo)"
	@echo "make test   - run the whole test suite (profile: smoke)"
	@echo "make lab    - open the notebooks in JupyterLab"
	@echo "make bench  - print the benchmark figures"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,bench]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	WORKBENCH_PROFILE=$${WORKBENCH_PROFILE:-demo} $(PY) -m workbench demo

test: $(STAMP)
	WORKBENCH_PROFILE=smoke $(PY) -m pytest -q tests

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) -m workbench.bench all

clean-data:
	rm -rf data/corpus data/runs data/reports data/cache data/stores
