"""Typed run configuration: one pydantic model per stage, composed into `RunConfig`.

Unknown keys and invalid values are errors that name the field (`extra="forbid"`).
YAML recipes live in `configs/`; `load_config(path, overrides)` applies `a.b.c=value` overrides
(values parsed as YAML scalars) before validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendConfig(Strict):
    """Which engine generates text, with what model, on which resources."""

    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    model: str = EMBEDDED_MODEL
    adapter: str | None = Field(None, description="LoRA adapter directory applied on top of `model`")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = Field(8, ge=1, description="prompts per generation batch")
    max_model_len: int = Field(4096, ge=128, description="context length (prompt + output)")
    # Ray resources, per replica.
    replicas: int = Field(1, ge=1)
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (0 on CPU)")
    num_cpus: float = Field(1.0, ge=0)
    tensor_parallel_size: int = Field(1, ge=1)
    accelerator_type: str | None = None
    # OpenAI-compatible HTTP.
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    api_key_secret_block: str | None = Field(None, description="Prefect Secret block name holding the key")
    max_concurrency: int = Field(8, ge=1)
    request_timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(6, ge=0)
    usd_per_1m_prompt_tokens: float = Field(0.0, ge=0)
    usd_per_1m_output_tokens: float = Field(0.0, ge=0)
    usd_per_gpu_hour: float = Field(0.0, ge=0, description="for GPU-second cost accounting")
    # vLLM engine.
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_lora_rank: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "BackendConfig":
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (e.g. https://api.openai.com/v1)")
        if self.tensor_parallel_size > 1 and self.backend != "vllm":
            raise ValueError("tensor_parallel_size > 1 needs backend 'vllm'")
        return self


class JudgeConfig(Strict):
    """Writes the questions and answers them from one summary.

    `cloze`: embedded, no LLM (questions from the reference highlights or lead sentences).
    `llm`: the published method with `backend` as the judge model.
    """

    kind: Literal["cloze", "llm"] = "cloze"
    backend: BackendConfig = BackendConfig()
    n_questions: int = Field(5, ge=1, le=10)
    constrained: bool = Field(True, description="JSON-constrained output where the backend supports it")
    mcq_max_new_tokens: int = Field(1024, ge=16)
    answer_max_new_tokens: int = Field(96, ge=8)

    @model_validator(mode="after")
    def _budget(self) -> "JudgeConfig":
        if self.answer_max_new_tokens < 12 * self.n_questions:
            raise ValueError(f"answer_max_new_tokens must be >= 12 x n_questions = {12 * self.n_questions} "
                             "(a cut-off answer list turns the last answers into Unsure)")
        return self


class DataConfig(Strict):
    source: str = Field("abisee/cnn_dailymail", description="hub dataset id, or local .jsonl/.parquet file, dir or glob")
    hub_config: str = "3.0.0"
    split: str = "train"
    id_column: str = "id"
    text_column: str = "article"
    highlights_column: str = "highlights"
    num_articles: int = Field(21000, ge=2, description="articles kept after the seeded shuffle")
    eval_fraction: float = Field(0.01, gt=0, lt=1, description="share of articles held out for evaluation")
    min_eval_articles: int = Field(1, ge=1)
    seed: int = 21
    max_article_tokens: int = Field(3500, ge=32, description="longer articles are truncated (flagged)")
    min_article_words: int = Field(30, ge=1)
    article_formats: tuple[str, ...] = Field((), description="keep only rows whose `article_format` is listed (empty: all)")


class SamplingConfig(Strict):
    n: int = Field(10, ge=2, description="summaries per article")
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(100, ge=8)
    shard_size: int = Field(16, ge=1, description="articles per shard; a crash loses at most one shard")
    seed: int = 0


class PairsConfig(Strict):
    min_words: int = Field(5, ge=1)
    max_words: int = Field(200, ge=2)
    min_correct_for_length: int = Field(3, ge=0, description="both at least this many correct: shorter wins")
    length_margin: int = Field(3, ge=0, description="word-count difference needed for the shorter to win")
    max_pairs_per_article: int = Field(3, ge=1)
    valid_fraction: float = Field(0.1, ge=0, lt=1, description="share of ARTICLES whose pairs go to validation")
    seed: int = 0


class DPOConfig(Strict):
    trainer: Literal["trl", "packed"] = Field(
        "trl", description="trl: TRL DPOTrainer (reference path); packed: shared-prompt packing + precomputed reference"
    )
    beta: float = Field(0.01, gt=0)
    loss_type: Literal["sigmoid", "ipo", "robust", "sppo_hard", "apo_zero"] = "sigmoid"
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    learning_rate: float = Field(5e-6, gt=0)
    num_epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, description="-1: run num_epochs")
    per_device_batch_size: int = Field(2, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(4096, ge=64)
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    gradient_checkpointing: bool = True
    bf16: bool = False
    precompute_ref_log_probs: bool = False
    deepspeed: Literal["none", "zero2", "zero3"] = "none"
    num_workers: int = Field(1, ge=1, description="Ray Train workers (one per GPU)")
    use_gpu: bool = False
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(200, ge=1)
    report_to: tuple[str, ...] = ()
    seed: int = 0
    # Packed trainer (dpo.trainer == "packed").
    length_normalize: bool = Field(False, description="divide sequence log-probs by token count")
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    merge_adapter: bool = Field(False, description="also write base+adapter merged")
    save_total_limit: int = Field(2, ge=1)
    max_tokens_per_batch: int | None = Field(None, ge=64)
    ref_replicas: int = Field(1, ge=1, description="Ray actors computing reference log-probs")


class EvalConfig(Strict):
    max_new_tokens: int = Field(100, ge=8)
    judge: JudgeConfig | None = Field(None, description="evaluation judge; None = the training judge")
    bootstrap_samples: int = Field(1000, ge=10)
    max_words: int = Field(200, ge=2, description="longer summaries count as too long")
    openai_model: str | None = Field("gpt-4o", description="extra baseline when $OPENAI_API_KEY is set (None: never)")
    openai_base_url: str = "https://api.openai.com/v1"
    seed: int = 0


class RunConfig(Strict):
    name: str = "sumpref"
    root: str = Field("runs", description="artifact root: local path or file:// URI")
    policy: BackendConfig = BackendConfig()
    judge: JudgeConfig = JudgeConfig()
    data: DataConfig = DataConfig()
    sampling: SamplingConfig = SamplingConfig()
    pairs: PairsConfig = PairsConfig()
    dpo: DPOConfig = DPOConfig()
    eval: EvalConfig = EvalConfig()
    iterations: int = Field(1, ge=1, description="DPO rounds; round k>1 samples from round k-1's adapter")


class ConfigError(ValueError):
    """A configuration problem, with the offending field named."""


def _set_path(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = d
    for k in keys[:-1]:
        nxt = cur.get(k)
        if nxt is None:
            nxt = cur[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
        cur = nxt
    cur[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    out = []
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override {o!r} must look like section.field=value")
        key, raw = o.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw) if raw != "" else None))
    return out


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {loc}: {msg}" + (f" (got {e['input']!r})" if e["type"] != "extra_forbidden" and not isinstance(e.get("input"), dict) else ""))
    return "\n".join(lines)


def config_from_dict(data: dict, overrides: list[str] | None = None, source: str = "config") -> RunConfig:
    data = dict(data or {})
    for key, value in parse_overrides(overrides or []):
        _set_path(data, key, value)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML recipe (or defaults when `path` is None) and apply `a.b=value` overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        loaded = yaml.safe_load(p.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
        data = loaded or {}
    return config_from_dict(data, overrides, source=str(path or "defaults"))
