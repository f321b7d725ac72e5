# Ensayo's whole contributor interface. `make up` and `make test` install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUF := node_modules/.bin/buf

.DEFAULT_GOAL := help
.PHONY: help install up test test-fast lint fmt generate generate-check proto-lint bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml package.json scripts/system_deps.sh
	bash scripts/system_deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	npm install --no-audit --no-fund --silent
	touch $(STAMP)

install: $(STAMP) ## create .venv and install Ensayo with everything the tests need (buf included)

up: install ## install, then run all four services locally on embedded defaults
	$(BIN)/ensayo up

test: install lint generate-check proto-lint ## install, then every tier: lint, stubs, protos, unit, service, integration, e2e, chart
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: install ## only the unit and service tiers
	$(BIN)/pytest -q -p no:cacheprovider tests/unit tests/service

lint: install ## ruff format --check, ruff check, mypy --strict
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: install ## ruff format + ruff check --fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

generate: install ## regenerate the Python stubs from protos/
	$(PY) scripts/gen_protos.py

generate-check: generate ## fail when the committed stubs differ from the protos
	git diff --exit-code --stat -- libs/ensayo/v1
	@test -z "$$(git status --porcelain -- libs/ensayo/v1)" || (git status --porcelain -- libs/ensayo/v1; echo "untracked generated files: commit them"; exit 1)

proto-lint: install ## buf lint (buf comes from the @bufbuild/buf npm package)
	$(BUF) lint

bench: install ## benchmarks with their peers side by side; rewrites docs/benchmarks.md
	$(PY) -m bench

clean: ## remove the virtualenv, node_modules and local state
	rm -rf $(VENV) node_modules .ensayo
