"""What a DPO run leaves for people: model cards, the per-step metric log, TensorBoard.

- `packed_model_card(model_path, cfg, metrics)` / `trl_model_card(...)`: the adapter's README.md.
- `MetricsLog(output_dir, cfg, enabled)`: appends one JSON record per logging step to
  `metrics.jsonl` (and TensorBoard scalars under `runs/` when `report_to` has "tensorboard" and
  tensorboard is installed); a fresh run (not a resume) starts a fresh log.
"""

from __future__ import annotations

import json
from pathlib import Path

from sumpref.config import PackedDPOConfig, TRLDPOConfig


def packed_model_card(model_path: str, cfg: PackedDPOConfig, metrics: dict) -> str:
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
        f"length-normalised {cfg.length_normalize}",
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
    return "\n".join(lines) + "\n"


def trl_model_card(base: str, cfg: TRLDPOConfig, metrics: dict) -> str:
    return (
        f"# sumpref DPO LoRA adapter\n\nBase model: `{base}`\n\n"
        f"Trained with DPO on synthetic preference pairs (question-answering accuracy, then brevity).\n\n"
        f"- beta {cfg.beta}, loss {cfg.loss_type}, lr {cfg.learning_rate}, epochs {cfg.num_epochs}\n"
        f"- LoRA r {cfg.lora_r}, alpha {cfg.lora_alpha}, dropout {cfg.lora_dropout}, targets {', '.join(cfg.target_modules)}\n"
        f"- pairs: {metrics.get('pairs_train')} train / {metrics.get('pairs_valid')} validation\n"
        f"- final training loss {metrics.get('train_loss')}\n"
    )


class MetricsLog:
    """`metrics.jsonl` (+ TensorBoard) writer; a no-op where `enabled` is False (ranks other than 0)."""

    def __init__(self, output_dir: Path, cfg: PackedDPOConfig, enabled: bool, fresh: bool):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.writer = _tensorboard(cfg, Path(output_dir)) if enabled else None
        if enabled and fresh and self.path.exists():
            self.path.unlink()

    def write(self, record: dict, step: int) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                self.writer.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard(cfg: PackedDPOConfig, output_dir: Path):
    if "tensorboard" not in cfg.report_to:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: the JSON log still has everything
        return None
    return SummaryWriter(str(output_dir / "runs"))
