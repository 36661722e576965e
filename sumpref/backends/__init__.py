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


_LOADED: dict[str, Backend] = {}  # this process's loaded transformers backend (at most one)


def loaded_backend(cfg: BackendConfig, **kwargs) -> Backend:
    """A loaded backend for `cfg`: what shard workers call in `load()`.

    A pooled shard actor (`sumpref.fanout`) runs the workers of several stages one after another:
    sampling from a model and its greedy evaluation load the weights once. Only the transformers
    backend is kept (its weights are the expensive part); one at a time, so another config frees
    the previous model first. vLLM engines (one per actor, never pooled) and HTTP clients (a key
    read at load) are built fresh each time.
    """
    if cfg.backend != "transformers":
        backend = make_backend(cfg, **kwargs)
        backend.load()
        return backend
    key = cfg.model_dump_json() + repr(sorted(kwargs.items()))
    if key not in _LOADED:
        _LOADED.clear()  # free the previous model before loading the next
        backend = make_backend(cfg, **kwargs)
        backend.load()
        _LOADED[key] = backend
    backend = _LOADED[key]
    backend.stats = BackendStats()
    return backend


__all__ = ["BACKENDS", "FAILURES", "Backend", "BackendStats", "Generation", "SamplingParams", "loaded_backend", "make_backend"]
