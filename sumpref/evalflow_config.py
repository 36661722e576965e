"""Typed configuration of the evaluation flow: several models, one article set, one judge.

Every model in `models` summarizes the same articles (from `data`, optionally only one `split`
of a run's `articles.parquet`), and `judge` answers the same questions from each summary. Each
model is compared with `baseline` (paired bootstrap over articles). A model is a backend config:
a base (`model`), a LoRA adapter on a base (`adapter`), a merged model folder, or an
OpenAI-compatible API model (`backend: openai`).

Names are unique and used in folder and report names; `baseline` must be one of them. Whether
model folders, adapters, the data source and API keys are really there is checked by
`preflight_eval` before any work (each problem names its field, e.g. `models[1].backend.adapter`).
YAML recipes: `load_eval_config(path, ["models.1.temperature=0.7", ...])`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from sumpref.config import (EMBEDDED_MODEL, BackendConfig, ConfigError, DataConfig, JudgeConfig, PairsConfig, Strict,
                            TransformersBackendConfig, read_recipe, validate_recipe)


class EvalModel(Strict):
    """One model under evaluation: a name and how to run it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=64,
                      description="label in the report and in artifact folder names")
    backend: BackendConfig = TransformersBackendConfig()
    temperature: float = Field(0.0, ge=0, description="0: greedy")
    top_p: float = Field(1.0, gt=0, le=1)


class EvalFlowConfig(Strict):
    name: str = "eval"
    root: str = Field("runs/eval", description="artifact root: local path or file:// URI")
    models: list[EvalModel] = Field([EvalModel(name="base")], min_length=1)
    baseline: str = Field("base", description="the model every other model is compared with")
    data: DataConfig = DataConfig()
    split: str | None = Field(None, description="keep only rows whose `split` column equals this (e.g. 'eval': "
                                                "a pipeline run's held-out articles from its articles.parquet)")
    num_articles: int | None = Field(None, ge=1, description="articles evaluated, after the split filter (None: all "
                                                              "loaded; data.num_articles caps the load)")
    tokenizer: str = Field(EMBEDDED_MODEL, description="tokenizer for data.max_article_tokens truncation (use the "
                                                       "policy's, so articles match the training run's)")
    judge: JudgeConfig = JudgeConfig()
    pairs: PairsConfig = Field(PairsConfig(), description="the preference rule behind the win rate")
    max_new_tokens: int = Field(100, ge=8)
    max_words: int = Field(200, ge=2, description="longer summaries count as too long")
    bootstrap_samples: int = Field(1000, ge=10)
    seed: int = Field(0, description="question writing (as sampling.seed in a run), generation and bootstrap")

    @model_validator(mode="after")
    def _names(self) -> "EvalFlowConfig":
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"models: names must be unique, repeated: {dup}")
        if self.baseline not in names:
            raise ValueError(f"baseline: {self.baseline!r} is not one of the model names {names}")
        return self


def set_override(data: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c` (list items by index: `models.1.temperature`) in nested dicts/lists."""
    keys = dotted.split(".")
    cur: Any = data
    for i, k in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(cur, list):
            if not k.isdigit() or int(k) >= len(cur):
                raise ConfigError(f"override {dotted!r}: {k!r} is not an index of the {len(cur)} items")
            k = int(k)
        elif not isinstance(cur, dict):
            raise ConfigError(f"override {dotted!r}: {keys[i - 1]!r} is not a section")
        if last:
            cur[k] = value
        else:
            if isinstance(cur, dict) and cur.get(k) is None:
                cur[k] = {}
            cur = cur[k]


def eval_config_from_dict(data: dict, overrides: list[str] | None = None, source: str = "config") -> EvalFlowConfig:
    return validate_recipe(EvalFlowConfig, data, overrides, source, set_override)


def load_eval_config(path: str | Path | None = None, overrides: list[str] | None = None) -> EvalFlowConfig:
    """Load an evaluation recipe (or defaults when `path` is None) and apply `a.b=value` overrides."""
    return eval_config_from_dict(read_recipe(path), overrides, source=str(path or "defaults"))


def preflight_eval(cfg: EvalFlowConfig) -> None:
    """Raise `PreflightError` (one line per problem, each naming its field) if the evaluation
    cannot start: missing data source, model folder or adapter, API key, unwritable root."""
    import os

    from sumpref import storage
    from sumpref.preflight import PreflightError, Problem, check_backend, check_data_source, check_model, check_ray_address

    problems = []
    if (msg := check_data_source(cfg.data.source)) is not None:
        problems.append(Problem("data.source", msg))
    for i, m in enumerate(cfg.models):
        problems += check_backend(m.backend, f"models[{i}].backend")
    if (msg := check_model(cfg.tokenizer)) is not None:
        problems.append(Problem("tokenizer", msg))
    if cfg.judge.kind == "llm":
        problems += check_backend(cfg.judge.backend, "judge.backend")
    if (msg := check_ray_address(os.environ.get("RAY_ADDRESS"))) is not None:
        problems.append(Problem("RAY_ADDRESS", msg))
    if (msg := storage.check_writable(cfg.root)) is not None:
        problems.append(Problem("root", f"artifact root {cfg.root!r} is not writable: {msg}"))
    if problems:
        raise PreflightError(problems)
