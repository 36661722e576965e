"""Packed DPO on CUDA: exactness in fp32 and bf16, FlexAttention, chunked log-probs and the fused
LoRA forward against the dense path with PEFT's own LoRA forward (fp32: log-probs, loss and
gradients), fp32 parity with TRL, and a short bf16 training run (fused, as the trainer runs).

Runs through the device tool; skipped where CUDA is absent. The model is a small random Llama
built from a config (no hub) with a word-level tokenizer and a minimal chat template.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

WORDS = "the a council city rain flood bike lane approved residents town left homes stocks fell rose".split()
TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant : {% endif %}"
)


def _tiny_model_dir(path, layers: int = 2, hidden: int = 128) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", ":", "user", "assistant", *WORDS])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>")
    tok.chat_template = TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(cfg).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return str(path)


def _pairs(n_articles: int = 4) -> pd.DataFrame:
    g = torch.Generator().manual_seed(0)
    pick = lambda k: " ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (k,), generator=g))  # noqa: E731
    rows = []
    for a in range(n_articles):
        user = [{"role": "user", "content": pick(40)}]
        s = [pick(int(k)) for k in torch.randint(3, 12, (4,), generator=g)]
        for c, r in [(0, 1), (2, 3), (0, 3)]:
            rows.append({"article_id": f"a{a}", "prompt": user,
                         "chosen": user + [{"role": "assistant", "content": s[c]}],
                         "rejected": user + [{"role": "assistant", "content": s[r]}]})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.bfloat16, 2e-2)])
def test_packed_equals_unpacked_on_cuda(tmp_path, dtype, tol):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sumpref.training.packed_logprobs import PackedLogProbs, unpacked_logps
    from sumpref.training.packing import build_groups, pack_groups

    path = _tiny_model_dir(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa").cuda()
    groups, dropped = build_groups(_pairs().to_dict("records"), AutoTokenizer.from_pretrained(path), 256)
    assert dropped == 0
    batch = pack_groups(groups, pad_id=2).to("cuda")
    with torch.no_grad():
        packed = PackedLogProbs(model)(**batch.model_inputs())
        ref = torch.cat([unpacked_logps(model, g) for g in groups])
    assert torch.isfinite(packed).all()
    assert ((packed - ref).abs() / ref.abs()).max() <= tol


def test_bf16_training_on_cuda(tmp_path):
    from sumpref.config import PackedDPOConfig
    from sumpref.training.packed_dpo import train_packed_dpo
    from sumpref.training.reference import compute_reference_logps

    path = _tiny_model_dir(tmp_path / "m")
    _pairs().to_parquet(tmp_path / "pairs.parquet", index=False)
    ref = compute_reference_logps(str(tmp_path / "pairs.parquet"), path, str(tmp_path / "ref.parquet"), max_length=256)
    assert pd.read_parquet(ref).ref_chosen_logp.notna().all()
    cfg = PackedDPOConfig(beta=0.1, learning_rate=1e-3, max_steps=6, per_device_batch_size=6,
                    max_length=256, bf16=True, use_gpu=True, logging_steps=1, save_steps=3, lora_r=4, lora_alpha=8)
    metrics = train_packed_dpo(ref, path, str(tmp_path / "run"), cfg)
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics["steps"] == 6 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    assert log[-1]["loss"] < log[0]["loss"]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


@pytest.mark.parametrize("attention,chunk,fused", [("flex", 0, False), ("dense", 64, False), ("flex", 64, False),
                                                    ("dense", 0, True), ("flex", 64, True)])
def test_fast_paths_match_the_dense_path_in_fp32_with_gradients(tmp_path, attention, chunk, fused):
    from transformers import AutoTokenizer

    from sumpref.config import PackedDPOConfig
    from sumpref.training.lora_fused import fuse_lora_linears, unfuse_lora_linears
    from sumpref.training.losses import dpo_loss
    from sumpref.training.packed_logprobs import FLEX_ATTENTION, PackedLogProbs
    from sumpref.training.packing import build_groups, pack_groups
    from sumpref.training.policy import build_policy

    path = _tiny_model_dir(tmp_path / "m")
    cfg = PackedDPOConfig(beta=0.1, lora_r=4, lora_alpha=8, lora_dropout=0.0, gradient_checkpointing=False, use_gpu=True)
    model = build_policy(path, cfg, torch.device("cuda"))
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    groups, _ = build_groups(_pairs(6).to_dict("records"), AutoTokenizer.from_pretrained(path), 256)
    batch = pack_groups(groups, pad_id=2).to("cuda")
    ref_c = torch.zeros(len(batch.rows), device="cuda")

    def run(scorer):
        model.zero_grad()
        logps = scorer(**batch.model_inputs())
        res = dpo_loss(logps[batch.chosen_index], logps[batch.rejected_index], ref_c, ref_c, beta=1.0)
        res.losses.mean().backward()
        return logps.detach(), res.losses.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    assert unfuse_lora_linears(model) > 0  # build_policy fuses; the reference is PEFT's own forward
    lp_a, loss_a, g_a = run(PackedLogProbs(model))
    if fused:
        fuse_lora_linears(model)
    lp_b, loss_b, g_b = run(PackedLogProbs(model, attention=attention, logprob_chunk_size=chunk))
    if attention == "flex":
        assert model.get_base_model().config._attn_implementation == FLEX_ATTENTION
    assert float((lp_b - lp_a).abs().max()) <= 1e-4 * float(lp_a.abs().max())
    assert float((loss_b - loss_a).abs().max()) <= 1e-4
    assert max(_rel(g_b[n], g_a[n]) for n in g_a) <= 1e-4


def test_fp32_loss_and_logps_equal_trl(tmp_path):
    """Our packed trainer and TRL's DPOTrainer on the same pairs and adapter, fp32: the same loss
    (beta 1, where any log-prob difference shows) and mean log-probs to 1e-4."""
    pytest.importorskip("trl", reason="bring trl and datasets wheels (see the benchmark's command)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from dpo_throughput import fp32_parity

    res = fp32_parity(torch.device("cuda"), tmp_path)
    for key in ("loss", "logps/chosen", "logps/rejected"):
        assert res["ours"][key] == pytest.approx(res["trl"][key], abs=1e-4, rel=1e-4), (key, res)
