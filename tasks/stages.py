"""Prefect tasks: one library call each. Retries, timeouts and cache policy live on the decorator.

The cache policy hashes the task's inputs (the typed config and upstream `ArtifactRef`s) and its
source, but not the run id, so a later run — or the rerun of a failed one — reuses every task
that already finished. Results are persisted so the cache survives the process.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.tasks import exponential_backoff

from sumpref import stages
from sumpref.artifacts import ArtifactRef
from sumpref.config import BackendConfig, JudgeConfig, RunConfig

from tasks.secrets import export_backend_secret

CACHE = INPUTS + TASK_SOURCE


def _secrets(*backends: BackendConfig) -> None:
    """Resolve Prefect Secret blocks for HTTP backends before their stage starts."""
    for b in backends:
        if b.backend == "openai":
            export_backend_secret(b)
GEN = dict(cache_policy=CACHE, persist_result=True, retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=10),
           retry_jitter_factor=0.5)


@task(name="load-articles", cache_policy=CACHE, persist_result=True, retries=2, retry_delay_seconds=[5, 30])
def load_articles(cfg: RunConfig) -> ArtifactRef:
    return stages.load_stage(cfg)


@task(name="write-questions", **GEN)
def write_questions(cfg: RunConfig, articles: ArtifactRef, judge: JudgeConfig, split: str | None = None) -> ArtifactRef:
    _secrets(judge.backend)
    return stages.questions_stage(cfg, articles, judge, split)


@task(name="sample-summaries", **GEN)
def sample_summaries(cfg: RunConfig, articles: ArtifactRef, questions: ArtifactRef, policy: BackendConfig) -> ArtifactRef:
    _secrets(policy)
    return stages.sample_stage(cfg, articles, questions, policy)


@task(name="judge-summaries", **GEN)
def judge_summaries(cfg: RunConfig, questions: ArtifactRef, samples: ArtifactRef, judge: JudgeConfig) -> ArtifactRef:
    _secrets(judge.backend)
    return stages.judge_stage(cfg, questions, samples, judge)


@task(name="build-pairs", cache_policy=CACHE, persist_result=True)
def build_pairs(cfg: RunConfig, judged: ArtifactRef) -> ArtifactRef:
    return stages.pairs_stage(cfg, judged)


@task(name="train-dpo", cache_policy=CACHE, persist_result=True, retries=1, retry_delay_seconds=30)
def train_dpo(cfg: RunConfig, pairs: ArtifactRef, base_model: str) -> ArtifactRef:
    return stages.train_stage(cfg, pairs, base_model)


@task(name="merge-adapter", cache_policy=CACHE, persist_result=True)
def merge_adapter(cfg: RunConfig, base_model: str, adapter: ArtifactRef) -> ArtifactRef:
    return stages.merge_stage(cfg, base_model, adapter)


@task(name="evaluate", **GEN)
def evaluate(cfg: RunConfig, articles: ArtifactRef, eval_questions: ArtifactRef, tuned: BackendConfig,
             adapters: list[ArtifactRef], upstream: dict[str, ArtifactRef]) -> ArtifactRef:
    _secrets(cfg.policy, tuned, (cfg.eval.judge or cfg.judge).backend)
    return stages.eval_stage(cfg, articles, eval_questions, tuned, adapters, upstream)
