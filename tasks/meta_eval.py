"""Meta-evaluation tasks: one library call each (`sumpref.evaluation.meta`)."""

from __future__ import annotations

from datetime import date

from prefect import task
from prefect.cache_policies import NO_CACHE

from sumpref.evaluation import meta
from sumpref.evaluation.meta import MetaEvalConfig


@task(name="meta-eval-set", cache_policy=NO_CACHE, retries=1)
def agreement_with_people(cfg: MetaEvalConfig, name: str) -> dict:
    return meta.meta_eval_set(cfg, name)


@task(name="llm-judge-checks", cache_policy=NO_CACHE)
def llm_checks(cfg: MetaEvalConfig) -> dict:
    return meta.llm_checks(cfg)


@task(name="write-meta-eval-report", cache_policy=NO_CACHE)
def write_report(cfg: MetaEvalConfig, results: list[dict], checks: dict | None) -> str:
    block = meta.render_report(cfg, results, checks, date.today().isoformat())
    return str(meta.write_report(cfg.out, block)) if cfg.out else block
