"""Backends, chosen from one explicit table by the config's `backend` tag.

The tag also selects the config type (`sumpref.config.BackendConfig` is a union keyed on it), so
each backend receives the fields of its own engine only. Each entry is imported only when
selected, so the library imports without vLLM or an HTTP client stack installed.
"""

from __future__ import annotations

import importlib

from sumpref.backends.base import FAILURES, Backend, BackendStats, Generation, SamplingParams
from sumpref.config import BackendConfig

BACKENDS: dict[str, tuple[str, str]] = {
    "transformers": ("sumpref.backends.transformers_backend", "TransformersBackend"),
    "vllm": ("sumpref.backends.vllm_ray", "VLLMBackend"),
    "openai": ("sumpref.backends.openai_http", "OpenAIBackend"),
}


def make_backend(cfg: BackendConfig, **kwargs) -> Backend:
    module, cls = BACKENDS[cfg.backend]
    return getattr(importlib.import_module(module), cls)(cfg, **kwargs)


__all__ = ["BACKENDS", "FAILURES", "Backend", "BackendStats", "Generation", "SamplingParams", "make_backend"]
