"""Packed DPO on the embedded SmolLM2-135M (CPU, fp32): exactness, learning, resume.

Short prompts and few steps keep this around a minute on two cores.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from sumpref.config import PackedDPOConfig
from sumpref.model_paths import resolve_model
from sumpref.training.checkpoints import latest_checkpoint
from sumpref.training.deepspeed_config import deepspeed_config
from sumpref.training.lora_fused import unfuse_lora_linears
from sumpref.training.losses import dpo_loss
from sumpref.training.packed_dpo import packed_dpo_loss, train_packed_dpo
from sumpref.training.packed_logprobs import PackedLogProbs, unpacked_logps
from sumpref.training.packing import build_groups, pack_groups
from sumpref.training.pair_data import load_pair_data
from sumpref.training.policy import build_policy
from sumpref.training.reference import compute_reference_logps, load_reference_model

pytestmark = pytest.mark.integration

ARTICLES = {
    "a1": "The city council approved a new bike lane on Main Street after a two-hour debate on Tuesday.",
    "a2": "Heavy rain flooded parts of the coastal town, forcing 200 residents to leave their homes overnight.",
}
SUMMARIES = {
    "a1": ["Council approved a Main Street bike lane.", "A city met.", "The council debated for two hours and then approved a bike lane on Main Street on Tuesday."],
    "a2": ["Floods forced 200 residents from a coastal town.", "It rained.", "Rain."],
}


def _msgs(article: str, summary: str | None = None) -> list[dict]:
    user = [{"role": "user", "content": f"Summarize in one sentence:\n{article}"}]
    return user + ([{"role": "assistant", "content": summary}] if summary is not None else [])


def _pairs_frame() -> pd.DataFrame:
    rows = []
    for aid, text in ARTICLES.items():
        s = SUMMARIES[aid]
        for c, r in [(0, 1), (0, 2), (2, 1)]:  # 3 pairs per article over 3 distinct summaries
            rows.append({"article_id": aid, "prompt": _msgs(text), "chosen": _msgs(text, s[c]),
                         "rejected": _msgs(text, s[r]), "chosen_words": len(s[c].split())})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two shared cores: OpenMP threads spinning against other processes made steps 10-30x slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model_path() -> str:
    return resolve_model("embedded:smollm2-135m-instruct")


@pytest.fixture(scope="module")
def ref_pairs(tmp_path_factory, model_path) -> str:
    d = tmp_path_factory.mktemp("pairs")
    src = d / "pairs.parquet"
    _pairs_frame().to_parquet(src, index=False)
    return compute_reference_logps(str(src), model_path, str(d / "pairs_ref.parquet"), max_length=256, use_gpu=False)


def _cfg(**kw) -> PackedDPOConfig:
    base = dict(trainer="packed", beta=0.1, learning_rate=2e-3, max_steps=4, per_device_batch_size=3,
                max_length=256, lora_r=4, lora_alpha=8, lora_dropout=0.0, gradient_checkpointing=False,
                logging_steps=1, save_steps=2, seed=0)
    base.update(kw)
    return PackedDPOConfig(**base)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def test_reference_stage_matches_unpacked(ref_pairs, model_path):
    df = pd.read_parquet(ref_pairs)
    assert len(df) == 6 and "chosen_words" in df.columns  # rows and extra columns kept, in order
    model, tok = load_reference_model(model_path, torch.device("cpu"), "float32")
    groups, dropped = build_groups(df.to_dict("records"), tok, 256)
    assert dropped == 0 and [len(g.completions) for g in groups] == [3, 3]  # 6 completions -> 3 distinct
    with torch.no_grad():
        for g in groups:
            lp = unpacked_logps(model, g)
            for row, (c, r) in zip(g.rows, g.pairs):
                assert df.ref_chosen_logp[row] == pytest.approx(float(lp[c]), rel=1e-4)
                assert df.ref_rejected_logp[row] == pytest.approx(float(lp[r]), rel=1e-4)


def test_packed_matches_unpacked_logps_loss_and_grads(ref_pairs, model_path):
    cfg = _cfg(gradient_checkpointing=True)
    model = build_policy(model_path, cfg, torch.device("cpu"))
    torch.manual_seed(1)
    with torch.no_grad():  # non-zero LoRA B so policy != reference and every adapter weight gets a gradient
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    from transformers import AutoTokenizer

    data = load_pair_data(ref_pairs, AutoTokenizer.from_pretrained(model_path), 256)
    batch = pack_groups(data.groups, pad_id=0)
    rows = torch.tensor(batch.rows)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}

    packed = PackedLogProbs(model)(**batch.model_inputs())
    res = packed_dpo_loss(PackedLogProbs(model), batch, data.ref_chosen[rows], data.ref_rejected[rows], cfg)
    res.losses.mean().backward()
    g_packed = {n: p.grad.clone() for n, p in params.items()}
    model.zero_grad()

    assert unfuse_lora_linears(model) > 0  # build_policy fused the LoRA layers; the reference runs PEFT's forward
    unpacked = torch.cat([unpacked_logps(model, g) for g in data.groups])
    ref = dpo_loss(unpacked[batch.chosen_index], unpacked[batch.rejected_index], data.ref_chosen[rows],
                   data.ref_rejected[rows], beta=cfg.beta)
    ref.losses.mean().backward()

    assert ((packed - unpacked).abs() / unpacked.abs()).max() <= 1e-3
    assert ((res.losses - ref.losses).abs() / ref.losses.abs()).max() <= 1e-3
    worst = max(_rel(g_packed[n], p.grad) for n, p in params.items())
    assert all(p.grad.abs().sum() > 0 for p in params.values())
    assert worst <= 1e-3, worst


def test_training_lowers_loss_changes_adapter_and_writes_outputs(ref_pairs, model_path, tmp_path):
    out = tmp_path / "run"
    # The training pairs double as validation pairs here: their held-out curve must follow the loss.
    metrics = train_packed_dpo(ref_pairs, model_path, str(out), _cfg(max_steps=5, save_steps=100), valid_path=ref_pairs)
    log = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("valid/loss" in r and "valid/rewards/accuracy" in r for r in log)
    assert log[-1]["valid/loss"] < log[0]["valid/loss"]
    assert metrics["valid"]["pairs"] == len(pd.read_parquet(ref_pairs)) and metrics["valid"]["rewards/margin"] > 0
    assert log[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # fresh adapter: policy == reference
    assert log[-1]["loss"] < log[0]["loss"] - 0.01 and log[-1]["rewards/margin"] > 0
    assert metrics["steps"] == 5 and (out / "metrics.json").exists()
    assert (out / "adapter_model.safetensors").exists() and "sumpref DPO adapter" in (out / "README.md").read_text()
    from safetensors.torch import load_file

    b = [v for k, v in load_file(out / "adapter_model.safetensors").items() if "lora_B" in k]
    assert b and all(torch.isfinite(v).all() for v in b) and any(v.abs().sum() > 0 for v in b)


def test_killed_run_resumes_to_the_same_adapter(ref_pairs, model_path, tmp_path):
    from safetensors.torch import load_file

    cfg = _cfg(max_steps=4, save_steps=2, per_device_batch_size=2, lora_dropout=0.1)
    straight = tmp_path / "straight"
    train_packed_dpo(ref_pairs, model_path, str(straight), cfg)

    killed = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="injected"):
        train_packed_dpo(ref_pairs, model_path, str(killed), cfg, fail_after_step=3)
    assert latest_checkpoint(killed).name == "step-2" and not (killed / "metrics.json").exists()
    metrics = train_packed_dpo(ref_pairs, model_path, str(killed), cfg)
    assert metrics["resumed_from"] == 2

    a = load_file(straight / "adapter_model.safetensors")
    b = load_file(killed / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max(_rel(b[k], a[k]) for k in a if a[k].abs().sum() > 0) <= 1e-5


def test_reference_stage_fans_out_over_ray_actors(ref_pairs, model_path, tmp_path):
    pytest.importorskip("ray")
    src = tmp_path / "pairs.parquet"
    _pairs_frame().to_parquet(src, index=False)
    out = compute_reference_logps(str(src), model_path, str(tmp_path / "ray_ref.parquet"), max_length=256,
                                  num_replicas=2, use_gpu=False)  # one actor per article shard
    a, b = pd.read_parquet(ref_pairs), pd.read_parquet(out)
    for col in ("ref_chosen_logp", "ref_rejected_logp"):
        assert b[col].tolist() == pytest.approx(a[col].tolist(), rel=1e-5)


def test_deepspeed_configs_fill_every_auto():
    for stage in ("zero2", "zero3"):
        ds = deepspeed_config(_cfg(deepspeed=stage, bf16=True, use_gpu=True, gradient_accumulation_steps=4), 2)
        assert ds["zero_optimization"]["stage"] == int(stage[-1])
        assert ds["train_batch_size"] == 8 and ds["bf16"]["enabled"] is True


def _perturbed_policy(model_path: str, cfg: PackedDPOConfig):
    model = build_policy(model_path, cfg, torch.device("cpu"))
    torch.manual_seed(1)
    with torch.no_grad():  # non-zero LoRA B so every adapter weight gets a gradient
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    return model


def _loss_and_grads(model, scorer, batch, data, cfg):
    rows = torch.tensor(batch.rows)
    model.zero_grad()
    res = packed_dpo_loss(scorer, batch, data.ref_chosen[rows], data.ref_rejected[rows], cfg)
    res.losses.mean().backward()
    return res.losses.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_chunked_logprobs_match_the_full_projection(ref_pairs, model_path):
    """fp32: log-probs, loss and every LoRA gradient agree to 1e-4 with the vocabulary projected in chunks."""
    from transformers import AutoTokenizer

    cfg = _cfg()
    model = _perturbed_policy(model_path, cfg)
    data = load_pair_data(ref_pairs, AutoTokenizer.from_pretrained(model_path), 256)
    batch = pack_groups(data.groups, pad_id=0)
    assert int(batch.target_ids.numel()) > 7  # several chunks, the last one partial
    full, chunked = PackedLogProbs(model), PackedLogProbs(model, logprob_chunk_size=7)
    with torch.no_grad():
        lp_full, lp_chunked = full(**batch.model_inputs()), chunked(**batch.model_inputs())
    assert _rel(lp_chunked, lp_full) <= 1e-6
    loss_a, grads_a = _loss_and_grads(model, full, batch, data, cfg)
    loss_b, grads_b = _loss_and_grads(model, chunked, batch, data, cfg)
    assert float((loss_b - loss_a).abs().max()) <= 1e-4
    assert max(_rel(grads_b[n], grads_a[n]) for n in grads_a) <= 1e-4


def test_flex_attention_block_mask_matches_the_dense_mask(ref_pairs, model_path):
    """fp32: FlexAttention's block mask gives the dense path's log-probs to 1e-4 (CPU: forward only,
    FlexAttention has no CPU backward); with gradients on CPU the flex scorer falls back to dense."""
    from transformers import AutoTokenizer

    from sumpref.training.packed_logprobs import FLEX_ATTENTION, flex_available

    cfg = _cfg()
    model = _perturbed_policy(model_path, cfg)
    data = load_pair_data(ref_pairs, AutoTokenizer.from_pretrained(model_path), 256)
    batch = pack_groups(data.groups, pad_id=0)
    dense, flex = PackedLogProbs(model), PackedLogProbs(model, attention="flex")
    with torch.no_grad():
        lp_dense = dense(**batch.model_inputs())
        lp_flex = flex(**batch.model_inputs())
        assert model.get_base_model().config._attn_implementation == FLEX_ATTENTION  # flex really ran
        assert float((lp_flex - lp_dense).abs().max()) <= 1e-4 * float(lp_dense.abs().max())
        # The switched model still runs dense masks and plain causal calls exactly as SDPA does.
        assert _rel(dense(**batch.model_inputs()), lp_dense) == 0
        ids = torch.tensor([data.groups[0].prompt_ids])
        logits_flexmodel = model(input_ids=ids, use_cache=False).logits
        model.get_base_model().set_attn_implementation("sdpa")
        assert _rel(model(input_ids=ids, use_cache=False).logits, logits_flexmodel) == 0
    assert not flex_available(torch.device("cpu"))  # gradients on: the dense fallback
    loss_a, grads_a = _loss_and_grads(model, dense, batch, data, cfg)
    loss_b, grads_b = _loss_and_grads(model, flex, batch, data, cfg)
    assert float((loss_b - loss_a).abs().max()) <= 1e-6 and max(_rel(grads_b[n], grads_a[n]) for n in grads_a) <= 1e-6
