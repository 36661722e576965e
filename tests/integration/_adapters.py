"""A LoRA adapter for tests that need one without training it."""

from pathlib import Path


def random_lora(folder: Path) -> Path:
    """A small LoRA on the embedded model with random (non-zero) weights, so it changes the output;
    saved under `folder/random-lora`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sumpref.config import EMBEDDED_MODEL
    from sumpref.model_paths import resolve_model

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(resolve_model(EMBEDDED_MODEL))
    lora = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    path = folder / "random-lora"
    get_peft_model(base, lora).save_pretrained(str(path))
    return path
