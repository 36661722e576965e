"""DPO with TRL + PEFT LoRA: the reference training path.

`trl_args` is the one adapter from our `DPOConfig` to TRL's (unit-tested); `train_dpo_trl` runs
TRL's DPOTrainer on pair rows (the format of `sumpref.pairs`) and writes the LoRA adapter,
`metrics.json` and a model card into `output_dir`. Checkpoints go to `output_dir/checkpoints`
every `save_steps`; a rerun after a crash resumes from the last one. `launch_training` runs it
through Ray Train's TorchTrainer (one worker per GPU, DeepSpeed when configured), or in the
calling process for a CPU run with `num_workers == 1`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from sumpref.artifacts import atomic_write_text
from sumpref.config import DPOConfig

DEEPSPEED_DIR = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"


def to_trl_rows(pairs: list[dict]) -> list[dict]:
    """Explicit-prompt conversational preference rows, as TRL expects."""
    return [{"prompt": p["prompt"], "chosen": p["chosen"][-1:], "rejected": p["rejected"][-1:]} for p in pairs]


def trl_args(cfg: DPOConfig, output_dir: str, has_eval: bool, use_cpu: bool) -> "object":
    """Translate our DPOConfig into trl.DPOConfig (the only place that knows TRL's names)."""
    from trl import DPOConfig as TRLDPOConfig

    deepspeed = None if cfg.deepspeed == "none" else str(DEEPSPEED_DIR / f"{cfg.deepspeed}.json")
    return TRLDPOConfig(
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
        bf16=cfg.bf16,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        deepspeed=deepspeed,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        eval_strategy="epoch" if has_eval else "no",
        report_to=list(cfg.report_to) or "none",
        seed=cfg.seed,
        use_cpu=use_cpu,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def lora_config(cfg: DPOConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")


def _last_checkpoint(ckpt_dir: Path) -> str | None:
    ckpts = sorted(ckpt_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])) if ckpt_dir.exists() else []
    return str(ckpts[-1]) if ckpts else None


def train_dpo_trl(train: list[dict], valid: list[dict], model_path: str, output_dir: str, cfg: DPOConfig) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    if not train:
        raise ValueError("DPO: no training pairs (see the pairs stage's drop counts)")
    out = Path(output_dir)
    use_cpu = not torch.cuda.is_available()
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
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(str(out / "adapter"))
        tok.save_pretrained(str(out / "adapter"))
        history = trainer.state.log_history
        metrics = {"train_loss": result.training_loss, "steps": trainer.state.global_step,
                   "pairs_train": len(train), "pairs_valid": len(valid), "log_history": history}
        evals = [h for h in history if "eval_loss" in h]
        if evals:
            metrics.update({k: v for k, v in evals[-1].items() if k.startswith("eval_")})
        finite = [h["loss"] for h in history if "loss" in h]
        metrics["loss_finite"] = all(math.isfinite(x) for x in finite)
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str))
        atomic_write_text(out / "adapter" / "README.md", model_card(model_path, cfg, metrics))
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        return metrics
    return {}


def model_card(base: str, cfg: DPOConfig, metrics: dict) -> str:
    return (
        f"# sumpref DPO LoRA adapter\n\nBase model: `{base}`\n\n"
        f"Trained with DPO on synthetic preference pairs (question-answering accuracy, then brevity).\n\n"
        f"- beta {cfg.beta}, loss {cfg.loss_type}, lr {cfg.learning_rate}, epochs {cfg.num_epochs}\n"
        f"- LoRA r {cfg.lora_r}, alpha {cfg.lora_alpha}, dropout {cfg.lora_dropout}, targets {', '.join(cfg.target_modules)}\n"
        f"- pairs: {metrics.get('pairs_train')} train / {metrics.get('pairs_valid')} validation\n"
        f"- final training loss {metrics.get('train_loss')}\n"
    )


def launch_training(train: list[dict], valid: list[dict], model_path: str, output_dir: str, cfg: DPOConfig) -> dict:
    """Train through Ray Train (GPUs or several workers) or in this process (one CPU worker)."""
    if cfg.num_workers == 1 and not cfg.use_gpu:
        return train_dpo_trl(train, valid, model_path, output_dir, cfg)
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from sumpref.raygen import ensure_ray

    ensure_ray()

    def loop(config: dict) -> None:
        metrics = train_dpo_trl(train, valid, model_path, output_dir, cfg)
        if metrics:
            atomic_write_text(Path(output_dir) / "ray_train_done.json", json.dumps({"ok": True}))

    trainer = TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu),
                           run_config=RunConfig(storage_path=str(Path(output_dir).resolve() / "ray_train")))
    trainer.fit()
    return json.loads((Path(output_dir) / "metrics.json").read_text())
