"""Stage `articles`: the articles with the train/eval split, truncation flags and drop reasons.

Out: `articles.parquet` (`id, article, highlights, split, truncated, n_words, ...`), `drops.parquet`.
"""

from __future__ import annotations

from pathlib import Path

from sumpref.artifacts import write_table
from sumpref.cachekey import StageSpec
from sumpref.config import RunConfig


def articles_spec(cfg: RunConfig) -> StageSpec:
    from sumpref.data import assign_split, load_articles, require_split, source_fingerprint, truncate_articles

    def produce(out: Path) -> dict:
        from transformers import AutoTokenizer

        from sumpref.model_paths import resolve_model

        res = load_articles(cfg.data)
        require_split(res, cfg.data)  # before the tokenizer loads; a DataError fails the task without retries
        truncate_articles(res.rows, AutoTokenizer.from_pretrained(resolve_model(cfg.policy.model)), cfg.data.max_article_tokens)
        assign_split(res.rows, cfg.data.eval_fraction, cfg.data.min_eval_articles, cfg.data.seed)
        write_table(out / "articles.parquet", res.rows)
        write_table(out / "drops.parquet", res.drops or [], schema=None if res.drops else _drop_schema())
        return {"rows": len(res.rows), "drops": res.drop_counts(), "truncated": sum(r["truncated"] for r in res.rows),
                "train": sum(r["split"] == "train" for r in res.rows), "eval": sum(r["split"] == "eval" for r in res.rows)}

    config = {"data": cfg.data.model_dump(), "tokenizer": cfg.policy.model, "files": source_fingerprint(cfg.data)}
    return StageSpec(cfg.root, "articles", config, [], __name__, produce)



def _drop_schema():
    import pyarrow as pa

    return pa.schema([("source", pa.string()), ("id", pa.string()), ("reason", pa.string()), ("detail", pa.string())])
