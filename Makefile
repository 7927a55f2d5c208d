# The README's two fresh-machine commands are `make pipeline` and `make test`.
# Both are idempotent: the venv is (re)installed only when pyproject.toml changed.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nablafx-installed
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: install pipeline data test test-fast lint clean-outputs

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# rational-activations declares torch==1.7.1 but works with torch 2.11 on CPU: install it
	# without its pins (only tests compare our pure-PyTorch rational activation against it).
	$(BIN)/python -m pip install -q --no-deps rational-activations==0.2.0
	$(BIN)/python -m pip install -q seaborn
	touch $(STAMP)

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
