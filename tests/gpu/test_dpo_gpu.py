"""Packed DPO on CUDA: exactness in fp32 and bf16, and a short bf16 training run.

Runs through the device tool; skipped where CUDA is absent. The model is a small random Llama
built from a config (no hub) with a word-level tokenizer and a minimal chat template.
"""

from __future__ import annotations

import json

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


def _tiny_model_dir(path) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", ":", "user", "assistant", *WORDS])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>")
    tok.chat_template = TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
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

    from sumpref.training.packing import PackedLogProbs, build_groups, pack_groups, unpacked_logps

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
    from sumpref.config import DPOConfig
    from sumpref.training.packed_dpo import train_packed_dpo
    from sumpref.training.refprobs import compute_reference_logps

    path = _tiny_model_dir(tmp_path / "m")
    _pairs().to_parquet(tmp_path / "pairs.parquet", index=False)
    ref = compute_reference_logps(str(tmp_path / "pairs.parquet"), path, str(tmp_path / "ref.parquet"), max_length=256)
    assert pd.read_parquet(ref).ref_chosen_logp.notna().all()
    cfg = DPOConfig(trainer="packed", beta=0.1, learning_rate=1e-3, max_steps=6, per_device_batch_size=6,
                    max_length=256, bf16=True, use_gpu=True, logging_steps=1, save_steps=3, lora_r=4, lora_alpha=8)
    metrics = train_packed_dpo(ref, path, str(tmp_path / "run"), cfg)
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics["steps"] == 6 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    assert log[-1]["loss"] < log[0]["loss"]
