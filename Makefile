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
# The embedded corpus plays its instruments from FluidR3_GM.sf2 (Frank Wen and Toby Smithe, MIT
# licence), unpacked from Debian's fluid-soundfont-gm package at this version and checked against
# this SHA-256; elsewhere, point WORKBENCH_SOUNDFONT at a copy of the same file.
SF_PACKAGE := fluid-soundfont-gm
SF_VERSION := 3.1-5.3
SF_SHA256 := 74594e8f4250680adf590507a306655a299935343583256f3b722c48a1bc1cb0
SOUNDFONT := $(TOOLS)/soundfonts/FluidR3_GM.sf2
# uv never downloads an interpreter: it uses $(PYTHON) (3.10 to 3.12).
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

.PHONY: demo notebooks study test lab bench lock check-lock clean-data help soundfont

help:
	@echo "make demo       - run the main job on the embedded corpus (profile: demo)"
	@echo "make notebooks  - after make demo: notebook 03's collapse runs, every notebook executed into HTML (~5 min)"
	@echo "make study      - the clustering study: DINO, its remedies and SimCLR, SEEDS=3 seeds each (~20 min on 2 cores)"
	@echo "make test       - lint (ruff) and run the whole test suite (profile: smoke)"
	@echo "make lab        - open the notebooks in JupyterLab"
	@echo "make soundfont  - unpack FluidR3_GM.sf2, the corpus's instruments, into $(TOOLS)/soundfonts (every target does)"
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

soundfont: $(SOUNDFONT)

# WORKBENCH_SOUNDFONT set: that file is used and nothing is fetched
$(SOUNDFONT):
ifeq ($(WORKBENCH_SOUNDFONT),)
	@command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || { echo "FluidR3_GM.sf2 comes from Debian's $(SF_PACKAGE) package and this machine has no apt-get: set WORKBENCH_SOUNDFONT=/path/to/FluidR3_GM.sf2 (sha256 $(SF_SHA256))"; exit 1; }
	rm -rf $(TOOLS)/soundfonts.partial && mkdir -p $(TOOLS)/soundfonts.partial
	cd $(TOOLS)/soundfonts.partial && { apt-get download -q $(SF_PACKAGE)=$(SF_VERSION) 2>/dev/null || { apt-get update -qq && apt-get download -q $(SF_PACKAGE)=$(SF_VERSION); }; }
	dpkg-deb -x $(TOOLS)/soundfonts.partial/$(SF_PACKAGE)_*.deb $(TOOLS)/soundfonts.partial/deb
	echo "$(SF_SHA256)  $(TOOLS)/soundfonts.partial/deb/usr/share/sounds/sf2/FluidR3_GM.sf2" | sha256sum -c --quiet
	mkdir -p $(TOOLS)/soundfonts
	cp $(TOOLS)/soundfonts.partial/deb/usr/share/doc/$(SF_PACKAGE)/copyright $(TOOLS)/soundfonts/FluidR3_GM.copyright
	mv $(TOOLS)/soundfonts.partial/deb/usr/share/sounds/sf2/FluidR3_GM.sf2 $(SOUNDFONT)
	rm -rf $(TOOLS)/soundfonts.partial
else
	@test -f "$(WORKBENCH_SOUNDFONT)" || { echo "WORKBENCH_SOUNDFONT=$(WORKBENCH_SOUNDFONT): no such file"; exit 1; }
endif

demo: $(STAMP) $(if $(WORKBENCH_SOUNDFONT),,$(SOUNDFONT))
	WORKBENCH_PROFILE=$${WORKBENCH_PROFILE:-demo} $(PY) -m workbench demo

notebooks: $(STAMP) $(if $(WORKBENCH_SOUNDFONT),,$(SOUNDFONT))
	WORKBENCH_PROFILE=$${WORKBENCH_PROFILE:-demo} $(PY) -m workbench demo --notebooks

study: $(STAMP) $(if $(WORKBENCH_SOUNDFONT),,$(SOUNDFONT))
	WORKBENCH_PROFILE=$${WORKBENCH_PROFILE:-demo} $(PY) -m workbench study --seeds $${SEEDS:-3}

test: $(STAMP) $(if $(WORKBENCH_SOUNDFONT),,$(SOUNDFONT))
	$(VENV)/bin/ruff check workbench tests
	WORKBENCH_PROFILE=smoke $(PY) -m pytest -q tests

lab: $(STAMP) $(if $(WORKBENCH_SOUNDFONT),,$(SOUNDFONT))
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP) $(if $(WORKBENCH_SOUNDFONT),,$(SOUNDFONT))
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
