"""vLLM backend, in-process (`VLLMBackend`) or fanned out over a Ray Data actor pool.

vLLM is imported only inside `VLLMBackend.load()` / `generate()` and the Ray processor's workers,
so this module imports in the orchestrator's environment, which cannot hold vLLM (its pins on
torch, transformers and fastapi clash with Prefect's: see docker/README.md).

Pure mapping functions (unit-tested without vLLM or Ray):
- `sampling_kwargs(params)`: our `SamplingParams` -> `vllm.SamplingParams` keyword arguments
  (n, temperature, top_p, max_tokens, seed, `structured_outputs` = {"json": schema}).
- `engine_kwargs(cfg)`: `BackendConfig` -> `vllm.LLM` / Ray engine arguments (prefix caching on,
  tensor parallelism, LoRA switched on when `cfg.adapter` is set).
- `chat_to_engine_input(messages, tokenizer)`: chat messages -> `{"prompt_token_ids": [...]}`.
- `generations_from_output(output, n)`: one vLLM `RequestOutput` -> n `Generation`s.
- `ray_rows(prompt_id, messages, params, adapter)` / `generation_from_ray_row(row, params)`: the
  row-level pre/post-processing of the Ray Data processor.

LoRA: an iterative round samples from the previous round's adapter without merging it, through
vLLM's `LoRARequest` (in-process) or the row's `model` field (Ray Data LLM loads the adapter on
the worker). Ray Data LLM keeps only a request's first completion, so the Ray path writes one row
per sample (seed shifted per sample); with prefix caching on, the n rows of an article share the
prompt's cached key/values, which is what `n` would have bought.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterable

from sumpref.backends.base import BackendStats, Generation, Messages, SamplingParams
from sumpref.config import BackendConfig

ADAPTER_NAME = "sumpref-adapter"
SAMPLE_SEED_STRIDE = 1_000_003  # per-sample seeds of one prompt never collide with another's


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
    """Arguments for `vllm.LLM(**kw)` (and Ray Data LLM's `engine_kwargs`, minus `model`)."""
    kw: dict[str, Any] = {
        "model": model_path or cfg.model,
        "enable_prefix_caching": True,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "max_model_len": cfg.max_model_len,
        "dtype": cfg.dtype,
        "gpu_memory_utilization": float(getattr(cfg, "gpu_memory_utilization", 0.90)),
    }
    if cfg.tensor_parallel_size > 1:
        kw["distributed_executor_backend"] = "mp"  # inside one actor that holds all tp GPUs
    if cfg.adapter:
        kw["enable_lora"] = True
        kw["max_lora_rank"] = int(getattr(cfg, "max_lora_rank", 64))
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
    gens += [Generation("", prompt_tokens, 0, "error", "short_response") for _ in range(n - len(gens))]
    return gens


def ray_rows(prompt_id: Any, messages: Messages, params: SamplingParams, adapter: str | None = None) -> list[dict]:
    """One Ray Data LLM input row per sample of one prompt."""
    rows = []
    for j in range(params.n):
        seed = params.seed * SAMPLE_SEED_STRIDE + j if params.temperature > 0 else params.seed
        sp = sampling_kwargs(params, n=1, seed=seed)
        if "structured_outputs" in sp:  # a JSON string keeps the row's Arrow schema simple
            sp["structured_outputs"] = {"json": json.dumps(params.json_schema, sort_keys=True)}
        row = {"prompt_id": prompt_id, "sample_idx": j, "messages": messages, "sampling_params": sp}
        if adapter:
            row["model"] = lora_model_field(adapter)[1]
        rows.append(row)
    return rows


def lora_model_field(adapter: str) -> tuple[str | None, str]:
    """(dynamic_lora_loading_path, the row's `model` value) for an adapter path or URI.

    Remote adapters (s3://, gs://...) are named relative to their parent folder, which Ray Data
    LLM downloads from; a local directory is passed as is (workers must see the same path)."""
    if "://" in adapter:
        parent, _, name = adapter.rstrip("/").rpartition("/")
        return parent, name
    return None, os.path.abspath(adapter)


def generation_from_ray_row(row: dict, params: SamplingParams) -> Generation:
    """A Ray Data LLM output row -> Generation (its engine error becomes a counted error row)."""
    err = row.get("__inference_error__")
    if err:
        return Generation("", int(row.get("num_input_tokens") or 0), 0, "error", f"engine_error:{str(err)[:200]}")
    out_tokens = int(row.get("num_generated_tokens") or 0)
    return Generation(
        text=row.get("generated_text") or "",
        prompt_tokens=int(row.get("num_input_tokens") or 0),
        output_tokens=out_tokens,
        finish_reason="length" if out_tokens >= params.max_new_tokens else "stop",
    )


def collect_ray_rows(rows: Iterable[dict], prompt_ids: list[Any], params: SamplingParams) -> list[list[Generation]]:
    """Group output rows back by prompt, in `prompt_ids` order and sample order; a sample that
    never came back is an error row, a duplicate is ignored."""
    by_prompt: dict[Any, dict[int, Generation]] = {pid: {} for pid in prompt_ids}
    for r in rows:
        slot = by_prompt.get(r["prompt_id"])
        if slot is not None:
            slot.setdefault(int(r["sample_idx"]), generation_from_ray_row(r, params))
    return [[by_prompt[pid].get(j, Generation("", 0, 0, "error", "missing_row")) for j in range(params.n)]
            for pid in prompt_ids]


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
    usd += gpu_s / 3600.0 * float(getattr(cfg, "usd_per_gpu_hour", 0.0))
    stats.gpu_seconds = getattr(stats, "gpu_seconds", 0.0) + gpu_s
    stats.cost_usd = getattr(stats, "cost_usd", 0.0) + usd


# ---------------------------------------------------------------------------------------------
# In-process engine
# ---------------------------------------------------------------------------------------------


class VLLMBackend:
    """`vllm.LLM` in this process (a Ray actor or a GPU job). Cheap to build and pickle."""

    supports_json_schema = True

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
        return getattr(self.stats, "cost_usd", 0.0)

    def load(self) -> None:
        if self._llm is not None:
            return
        from vllm import LLM

        from sumpref.models import resolve_model

        self._llm = LLM(**engine_kwargs(self.cfg, resolve_model(self.cfg.model)))
        if self.cfg.adapter:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest(ADAPTER_NAME, 1, os.path.abspath(self.cfg.adapter))

    def _sampling_params(self, params: SamplingParams):
        import vllm

        kw = sampling_kwargs(params)
        so = kw.pop("structured_outputs", None)
        if so is not None:
            sp_mod = vllm.sampling_params
            if hasattr(sp_mod, "StructuredOutputsParams"):
                kw["structured_outputs"] = sp_mod.StructuredOutputsParams(**so)
            else:  # vLLM before structured outputs were renamed
                kw["guided_decoding"] = sp_mod.GuidedDecodingParams(**so)
        return vllm.SamplingParams(**kw)

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Generation]]:
        self.load()
        tok = self._llm.get_tokenizer()
        inputs = [chat_to_engine_input(m, tok) for m in prompts]
        t0 = time.perf_counter()
        outputs = self._llm.generate(inputs, self._sampling_params(params), lora_request=self._lora, use_tqdm=False)
        gpu_s = (time.perf_counter() - t0) * self.cfg.tensor_parallel_size
        results = [generations_from_output(o, params.n) for o in outputs]
        before_p, before_o = self.stats.prompt_tokens, self.stats.output_tokens
        add_generation_stats(self.stats, results)
        add_cost(self.stats, self.cfg, self.stats.prompt_tokens - before_p, self.stats.output_tokens - before_o, gpu_s)
        return results


# ---------------------------------------------------------------------------------------------
# Ray Data fan-out
# ---------------------------------------------------------------------------------------------
#
# Two ways, both with `cfg.replicas` engine actors of `cfg.num_gpus` GPUs (`cfg.accelerator_type`):
# - `map_vllm(ds, ...)`: a `map_batches` actor pool running `VLLMBackend` (n samples per request,
#   LoRA, structured output). The driver needs only `ray[data]`; vLLM is imported inside the
#   actors, whose `runtime_env` (docker/runtime_env.yaml) provides it. This is the default,
#   because the orchestrator's environment (Prefect) cannot hold vLLM.
# - `build_vllm_processor(cfg)`: Ray Data LLM's processor. `ray.data.llm` itself needs the
#   `ray[llm]` extra, which pins vLLM, so this only runs in a driver inside the worker image
#   (e.g. a Ray job submitted with that image), with one input row per sample (`ray_rows`).


DEFAULT_RUNTIME_ENV = "docker/runtime_env.yaml"


def load_runtime_env(path: str | None = None) -> dict[str, Any]:
    """The vLLM actors' Ray runtime_env: `path`, else `$SUMPREF_RUNTIME_ENV`, else the shipped
    docker/runtime_env.yaml (relative to the working directory)."""
    import yaml

    path = path or os.environ.get("SUMPREF_RUNTIME_ENV") or DEFAULT_RUNTIME_ENV
    with open(path) as f:
        env = yaml.safe_load(f) or {}
    if not isinstance(env, dict):
        raise ValueError(f"{path}: a runtime_env must be a mapping")
    return env


class VLLMBatchPredictor:
    """`map_batches` callable class: one engine per actor; rows `prompt_id`, `messages_json` in,
    `prompt_id`, `generations_json` (the n generations as JSON) and `batch_gpu_s` out."""

    def __init__(self, cfg: BackendConfig, params: SamplingParams):
        self.backend = VLLMBackend(cfg)
        self.backend.load()
        self.params = params

    def __call__(self, batch: dict) -> dict:
        prompts = [json.loads(m) for m in batch["messages_json"]]
        before = getattr(self.backend.stats, "gpu_seconds", 0.0)
        results = self.backend.generate(prompts, self.params)
        gpu_s = getattr(self.backend.stats, "gpu_seconds", 0.0) - before
        return {
            "prompt_id": list(batch["prompt_id"]),
            "generations_json": [json.dumps([g.__dict__ for g in gens]) for gens in results],
            "batch_gpu_s": [gpu_s] + [0.0] * (len(results) - 1),
        }


def prompt_rows(prompts: list[Messages]) -> list[dict]:
    return [{"prompt_id": i, "messages_json": json.dumps(m)} for i, m in enumerate(prompts)]


def map_batches_kwargs(cfg: BackendConfig, params: SamplingParams, runtime_env: dict | None = None) -> dict[str, Any]:
    """Arguments for `Dataset.map_batches(VLLMBatchPredictor, **kw)` (pure; unit-tested)."""
    gpus = cfg.num_gpus if cfg.num_gpus else float(cfg.tensor_parallel_size)
    kw: dict[str, Any] = {
        "fn_constructor_kwargs": {"cfg": cfg, "params": params},
        "batch_size": cfg.batch_size,
        "concurrency": cfg.replicas,
        "num_gpus": gpus,
        "num_cpus": cfg.num_cpus,
        "batch_format": "numpy",
    }
    if cfg.accelerator_type:
        kw["accelerator_type"] = cfg.accelerator_type
    if runtime_env:
        kw["runtime_env"] = runtime_env
    return kw


def map_vllm(ds, cfg: BackendConfig, params: SamplingParams, runtime_env: dict | None = None):
    """`ds` rows (`prompt_id`, `messages_json`) -> rows with `generations_json`, on the actor pool."""
    return ds.map_batches(VLLMBatchPredictor, **map_batches_kwargs(cfg, params, runtime_env))


def collect_prompt_rows(rows: Iterable[dict], n_prompts: int, n: int) -> tuple[list[list[Generation]], float]:
    """Output rows -> generations per prompt in input order (a missing prompt: error rows), and
    the GPU-seconds the actors measured."""
    found: dict[int, list[Generation]] = {}
    gpu_s = 0.0
    for r in rows:
        gpu_s += float(r.get("batch_gpu_s") or 0.0)
        found.setdefault(int(r["prompt_id"]), [Generation(**g) for g in json.loads(r["generations_json"])])
    missing = [Generation("", 0, 0, "error", "missing_row") for _ in range(n)]
    return [found.get(i, missing) for i in range(n_prompts)], gpu_s


def generate_with_ray(cfg: BackendConfig, prompts: list[Messages], params: SamplingParams,
                      runtime_env: dict | None = None, stats: BackendStats | None = None) -> list[list[Generation]]:
    """Fan `prompts` out to `cfg.replicas` vLLM actors and gather n generations per prompt."""
    import ray

    ds = ray.data.from_items(prompt_rows(prompts))
    results, gpu_s = collect_prompt_rows(map_vllm(ds, cfg, params, runtime_env).take_all(), len(prompts), params.n)
    if stats is not None:
        before_p, before_o = stats.prompt_tokens, stats.output_tokens
        add_generation_stats(stats, results)
        add_cost(stats, cfg, stats.prompt_tokens - before_p, stats.output_tokens - before_o, gpu_s)
    return results


def processor_config_kwargs(cfg: BackendConfig, model_path: str, runtime_env: dict | None = None) -> dict[str, Any]:
    """Arguments for `ray.data.llm.vLLMEngineProcessorConfig` (pure; unit-tested)."""
    eng = engine_kwargs(cfg, model_path)
    eng.pop("model")
    eng.pop("distributed_executor_backend", None)  # Ray Data LLM picks its own
    kw: dict[str, Any] = {
        "model_source": model_path,
        "engine_kwargs": eng,
        "concurrency": cfg.replicas,
        "batch_size": cfg.batch_size,
        "accelerator_type": cfg.accelerator_type,
        "should_continue_on_error": True,  # a failed row becomes data, not a crashed job
        "chat_template_stage": True,
        "tokenize_stage": True,
        "detokenize_stage": True,
    }
    if cfg.adapter:
        kw["dynamic_lora_loading_path"] = lora_model_field(cfg.adapter)[0]
    if cfg.num_gpus and cfg.num_gpus != cfg.tensor_parallel_size:
        # Ray replicates this bundle per engine worker (tp of them): per-worker share of the replica.
        tp = cfg.tensor_parallel_size
        kw["placement_group_config"] = {"bundle_per_worker": {"GPU": cfg.num_gpus / tp, "CPU": cfg.num_cpus / tp}}
    if runtime_env:
        kw["runtime_env"] = runtime_env
    return kw


def build_vllm_processor(cfg: BackendConfig, runtime_env: dict | None = None):
    """Ray Data LLM processor over rows from `ray_rows` (run where `ray[llm]` is installed)."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from sumpref.models import resolve_model

    config = vLLMEngineProcessorConfig(**processor_config_kwargs(cfg, resolve_model(cfg.model), runtime_env))
    keep = ("prompt_id", "sample_idx", "generated_text", "num_input_tokens", "num_generated_tokens",
            "__inference_error__")
    return build_processor(config, postprocess=lambda row: {k: row.get(k) for k in keep})
