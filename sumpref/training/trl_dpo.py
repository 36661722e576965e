"""DPO with TRL's DPOTrainer + a PEFT LoRA adapter: the reference training path (`dpo.trainer: trl`).

Contract: `train_dpo_trl(train, valid, model_path, output_dir, cfg) -> metrics` on pair rows (the
format of `sumpref.pairs`) writes `output_dir/adapter/` (LoRA weights, tokenizer, model card) and
`output_dir/metrics.json` (`zero_stage`: the DeepSpeed ZeRO stage that ran, 0 without DeepSpeed).
HF checkpoints go to `output_dir/checkpoints` every `save_steps` (the newest `save_total_limit`
kept); a rerun after a crash resumes from the last one, and they are removed once training
finishes. Under a process group (Ray Train) every rank trains; rank 0 writes and returns the
metrics, the other ranks return {}.

`trl_args` is the one adapter from our config to TRL's (unit-tested).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from sumpref.artifacts import atomic_write_text, mirror_tree
from sumpref.config import TRLDPOConfig
from sumpref.training.deepspeed_config import deepspeed_template
from sumpref.training.policy import lora_config
from sumpref.training.reporting import trl_model_card


def to_trl_rows(pairs: list[dict]) -> list[dict]:
    """Explicit-prompt conversational preference rows, as TRL expects."""
    return [{"prompt": p["prompt"], "chosen": p["chosen"][-1:], "rejected": p["rejected"][-1:]} for p in pairs]


def trl_args(cfg: TRLDPOConfig, output_dir: str, has_eval: bool, use_cpu: bool) -> "object":
    """Translate our config into trl.DPOConfig (the only place that knows TRL's names)."""
    from trl import DPOConfig as TRLConfig

    return TRLConfig(
        output_dir=str(Path(output_dir) / "checkpoints"),
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        label_smoothing=cfg.label_smoothing,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        per_device_eval_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=cfg.bf16 and not use_cpu,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        deepspeed=None if cfg.deepspeed == "none" else deepspeed_template(cfg.deepspeed),
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float in [0, 1) is a share of the steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="epoch" if has_eval else "no",
        report_to=list(cfg.report_to) or "none",
        seed=cfg.seed,
        use_cpu=use_cpu,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def _last_checkpoint(ckpt_dir: Path) -> str | None:
    # HF's Trainer writes a checkpoint in place, trainer_state.json last: a checkpoint without it was
    # cut short by a kill and cannot be resumed from.
    done = [p for p in ckpt_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()] if ckpt_dir.exists() else []
    ckpts = sorted(done, key=lambda p: int(p.name.split("-")[-1]))
    return str(ckpts[-1]) if ckpts else None


def train_dpo_trl(train: list[dict], valid: list[dict], model_path: str, output_dir: str, cfg: TRLDPOConfig) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    if not train:
        raise ValueError("DPO: no training pairs (see the pairs stage's drop counts)")
    out = Path(output_dir)
    use_cpu = not (cfg.use_gpu and torch.cuda.is_available())
    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = torch.bfloat16 if cfg.bf16 and not use_cpu else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    args = trl_args(cfg, output_dir, has_eval=bool(valid), use_cpu=use_cpu)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(to_trl_rows(train)),
                         eval_dataset=Dataset.from_list(to_trl_rows(valid)) if valid else None,
                         processing_class=tok, peft_config=lora_config(cfg))
    result = trainer.train(resume_from_checkpoint=_last_checkpoint(out / "checkpoints"))
    if not trainer.is_world_process_zero():
        return {}
    trainer.model.save_pretrained(str(out / "adapter"))
    tok.save_pretrained(str(out / "adapter"))
    mirror_tree(out / "adapter")  # remote root: to the store from whichever node rank 0 runs on
    metrics = _summary(trainer.state.log_history, result.training_loss, trainer.state.global_step, len(train), len(valid))
    metrics["world_size"] = trainer.args.world_size
    metrics["zero_stage"] = _zero_stage(trainer)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str))
    atomic_write_text(out / "adapter" / "README.md", trl_model_card(model_path, cfg, metrics))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return metrics


def _zero_stage(trainer) -> int:
    """The ZeRO stage the DeepSpeed engine that trained ran with (0: no DeepSpeed): read from the
    engine itself, so it proves what ran, not what was asked for."""
    engine = getattr(trainer, "deepspeed", None)
    return int(engine.zero_optimization_stage()) if engine is not None else 0


def _summary(history: list[dict], train_loss: float, steps: int, n_train: int, n_valid: int) -> dict:
    metrics = {"train_loss": train_loss, "steps": steps, "pairs_train": n_train, "pairs_valid": n_valid,
               "log_history": history}
    evals = [h for h in history if "eval_loss" in h]
    if evals:
        metrics.update({k: v for k, v in evals[-1].items() if k.startswith("eval_")})
    metrics["loss_finite"] = all(math.isfinite(h["loss"]) for h in history if "loss" in h)
    return metrics
