"""A Mistral-shape model with random weights (no hub), shared by the GPU benchmarks:
timings do not depend on the weights' values."""

from __future__ import annotations

import torch


def random_mistral(cfg, device, dtype):
    """`MistralForCausalLM` built directly on `device` in `dtype` from `cfg`, seeded, no KV cache."""
    from transformers import MistralForCausalLM

    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = MistralForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=dtype)
    finally:
        torch.set_default_dtype(prev)
    model.config.use_cache = False
    return model
