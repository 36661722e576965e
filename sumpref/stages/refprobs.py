"""Stage `refprobs`: reference log-probs of every chosen/rejected, computed once (shared-prompt
packing) and stored as columns next to the training pairs, so training never runs the reference.

Out: `train.parquet` = the pairs' train split + `ref_chosen_logp, ref_rejected_logp` (NaN: unscorable);
`valid.parquet`, the same for the validation split (when it has rows): the trainer's held-out curve.
"""

from __future__ import annotations

from pathlib import Path

from sumpref.artifacts import ArtifactRef, read_table
from sumpref.cachekey import StageSpec
from sumpref.config import RunConfig


def refprobs_spec(cfg: RunConfig, pairs: ArtifactRef, base_model: str) -> StageSpec:
    def produce(out: Path) -> dict:
        from sumpref.model_paths import resolve_model
        from sumpref.training.reference import compute_reference_logps

        splits = ["train"] + (["valid"] if read_table(pairs.path / "valid.parquet") else [])
        for split in splits:
            compute_reference_logps(str(pairs.path / f"{split}.parquet"), resolve_model(base_model), str(out / f"{split}.parquet"),
                                    max_length=cfg.dpo.max_length, num_replicas=cfg.dpo.ref_replicas,
                                    use_gpu=cfg.dpo.use_gpu or None, dtype="bfloat16" if cfg.dpo.bf16 else "auto")
        rows = read_table(out / "train.parquet")
        bad = sum(1 for r in rows if r["ref_chosen_logp"] != r["ref_chosen_logp"])  # NaN: could not be scored
        return {"rows": len(rows), "drops": {"unscorable": bad} if bad else {}}

    config = {"base_model": base_model, "max_length": cfg.dpo.max_length, "bf16": cfg.dpo.bf16}
    return StageSpec(cfg.root, "refprobs", config, [pairs], __name__, produce)

