"""Shared-prefix sampling on CUDA: greedy equals `generate`, seeded sampling equals `generate` on
duplicated rows, with the decoding step replayed as a CUDA graph and run eagerly, the two give the same
tokens in bf16, and groups sized from free memory run. Tiny random model (no hub); skipped without CUDA."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _model(dtype):
    from transformers import AutoModelForCausalLM, MistralConfig

    cfg = MistralConfig(
        vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=8,
        num_key_value_heads=2, max_position_embeddings=1024, sliding_window=None, eos_token_id=3, pad_token_id=0,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        m = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa").eval()
    m.generation_config.eos_token_id, m.generation_config.pad_token_id = 3, 0
    return m


def _prompts(k=3):
    g = torch.Generator().manual_seed(1)
    return [torch.randint(4, 512, (int(n),), generator=g).tolist() for n in (17, 40, 33)[:k]]


def _reference(model, prompt, n, new, **kw):
    ids = torch.tensor([prompt] * n, device="cuda")
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, pad_token_id=0, **kw)
    return out[:, ids.shape[1]:].tolist()


def _strip(tokens):
    return tokens[: tokens.index(3)] if 3 in tokens else tokens


@pytest.fixture(autouse=True)
def _capture_must_work():
    """A failed CUDA graph capture falls back to eager decoding with a warning: here it is an error."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*CUDA graph capture failed.*")
        yield


@pytest.mark.parametrize("cuda_graph", [True, False])
def test_greedy_equals_generate_fp32(cuda_graph):
    from sumpref.backends.prefix_sampling import sample_shared_prefix

    model = _model(torch.float32)
    prompts = _prompts()
    got = sample_shared_prefix(model, None, prompts, 2, 0.0, 1.0, 24, 0, cuda_graph=cuda_graph)
    for p, rows in zip(prompts, got):
        ref = _strip(_reference(model, p, 1, 24, do_sample=False)[0])
        assert [r[0] for r in rows] == [ref, ref]


@pytest.mark.parametrize("cuda_graph", [True, False])
def test_seeded_sampling_equals_generate_on_duplicated_rows(cuda_graph):
    from sumpref.backends.prefix_sampling import sample_shared_prefix

    model = _model(torch.float32)
    p = _prompts(1)[0]
    got = sample_shared_prefix(model, None, [p], 4, 0.8, 0.95, 16, seed=7, cuda_graph=cuda_graph)[0]
    torch.manual_seed(7)
    ref = _reference(model, p, 4, 16, do_sample=True, temperature=0.8, top_p=0.95, top_k=0)
    assert [r[0] for r in got] == [_strip(r) for r in ref]


def test_bf16_runs_and_shapes():
    from sumpref.backends.prefix_sampling import sample_shared_prefix

    model = _model(torch.bfloat16)
    got = sample_shared_prefix(model, None, _prompts(), 5, 0.8, 0.95, 12, 0, prompts_per_group=2)
    assert [len(r) for r in got] == [5, 5, 5]
    assert all(len(t) <= 12 and fr in ("stop", "length") for r in got for t, fr in r)


def test_graph_equals_eager_bf16_and_auto_groups():
    from sumpref.backends.prefix_sampling import sample_shared_prefix

    model = _model(torch.bfloat16)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(4, 512, (int(k),), generator=g).tolist() for k in torch.randint(5, 120, (40,), generator=g)]
    kw = dict(prompts_per_group=None)
    graph = sample_shared_prefix(model, None, prompts, 8, 0.8, 0.95, 20, 5, cuda_graph=True, **kw)
    eager = sample_shared_prefix(model, None, prompts, 8, 0.8, 0.95, 20, 5, cuda_graph=False, **kw)
    assert graph == eager
    assert [len(r) for r in graph] == [8] * 40
