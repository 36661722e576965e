"""DPO training entry points: which trainer, and in this process or on Ray Train workers.

- `launch_training(train, valid, model_path, output_dir, cfg)`: TRL's DPOTrainer
  (`dpo.trainer: trl`) through Ray Train when there are GPUs or several workers, in this process
  for one CPU worker. Returns the metrics of `output_dir/metrics.json`.
- `launch_packed_training(pairs_path, model_path, output_dir, cfg, valid_path)`: our packed
  trainer (`dpo.trainer: packed`), through Ray Train when there are GPUs or several workers (the
  GPU work runs on a Ray worker, not in the orchestrating process), in this process for one CPU
  worker. `valid_path`: validation pairs with reference log-probs, scored at every logging step.

Module map of `sumpref.training`: `launch` (this module: the entry points), `losses` (pure DPO
losses), `packing` (shared-prompt packing and the packed log-prob forward), `reference`
(reference log-probs, computed once for the `refprobs` stage), `pair_data` (packed training
data and order), `policy` (base model + LoRA), `distributed` (DDP / DeepSpeed wrapping),
`deepspeed_config` (ZeRO JSONs), `checkpoints`, `reporting` (model cards, metric logs),
`packed_dpo` (our loop), `trl_dpo` (TRL's), `ray_train` (both on Ray Train workers).
"""

from __future__ import annotations

import json
from pathlib import Path

from sumpref.artifacts import read_staged
from sumpref.config import PackedDPOConfig, TRLDPOConfig


def launch_training(train: list[dict] | str, valid: list[dict] | str, model_path: str, output_dir: str,
                    cfg: TRLDPOConfig) -> dict:
    """`train`/`valid`: rows, or a parquet path or store URI (read where the training runs)."""
    if cfg.num_workers == 1 and not cfg.use_gpu:
        from sumpref.training.ray_train import rows_of
        from sumpref.training.trl_dpo import train_dpo_trl

        return train_dpo_trl(rows_of(train), rows_of(valid), model_path, output_dir, cfg)
    from sumpref.training.ray_train import train_dpo_trl_ray

    train_dpo_trl_ray(train, valid, model_path, output_dir, cfg)
    return json.loads(read_staged(Path(output_dir) / "metrics.json"))


def launch_packed_training(pairs_path: str, model_path: str, output_dir: str, cfg: PackedDPOConfig,
                           valid_path: str | None = None) -> dict:
    if cfg.num_workers == 1 and not cfg.use_gpu:
        from sumpref.training.packed_dpo import train_packed_dpo

        return train_packed_dpo(pairs_path, model_path, output_dir, cfg, valid_path=valid_path)
    from sumpref.training.ray_train import train_packed_dpo_ray

    train_packed_dpo_ray(pairs_path, model_path, output_dir, cfg, valid_path=valid_path)
    return json.loads(read_staged(Path(output_dir) / "metrics.json"))
