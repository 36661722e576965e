"""Shared by the vLLM integration tests: the CPU engine configuration and `EngineProbe`, a class
that runs as a Ray actor in the worker environment and keeps one engine for a whole test module.

No pytest here: the worker environment imports this module to build the actor, and it has no
pytest (nor anything else the orchestrator's tests use).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sumpref.backends.base import BackendStats
from sumpref.backends.vllm_ray import VLLMBackend
from sumpref.config import VLLMBackendConfig

ROOT = Path(__file__).resolve().parents[2]
CPU_RUNTIME_ENV = str(ROOT / "docker" / "runtime_env.cpu.yaml")
WORKER_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def cpu_vllm_config(**overrides) -> VLLMBackendConfig:
    """vLLM on this CPU: eager mode (no compilation: minutes less at start), a quarter of the
    memory the engine may claim (the machine is shared), the worker environment's interpreter."""
    base = dict(max_model_len=1024, gpu_memory_utilization=0.25, enforce_eager=True, num_cpus=1, batch_size=8,
                runtime_env=CPU_RUNTIME_ENV)
    return VLLMBackendConfig(**{**base, **overrides})


class EngineProbe:
    """One engine in one actor; `cfg.adapter` set starts it with LoRA support."""

    def __init__(self, cfg: VLLMBackendConfig):
        self.backend = VLLMBackend(cfg)
        self.backend.load()

    def where(self) -> dict:
        import vllm

        return {"python": sys.executable, "vllm": vllm.__version__, "pid": os.getpid()}

    def generate(self, prompts, params, adapter: str | None = "configured"):
        """Generations and the stats of this call; `adapter=None` asks the base model."""
        backend = self.backend if adapter == "configured" else self.backend.with_adapter(adapter)
        gens = backend.generate(prompts, params)
        stats, backend.stats = backend.stats, BackendStats()
        return gens, stats

    def run_worker(self, worker, rows: list[dict], adapter: str | None = None):
        """A pipeline shard worker (`SummaryJudge`, `Summarizer`...) on this engine, base model by default."""
        worker.backend = self.backend.with_adapter(adapter)
        return worker.run(rows)


def make_random_adapter(out: Path, seed: int = 0) -> str:
    """A LoRA adapter for the embedded model whose B matrices are random, not zero: it changes
    outputs. (Runs in the orchestrator's environment, which has peft.)"""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sumpref.model_paths import resolve_model

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("embedded:smollm2-135m-instruct"))
    lora = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(str(out))
    return str(out)


def worker_env_vars() -> dict[str, str]:
    """The environment variables the CPU runtime_env gives vLLM actors, for a server process."""
    import yaml

    with open(CPU_RUNTIME_ENV) as f:
        return {k: str(v) for k, v in (yaml.safe_load(f).get("env_vars") or {}).items()}


def articles(k: int, max_words: int = 120) -> list[dict]:
    """The first `k` shared CNN/DM articles, each cut to `max_words` words."""
    import json

    rows = []
    with open(ROOT.parent / "shared" / "data" / "cnndm_cliff.jsonl") as f:
        for line in f:
            r = json.loads(line)
            rows.append({**r, "article": " ".join(r["article"].split()[:max_words])})
            if len(rows) == k:
                break
    return rows
