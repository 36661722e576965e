"""Our DPO trainer: shared-prompt packing, precomputed reference log-probs, LoRA.

Contract: `train_packed_dpo(pairs_path, model_path, output_dir, cfg) -> metrics`.
- `pairs_path`: parquet of pairs with the `ref_chosen_logp` / `ref_rejected_logp` columns written
  by `sumpref.training.refprobs.compute_reference_logps` (the reference model never runs here).
- `output_dir` receives the LoRA adapter (`save_pretrained`), a model card (`README.md`),
  `metrics.jsonl` (one record per logging step), `metrics.json` (summary, written last),
  `checkpoints/step-N/` every `save_steps` steps (adapter, optimizer, scheduler, step, RNG; a
  `COMPLETE` marker last) and, with `merge_adapter`, `merged/`.
- Re-running with the same arguments after a crash resumes from the newest complete
  checkpoint; the data order is a pure function of (seed, epoch), so the resumed run sees
  exactly the micro-batches the killed one would have.

A micro-batch holds whole articles (`per_device_batch_size` pairs at most, an article larger than
that alone). Each optimizer step averages the per-pair losses over all pairs of its
`gradient_accumulation_steps` micro-batches.

Config fields read with defaults because `DPOConfig` does not have them yet: `length_normalize`
(False), `warmup_ratio` (0.0), `weight_decay` (0.0), `merge_adapter` (False),
`save_total_limit` (2), `max_tokens_per_batch` (None), `max_grad_norm` (1.0).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from sumpref.config import DPOConfig
from sumpref.training.losses import DPOLossOutput, dpo_loss, preference_metrics
from sumpref.training.packing import (
    ArticleGroup,
    PackedBatch,
    PackedLogProbs,
    build_groups,
    disable_adapter_input_cast,
    make_microbatches,
    pack_groups,
)
from sumpref.training.refprobs import REF_COLUMNS

CHECKPOINT_DIR = "checkpoints"
COMPLETE = "COMPLETE"


def _opt(cfg: DPOConfig, name: str, default):
    return getattr(cfg, name, default)


# ----------------------------------------------------------------------------- data


@dataclass
class PairData:
    groups: list[ArticleGroup]
    ref_chosen: torch.Tensor  # indexed by source row
    ref_rejected: torch.Tensor
    dropped: int


def load_pair_data(pairs_path: str, tokenizer, max_length: int) -> PairData:
    import pandas as pd

    df = pd.read_parquet(pairs_path)
    missing = [c for c in REF_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{pairs_path} lacks {missing}: run sumpref.training.refprobs.compute_reference_logps first "
            "(the packed trainer never runs the reference model)"
        )
    ok = df[list(REF_COLUMNS)].notna().all(axis=1)
    rows = df.to_dict("records")
    groups, dropped = build_groups([r for r, good in zip(rows, ok) if good], tokenizer, max_length)
    kept = df[ok]
    return PairData(
        groups,
        torch.tensor(kept[REF_COLUMNS[0]].to_numpy(), dtype=torch.float64),
        torch.tensor(kept[REF_COLUMNS[1]].to_numpy(), dtype=torch.float64),
        dropped + int((~ok).sum()),
    )


def epoch_microbatches(groups: Sequence[ArticleGroup], cfg: DPOConfig, epoch: int) -> list[list[int]]:
    """The micro-batches of one epoch: articles shuffled with (seed, epoch), then packed greedily."""
    order = list(range(len(groups)))
    random.Random(cfg.seed * 1_000_003 + epoch).shuffle(order)
    mbs = make_microbatches([groups[i] for i in order], cfg.per_device_batch_size, _opt(cfg, "max_tokens_per_batch", None))
    return [[order[i] for i in mb] for mb in mbs]


def microbatch_stream(groups, cfg: DPOConfig, rank: int = 0, world: int = 1) -> Iterator[tuple[int, list[int]]]:
    """Endless (epoch, micro-batch) stream; rank r takes every world-th micro-batch."""
    k = 0
    for epoch in count():
        for mb in epoch_microbatches(groups, cfg, epoch):
            if k % world == rank:
                yield epoch, mb
            k += 1


def total_steps(groups, cfg: DPOConfig, world: int = 1) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    per_epoch = len(epoch_microbatches(groups, cfg, 0)) / world
    return max(1, math.ceil(cfg.num_epochs * per_epoch / cfg.gradient_accumulation_steps))


# ----------------------------------------------------------------------------- model


def lora_config(cfg: DPOConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )


def compute_dtype(cfg: DPOConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPU with cfg.bf16 (base weights bf16, LoRA master weights fp32); None = fp32."""
    return torch.bfloat16 if (cfg.bf16 and device.type == "cuda") else None


def build_policy(model_path: str, cfg: DPOConfig, device: torch.device):
    """Base model (bf16 on GPU when cfg.bf16, else fp32) with a fresh LoRA adapter."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    dtype = compute_dtype(cfg, device) or torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation="sdpa")
    model.config.use_cache = False
    model = get_peft_model(model, lora_config(cfg))
    if compute_dtype(cfg, device) is not None:
        disable_adapter_input_cast(model)
    enable_checkpointing(model, cfg)
    return model.to(device)


def enable_checkpointing(model, cfg: DPOConfig) -> None:
    if not cfg.gradient_checkpointing:
        return
    # PEFT under ZeRO-3 needs reentrant checkpointing (parameters are fetched by hooks that the
    # non-reentrant recompute does not replay); reentrant needs inputs that require grad.
    reentrant = cfg.deepspeed == "zero3"
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    if reentrant:
        model.enable_input_require_grads()


def packed_dpo_loss(
    scorer: torch.nn.Module, batch: PackedBatch, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, cfg: DPOConfig
) -> DPOLossOutput:
    """Per-pair losses for one packed micro-batch (`ref_*`: the batch's pairs, in batch order)."""
    logps = scorer(**batch.model_inputs())
    ntok = batch.completion_tokens.to(logps.device)
    return dpo_loss(
        logps[batch.chosen_index],
        logps[batch.rejected_index],
        ref_chosen.to(logps.device),
        ref_rejected.to(logps.device),
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        label_smoothing=cfg.label_smoothing,
        chosen_tokens=ntok[batch.chosen_index],
        rejected_tokens=ntok[batch.rejected_index],
        length_normalize=_opt(cfg, "length_normalize", False),
    )


# ----------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    root = Path(output_dir) / CHECKPOINT_DIR
    done = [p for p in root.glob("step-*") if (p / COMPLETE).exists()] if root.exists() else []
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_checkpoint(output_dir, model, optimizer, scheduler, step: int, keep: int) -> Path:
    path = Path(output_dir) / CHECKPOINT_DIR / f"step-{step}"
    if path.exists():
        shutil.rmtree(path)
    model.save_pretrained(str(path / "adapter"))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step, "rng": _rng_state()},
        path / "training_state.pt",
    )
    (path / COMPLETE).write_text(str(step))  # last: its presence proves the checkpoint is whole
    older = sorted((p for p in path.parent.glob("step-*") if p != path), key=lambda p: int(p.name.split("-")[1]))
    for p in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return path


def load_checkpoint(path: Path, model, optimizer, scheduler) -> int:
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    device = next(p for p in model.parameters() if p.requires_grad).device
    set_peft_model_state_dict(model, load_peft_weights(str(path / "adapter"), device=str(device)))
    state = torch.load(path / "training_state.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return int(state["step"])


# ----------------------------------------------------------------------------- outputs


def write_model_card(output_dir: Path, model_path: str, cfg: DPOConfig, metrics: dict) -> None:
    lines = [
        "---",
        f"base_model: {model_path}",
        "library_name: peft",
        "tags: [dpo, lora, summarization, sumpref]",
        "---",
        "# sumpref DPO adapter",
        "",
        "LoRA adapter preference-tuned for short news summaries with DPO (sumpref packed trainer:",
        "shared-prompt packing, reference log-probs precomputed by the frozen base model).",
        "",
        f"- base model: `{model_path}`",
        f"- loss: {cfg.loss_type}, beta {cfg.beta}, label smoothing {cfg.label_smoothing}, "
        f"length-normalised {_opt(cfg, 'length_normalize', False)}",
        f"- LoRA: r {cfg.lora_r}, alpha {cfg.lora_alpha}, dropout {cfg.lora_dropout}, modules {', '.join(cfg.target_modules)}",
        f"- optimisation: AdamW lr {cfg.learning_rate}, {metrics.get('steps')} steps, "
        f"{cfg.per_device_batch_size} pairs/micro-batch x {cfg.gradient_accumulation_steps} accumulation",
        "",
        "## Training metrics (last logged step)",
        "",
        "```json",
        json.dumps(metrics.get("last", {}), indent=2),
        "```",
    ]
    (output_dir / "README.md").write_text("\n".join(lines) + "\n")


def _tensorboard(cfg: DPOConfig, output_dir: Path):
    if "tensorboard" not in cfg.report_to:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: the JSON log still has everything
        return None
    return SummaryWriter(str(output_dir / "runs"))


# ----------------------------------------------------------------------------- training


def _device(cfg: DPOConfig) -> torch.device:
    if cfg.use_gpu and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _scheduler(optimizer, cfg: DPOConfig, steps: int):
    warmup = int(_opt(cfg, "warmup_ratio", 0.0) * steps)

    def factor(step: int) -> float:  # linear warmup, then linear decay to zero (the HF default)
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _wrap(model, cfg: DPOConfig, device, world: int, steps: int):
    """(scorer to call, engine or None, optimizer, scheduler) for plain / DDP / DeepSpeed runs."""
    scorer = PackedLogProbs(model, compute_dtype(cfg, device))
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.deepspeed != "none":
        import deepspeed  # lazy: optional dependency

        from sumpref.training.ray_train import deepspeed_config

        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=_opt(cfg, "weight_decay", 0.0))
        scheduler = _scheduler(optimizer, cfg, steps)
        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=scorer, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, world)
        )
        return engine, engine, optimizer, scheduler
    optimizer = torch.optim.AdamW(
        params, lr=cfg.learning_rate, weight_decay=_opt(cfg, "weight_decay", 0.0), fused=device.type == "cuda"
    )
    scheduler = _scheduler(optimizer, cfg, steps)
    if world > 1:
        scorer = torch.nn.parallel.DistributedDataParallel(scorer, device_ids=[device] if device.type == "cuda" else None)
    return scorer, None, optimizer, scheduler


def train_packed_dpo(
    pairs_path: str, model_path: str, output_dir: str, cfg: DPOConfig, *, fail_after_step: int | None = None
) -> dict:
    """Train a LoRA adapter with packed DPO; returns the summary metrics (also `metrics.json`).

    `fail_after_step` injects a crash after that optimizer step (for resume tests).
    """
    from transformers import AutoTokenizer

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = _dist()
    device = _device(cfg)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    tok = AutoTokenizer.from_pretrained(model_path)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    data = load_pair_data(pairs_path, tok, cfg.max_length)
    if not data.groups:
        raise ValueError(f"{pairs_path}: no trainable pairs ({data.dropped} dropped)")
    if cfg.deepspeed == "zero3" and _opt(cfg, "merge_adapter", False):
        raise ValueError("merge_adapter with deepspeed=zero3 would gather the whole base model: merge from the saved adapter afterwards")
    steps = total_steps(data.groups, cfg, world)
    model = build_policy(model_path, cfg, device)
    scorer, engine, optimizer, scheduler = _wrap(model, cfg, device, world, steps)

    start = 0
    ckpt = latest_checkpoint(out) if engine is None else None
    if ckpt is not None:
        start = load_checkpoint(ckpt, model, optimizer, scheduler)
    elif engine is not None and (out / CHECKPOINT_DIR / "deepspeed").exists():
        _, client = engine.load_checkpoint(str(out / CHECKPOINT_DIR / "deepspeed"))
        start = int((client or {}).get("step", 0))

    writer = _tensorboard(cfg, out) if rank == 0 else None
    log_path = out / "metrics.jsonl"
    if start == 0 and rank == 0 and log_path.exists():
        log_path.unlink()
    stream = microbatch_stream(data.groups, cfg, rank, world)
    for _ in range(start * cfg.gradient_accumulation_steps):  # replay the data order up to the checkpoint
        next(stream)

    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    accum: list[DPOLossOutput] = []
    last: dict = {}
    t0, pairs_seen, tokens_seen, epoch = time.perf_counter(), 0, 0, 0
    for step in range(start, steps):
        mbs = [next(stream) for _ in range(cfg.gradient_accumulation_steps)]
        epoch = mbs[-1][0]
        groups = [[data.groups[i] for i in mb] for _, mb in mbs]
        step_pairs = sum(len(g.pairs) for gs in groups for g in gs)
        for gs in groups:
            batch = pack_groups(gs, pad)
            rows = torch.tensor(batch.rows)
            res = packed_dpo_loss(scorer, batch.to(device), data.ref_chosen[rows], data.ref_rejected[rows], cfg)
            loss = res.losses.sum() / step_pairs
            if engine is not None:
                # DeepSpeed divides by its accumulation count itself; our loss is already a step mean.
                engine.backward(loss * cfg.gradient_accumulation_steps)
                engine.step()  # counts micro-steps and steps the optimizer at the boundary
            else:
                loss.backward()
            accum.append(res)
            pairs_seen += len(batch.rows)
            tokens_seen += int((batch.segment_ids >= 0).sum())
        if engine is None:
            torch.nn.utils.clip_grad_norm_(trainable, _opt(cfg, "max_grad_norm", 1.0))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if done % cfg.logging_steps == 0 or done == steps:
            merged = DPOLossOutput(*(torch.cat([getattr(r, f) for r in accum]).detach() for f in DPOLossOutput._fields))
            dt = time.perf_counter() - t0
            last = {"step": done, "epoch": epoch, "lr": scheduler.get_last_lr()[0], **preference_metrics(merged),
                    "pairs_per_s": pairs_seen / dt, "tokens_per_s": tokens_seen / dt}
            if device.type == "cuda":
                last["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            accum, t0, pairs_seen, tokens_seen = [], time.perf_counter(), 0, 0
            if rank == 0:
                with log_path.open("a") as f:
                    f.write(json.dumps(last) + "\n")
                if writer is not None:
                    for k, v in last.items():
                        writer.add_scalar(f"train/{k}", v, done)
        if done % cfg.save_steps == 0 and done < steps:
            if engine is not None:
                engine.save_checkpoint(str(out / CHECKPOINT_DIR / "deepspeed"), client_state={"step": done})
            elif rank == 0:
                save_checkpoint(out, model, optimizer, scheduler, done, _opt(cfg, "save_total_limit", 2))
        if fail_after_step is not None and done >= fail_after_step:
            raise RuntimeError(f"injected failure after step {done}")

    metrics = {"steps": steps, "resumed_from": start, "pairs": sum(len(g.pairs) for g in data.groups),
               "articles": len(data.groups), "dropped_pairs": data.dropped, "last": last}
    if cfg.deepspeed == "zero3":
        import deepspeed

        # Partitioned adapter weights: every rank joins the gather, rank 0 writes.
        with deepspeed.zero.GatheredParameters([p for p in model.parameters() if p.requires_grad]):
            if rank == 0:
                _save_outputs(model, tok, out, model_path, cfg, metrics, engine)
    elif rank == 0:
        _save_outputs(model, tok, out, model_path, cfg, metrics, engine)
    if writer is not None:
        writer.close()
    return metrics


def _save_outputs(model, tok, out: Path, model_path: str, cfg: DPOConfig, metrics: dict, engine) -> None:
    model.save_pretrained(str(out))
    write_model_card(out, model_path, cfg, metrics)  # replaces PEFT's template card
    if _opt(cfg, "merge_adapter", False):
        merged = model.merge_and_unload()
        merged.save_pretrained(str(out / "merged"))
        tok.save_pretrained(str(out / "merged"))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))  # last: proves the run finished
