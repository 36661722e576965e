"""A LoRA forward whose adapter update is the epilogue of one GEMM.

PEFT's LoRA `Linear` computes `y = base(x); y = y + lora_B(lora_A(dropout(x))) * scaling`: besides
the small rank-r matmuls, a multiply and an add over the whole `[tokens, out_features]` output of
every projection, forward and again in backward. `fuse_lora_linears(model)` gives each such layer
(of `model` only: the instance is patched, never the class) a forward that computes

    y = addmm(base(x), lora_A(dropout(x)), (lora_B.weight * scaling).T)      # beta = 1

so the update is accumulated into the base output by the GEMM itself (in place: `addmm_` with
beta 1 on the base layer's output); only the `[out, r]` weight is scaled. The numbers are PEFT's
up to float rounding (parity-tested in fp32, gradients included), dropout included (the same
module is called on the same input, so the same random mask is drawn).
Parameters, their names and the saved adapter are untouched (`lora_B` stays unscaled), so
`save_pretrained`, loading with PEFT, `merge_and_unload` and `unload` behave as before.

A layer falls back to PEFT's own forward whenever the fused one would not be PEFT's: adapters
disabled (`disable_adapter()`, e.g. for reference log-probs), merged, not exactly one active
adapter, a LoRA variant (DoRA, ...), a LoRA bias, extra forward arguments (`adapter_names`), or
operands of different dtypes outside autocast (under autocast the rank-r operands are cast to the
base output's dtype; gradients still reach fp32 master weights through the cast).

Not for DeepSpeed ZeRO-3: it reads `lora_B.weight` without calling `lora_B`, and ZeRO-3 gathers a
partitioned parameter only when its own module runs. Callers skip fusion there (`build_policy`).
`unfuse_lora_linears(model)` restores PEFT's forward.

It reads PEFT's private LoRA-layer bookkeeping, so it fuses only on the PEFT versions it was tested
with (`sumpref.tested_versions`); elsewhere it warns once and leaves PEFT's forward (returns 0).
"""

from __future__ import annotations

import types

import torch
from torch import nn

from sumpref.tested_versions import tested

_FUSED = "_sumpref_fused_lora"  # instance flag: this layer's forward is ours


def _lora_linear_type() -> type:
    from peft.tuners.lora.layer import Linear

    return Linear


def _active_adapter(layer) -> str | None:
    """The one adapter the fused forward may run on `layer`, or None (then PEFT's forward runs)."""
    if layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1:
        return None
    name = layer.active_adapters[0]
    if name not in layer.lora_A or name in layer.lora_variant or layer.lora_B[name].bias is not None:
        return None
    return name


def _fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    name = None if (args or kwargs) else _active_adapter(self)
    if name is not None:
        weight_a, weight_b = self.lora_A[name].weight, self.lora_B[name].weight
        if not torch.is_autocast_enabled(x.device.type) and not (x.dtype == weight_a.dtype == weight_b.dtype):
            name = None  # PEFT would cast; keep its exact behaviour
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    x2 = x.reshape(-1, x.shape[-1])
    out = self.base_layer(x2)  # [tokens, out], its own tensor: the base's backward does not need it
    h = self.lora_A[name](self.lora_dropout[name](x2))  # [tokens, r]
    update = (self.lora_B[name].weight * self.scaling[name]).t()  # [r, out]: the only scaled tensor
    # In place: an out-of-place addmm with a full-size input first copies it into its result.
    # Autocast does not cover in-place ops, so the small operands are cast to the output's dtype
    # (gradients still reach fp32 master weights through the cast).
    out.addmm_(h.to(out.dtype), update.to(out.dtype))
    return out.view(*x.shape[:-1], out.shape[-1])


def fuse_lora_linears(model: nn.Module) -> int:
    """Give every PEFT LoRA `Linear` of `model` the fused forward; returns the number of layers
    (0 on an untested PEFT: see the module doc)."""
    if not tested("peft", "sumpref.training.lora_fused", "PEFT's own LoRA forward"):
        return 0
    linear = _lora_linear_type()
    n = 0
    for module in model.modules():
        if type(module) is linear and not getattr(module, _FUSED, False):
            module.forward = types.MethodType(_fused_forward, module)
            setattr(module, _FUSED, True)
            n += 1
    return n


def unfuse_lora_linears(model: nn.Module) -> int:
    """Restore PEFT's forward on every layer `fuse_lora_linears` changed; returns the number."""
    n = 0
    for module in model.modules():
        if getattr(module, _FUSED, False):
            del module.forward  # the instance attribute; the class's forward shows through again
            delattr(module, _FUSED)
            n += 1
    return n
