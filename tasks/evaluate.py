"""Prefect tasks of the evaluation flow: one library call each (`sumpref.compare`).

No Prefect cache of their own: each stage is content-addressed by the library (`run_stage`), so
a rerun with the same inputs returns the finished artifact at once, and a deleted artifact is
rebuilt; one key, computed in one place. Generation retries on failure (a shard that failed
transiently is redone; finished shards are kept).
"""

from __future__ import annotations

import json

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from sumpref import compare
from sumpref.artifacts import ArtifactRef
from sumpref.evalflow_config import EvalFlowConfig, EvalModel
from sumpref.evaluate import PAIRED_METRICS
from tasks.retry import retry_can_help
from tasks.secrets import export_backend_secret

_RETRY = dict(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=10), retry_jitter_factor=0.5,
              retry_condition_fn=retry_can_help)


@task(name="eval-articles", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, retry_condition_fn=retry_can_help)
def eval_articles(cfg: EvalFlowConfig) -> ArtifactRef:
    return compare.articles_stage(cfg)


@task(name="eval-questions", cache_policy=NO_CACHE, **_RETRY)
def eval_questions(cfg: EvalFlowConfig, articles: ArtifactRef) -> ArtifactRef:
    if cfg.judge.kind == "llm" and cfg.judge.backend.backend == "openai":
        export_backend_secret(cfg.judge.backend)
    return compare.questions_stage(cfg, articles)


@task(name="eval-model", task_run_name="eval-model-{model.name}", cache_policy=NO_CACHE, **_RETRY)
def eval_model(cfg: EvalFlowConfig, model: EvalModel, articles: ArtifactRef, questions: ArtifactRef) -> ArtifactRef:
    for b in (model.backend, cfg.judge.backend if cfg.judge.kind == "llm" else None):
        if b is not None and b.backend == "openai":
            export_backend_secret(b)
    return compare.model_stage(cfg, model, articles, questions)


@task(name="eval-compare", cache_policy=NO_CACHE)
def eval_compare(cfg: EvalFlowConfig, articles: ArtifactRef, questions: ArtifactRef,
                 judged: dict[str, ArtifactRef]) -> ArtifactRef:
    return compare.compare_stage(cfg, articles, questions, judged)


@task(name="publish-comparison", cache_policy=NO_CACHE)
def publish_comparison(report: ArtifactRef) -> str:
    """The report as a markdown artifact, and the paired differences as a table artifact."""
    data = json.loads((report.path / "report.json").read_text())
    create_markdown_artifact(key="sumpref-eval-report", markdown=(report.path / "report.md").read_text(),
                             description=f"sumpref evaluation {data['name']}")
    table = []
    for m, c in data["comparisons"].items():
        table.append({"model": m, "metric": "win_rate", "value": round(c["win_rate"]["value"], 4),
                      "ci_low": round(c["win_rate"]["ci95"][0], 4), "ci_high": round(c["win_rate"]["ci95"][1], 4)})
        table += [{"model": m, "metric": f"{key} (diff)", "value": round(c["diffs"][key]["value"], 4),
                   "ci_low": round(c["diffs"][key]["ci95"][0], 4), "ci_high": round(c["diffs"][key]["ci95"][1], 4)}
                  for key, _, _ in PAIRED_METRICS]
    create_table_artifact(key="sumpref-eval-paired", table=table,
                          description=f"paired differences vs {data['baseline']} (95% CI)")
    return str(report.path / "report.md")
