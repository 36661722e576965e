"""Meta-evaluation tasks: one library call each (`sumpref.metaeval`)."""

from __future__ import annotations

from datetime import date

from prefect import task
from prefect.cache_policies import NO_CACHE

from sumpref import metaeval
from sumpref.metaeval import MetaEvalConfig


@task(name="meta-eval-set", cache_policy=NO_CACHE, retries=1)
def evaluate_set(cfg: MetaEvalConfig, name: str) -> dict:
    return metaeval.meta_eval_set(cfg, name)


@task(name="llm-judge-checks", cache_policy=NO_CACHE)
def llm_checks(cfg: MetaEvalConfig) -> dict:
    return metaeval.llm_checks(cfg)


@task(name="write-meta-eval-report", cache_policy=NO_CACHE)
def write_report(cfg: MetaEvalConfig, results: list[dict], checks: dict | None) -> str:
    block = metaeval.render_report(cfg, results, checks, date.today().isoformat())
    return str(metaeval.write_report(cfg.out, block)) if cfg.out else block
