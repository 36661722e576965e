"""Prefect tasks of the nightly flow: champion registry reads and writes, the round's article
sample, and the per-round view as Prefect artifacts. One library call each.

No Prefect cache here (`NO_CACHE` on every task), so nothing is keyed by a task's own source:
- the article sample is a stage like every other (`sumpref.nightly.round_articles_spec`, keyed by
  `sumpref.cachekey`): a rerun finds its artifact in the store and reports it `Cached`;
- registry reads are "as of the night's date" and `decide-round` is a pure function of the
  (content-addressed) evaluation report, so running them again gives the same answer;
- `record-round` is idempotent in the library (a round id is written once, never rewritten), so a
  rerun of the same date records nothing twice;
- `publish-rounds` only publishes the view (files and Prefect artifacts of this flow run) again.
"""

from __future__ import annotations

import base64

from prefect import task
from prefect.artifacts import create_image_artifact, create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from sumpref import champion, nightly
from sumpref.artifacts import ArtifactRef
from sumpref.config import RunConfig
from tasks.stages import run_spec


@task(name="read-champion", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def read_champion(cfg: RunConfig, day: str) -> dict:
    """The champion as of `day` (last promotion of an earlier night), else the configured policy."""
    return champion.champion_as_of(champion.read_history(cfg.root), cfg.policy.model, before=day)


@task(name="used-articles", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def used_articles(cfg: RunConfig, day: str) -> list[str]:
    return champion.used_article_ids(champion.read_history(cfg.root), before=day)


@task(name="select-articles", cache_policy=NO_CACHE, retries=1)
def select_articles(cfg: RunConfig, day: str, rnd: int, exclude: list[str]) -> State:
    return run_spec(nightly.round_articles_spec(cfg, day, rnd, exclude))


@task(name="decide-round", cache_policy=NO_CACHE)
def decide_round(cfg: RunConfig, report: ArtifactRef) -> bool:
    return nightly.round_promoted(report, cfg.nightly.promote_threshold)


@task(name="record-round", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def record_round(cfg: RunConfig, day: str, rnd: int, parent: dict, adapter: ArtifactRef, report: ArtifactRef,
                 articles: ArtifactRef, promoted: bool, merged_model: str | None) -> dict:
    entry = nightly.round_entry(cfg, day, rnd, parent, adapter, report, articles, promoted, merged_model)
    return champion.record_round(cfg.root, entry)


@task(name="publish-rounds", cache_policy=NO_CACHE)
def publish_rounds(cfg: RunConfig, title: str) -> str:
    """Every recorded round as markdown, table, image and link artifacts; returns report.md's URI."""
    view = nightly.write_rounds_report(cfg.root, cfg.policy.model, title)
    create_markdown_artifact(key="sumpref-rounds", markdown=view["markdown"], description=title)
    create_table_artifact(key="sumpref-rounds-table", table=view["table"], description=f"{title}: every round")
    png = base64.b64encode(view["plot_png"]).decode()
    create_image_artifact(image_url=f"data:image/png;base64,{png}", key="sumpref-rounds-plot",
                          description=f"{title}: metrics over rounds (95% CI)")
    create_link_artifact(key="sumpref-rounds-report", link=view["report"], link_text="report.md",
                         description=f"champion {view['champion']}")
    return view["report"]
