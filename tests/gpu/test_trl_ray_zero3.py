"""TRL's DPOTrainer through Ray Train and DeepSpeed ZeRO-3 on one GPU: a small random Llama (4 layers,
hidden 256, built from a config with the word-level tokenizer of `test_dpo_gpu`), 4 steps in bf16 with
the published recipe's switches (LoRA dropout, gradient checkpointing).

Checks: ZeRO stage 3 actually ran (read from the DeepSpeed engine by the trainer, returned to the
driver), every loss is finite, the adapter is written once with whole (not partitioned) LoRA
weights that training changed, and rank 0's metrics reach the driver through Ray Train's result.
Needs ray, deepspeed (a pure wheel: the config has no optimizer section, so no op is JIT-built),
trl and datasets on the GPU machine; skipped without CUDA.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_dpo_gpu import _pairs, _tiny_model_dir  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

LAYERS, HIDDEN, RANK = 4, 256, 8


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=True)
    yield
    if started:
        ray.shutdown()


def run_trl_zero3(tmp_path: Path, use_gpu: bool) -> tuple[dict, Path]:
    """The run the test checks; `use_gpu=False` runs the same path on CPU (gloo, fp32)."""
    from sumpref.config import TRLDPOConfig
    from sumpref.training.ray_train import train_dpo_trl_ray

    path = _tiny_model_dir(tmp_path / "m", layers=LAYERS, hidden=HIDDEN)
    cfg = TRLDPOConfig(num_workers=1, use_gpu=use_gpu, deepspeed="zero3", bf16=True, max_steps=4,
                       per_device_batch_size=2, max_length=256, lora_r=RANK, lora_alpha=16, lora_dropout=0.05,
                       gradient_checkpointing=True, learning_rate=1e-3, beta=0.1, logging_steps=1, save_steps=100)
    out = tmp_path / "trl"
    return train_dpo_trl_ray(_pairs(4).to_dict("records"), [], path, str(out), cfg), out


def test_trl_trainer_through_ray_train_with_zero3_on_one_gpu(local_ray, tmp_path):
    pytest.importorskip("deepspeed", reason="bring the deepspeed wheel (.whl/dpo)")
    pytest.importorskip("trl", reason="bring trl and datasets wheels (.whl/dpo)")
    from safetensors.torch import load_file

    metrics, out = run_trl_zero3(tmp_path, use_gpu=True)

    assert metrics["zero_stage"] == 3  # from the engine that trained, via Ray Train's result
    assert metrics["world_size"] == 1 and metrics["steps"] == 4
    assert math.isfinite(metrics["train_loss"]) and metrics["loss_finite"] is True
    losses = [h["loss"] for h in metrics["summary"]["log_history"] if "loss" in h]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert sorted(out.rglob("adapter_model.safetensors")) == [out / "adapter" / "adapter_model.safetensors"]
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    a = [v for k, v in weights.items() if "lora_A" in k]
    b = [v for k, v in weights.items() if "lora_B" in k]
    assert len(a) == len(b) == 7 * LAYERS
    assert all(t.shape[0] == RANK for t in a) and all(t.shape[1] == RANK for t in b)  # whole, not partitioned
    assert all(t.abs().sum() > 0 for t in b)  # PEFT starts B at zero: training moved every one
    assert not (out / "checkpoints").exists()
