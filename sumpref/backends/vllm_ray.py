"""vLLM backend: one `vllm.LLM` engine inside each Ray actor of the worker environment.

One way to run vLLM. The pipeline's generation stages fan shards out to Ray actors
(`sumpref.fanout.run_shards`); for `backend: vllm` those actors start with the Ray `runtime_env`
that `load_runtime_env` reads, which names the worker environment:
- `py_executable`: a Python interpreter with vLLM (`.venv-vllm/bin/python`, built by `make
  worker-env`; `docker/runtime_env.cpu.yaml`), or
- `image_uri`: the GPU worker image (`docker/worker.Dockerfile`; the packaged
  `sumpref/resources/runtime_env.yaml`).
The driver (the orchestrator's environment, which cannot hold vLLM: its pins on torch,
transformers and fastapi clash with Prefect's) never imports vLLM; `VLLMBackend` imports it in
`load()`, inside the actor.

The engine: prefix caching on (an article's prompt is computed once for its `n` samples, which
one request with `n` asks for), structured output from `params.json_schema` (the LLM judge),
and a LoRA adapter (`cfg.adapter`, a DPO round's) served without merging through a
`LoRARequest`; `with_adapter` serves another adapter, or the base model, from the same engine.
A prompt that does not fit `max_model_len` is not sent: its generations are errors with reason
`PROMPT_TOO_LONG`, counted in `stats.errors` like every other failure.

Pure mapping functions (unit-tested without vLLM or Ray): `sampling_kwargs`, `engine_kwargs`,
`chat_to_engine_input`, `generations_from_output`, `add_generation_stats`, `add_cost`.
"""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path
from typing import Any

from sumpref.backends.base import BackendStats, Generation, Messages, SamplingParams, failed
from sumpref.config import BackendConfig

ADAPTER_NAME = "sumpref-adapter"
PROMPT_TOO_LONG = "prompt_too_long"
DEFAULT_RUNTIME_ENV = "runtime_env.yaml"  # package data: sumpref/resources/runtime_env.yaml


# ---------------------------------------------------------------------------------------------
# Pure mappings
# ---------------------------------------------------------------------------------------------


def sampling_kwargs(params: SamplingParams, n: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams` (structured output as a plain dict)."""
    greedy = params.temperature <= 0
    kw: dict[str, Any] = {
        "n": params.n if n is None else n,
        "temperature": 0.0 if greedy else float(params.temperature),
        "top_p": 1.0 if greedy else float(params.top_p),
        "max_tokens": int(params.max_new_tokens),
        "seed": int(params.seed if seed is None else seed),
    }
    if params.json_schema is not None:
        kw["structured_outputs"] = {"json": params.json_schema}
    return kw


def engine_kwargs(cfg: BackendConfig, model_path: str | None = None) -> dict[str, Any]:
    """Arguments for `vllm.LLM(**kw)`."""
    kw: dict[str, Any] = {
        "model": model_path or cfg.model,
        "enable_prefix_caching": True,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "max_model_len": cfg.max_model_len,
        "dtype": cfg.dtype,
        "gpu_memory_utilization": float(cfg.gpu_memory_utilization),
        "enforce_eager": bool(cfg.enforce_eager),
    }
    # tp > 1: worker processes inside the one actor that holds all tp GPUs; tp = 1: the model runs
    # in the actor's own process (no worker process to spawn and import vLLM again).
    kw["distributed_executor_backend"] = "mp" if cfg.tensor_parallel_size > 1 else "uni"
    if cfg.adapter:
        kw["enable_lora"] = True
        kw["max_lora_rank"] = int(cfg.max_lora_rank)
        kw["max_loras"] = 1
    return kw


def chat_to_engine_input(messages: Messages, tokenizer) -> dict[str, list[int]]:
    """Render with the model's chat template; the engine gets token ids (exact prompt counts)."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # some tokenizers return a BatchEncoding
        ids = ids["input_ids"]
    return {"prompt_token_ids": [int(t) for t in ids]}


def _finish_reason(raw: Any) -> str:
    return "length" if raw == "length" else "stop"


def generations_from_output(output: Any, n: int) -> list[Generation]:
    """One vLLM `RequestOutput` -> exactly n generations (missing completions become errors)."""
    prompt_tokens = len(output.prompt_token_ids or [])
    gens = [
        Generation(text=c.text, prompt_tokens=prompt_tokens, output_tokens=len(c.token_ids),
                   finish_reason=_finish_reason(c.finish_reason))
        for c in sorted(output.outputs, key=lambda c: getattr(c, "index", 0))[:n]
    ]
    gens += [failed("short_response", prompt_tokens) for _ in range(n - len(gens))]
    return gens


def add_generation_stats(stats: BackendStats, results: list[list[Generation]]) -> None:
    for gens in results:
        ok = [g for g in gens if g.finish_reason != "error"]
        stats.prompt_tokens += ok[0].prompt_tokens if ok else 0  # the prompt is computed once (prefix cache)
        stats.output_tokens += sum(g.output_tokens for g in gens)
        stats.requests += 1
        for g in gens:
            if g.finish_reason == "error":
                key = (g.error or "error").split(":", 1)[0]
                stats.errors[key] = stats.errors.get(key, 0) + 1


def add_cost(stats: BackendStats, cfg: BackendConfig, prompt_tokens: int, output_tokens: int, gpu_s: float) -> None:
    usd = (prompt_tokens * cfg.usd_per_1m_prompt_tokens + output_tokens * cfg.usd_per_1m_output_tokens) / 1e6
    usd += gpu_s / 3600.0 * cfg.usd_per_gpu_hour
    stats.gpu_seconds += gpu_s
    stats.cost_usd += usd


# ---------------------------------------------------------------------------------------------
# Where the engine actors run
# ---------------------------------------------------------------------------------------------


def load_runtime_env(path: str | None = None) -> dict[str, Any]:
    """The vLLM actors' Ray runtime_env: `path` (a backend's `runtime_env`), else
    `$SUMPREF_RUNTIME_ENV`, else the packaged sumpref/resources/runtime_env.yaml (GPU worker image).

    A relative `py_executable` is made absolute against the working directory (Ray starts the
    worker elsewhere); one that does not exist is an error here, in the driver, not a hung actor.
    """
    import yaml

    from importlib.resources import files

    path = path or os.environ.get("SUMPREF_RUNTIME_ENV") or str(files("sumpref") / "resources" / DEFAULT_RUNTIME_ENV)
    with open(path) as f:
        env = yaml.safe_load(f) or {}
    if not isinstance(env, dict):
        raise ValueError(f"{path}: a runtime_env must be a mapping")
    exe = env.get("py_executable")
    if exe and " " not in exe.strip():  # a plain interpreter path (not a command such as `uv run`)
        exe_path = Path(exe)
        if not exe_path.is_absolute():
            exe_path = Path.cwd() / exe_path
        if not exe_path.exists():
            raise FileNotFoundError(f"{path}: py_executable {exe!r} does not exist; build the worker "
                                    "environment first (`make worker-env`)")
        env["py_executable"] = str(exe_path)
    return env


# ---------------------------------------------------------------------------------------------
# The engine (in the actor)
# ---------------------------------------------------------------------------------------------


def lora_request(adapter: str):
    from vllm.lora.request import LoRARequest

    path = os.path.abspath(adapter)
    # One id per adapter path: the engine caches adapters by id.
    return LoRARequest(ADAPTER_NAME, 1 + (zlib.crc32(path.encode()) & 0x3FFFFFFF), path)


class VLLMBackend:
    """`vllm.LLM` in this process (a Ray actor of the worker environment). Cheap to build and
    pickle: the engine starts in `load()`."""

    supports_json_schema = True  # vLLM's structured outputs
    supports_template = False

    def __init__(self, cfg: BackendConfig, **_: Any):
        self.cfg = cfg
        self.stats = BackendStats()
        self._llm = None
        self._lora = None

    def __getstate__(self) -> dict:
        return {"cfg": self.cfg}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["cfg"])

    @property
    def cost_usd(self) -> float:
        return self.stats.cost_usd

    def load(self) -> None:
        if self._llm is not None:
            return
        from vllm import LLM

        from sumpref.model_paths import resolve_model

        self._llm = LLM(**engine_kwargs(self.cfg, resolve_model(self.cfg.model)))
        self._lora = lora_request(self.cfg.adapter) if self.cfg.adapter else None

    def with_adapter(self, adapter: str | None) -> "VLLMBackend":
        """A backend on this loaded engine that serves `adapter` (None: the base model), unmerged.
        Serving an adapter needs an engine started with one (`cfg.adapter` set)."""
        self.load()
        if adapter and not self.cfg.adapter:
            raise ValueError("this engine was started without LoRA support: set the backend's adapter")
        other = VLLMBackend(self.cfg.model_copy(update={"adapter": adapter}))
        other._llm = self._llm
        other._lora = lora_request(adapter) if adapter else None
        return other

    def _sampling_params(self, params: SamplingParams):
        import vllm
        from vllm.sampling_params import StructuredOutputsParams

        kw = sampling_kwargs(params)
        so = kw.pop("structured_outputs", None)
        if so is not None:
            kw["structured_outputs"] = StructuredOutputsParams(**so)
        return vllm.SamplingParams(**kw)

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Generation]]:
        self.load()
        tok = self._llm.get_tokenizer()
        inputs = [chat_to_engine_input(m, tok) for m in prompts]
        limit = self.cfg.max_model_len
        fits = [i for i, x in enumerate(inputs) if len(x["prompt_token_ids"]) < limit]
        results: list[list[Generation]] = [
            [failed(PROMPT_TOO_LONG, len(x["prompt_token_ids"])) for _ in range(params.n)]
            for x in inputs
        ]
        t0 = time.perf_counter()
        if fits:
            outputs = self._llm.generate([inputs[i] for i in fits], self._sampling_params(params),
                                         lora_request=self._lora, use_tqdm=False)
            for i, out in zip(fits, outputs):
                results[i] = generations_from_output(out, params.n)
        gpu_s = (time.perf_counter() - t0) * self.cfg.tensor_parallel_size
        before_p, before_o = self.stats.prompt_tokens, self.stats.output_tokens
        add_generation_stats(self.stats, results)
        add_cost(self.stats, self.cfg, self.stats.prompt_tokens - before_p, self.stats.output_tokens - before_o, gpu_s)
        return results
