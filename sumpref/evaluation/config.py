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

from sumpref.config import (EMBEDDED_MODEL, BackendConfig, ConfigError, DataConfig, JudgeConfig, PairsConfig,
                            QAJudgeConfig, Strict, TransformersBackendConfig, read_recipe, validate_recipe)
from sumpref.evaluation.baselines import SPEC_RE


LEAD_SPEC = SPEC_RE.pattern


class EvalModel(Strict):
    """One model under evaluation: a name and how to run it, or an extractive baseline.

    `extract: lead:3` (first 3 sentences) or `lead-words:40` (first 40 words) is a baseline that
    needs no model (`sumpref.evaluation.baselines`); its summaries are judged and compared exactly
    like a model's.
    `match_length: tuned` cuts each of this entry's summaries to the word count of model `tuned`'s
    summary of the same article (equal-length comparison)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+@-]*$", max_length=64,
                      description="label in the report and in artifact folder names")
    backend: BackendConfig = TransformersBackendConfig()
    extract: str | None = Field(None, pattern=LEAD_SPEC, description="an extractive baseline instead of a model: "
                                "'lead:K' (first K sentences) or 'lead-words:N' (first N words)")
    match_length: str | None = Field(None, description="name of a model whose summary's word count, article by article, "
                                     "truncates this entry's summaries")
    temperature: float = Field(0.0, ge=0, description="0: greedy")
    top_p: float = Field(1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _extract_or_backend(self) -> "EvalModel":
        if self.extract is not None and "backend" in self.model_fields_set:
            raise ValueError(f"models[{self.name}]: set either extract ({self.extract!r}) or backend, not both")
        if self.match_length is not None and self.extract is None:
            raise ValueError(f"models[{self.name}].match_length: only an extractive baseline (extract) is cut to "
                             "another model's length")
        return self


class EvalFlowConfig(Strict):
    name: str = "eval"
    root: str = Field("runs/eval", description="artifact root: local path or file:// URI")
    models: list[EvalModel] = Field([EvalModel(name="base")], min_length=1)
    baseline: str = Field("base", description="the model every other model is compared with")
    comparisons: list[str] = Field([], description="further paired comparisons, each 'MODEL vs OTHER' (e.g. "
                                   "'tuned vs lead-3')")
    data: DataConfig = DataConfig()
    split: str | None = Field(None, description="keep only rows whose `split` column equals this (e.g. 'eval': "
                                                "a pipeline run's held-out articles from its articles.parquet)")
    num_articles: int | None = Field(None, ge=1, description="articles evaluated, after the split filter (None: all "
                                                              "loaded; data.num_articles caps the load)")
    tokenizer: str = Field(EMBEDDED_MODEL, description="tokenizer for data.max_article_tokens truncation (use the "
                                                       "policy's, so articles match the training run's)")
    judge: JudgeConfig = QAJudgeConfig()
    pairs: PairsConfig = Field(PairsConfig(), description="the preference rule behind the win rate")
    max_new_tokens: int = Field(100, ge=8)
    stop_sentences: int | None = Field(None, ge=1, description="stop each model summary at the end of its Nth sentence "
                                       "(sampling.stop_sentences); None: at end of sequence or max_new_tokens only")
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
        for i, c in enumerate(self.comparisons):
            parts = c.split(" vs ")
            if len(parts) != 2 or any(p not in names for p in parts) or parts[0] == parts[1]:
                raise ValueError(f"comparisons[{i}]: {c!r} must read 'MODEL vs OTHER' with two different model names "
                                 f"of {names}")
        for m in self.models:
            if m.match_length is not None and (m.match_length not in names or m.match_length == m.name):
                raise ValueError(f"models[{m.name}].match_length: {m.match_length!r} is not another model's name {names}")
            target = next((t for t in self.models if t.name == m.match_length), None)
            if target is not None and target.match_length is not None:
                raise ValueError(f"models[{m.name}].match_length: {m.match_length!r} is itself length-matched; "
                                 "match to a model that is not")
        return self

    def pairs_compared(self) -> list[tuple[str, str]]:
        """(model, other) of every paired comparison: each model vs `baseline`, then `comparisons`."""
        out = [(m.name, self.baseline) for m in self.models if m.name != self.baseline]
        return out + [tuple(c.split(" vs ")) for c in self.comparisons if tuple(c.split(" vs ")) not in out]


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
    from sumpref.preflight import (PreflightError, Problem, check_backend, check_data_source, check_model,
                                   environment_problems)

    problems = []
    if (msg := check_data_source(cfg.data.source)) is not None:
        problems.append(Problem("data.source", msg))
    for i, m in enumerate(cfg.models):
        if m.extract is None:
            problems += check_backend(m.backend, f"models[{i}].backend")
    if (msg := check_model(cfg.tokenizer)) is not None:
        problems.append(Problem("tokenizer", msg))
    if cfg.judge.model_backend is not None:
        problems += check_backend(cfg.judge.model_backend, "judge.backend")
    problems += environment_problems(cfg.root)
    if problems:
        raise PreflightError(problems)
