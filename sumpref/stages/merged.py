"""Stage `merged`: base + adapter merged into a plain model directory (`model/`), the next
round's policy and reference."""

from __future__ import annotations

from pathlib import Path

from sumpref.artifacts import ArtifactRef
from sumpref.cachekey import StageSpec
from sumpref.config import RunConfig


def merged_spec(cfg: RunConfig, base_model: str, adapter: ArtifactRef) -> StageSpec:
    def produce(out: Path) -> dict:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from sumpref.model_paths import resolve_model

        path = resolve_model(base_model)
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path), str(adapter.path / "adapter"))
        model.merge_and_unload().save_pretrained(str(out / "model"))
        AutoTokenizer.from_pretrained(path).save_pretrained(str(out / "model"))
        return {"rows": 0}

    return StageSpec(cfg.root, "merged", {"base_model": base_model}, [adapter], __name__, produce)

