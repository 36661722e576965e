"""Stage `pairs`: preference pairs from the judged summaries (rules in `sumpref.pairs`).

Out: `train.parquet`, `valid.parquet` (split by article), `drops.parquet` (`article_id,
sample_idx, reason`). A summary that was never generated or never judged (`pairs.failed_reason`,
the same rule evaluation uses) is dropped with its reason, not scored as zero correct.
"""

from __future__ import annotations

from pathlib import Path

from sumpref.artifacts import ArtifactRef, write_table
from sumpref.cachekey import StageSpec
from sumpref.config import RunConfig
from sumpref.stages.shards import shard_rows


def pairs_spec(cfg: RunConfig, judged: ArtifactRef) -> StageSpec:
    def produce(out: Path) -> dict:
        from sumpref.pairs import build_pairs, failed_reason

        rows = [{**r, "drop_reason": failed_reason(r)} for r in shard_rows(judged)]
        pairs, drops, counts = build_pairs(rows, cfg.pairs)
        write_table(out / "train.parquet", [p for p in pairs if p["split"] == "train"] or _empty_pairs())
        write_table(out / "valid.parquet", [p for p in pairs if p["split"] == "valid"] or _empty_pairs())
        write_table(out / "drops.parquet", drops or _empty_drops())
        return {"rows": len(pairs), "drops": {k[len("dropped_"):]: v for k, v in counts.items() if k.startswith("dropped_")},
                **{k: v for k, v in counts.items() if not k.startswith("dropped_")}}

    return StageSpec(cfg.root, "pairs", {"pairs": cfg.pairs.model_dump()}, [judged], __name__, produce)



def _empty_pairs():
    import pyarrow as pa

    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    return pa.table({"article_id": pa.array([], pa.string()), "split": pa.array([], pa.string()),
                     "prompt": pa.array([], msg), "chosen": pa.array([], msg), "rejected": pa.array([], msg),
                     "chosen_correct": pa.array([], pa.float64()), "rejected_correct": pa.array([], pa.float64()),
                     "chosen_words": pa.array([], pa.int64()), "rejected_words": pa.array([], pa.int64())})


def _empty_drops():
    import pyarrow as pa

    return pa.table({"article_id": pa.array([], pa.string()), "sample_idx": pa.array([], pa.int64()),
                     "reason": pa.array([], pa.string())})
