"""Prefect tasks of the evaluation stages: one library call each (`sumpref.evaluation.stages`), for the
evaluation flow and a pipeline run's evaluation alike.

No Prefect cache of their own: each stage is content-addressed by the library (`StageSpec`), so a
rerun with the same inputs returns the finished artifact at once in a `Cached` state (as the
pipeline's tasks, `tasks.stages`), and a deleted artifact is rebuilt; one key, computed in one
place. Generation retries on failure (a shard that failed transiently is redone; finished shards
are kept).
"""

from __future__ import annotations

import json

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import State
from prefect.tasks import exponential_backoff

from sumpref.artifacts import ArtifactRef
from sumpref.evaluation import stages as eval_stages
from sumpref.evaluation.config import EvalFlowConfig, EvalModel
from sumpref.evaluation.metrics import PAIRED_METRICS
from tasks.retry import retry_can_help
from tasks.stages import run_spec

_RETRY = dict(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=10), retry_jitter_factor=0.5,
              retry_condition_fn=retry_can_help)


def _llm_judge(cfg: EvalFlowConfig) -> list:
    return [b for b in [cfg.judge.model_backend] if b]


@task(name="eval-articles", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, retry_condition_fn=retry_can_help)
def eval_articles(cfg: EvalFlowConfig) -> State:
    return run_spec(eval_stages.articles_spec(cfg))


@task(name="eval-questions", cache_policy=NO_CACHE, **_RETRY)
def eval_questions(cfg: EvalFlowConfig, articles: ArtifactRef) -> State:
    return run_spec(eval_stages.questions_spec(cfg, articles), *_llm_judge(cfg))


@task(name="eval-model", task_run_name="eval-model-{model.name}", cache_policy=NO_CACHE, **_RETRY)
def eval_model(cfg: EvalFlowConfig, model: EvalModel, articles: ArtifactRef, questions: ArtifactRef,
               match: ArtifactRef | None = None) -> State:
    backends = ([] if model.extract is not None else [model.backend]) + _llm_judge(cfg)
    return run_spec(eval_stages.model_spec(cfg, model, articles, questions, match), *backends)


@task(name="eval-compare", cache_policy=NO_CACHE, retry_condition_fn=retry_can_help)
def eval_compare(cfg: EvalFlowConfig, articles: ArtifactRef, questions: ArtifactRef, judged: dict[str, ArtifactRef],
                 run: dict[str, ArtifactRef] | None = None, adapters: list[ArtifactRef] | None = None) -> State:
    return run_spec(eval_stages.compare_spec(cfg, articles, questions, judged, run, adapters))


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(report: ArtifactRef) -> str:
    """The report as a markdown artifact of this flow run, and the paired comparisons as a table."""
    data = json.loads((report.path / "report.json").read_text())
    create_markdown_artifact(key="sumpref-report", markdown=(report.path / "report.md").read_text(),
                             description=f"sumpref evaluation {data['name']}")
    table = []
    for name, c in data["comparisons"].items():
        rows = [("win_rate", c["win_rate"])] + [(f"{key} (diff)", c["diffs"][key]) for key, _, _ in PAIRED_METRICS]
        table += [{"comparison": name, "metric": metric, "value": round(d["value"], 4),
                   "ci_low": round(d["ci95"][0], 4), "ci_high": round(d["ci95"][1], 4)} for metric, d in rows]
    create_table_artifact(key="sumpref-paired", table=table, description="paired comparisons (95% CI)")
    return str(report.path / "report.md")
