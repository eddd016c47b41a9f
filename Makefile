# Two commands matter: `make up` (run the main job) and `make test` (run the whole suite).
# Both work on a fresh Debian machine with Python 3.11: the venv and every dependency are made here.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Re-install only when the dependency list changes.
DEPS_STAMP := $(VENV)/.deps-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: up test bench voila venv install install-dev services system-packages node-tools clean lint typecheck

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

venv: $(BIN)/python

# An editable install does not place data files, so the Jupyter server extension's config is put where a
# regular install puts it; notebooks and papermill jobs run on a kernel whose spec lives in the venv.
define POST_INSTALL
	mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d
	cp extensions/jupyter-config/jupyter_server_config.d/nexus_kernel.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	$(BIN)/python -m ipykernel install --sys-prefix --name nexus --display-name "Nexus (venv)" >/dev/null
endef

$(DEPS_STAMP).run: | $(BIN)/python
	$(PIP) install --quiet -e ".[server,dashboards]"
	$(POST_INSTALL)
	touch $@

$(DEPS_STAMP).dev: | $(BIN)/python
	$(PIP) install --quiet -e ".[dev]"
	$(POST_INSTALL)
	touch $@

$(DEPS_STAMP).bench: $(DEPS_STAMP).dev
	$(PIP) install --quiet -e ".[dev,bench]"
	touch $@

# A dev install holds all a run install does: `make up` after `make install-dev` installs nothing more.
install: $(if $(wildcard $(DEPS_STAMP).dev),$(DEPS_STAMP).dev,$(DEPS_STAMP).run)
install-dev: $(DEPS_STAMP).dev

## The main job on embedded defaults: simulator → engine → live view. Ctrl-C stops it.
up: install
	$(BIN)/nexus up

## The whole suite, with the services it needs started when they are not running.
test: install-dev services system-packages node-tools
	bash scripts/run-tests.sh

bench: $(DEPS_STAMP).bench services
	$(BIN)/python -m bench $(BENCH)

## The live monitor as a Voila dashboard: the data of the home's running `nexus up` (found through .nexus/runtime.json);
## NEXUS_GATEWAY_URL + NEXUS_GATEWAY_TOKEN point it at another gateway.
voila: install-dev
	JUPYTER_CONFIG_PATH=deploy/voila $(BIN)/voila dashboards/monitor.ipynb

services:
	bash scripts/ensure-services.sh

system-packages:
	bash scripts/ensure-system-packages.sh

node-tools:
	bash scripts/ensure-node-tools.sh

lint: install-dev
	$(BIN)/python -m ruff check nexus_kernel tests bench

## mypy over nexus_kernel (mypy.ini); `make test` runs it too, before pytest.
typecheck: install-dev
	$(BIN)/python -m mypy --config-file mypy.ini

clean:
	rm -rf $(VENV) .nexus node_modules .pytest_cache
