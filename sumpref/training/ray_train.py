"""Scale-out of the packed DPO trainer: Ray Train workers (one per GPU), DDP or DeepSpeed ZeRO.

Contract:
- `train_packed_dpo_ray(pairs_path, model_path, output_dir, cfg) -> metrics`: runs
  `train_packed_dpo` on `cfg.num_workers` Ray Train workers (`ScalingConfig(num_workers,
  use_gpu)`); Ray Train sets up the torch process group, the trainer shards micro-batches by
  rank and wraps the model in DDP (`cfg.deepspeed == "none"`) or a DeepSpeed engine (`zero2`,
  `zero3`). Rank 0 writes `output_dir`, which must be shared storage on a multi-node cluster.
  A local Ray cluster is started when RAY_ADDRESS is unset.
- `deepspeed_config(cfg, world_size) -> dict`: `configs/deepspeed/zero{2,3}.json` (HF-style
  "auto" values, so the TRL path can use the same files) with the autos filled from `cfg`.

ray and deepspeed are imported inside the functions: the library imports without them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sumpref.config import DPOConfig

DEEPSPEED_DIR = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"


def deepspeed_config(cfg: DPOConfig, world_size: int = 1, config_dir: Path | None = None) -> dict:
    """The ZeRO config for `cfg.deepspeed` with every "auto" filled in."""
    if cfg.deepspeed == "none":
        raise ValueError("deepspeed_config needs dpo.deepspeed = zero2 or zero3")
    path = (config_dir or DEEPSPEED_DIR) / f"{cfg.deepspeed}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing (dpo.deepspeed={cfg.deepspeed!r})")
    ds = json.loads(path.read_text())
    # A packed micro-batch is one forward call over whole articles: DeepSpeed's "micro batch" is 1.
    autos = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "train_batch_size": cfg.gradient_accumulation_steps * world_size,
        "gradient_clipping": getattr(cfg, "max_grad_norm", 1.0),
    }
    for key, value in autos.items():
        if ds.get(key) == "auto":
            ds[key] = value
    if ds.get("bf16", {}).get("enabled") == "auto":
        ds["bf16"]["enabled"] = bool(cfg.bf16 and cfg.use_gpu)
    left = [k for k, v in _flatten(ds).items() if v == "auto"]
    if left:
        raise ValueError(f"{path}: no value for 'auto' keys {left}")
    return ds


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _worker_loop(config: dict) -> None:
    import ray.train
    import torch

    from sumpref.training.packed_dpo import train_packed_dpo

    ctx = ray.train.get_context()
    os.environ["LOCAL_RANK"] = str(ctx.get_local_rank())  # read by the trainer to pick its GPU
    cfg = DPOConfig.model_validate(config["cfg"])
    if cfg.use_gpu and torch.cuda.is_available():
        torch.cuda.set_device(ctx.get_local_rank())
    metrics = train_packed_dpo(config["pairs_path"], config["model_path"], config["output_dir"], cfg)
    last = metrics.get("last", {})
    ray.train.report({"steps": metrics["steps"], **{k: v for k, v in last.items() if isinstance(v, (int, float))}})


def train_packed_dpo_ray(pairs_path: str, model_path: str, output_dir: str, cfg: DPOConfig) -> dict:
    """Run the packed trainer on `cfg.num_workers` Ray Train workers; returns rank 0's last metrics."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True)
    out = Path(output_dir).resolve()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"pairs_path": str(Path(pairs_path).resolve()), "model_path": model_path,
                           "output_dir": str(out), "cfg": cfg.model_dump(mode="json")},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu),
        run_config=RunConfig(name="packed_dpo", storage_path=str(out / "ray")),
    )
    result = trainer.fit()
    metrics = dict(result.metrics or {})
    summary = out / "metrics.json"
    if summary.exists():
        metrics["summary"] = json.loads(summary.read_text())
    return metrics
