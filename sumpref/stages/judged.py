"""Stage `judged`: the judge's answers and scores for every sampled summary.

Out: shards of sample rows plus `answers, n_correct, n_unsure, judge_error` (`sumpref.judging.judges`).
"""

from __future__ import annotations

from pathlib import Path

from sumpref.artifacts import ArtifactRef
from sumpref.cachekey import StageSpec
from sumpref.config import JudgeConfig, RunConfig
from sumpref.fanout import read_shards, run_shards
from sumpref.stages.shards import chunks, counts, judge_resources, judge_shard_size, question_map, shard_rows


def judged_spec(cfg: RunConfig, questions: ArtifactRef, samples: ArtifactRef, judge: JudgeConfig) -> StageSpec:
    def produce(out: Path) -> dict:
        from sumpref.judging.judges import SummaryJudge

        qmap = question_map(questions)
        rows = [{**r, "questions": qmap[r["article_id"]]} for r in shard_rows(samples) if r["article_id"] in qmap]
        shards = chunks(rows, judge_shard_size(judge, 256))
        info = run_shards(out, shards, SummaryJudge(judge), desc="judging", **judge_resources(judge))
        judged = read_shards(out, len(shards))
        info.update(rows=len(judged), drops=counts([r for r in judged if r["judge_error"]], "judge_error"))
        return info

    return StageSpec(cfg.root, "judged", {"judge": judge.model_dump()}, [questions, samples], __name__, produce)

