"""DeepSpeed ZeRO configs: package data (`sumpref/resources/deepspeed/zero{2,3}.json`), "auto" filled.

The JSON files use Hugging Face's "auto" values so that both trainers read the same files:
- the TRL path hands `deepspeed_template(stage)` to `transformers.TrainingArguments`, which fills
  the autos from its own arguments;
- the packed trainer calls `deepspeed_config(cfg, world_size)`, which fills them from our config
  (a packed micro-batch is one forward call over whole articles, so DeepSpeed's micro-batch is 1).

Only `json` and `importlib.resources` are imported: deepspeed itself is not needed to build a config.
"""

from __future__ import annotations

import json
from importlib.resources import files

from sumpref.config import DPOCommon

STAGES = ("zero2", "zero3")


def deepspeed_template(stage: str) -> dict:
    """The shipped ZeRO config for `stage` ("zero2" | "zero3"), "auto" values left in."""
    if stage not in STAGES:
        raise ValueError(f"dpo.deepspeed: {stage!r} has no shipped config; choose one of {STAGES}")
    return json.loads((files("sumpref") / "resources" / "deepspeed" / f"{stage}.json").read_text())


def deepspeed_config(cfg: DPOCommon, world_size: int = 1) -> dict:
    """The ZeRO config for `cfg.deepspeed` with every "auto" filled from `cfg` (packed trainer)."""
    if cfg.deepspeed == "none":
        raise ValueError("deepspeed_config needs dpo.deepspeed = zero2 or zero3")
    ds = deepspeed_template(cfg.deepspeed)
    autos = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "train_batch_size": cfg.gradient_accumulation_steps * world_size,
        "gradient_clipping": cfg.max_grad_norm,
    }
    for key, value in autos.items():
        if ds.get(key) == "auto":
            ds[key] = value
    if ds.get("bf16", {}).get("enabled") == "auto":
        ds["bf16"]["enabled"] = bool(cfg.bf16 and cfg.use_gpu)
    left = [k for k, v in _flatten(ds).items() if v == "auto"]
    if left:
        raise ValueError(f"{cfg.deepspeed}.json: no value for 'auto' keys {left}")
    return ds


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
