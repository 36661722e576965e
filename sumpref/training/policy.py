"""The trainable policy: base causal LM + LoRA adapter, for both DPO trainers.

- `lora_config(cfg)`: the one translation of our LoRA fields into PEFT's `LoraConfig` (TRL's
  DPOTrainer receives it as `peft_config`; the packed trainer applies it itself).
- `compute_dtype(cfg, device)`: bf16 autocast on GPU with `dpo.bf16` (base weights bf16, LoRA
  master weights fp32); None means plain fp32 (always on CPU).
- `build_policy(model_path, cfg, device)`: base model + fresh adapter, checkpointing as configured,
  LoRA layers fused with `fused_lora` (`sumpref.training.lora_fused`), except under ZeRO-3, whose
  partitioned LoRA weights are gathered only when their own module runs (the fused forward reads
  `lora_B.weight` directly), and each decoder layer compiled with `compile_layers`.
"""

from __future__ import annotations

import torch

from sumpref.config import DPOCommon, PackedDPOConfig
from sumpref.training.lora_fused import fuse_lora_linears
from sumpref.training.packed_logprobs import disable_adapter_input_cast


def lora_config(cfg: DPOCommon):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")


def compute_dtype(cfg: DPOCommon, device: torch.device) -> torch.dtype | None:
    return torch.bfloat16 if (cfg.bf16 and device.type == "cuda") else None


def build_policy(model_path: str, cfg: PackedDPOConfig, device: torch.device):
    """Base model (bf16 on GPU when cfg.bf16, else fp32) with a fresh LoRA adapter, on `device`.
    With `cfg.fused_lora` (and not ZeRO-3: see the module docstring) the LoRA layers are fused."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    dtype = compute_dtype(cfg, device) or torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation="sdpa")
    model.config.use_cache = False
    model = get_peft_model(model, lora_config(cfg))
    if compute_dtype(cfg, device) is not None:
        disable_adapter_input_cast(model)
    if cfg.fused_lora and cfg.deepspeed != "zero3":
        fuse_lora_linears(model)
    enable_checkpointing(model, cfg)
    if cfg.compile_layers:
        compile_layers(model)
    return model.to(device)


def compile_layers(model) -> int:
    """`torch.compile` each decoder layer in place (regional compilation, dynamic shapes: packed
    batches vary in length). The layers share one code object, so one graph serves all of them;
    the element-wise work around the matmuls (norms, activations, rotary, LoRA casts) is fused.
    Returns the number of layers compiled."""
    layers = model.get_base_model().get_decoder().layers
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def enable_checkpointing(model, cfg: DPOCommon) -> None:
    if not cfg.gradient_checkpointing:
        return
    # PEFT under ZeRO-3 needs reentrant checkpointing (parameters are fetched by hooks that the
    # non-reentrant recompute does not replay); reentrant needs inputs that require grad.
    reentrant = cfg.deepspeed == "zero3"
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    if reentrant:
        model.enable_input_require_grads()
