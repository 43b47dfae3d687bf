# Two commands work on a fresh machine with Python 3.11 and make: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Prefect runs offline and in-project: no telemetry, its home and results inside the checkout.
export PREFECT_HOME ?= $(CURDIR)/.prefect-home
export PREFECT_RESULTS_LOCAL_STORAGE_PATH ?= $(CURDIR)/.prefect-home/results
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_LOGGING_EXTRA_LOGGERS ?= eraflow
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MPLBACKEND ?= Agg

STORE ?= $(CURDIR)/eraflow-store
ARGS ?=

.PHONY: venv demo test test-fast lint bench gpu-check multihost clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## Run the main pipeline on the embedded default: ephemeral Prefect, built-in simulator, Parquet store.
demo: $(STAMP)
	$(BIN)/eraflow run --store $(STORE) $(ARGS)

## Run the whole test suite (slow and Postgres tests included; GPU tests skip without CUDA),
## on two workers, each test file on one of them (a module's server or store is made once).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

## The fast part: no slow end-to-end, server or browser tests (about 3.5 min on 2 cores).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow and not server" $(PYTEST_ARGS)

## Scale-out across hosts, as network namespaces of this machine (needs root and iproute2): a
## backfill through the deployments, a GPU host cut off mid-run. Not part of `make test`.
multihost: $(STAMP)
	$(BIN)/python -m pytest -m multihost -s tests/multihost $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy eraflow tasks flows blocks
	$(BIN)/lint-imports

## The prepared GPU check: runs with any python3 that has NumPy, pandas and CuPy (no venv, no
## Prefect): make gpu-check GPU_PYTHON=python3 GPU_OUT=/path; on a CPU host it runs the CPU part.
GPU_PYTHON ?= $(BIN)/python
GPU_OUT ?= $(CURDIR)/gpu-check-out
gpu-check:
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) benchmarks/gpu_check.py --out $(GPU_OUT)

bench: $(STAMP)
	PYTHONPATH=$(CURDIR) $(BIN)/python benchmarks/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) .prefect-home eraflow-store .pytest_cache
