"""The fused LoRA forward against PEFT's own, on a tiny random Llama built from a config (CPU, fp32):
logits, packed log-probs and gradients equal; PEFT's forward wherever fusion would differ; the
saved adapter unchanged."""

from __future__ import annotations

import copy

import pytest
import torch

from sumpref.config import PackedDPOConfig
from sumpref.training.losses import dpo_loss
from sumpref.training.lora_fused import fuse_lora_linears, unfuse_lora_linears
from sumpref.training.packed_logprobs import PackedLogProbs
from sumpref.training.packing import ArticleGroup, pack_groups
from sumpref.training.policy import build_policy, lora_config

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
N_LAYERS = 2


def _base():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYERS,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


def _peft(base, dropout: float = 0.0, **lora):
    from peft import get_peft_model

    peft_cfg = lora_config(PackedDPOConfig(lora_r=4, lora_alpha=8, lora_dropout=dropout, target_modules=TARGETS))
    for k, v in lora.items():
        setattr(peft_cfg, k, v)
    model = get_peft_model(copy.deepcopy(base), peft_cfg)
    torch.manual_seed(1)
    with torch.no_grad():  # PEFT starts B at zero, which would hide a wrong update
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    return model


def _pair(dropout: float = 0.0, **lora):
    """(PEFT's model, the same weights fused)."""
    plain = _peft(_base(), dropout, **lora)
    fused = copy.deepcopy(plain)
    assert fuse_lora_linears(fused) == N_LAYERS * len(TARGETS)
    return plain, fused


def _ids(n: int = 2, length: int = 12) -> torch.Tensor:
    return torch.randint(0, 64, (n, length), generator=torch.Generator().manual_seed(3))


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.fixture
def fallbacks(monkeypatch):
    """Counts calls of PEFT's own `Linear.forward` (the fused forward's fallback goes through it)."""
    from peft.tuners.lora.layer import Linear

    calls = []
    original = Linear.forward

    def counted(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Linear, "forward", counted)
    return calls


def test_logits_and_gradients_equal_pefts(fallbacks):
    plain, fused = _pair()
    out = {}
    for name, model in (("plain", plain), ("fused", fused)):
        model.train()
        logits = model(input_ids=_ids()).logits
        logits.float().pow(2).mean().backward()
        out[name] = logits.detach(), _grads(model)
    assert len(fallbacks) == N_LAYERS * len(TARGETS)  # the plain model's layers only
    torch.testing.assert_close(out["fused"][0], out["plain"][0], atol=1e-5, rtol=0)
    g_plain, g_fused = out["plain"][1], out["fused"][1]
    assert set(g_fused) == set(g_plain) and all(g.abs().sum() > 0 for g in g_plain.values())
    for n in g_plain:
        torch.testing.assert_close(g_fused[n], g_plain[n], atol=1e-5, rtol=0, msg=n)


def test_packed_logprobs_loss_and_gradients_equal_pefts():
    plain, fused = _pair()
    g = torch.Generator().manual_seed(4)
    rnd = lambda k: torch.randint(3, 64, (k,), generator=g).tolist()  # noqa: E731
    groups = [ArticleGroup(str(a), rnd(20), [rnd(5), rnd(7), rnd(4)], [(0, 1), (2, 1)], [2 * a, 2 * a + 1])
              for a in range(2)]
    batch = pack_groups(groups, 0)
    ref = torch.zeros(len(batch.rows))
    out = {}
    for name, model in (("plain", plain), ("fused", fused)):
        logps = PackedLogProbs(model)(**batch.model_inputs())
        res = dpo_loss(logps[batch.chosen_index], logps[batch.rejected_index], ref, ref, beta=1.0)
        res.losses.mean().backward()
        out[name] = logps.detach(), res.losses.detach(), _grads(model)
    torch.testing.assert_close(out["fused"][0], out["plain"][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["fused"][1], out["plain"][1], atol=1e-5, rtol=0)
    for n, grad in out["plain"][2].items():
        torch.testing.assert_close(out["fused"][2][n], grad, atol=1e-5, rtol=0, msg=n)


def test_dropout_runs_fused_and_draws_pefts_masks(fallbacks):
    plain, fused = _pair(dropout=0.3)
    out = {}
    for name, model in (("plain", plain), ("fused", fused)):
        model.train()
        torch.manual_seed(7)  # same seed: the same dropout masks, drawn in the same order
        out[name] = model(input_ids=_ids()).logits.detach()
    assert len(fallbacks) == N_LAYERS * len(TARGETS)  # the plain model's layers: the fused one never fell back
    torch.testing.assert_close(out["fused"], out["plain"], atol=1e-5, rtol=0)


def test_dora_falls_back_to_pefts_forward(fallbacks):
    plain, fused = _pair(use_dora=True)
    with torch.no_grad():
        a, b = plain(input_ids=_ids()).logits, fused(input_ids=_ids()).logits
    assert len(fallbacks) == 2 * N_LAYERS * len(TARGETS)
    torch.testing.assert_close(b, a, atol=1e-6, rtol=0)


def test_disabled_adapter_gives_the_base_models_output(fallbacks):
    base = _base()
    _, fused = _pair()
    with torch.no_grad():
        expected = base(input_ids=_ids()).logits
        with fused.disable_adapter():
            off = fused(input_ids=_ids()).logits
        on = fused(input_ids=_ids()).logits
    assert len(fallbacks) == N_LAYERS * len(TARGETS)  # inside the context only
    torch.testing.assert_close(off, expected, atol=1e-6, rtol=0)
    assert (on - expected).abs().max() > 1e-3


def test_saved_adapter_is_pefts_and_loads_back(tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    plain, fused = _pair()
    for name, model in (("plain", plain), ("fused", fused)):
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        model(input_ids=_ids()).logits.float().pow(2).mean().backward()
        opt.step()
        model.save_pretrained(str(tmp_path / name))
    saved = {n: load_file(tmp_path / n / "adapter_model.safetensors") for n in ("plain", "fused")}
    assert list(saved["fused"]) == list(saved["plain"])
    for k, v in saved["plain"].items():
        torch.testing.assert_close(saved["fused"][k], v, atol=1e-6, rtol=0, msg=k)
    loaded = PeftModel.from_pretrained(_base(), str(tmp_path / "fused"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=_ids()).logits, fused(input_ids=_ids()).logits, atol=1e-5, rtol=0)


def test_bf16_autocast_runs_one_dtype_and_reaches_fp32_master_weights(fallbacks):
    from sumpref.training.packed_logprobs import disable_adapter_input_cast

    base = _base().to(torch.bfloat16)
    plain = _peft(base)  # LoRA weights stay fp32 (PEFT's autocast_adapter_dtype)
    fused = copy.deepcopy(plain)
    fuse_lora_linears(fused)
    out = {}
    for name, model in (("plain", plain), ("fused", fused)):
        disable_adapter_input_cast(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=_ids()).logits
        logits.float().pow(2).mean().backward()
        out[name] = logits.detach().float(), _grads(model)
    assert len(fallbacks) == N_LAYERS * len(TARGETS)  # the plain model's: autocast keeps the fused path
    assert all(g.dtype == torch.float32 and g.abs().sum() > 0 for g in out["fused"][1].values())
    torch.testing.assert_close(out["fused"][0], out["plain"][0], atol=0.1, rtol=0.05)


def test_unfuse_restores_pefts_forward(fallbacks):
    plain, fused = _pair()
    assert unfuse_lora_linears(fused) == N_LAYERS * len(TARGETS)
    assert fuse_lora_linears(fused) == N_LAYERS * len(TARGETS)
    assert fuse_lora_linears(fused) == 0  # already fused
    unfuse_lora_linears(fused)
    with torch.no_grad():
        fused(input_ids=_ids())
    assert len(fallbacks) == N_LAYERS * len(TARGETS)


@pytest.mark.parametrize("kw,fused", [({}, True), ({"fused_lora": False}, False), ({"deepspeed": "zero3"}, False)])
def test_build_policy_fuses_unless_off_or_zero3(tmp_path, kw, fused):
    from peft.tuners.lora.layer import Linear

    _base().save_pretrained(str(tmp_path))
    cfg = PackedDPOConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, **kw)
    model = build_policy(str(tmp_path), cfg, torch.device("cpu"))
    layers = [m for m in model.modules() if type(m) is Linear]
    assert len(layers) == N_LAYERS * len(TARGETS)
    assert all(("forward" in vars(m)) == fused for m in layers)


def test_build_policy_compiles_each_layer_when_asked(tmp_path):
    _base().save_pretrained(str(tmp_path))
    cfg = PackedDPOConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, compile_layers=True)
    model = build_policy(str(tmp_path), cfg, torch.device("cpu"))
    layers = model.get_base_model().get_decoder().layers
    assert len(layers) == N_LAYERS and all(layer._compiled_call_impl is not None for layer in layers)
    plain = build_policy(str(tmp_path), cfg.model_copy(update={"compile_layers": False}), torch.device("cpu"))
    assert all(layer._compiled_call_impl is None for layer in plain.get_base_model().get_decoder().layers)
