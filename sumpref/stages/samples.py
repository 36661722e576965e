"""Stage `samples`: `sampling.n` summaries per training article that has questions.

Out: shards of `sumpref.sampling` rows (`article_id, sample_idx, summary, prompt_text, n_words, ...`).
"""

from __future__ import annotations

from pathlib import Path

from sumpref.artifacts import ArtifactRef, read_table
from sumpref.backends.base import SamplingParams
from sumpref.cachekey import StageSpec
from sumpref.config import BackendConfig, RunConfig
from sumpref.fanout import run_shards
from sumpref.stages.shards import file_shards, question_map, resources


def samples_spec(cfg: RunConfig, articles: ArtifactRef, questions: ArtifactRef, policy: BackendConfig) -> StageSpec:
    def produce(out: Path) -> dict:
        from sumpref.sampling import Summarizer

        ok = question_map(questions)
        n_train = sum(r["split"] == "train" for r in read_table(articles.child("articles.parquet"), columns=["split"]))
        s = cfg.sampling
        params = SamplingParams(n=s.n, temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens, seed=s.seed)
        shards = file_shards(articles, "articles.parquet", lambda r: r["split"] == "train" and r["id"] in ok,
                             ["id", "split"], s.shard_size)
        info = run_shards(out, shards, Summarizer(policy, params, s.stop_sentences), desc="sampling", **resources(policy))
        kept = sum(len(sh) for sh in shards)
        info.update(rows=kept * s.n, drops={"no_questions": n_train - kept})
        return info

    config = {"policy": policy.model_dump(), "sampling": cfg.sampling.model_dump()}
    return StageSpec(cfg.root, "samples", config, [articles, questions], __name__, produce)

