# System Design Lab. `make demo` and `make test` install what they need into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test lint up down status clean

setup: $(STAMP) ## Create .venv and install the lab with its dev tools (quick when done)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required; run: make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: setup ## Run the lab's main job on embedded servers
	$(BIN)/lab demo

# Two passes. Most tests spend their time waiting on the servers they start, so they run in
# TEST_WORKERS processes, each with servers of its own; the tests marked `alone` measure latency,
# lateness or recovery under load, and run afterwards with the machine to themselves. A pass that
# PYTEST_ARGS leaves empty (pytest's exit code 5) is not a failure. PYTEST_ARGS must not carry -m:
# each pass sets its own, and pytest keeps only the last.
TEST_WORKERS ?= 2

test: setup ## Run the whole test suite against real servers
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not alone" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -m alone $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: setup ## ruff and mypy
	$(BIN)/ruff check services loadtests tests compose
	$(BIN)/ruff format --check services loadtests tests compose
	$(BIN)/mypy

up: setup ## Start infrastructure, services and workers (lab up)
	$(BIN)/lab up

down: setup ## Stop everything lab up started
	$(BIN)/lab down

status: setup ## Show what runs and whether it is healthy
	$(BIN)/lab status

clean: ## Stop the lab, remove its state, the virtualenv and caches
	@if [ -x $(BIN)/lab ]; then $(BIN)/lab down; fi
	rm -rf .lab $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
