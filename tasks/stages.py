"""Prefect tasks: one library call each. Retries, timeouts and cache policy live on the decorator.

Each task's cache key hashes the config slice its stage depends on, its upstream `ArtifactRef`s
(content fingerprints) and the task source, but not the run id: a later run, or the rerun of a
failed one, reuses every task whose inputs did not change (changing `dpo.beta` reruns training
and evaluation only). Results are persisted so the cache survives the process.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from prefect import task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy, CachePolicy
from prefect.tasks import exponential_backoff

from sumpref import stages
from sumpref.artifacts import ArtifactRef, canonical_json
from sumpref.config import BackendConfig, JudgeConfig, RunConfig
from sumpref.data import source_fingerprint

from tasks.secrets import export_backend_secret



def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, ArtifactRef):
        return obj.fingerprint
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def slice_cache(select: Callable[[dict], dict], stage: str) -> CachePolicy:
    """Cache on exactly what `select(task inputs)` returns, plus the source of the library modules
    the stage runs (`stages.code_version`) and of the task itself."""

    def key(_ctx, inputs: dict) -> str:
        material = {"inputs": _jsonable(select(inputs)), "code": stages.code_version(stage)}
        return hashlib.sha256(canonical_json(material).encode()).hexdigest()

    return CacheKeyFnPolicy(cache_key_fn=key) + TASK_SOURCE


def _gen(select: Callable[[dict], dict], stage: str) -> dict:
    return dict(cache_policy=slice_cache(select, stage), persist_result=True, retries=2,
                retry_delay_seconds=exponential_backoff(backoff_factor=10), retry_jitter_factor=0.5)


def _secrets(*backends: BackendConfig) -> None:
    """Resolve Prefect Secret blocks for HTTP backends before their stage starts."""
    for b in backends:
        if b.backend == "openai":
            export_backend_secret(b)


@task(name="load-articles", persist_result=True, retries=2, retry_delay_seconds=[5, 30],
      cache_policy=slice_cache(lambda i: {"root": i["cfg"].root, "data": i["cfg"].data, "tokenizer": i["cfg"].policy.model,
                                          "files": source_fingerprint(i["cfg"].data)}, "articles"))
def load_articles(cfg: RunConfig) -> ArtifactRef:
    return stages.load_stage(cfg)


@task(name="write-questions", **_gen(lambda i: {"root": i["cfg"].root, "seed": i["cfg"].sampling.seed, "articles": i["articles"],
                                                "judge": i["judge"], "split": i.get("split")}, "questions"))
def write_questions(cfg: RunConfig, articles: ArtifactRef, judge: JudgeConfig, split: str | None = None) -> ArtifactRef:
    _secrets(judge.backend)
    return stages.questions_stage(cfg, articles, judge, split)


@task(name="sample-summaries", **_gen(lambda i: {"root": i["cfg"].root, "sampling": i["cfg"].sampling, "articles": i["articles"],
                                                 "questions": i["questions"], "policy": i["policy"]}, "samples"))
def sample_summaries(cfg: RunConfig, articles: ArtifactRef, questions: ArtifactRef, policy: BackendConfig) -> ArtifactRef:
    _secrets(policy)
    return stages.sample_stage(cfg, articles, questions, policy)


@task(name="judge-summaries", **_gen(lambda i: {"root": i["cfg"].root, "questions": i["questions"], "samples": i["samples"],
                                                "judge": i["judge"]}, "judged"))
def judge_summaries(cfg: RunConfig, questions: ArtifactRef, samples: ArtifactRef, judge: JudgeConfig) -> ArtifactRef:
    _secrets(judge.backend)
    return stages.judge_stage(cfg, questions, samples, judge)


@task(name="build-pairs", persist_result=True,
      cache_policy=slice_cache(lambda i: {"root": i["cfg"].root, "pairs": i["cfg"].pairs, "judged": i["judged"]}, "pairs"))
def build_pairs(cfg: RunConfig, judged: ArtifactRef) -> ArtifactRef:
    return stages.pairs_stage(cfg, judged)


@task(name="reference-logprobs", **_gen(lambda i: {"root": i["cfg"].root, "pairs": i["pairs"], "base": i["base_model"],
                                                    "max_length": i["cfg"].dpo.max_length, "bf16": i["cfg"].dpo.bf16},
                                         "refprobs"))
def reference_logprobs(cfg: RunConfig, pairs: ArtifactRef, base_model: str) -> ArtifactRef:
    return stages.refprobs_stage(cfg, pairs, base_model)


@task(name="train-dpo", persist_result=True, retries=1, retry_delay_seconds=30,
      cache_policy=slice_cache(lambda i: {"root": i["cfg"].root, "dpo": i["cfg"].dpo, "pairs": i["pairs"], "base": i["base_model"],
                                          "refprobs": i.get("refprobs")}, "dpo"))
def train_dpo(cfg: RunConfig, pairs: ArtifactRef, base_model: str, refprobs: ArtifactRef | None = None) -> ArtifactRef:
    return stages.train_stage(cfg, pairs, base_model, refprobs)


@task(name="merge-adapter", persist_result=True,
      cache_policy=slice_cache(lambda i: {"root": i["cfg"].root, "base": i["base_model"], "adapter": i["adapter"]}, "merged"))
def merge_adapter(cfg: RunConfig, base_model: str, adapter: ArtifactRef) -> ArtifactRef:
    return stages.merge_stage(cfg, base_model, adapter)


@task(name="evaluate", **_gen(lambda i: {**i, "baselines": sorted(stages.reference_models(i["cfg"]))}, "eval"))
def evaluate(cfg: RunConfig, articles: ArtifactRef, eval_questions: ArtifactRef, tuned: BackendConfig,
             adapters: list[ArtifactRef], upstream: dict[str, ArtifactRef]) -> ArtifactRef:
    _secrets(cfg.policy, tuned, (cfg.eval.judge or cfg.judge).backend)
    return stages.eval_stage(cfg, articles, eval_questions, tuned, adapters, upstream)
