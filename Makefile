# One entry point for people and CI. Every target builds the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo check lint types contracts schemas-check test schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: the main job — bridge serve on its embedded SQLite store, driven by a real client
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## check: everything CI runs — format, lint, types, import contracts, schema freshness, tests
check: lint types contracts schemas-check test

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

schemas-check: $(STAMP)
	$(BIN)/bridge schemas --check

test: $(STAMP)
	$(BIN)/pytest

## schemas: regenerate schemas/ after changing a model or a channel
schemas: $(STAMP)
	$(BIN)/bridge schemas

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
