# The README's two fresh-machine commands are `make pipeline` and `make test`.
# The environment is uv.lock (every package, exact version, hashes), installed by uv into .venv.
# `uv sync --locked` runs on every target: it takes well under a second when .venv matches the lock,
# reinstalls whatever differs from it, and fails when pyproject.toml changed without `make lock`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV := .uv/bin/uv
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: install lock lock-upgrade pipeline data test test-fast lint

# uv itself: a pinned, hash-checked wheel in its own small venv, so `uv sync` can keep .venv exact.
$(UV): tools/uv-requirements.txt
	rm -rf .uv && $(PYTHON) -m venv .uv
	.uv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r tools/uv-requirements.txt
	touch $(UV)

install: $(UV)
	$(UV) sync --locked --extra dev

# After editing the dependencies in pyproject.toml: re-resolve only what the edit needs.
lock: $(UV)
	$(UV) lock

# Move every package to the newest release allowed by pyproject.toml (then run `make test`).
lock-upgrade: $(UV)
	$(UV) lock --upgrade

data: install
	$(BIN)/dvc pull -q data.dvc

pipeline: data
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	@echo; cat reports/summary.txt

test: data
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q

test-fast: data
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check nablafx stages tests benchmarks scripts
