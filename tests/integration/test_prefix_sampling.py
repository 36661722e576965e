"""Shared-prefix sampling with the embedded SmolLM2 on CPU: greedy equals `generate` exactly, and
seeded sampling draws the very tokens `generate` draws on duplicated rows (same distribution,
same random stream).

The shared path runs here on whatever transformers is installed, inside `TESTED_TRANSFORMERS` or
not (`shared_path` records that it did): this is the test that admits a new version there."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model_tok():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sumpref.model_paths import resolve_model

    path = resolve_model("embedded:smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, tok


@pytest.fixture
def shared_path(monkeypatch):
    """Take the shared path even outside `TESTED_TRANSFORMERS`; the modes `_sample_group` ran with."""
    from sumpref.backends import prefix_sampling as ps

    modes = []
    real = ps._sample_group

    def spy(model, prompts, n, gen_kw, mode, *args, **kwargs):
        modes.append(mode)
        return real(model, prompts, n, gen_kw, mode, *args, **kwargs)

    monkeypatch.setattr(ps, "tested_transformers", lambda version=None: True)
    monkeypatch.setattr(ps, "_sample_group", spy)
    return modes


def _prompts(tok):
    texts = [
        "Summarize in one sentence: The council voted on Tuesday to close the old bridge for repairs.",
        "What is the capital of France?",
        "Hi",
    ]
    out = []
    for t in texts:
        enc = tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True)
        out.append(list(enc["input_ids"] if hasattr(enc, "keys") else enc))
    assert len({len(p) for p in out}) == 3  # different lengths: left padding is exercised
    return out


def _generate(model, prompt, rows, new, **kw):
    import torch

    ids = torch.tensor([prompt] * rows)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                             pad_token_id=model.generation_config.pad_token_id, **kw)
    return out[:, len(prompt):].tolist()


def test_greedy_equals_generate(model_tok, shared_path):
    from sumpref.backends.prefix_sampling import _eos_ids, _finish, sample_shared_prefix, supports_shared_prefix

    model, tok = model_tok
    assert supports_shared_prefix(model)
    prompts = _prompts(tok)
    got = sample_shared_prefix(model, tok, prompts, 2, 0.0, 1.0, 16, seed=0)
    eos = _eos_ids(model)
    for p, rows in zip(prompts, got):
        ref = _finish(_generate(model, p, 1, 16, do_sample=False)[0], eos, 0)
        assert rows == [ref, ref]
    assert set(shared_path) == {"shared"}
    expand = sample_shared_prefix(model, tok, prompts, 2, 0.0, 1.0, 16, seed=0, mode="expand")
    assert expand == got and shared_path[-1] == "expand"


def test_seeded_sampling_matches_generate_on_duplicated_rows(model_tok, shared_path):
    import torch

    from sumpref.backends.prefix_sampling import _eos_ids, _finish, sample_shared_prefix

    model, tok = model_tok
    p = _prompts(tok)[0]
    got = sample_shared_prefix(model, tok, [p], 4, 0.8, 0.95, 12, seed=11)[0]
    assert shared_path == ["shared"]
    torch.manual_seed(11)
    ref = _generate(model, p, 4, 12, do_sample=True, temperature=0.8, top_p=0.95, top_k=0)
    eos = _eos_ids(model)
    assert got == [_finish(r, eos, 0) for r in ref]
    assert len({tuple(t) for t, _ in got}) > 1  # real sampling, not four copies


def test_groups_fit_the_memory_budget(model_tok):
    """`prompts_per_group=None` packs prompts (sorted by length) into groups whose estimated memory fits the
    budget, never more than MAX_GROUP_ROWS sequences; a fixed size gives fixed groups."""
    from sumpref.backends import prefix_sampling as ps

    model, _ = model_tok
    lengths = sorted([50] * 40 + [400] * 30 + [900] * 20)
    n, new = 8, 80
    budget = 10 * ps._prompt_bytes(model, 900, n, new)
    sizes = ps.plan_groups(model, lengths, n, new, None, budget_bytes=budget)
    assert sum(sizes) == len(lengths) and sizes[0] > sizes[-1] >= 1
    start = 0
    for k in sizes:
        assert k * n <= ps.MAX_GROUP_ROWS
        assert k == 1 or k * ps._prompt_bytes(model, lengths[start + k - 1], n, new) <= budget
        start += k
    assert ps.plan_groups(model, lengths, n, new, 32) == [32, 32, 26]
    assert ps.plan_groups(model, lengths, n, new, None) == [32, 32, 26]  # CPU default without a budget


def test_group_size_does_not_change_greedy_output(model_tok, shared_path):
    from sumpref.backends.prefix_sampling import sample_shared_prefix

    model, tok = model_tok
    prompts = _prompts(tok)
    one = sample_shared_prefix(model, tok, prompts, 2, 0.0, 1.0, 12, seed=0, prompts_per_group=1)
    assert sample_shared_prefix(model, tok, prompts, 2, 0.0, 1.0, 12, seed=0, prompts_per_group=None) == one
