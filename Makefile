# Two commands do all set-up on a fresh machine:
#   make demo   -- create .venv, install progreid (with plotting), run the synthetic-pedestrian demo
#   make test   -- create .venv, install progreid with its dev extras, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --constraint constraints.txt

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e ".[plot]"
	touch $@

$(VENV)/.dev: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e ".[dev]"
	touch $@ $(VENV)/.core

demo: $(VENV)/.core
	$(BIN)/progreid demo

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

# The speed and memory figures of docs/performance.md (about 10 minutes on 2 cores).
bench: $(VENV)/.dev
	$(BIN)/python benchmarks/ranking.py --scale market
	$(BIN)/python benchmarks/rerank.py --scale market
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/inference_throughput.py

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
