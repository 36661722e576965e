"""Our DPO trainer's loop: shared-prompt packing, precomputed reference log-probs, LoRA.

Contract: `train_packed_dpo(pairs_path, model_path, output_dir, cfg) -> metrics`.
- `pairs_path`: parquet of pairs with the `ref_chosen_logp` / `ref_rejected_logp` columns written
  by `sumpref.training.reference.compute_reference_logps` (the reference model never runs here).
- `output_dir` receives the LoRA adapter (`save_pretrained`), a model card (`README.md`),
  `metrics.jsonl` (one record per logging step), `metrics.json` (summary, written last),
  `checkpoints/step-N/` every `save_steps` steps and, with `merge_adapter`, `merged/`.
- `valid_path` (optional, same columns): validation pairs scored without gradients every
  `logging_steps` and at the end; their loss, reward margin and accuracy go into each
  `metrics.jsonl` record as `valid/*` and into `metrics.json` (`valid`).
- Re-running with the same arguments after a crash resumes from the newest complete checkpoint
  (`sumpref.training.checkpoints`); the data order is a pure function of (seed, epoch)
  (`sumpref.training.pair_data`), so the resumed run sees exactly the killed run's micro-batches.
- Under a process group (Ray Train, `sumpref.training.ray_train`) rank r takes every world-th
  micro-batch and the model is wrapped in DDP or DeepSpeed (`sumpref.training.distributed`);
  rank 0 writes the outputs.

A micro-batch holds whole articles (`per_device_batch_size` pairs at most, an article larger than
that alone). Each optimizer step averages the per-pair losses over all pairs of its
`gradient_accumulation_steps` micro-batches.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from sumpref.config import PackedDPOConfig
from sumpref.artifacts import mirror_tree
from sumpref.training.checkpoints import deepspeed_checkpoint_dir, latest_checkpoint, load_checkpoint, save_checkpoint
from sumpref.training.distributed import Wrapped, gathered_adapter, rank_and_world, train_device, wrap
from sumpref.training.losses import DPOLossOutput, dpo_loss, preference_metrics
from sumpref.training.pair_data import PairData, load_pair_data, microbatch_stream, total_steps
from sumpref.training.packing import PackedBatch, make_microbatches, pack_groups
from sumpref.training.policy import build_policy
from sumpref.training.reporting import MetricsLog, packed_model_card


def packed_dpo_loss(
    scorer: torch.nn.Module, batch: PackedBatch, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
    cfg: PackedDPOConfig,
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
        length_normalize=cfg.length_normalize,
    )


def _resume(out: Path, model, w: Wrapped) -> int:
    """The step to start from: the newest checkpoint's, or 0."""
    if w.engine is not None:
        ds_dir = deepspeed_checkpoint_dir(out)
        if not ds_dir.exists():
            return 0
        _, client = w.engine.load_checkpoint(str(ds_dir))
        return int((client or {}).get("step", 0))
    ckpt = latest_checkpoint(out)
    return load_checkpoint(ckpt, model, w.optimizer, w.scheduler) if ckpt is not None else 0


def _save_checkpoint(out: Path, model, w: Wrapped, step: int, cfg: PackedDPOConfig, rank: int) -> None:
    if w.engine is not None:  # every rank saves its shard
        w.engine.save_checkpoint(str(deepspeed_checkpoint_dir(out)), client_state={"step": step})
    elif rank == 0:
        save_checkpoint(out, model, w.optimizer, w.scheduler, step, cfg.save_total_limit)


class _Window:
    """Loss outputs and throughput counters since the last logged step."""

    def __init__(self):
        self.results: list[DPOLossOutput] = []
        self.t0, self.pairs, self.tokens = time.perf_counter(), 0, 0

    def record(self, step: int, epoch: int, lr: float, device: torch.device) -> dict:
        merged = DPOLossOutput(*(torch.cat([getattr(r, f) for r in self.results]).detach() for f in DPOLossOutput._fields))
        dt = time.perf_counter() - self.t0
        rec = {"step": step, "epoch": epoch, "lr": lr, **preference_metrics(merged),
               "pairs_per_s": self.pairs / dt, "tokens_per_s": self.tokens / dt}
        if device.type == "cuda":
            rec["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        return rec


def _optimizer_step(model, w: Wrapped, data: PairData, groups_per_mb, pad: int, device, cfg, window: _Window) -> None:
    """Forward/backward over one step's micro-batches, then the optimizer step."""
    step_pairs = sum(len(g.pairs) for gs in groups_per_mb for g in gs)
    for gs in groups_per_mb:
        batch = pack_groups(gs, pad)
        rows = torch.tensor(batch.rows)
        res = packed_dpo_loss(w.scorer, batch.to(device), data.ref_chosen[rows], data.ref_rejected[rows], cfg)
        loss = res.losses.sum() / step_pairs
        if w.engine is not None:
            # DeepSpeed divides by its accumulation count itself; our loss is already a step mean.
            w.engine.backward(loss * cfg.gradient_accumulation_steps)
            w.engine.step()  # counts micro-steps and steps the optimizer at the boundary
        else:
            loss.backward()
        window.results.append(res)
        window.pairs += len(batch.rows)
        window.tokens += int((batch.segment_ids >= 0).sum())
    if w.engine is None:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
        w.optimizer.step()
        w.scheduler.step()
        w.optimizer.zero_grad(set_to_none=True)


def validate(model, scorer, valid: PairData | None, pad: int, device, cfg: PackedDPOConfig) -> dict:
    """Loss, reward margin and accuracy on held-out pairs (no gradients); {} without any.
    Every rank runs the same batches, so a sharded (ZeRO-3) forward stays in step."""
    if valid is None or not valid.groups:
        return {}
    was_training = model.training
    model.eval()
    results = []
    with torch.no_grad():
        for mb in make_microbatches(valid.groups, cfg.per_device_batch_size, cfg.max_tokens_per_batch):
            batch = pack_groups([valid.groups[i] for i in mb], pad)
            rows = torch.tensor(batch.rows)
            results.append(packed_dpo_loss(scorer, batch.to(device), valid.ref_chosen[rows], valid.ref_rejected[rows], cfg))
    model.train(was_training)
    merged = DPOLossOutput(*(torch.cat([getattr(r, f) for r in results]) for f in DPOLossOutput._fields))
    return {f"valid/{k}": v for k, v in preference_metrics(merged).items()} | {"valid/pairs": len(merged.losses)}


def train_packed_dpo(
    pairs_path: str, model_path: str, output_dir: str, cfg: PackedDPOConfig, *, fail_after_step: int | None = None,
    valid_path: str | None = None,
) -> dict:
    """Train a LoRA adapter with packed DPO; returns the summary metrics (also `metrics.json`).

    `fail_after_step` injects a crash after that optimizer step (for resume tests).
    """
    from transformers import AutoTokenizer

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = rank_and_world()
    device = train_device(cfg)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    tok = AutoTokenizer.from_pretrained(model_path)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    data = load_pair_data(pairs_path, tok, cfg.max_length)
    if not data.groups:
        raise ValueError(f"{pairs_path}: no trainable pairs ({data.dropped} dropped)")
    valid = load_pair_data(valid_path, tok, cfg.max_length) if valid_path else None
    steps = total_steps(data.groups, cfg, world)
    model = build_policy(model_path, cfg, device)
    w = wrap(model, cfg, device, world, steps)
    start = _resume(out, model, w)
    log = MetricsLog(out, cfg, enabled=rank == 0, fresh=start == 0)
    stream = microbatch_stream(data.groups, cfg, rank, world)
    for _ in range(start * cfg.gradient_accumulation_steps):  # replay the data order up to the checkpoint
        next(stream)

    model.train()
    window, last, epoch = _Window(), {}, 0
    for step in range(start, steps):
        mbs = [next(stream) for _ in range(cfg.gradient_accumulation_steps)]
        epoch = mbs[-1][0]
        _optimizer_step(model, w, data, [[data.groups[i] for i in mb] for _, mb in mbs], pad, device, cfg, window)
        done = step + 1
        if done % cfg.logging_steps == 0 or done == steps:
            last = window.record(done, epoch, w.scheduler.get_last_lr()[0], device)
            last.update(validate(model, w.scorer, valid, pad, device, cfg))
            log.write(last, done)
            window = _Window()
        if done % cfg.save_steps == 0 and done < steps:
            _save_checkpoint(out, model, w, done, cfg, rank)
        if fail_after_step is not None and done >= fail_after_step:
            raise RuntimeError(f"injected failure after step {done}")

    metrics = {"steps": steps, "resumed_from": start, "pairs": sum(len(g.pairs) for g in data.groups),
               "articles": len(data.groups), "dropped_pairs": data.dropped, "world_size": world, "last": last,
               "valid": {k.removeprefix("valid/"): v for k, v in last.items() if k.startswith("valid/")}}
    with gathered_adapter(model, cfg):  # every rank joins a ZeRO-3 gather; rank 0 writes
        if rank == 0:
            _save_outputs(model, tok, out, model_path, cfg, metrics)
    log.close()
    return metrics


def _save_outputs(model, tok, out: Path, model_path: str, cfg: PackedDPOConfig, metrics: dict) -> None:
    model.save_pretrained(str(out))
    (out / "README.md").write_text(packed_model_card(model_path, cfg, metrics))  # replaces PEFT's template card
    if cfg.merge_adapter:
        merged = model.merge_and_unload()
        merged.save_pretrained(str(out / "merged"))
        tok.save_pretrained(str(out / "merged"))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))  # last: proves the run finished
    mirror_tree(out, last="metrics.json")  # remote root: to the store from whichever node rank 0 runs on
