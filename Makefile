# Set-up and the two jobs of the README: `make demo` and `make test`.
#
# TORCH_SPEC pins the CPU build of torch that this kind of machine has on disk. Elsewhere,
# install a CPU torch first (see README) and run `make TORCH_SPEC=torch demo`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.tribrid-installed
DEMO_DIR ?= examples/docs
DEMO_DATA ?= .tribrid-demo
PYTEST_ARGS ?=

export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint clean

install: $(STAMP)

# torch goes in first and alone: left to resolve it as a dependency, pip would pick a
# multi-GB CUDA build. Then tribrid with every extra (dev includes all): every wheel is
# declared but unstructured-inference, which unstructured's `fast` PDF path imports and
# whose declared dependencies cannot be installed beside a CPU torch (README
# "Installing"); scripts/pip-check.sh allows exactly that gap.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	sh scripts/system-deps.sh
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps unstructured-inference==1.6.14
	sh scripts/pip-check.sh $(BIN)/python
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tribrid ingest $(DEMO_DIR) --data-dir $(DEMO_DATA)
	$(BIN)/tribrid search "how does reciprocal rank fusion combine rankings" -k 3 --data-dir $(DEMO_DATA)
	$(BIN)/tribrid status --data-dir $(DEMO_DATA)

lint: $(STAMP)
	$(BIN)/ruff check tribrid tests benchmarks
	$(BIN)/ruff format --check tribrid tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_DATA) .pytest_cache .mypy_cache .ruff_cache
