"""Distributed wrapping of the packed trainer: one process, DDP, or a DeepSpeed ZeRO engine.

The caller (the training loop) sees one `Wrapped`: `scorer` to call on a packed batch, the
optimizer and LR scheduler, and `engine` (the DeepSpeed engine, which then owns backward, the
optimizer step and its checkpoints; None otherwise). The process group, when there is one, was
set up by the launcher (Ray Train's TorchTrainer, or torchrun): this module only reads it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from sumpref.config import PackedDPOConfig
from sumpref.training.deepspeed_config import deepspeed_config
from sumpref.training.packed_logprobs import PackedLogProbs
from sumpref.training.policy import compute_dtype


@dataclass
class Wrapped:
    scorer: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    engine: Any = None  # deepspeed.DeepSpeedEngine when dpo.deepspeed != "none"


def train_device(cfg: PackedDPOConfig) -> torch.device:
    """This process's device: its local GPU with `use_gpu` (LOCAL_RANK set by the launcher), else CPU."""
    if cfg.use_gpu and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def linear_schedule(optimizer, cfg: PackedDPOConfig, steps: int):
    """Linear warmup over `warmup_ratio` of the steps, then linear decay to zero (the HF default)."""
    warmup = int(cfg.warmup_ratio * steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def wrap(model, cfg: PackedDPOConfig, device: torch.device, world: int, steps: int) -> Wrapped:
    scorer = PackedLogProbs(model, compute_dtype(cfg, device), attention=cfg.attention,
                            logprob_chunk_size=cfg.logprob_chunk_size)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.deepspeed != "none":
        import deepspeed  # lazy: optional dependency

        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=scorer, optimizer=optimizer, lr_scheduler=linear_schedule(optimizer, cfg, steps),
            config=deepspeed_config(cfg, world),
        )
        return Wrapped(engine, optimizer, scheduler, engine)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                  fused=device.type == "cuda")
    if world > 1:
        scorer = torch.nn.parallel.DistributedDataParallel(scorer, device_ids=[device] if device.type == "cuda" else None)
    return Wrapped(scorer, optimizer, linear_schedule(optimizer, cfg, steps))


def gathered_adapter(model, cfg: PackedDPOConfig):
    """Context in which the adapter weights are whole on every rank (ZeRO-3 partitions them:
    every rank must enter, so rank 0 can save)."""
    if cfg.deepspeed != "zero3":
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters([p for p in model.parameters() if p.requires_grad])
