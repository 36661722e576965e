"""Evaluation of a pipeline run: the evaluation flow's stages (`sumpref.evaluation.stages`),
configured from the run's config. One evaluation path: a run's report and `flows.evaluate`'s are the same stages.

Models: `base` (the initial policy), `tuned` (the last adapter), each `eval.baselines` entry
(default `lead:3`, named `lead-3`; with `eval.equal_length` also `lead-3@tuned`, cut to the tuned
summary's word count article by article) and, only when the config asks for it,
`eval.api_baseline` (a paid API model such as GPT-4o). Paired comparisons: every model vs base,
and tuned vs each baseline. The articles are the run's held-out ones (`split: eval`).
"""

from __future__ import annotations

import re

from sumpref.artifacts import ArtifactRef
from sumpref.config import BackendConfig, RunConfig
from sumpref.evaluation.config import EvalFlowConfig, EvalModel


def baseline_name(spec: str) -> str:
    """`lead:3` -> `lead-3`, `lead-words:40` -> `lead-words-40` (folder- and label-safe)."""
    return spec.replace(":", "-")


def _model_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", name).strip("-.")[:64] or "api"


def run_eval_config(cfg: RunConfig, tuned: BackendConfig) -> EvalFlowConfig:
    """The evaluation of a run whose last policy is `tuned` (see the module docstring)."""
    e = cfg.eval
    models = [EvalModel(name="base", backend=cfg.policy), EvalModel(name="tuned", backend=tuned)]
    comparisons = []
    for spec in e.baselines:
        name = baseline_name(spec)
        models.append(EvalModel(name=name, extract=spec))
        comparisons.append(f"tuned vs {name}")
        if e.equal_length:
            models.append(EvalModel(name=f"{name}@tuned", extract=spec, match_length="tuned"))
            comparisons.append(f"tuned vs {name}@tuned")
    if e.api_baseline is not None:
        name = _model_name(e.api_baseline.model)
        models.append(EvalModel(name=name, backend=e.api_baseline))
        comparisons.append(f"tuned vs {name}")
    return EvalFlowConfig(name=cfg.name, root=cfg.root, models=models, baseline="base", comparisons=comparisons,
                          data=cfg.data, split="eval", tokenizer=cfg.policy.model, judge=e.judge or cfg.judge,
                          pairs=cfg.pairs, max_new_tokens=e.max_new_tokens, stop_sentences=e.stop_sentences,
                          max_words=e.max_words,
                          bootstrap_samples=e.bootstrap_samples, seed=e.seed)


def model_order(cfg: EvalFlowConfig) -> list[EvalModel]:
    """The models in the order their stages can run: a length-matched baseline after its model."""
    return sorted(cfg.models, key=lambda m: m.match_length is not None)


def evaluate(cfg: EvalFlowConfig, articles: ArtifactRef, questions: ArtifactRef,
             run: dict[str, ArtifactRef] | None = None, adapters: list[ArtifactRef] | None = None) -> ArtifactRef:
    """Every model's stage, then the comparison: the evaluation without Prefect (the flows run the
    same stages as tasks, `flows.evaluate.evaluate_on`)."""
    from sumpref.evaluation.stages import compare_stage, model_stage

    judged: dict[str, ArtifactRef] = {}
    for m in model_order(cfg):
        judged[m.name] = model_stage(cfg, m, articles, questions, judged.get(m.match_length or ""))
    return compare_stage(cfg, articles, questions, {m.name: judged[m.name] for m in cfg.models}, run, adapters)
