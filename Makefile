# make demo : set up .venv and run the whole study offline (bundled data and embedder)
# make test : set up .venv, then ruff and pytest (make test-llm: the real llama.cpp servers)
# Override the PyTorch requirement (test/benchmark reference only), e.g. make TORCH="torch==2.9.1"

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
MNIST  ?= ../shared/data/mnist
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LLM_STAMP := $(VENV)/.installed-llm-server

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-llm lint bench figures clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The CPU build of PyTorch first: the dev extra's plain torch requirement would otherwise pull a
# multi-GB CUDA build. [dev] includes [all] (sentence-transformers, the LLM clients, Dask).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with every extra (CPU PyTorch first)

# make test-llm starts real llama.cpp servers: the llm-server extra builds llama-cpp-python from
# source (~7 min on 2 cores the first time; pip keeps the wheel), and its first run builds
# llama.cpp's llama-server with cmake (~8 min, cached in ~/.cache/qa-optim). make test and make
# demo do without both; CI runs make test, then make test-llm (.ci/run).
$(LLM_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,llm-server]"
	@touch $(LLM_STAMP)

demo: $(STAMP)  ## run the optimizer study offline on the bundled data
	$(BIN)/qa run --embedder bundled

test: $(STAMP)  ## ruff, then the test suite (with the wheel installed outside the checkout)
	$(BIN)/ruff check models pipeline tests benchmarks
	$(BIN)/python -m pytest -m "not llm_server"

test-llm: $(LLM_STAMP)  ## the tests against real llama.cpp servers (builds llama.cpp once: ~15 min)
	$(BIN)/python -m pytest -m llm_server

lint: $(STAMP)  ## ruff only
	$(BIN)/ruff check models pipeline tests benchmarks

bench: $(STAMP)  ## speed: MNIST NumPy MLP vs PyTorch, the tanh study, qa tune vs qa train, side by side
	$(BIN)/python benchmarks/mnist_vs_torch.py
	$(BIN)/python benchmarks/study_speed.py
	$(BIN)/python benchmarks/tune_speed.py
	$(BIN)/python benchmarks/linesearch_cost.py
	$(BIN)/python benchmarks/mlp_ensemble.py
	$(BIN)/python benchmarks/estimators_vs_sklearn.py --data-dir $(MNIST)

figures: $(STAMP)  ## regenerate the README figures in docs/ from a demo run and a small suite
	$(BIN)/qa run --embedder bundled --out output/runs/docs-demo
	mkdir -p docs
	cp output/runs/docs-demo/*.png docs/
	$(BIN)/qa suite --budget small --data-dir $(MNIST) --out output/suite/docs-small
	cp output/suite/docs-small/profile.png docs/suite_profile.png
	cp output/suite/docs-small/heatmap.png docs/suite_heatmap.png
	cp output/suite/docs-small/lr_mnist.png docs/suite_lr_mnist.png

clean:  ## remove generated outputs and caches (keeps .venv)
	rm -rf output data/processed .pytest_cache .ruff_cache build dist *.egg-info
