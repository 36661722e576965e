"""Stage `questions`: the judge's questions per article (all articles, or one split).

Out: shards of `article_id, questions (JSON), error`; an article whose questions could not be
written is kept with its error (counted as a drop).
"""

from __future__ import annotations

from pathlib import Path

from sumpref.artifacts import ArtifactRef
from sumpref.cachekey import StageSpec
from sumpref.config import JudgeConfig, RunConfig
from sumpref.fanout import read_shards, run_shards
from sumpref.stages.shards import counts, file_shards, judge_resources, judge_shard_size


def questions_spec(cfg: RunConfig, articles: ArtifactRef, judge: JudgeConfig, split: str | None = None) -> StageSpec:
    def produce(out: Path) -> dict:
        from sumpref.judging.judges import QuestionWriter

        shards = file_shards(articles, "articles.parquet", lambda r: split is None or r["split"] == split, ["split"],
                             judge_shard_size(judge, 64))
        info = run_shards(out, shards, QuestionWriter(judge, cfg.sampling.seed), desc="questions", **judge_resources(judge))
        qrows = read_shards(out, len(shards))
        info.update(rows=len(qrows), drops=counts([r for r in qrows if r["error"]], "error"))
        return info

    config = {"judge": judge.model_dump(), "split": split, "seed": cfg.sampling.seed}
    return StageSpec(cfg.root, "questions", config, [articles], __name__, produce)

