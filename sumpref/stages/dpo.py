"""Stage `dpo`: a LoRA adapter trained with DPO on the pairs; `base_model` is also the reference.

`dpo.trainer`: `trl` (TRL's DPOTrainer on `pairs`) or `packed` (ours; trains on the `refprobs`
artifact). Out: `adapter/` (LoRA + model card), metrics in meta.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from sumpref import storage
from sumpref.artifacts import ArtifactRef, read_staged, read_table
from sumpref.cachekey import StageSpec
from sumpref.config import RunConfig


def dpo_spec(cfg: RunConfig, pairs: ArtifactRef, base_model: str, refprobs: ArtifactRef | None = None) -> StageSpec:
    def produce(out: Path) -> dict:
        from sumpref.model_paths import resolve_model

        model = resolve_model(base_model)
        if cfg.dpo.trainer == "packed":
            return _train_packed(cfg, refprobs, model, out)
        from sumpref.training.launch import launch_training

        # URIs on a remote root: the training workers read the pairs from the store themselves.
        metrics = launch_training(pairs.child("train.parquet"), pairs.child("valid.parquet"), model, str(out), cfg.dpo)
        rows = len(read_table(pairs.child("train.parquet"), columns=["article_id"]))
        return {"rows": rows, **{k: v for k, v in metrics.items() if k != "log_history"}}

    upstream = [pairs] + ([refprobs] if refprobs is not None else [])
    config = {"dpo": cfg.dpo.model_dump(), "base_model": base_model}
    return StageSpec(cfg.root, "dpo", config, upstream, __name__, produce)


def _train_packed(cfg: RunConfig, refprobs: ArtifactRef | None, model: str, out: Path) -> dict:
    if refprobs is None:
        raise ValueError("dpo.trainer 'packed' needs the reference log-prob stage output")
    from sumpref.training.launch import launch_packed_training

    valid = refprobs.child("valid.parquet")  # URIs on a remote root: the workers read from the store
    launch_packed_training(refprobs.child("train.parquet"), model, str(out / "adapter"), cfg.dpo,
                           valid_path=valid if storage.exists(valid) else None)
    metrics = json.loads(read_staged(out / "adapter" / "metrics.json"))
    metrics.update(pairs_train=metrics.get("pairs", refprobs.rows), pairs_valid=(metrics.get("valid") or {}).get("pairs", 0),
                   train_loss=(metrics.get("last") or {}).get("loss"))
    return {"rows": refprobs.rows, **metrics}

