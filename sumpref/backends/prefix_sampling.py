"""Prefill each prompt once, then draw its n samples from that one cache (transformers).

Contract: `sample_shared_prefix(model, tokenizer, prompt_token_lists, n, ...)` returns, for each
prompt (same order), `n` tuples `(token_ids, finish_reason)`; `token_ids` excludes the prompt, the
end-of-sequence token and padding; `finish_reason` is "stop" (an EOS was produced) or "length".

Why: the published method duplicated every article 10 times, so each 1,800-token prompt was
prefilled 10 times and its key/value cache stored and read 10 times at every decoding step.
Here a group of prompts is prefilled once (the library's `DynamicCache`), and `model.generate`
then decodes all `n` continuations with a `SharedPrefixCache`: the prompt part of each layer's
cache is kept ONCE per prompt and only the generated part is per sample. The one piece that knows
about this layout is an attention function registered through transformers' `AttentionInterface`
(`"sumpref_shared_prefix"`): at decoding it scores the query of every sample of a prompt against
that prompt's single copy of the prefix in one matrix product, scores it against the sample's own
generated tokens, and applies one softmax over both. Sampling, logits processing, stopping
and position handling all stay transformers' `generate`.

Equivalence: the arithmetic is the same attention as transformers' eager path (matmul, fp32
softmax), so at temperature 0 the tokens equal greedy `generate`; with sampling every sample
is an independent draw from the same distribution `generate` samples from.

`mode="expand"` is the library-only alternative (prefill once, `batch_repeat_interleave` the cache,
`generate`): same outputs, saves the repeated prefill but still copies the prefix per sample.
It is also the fallback for models the shared path does not cover (sliding windows, non-standard
caches).

Private transformers internals, pinned: the shared path subclasses `cache_utils.DynamicLayer`,
replaces `cache.layers`, reads `AttentionInterface._global_mapping` and sets each config's
`_attn_implementation`. It was tested with transformers 5.17.0, 5.24.0 and 5.25.0 on GPU
(`benchmarks/RESULTS.md`) and with 5.25.0 on CPU by tests/integration/test_prefix_sampling.py, which
runs the shared path on whatever transformers is installed: that test is how a new version joins
`TESTED_TRANSFORMERS`. Outside 5.17.0 - 5.25.x `tested_transformers()` warns once and the sampler
uses `mode="expand"` (public cache API only).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import warnings
from typing import Any, Sequence

ATTN_NAME = "sumpref_shared_prefix"
TESTED_TRANSFORMERS = ("5.17.0", "5.25.0")  # oldest and newest transformers the shared path was tested with
_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("sumpref_shared_prefix_cache", default=None)


def _torch():
    import torch

    return torch


def _cache_kwarg(model) -> str:
    """transformers >= 5.2x names the cache argument `cache`; earlier 5.x `past_key_values`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wrapper
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _eos_ids(model) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


def _pad_id(model, tokenizer) -> int:
    for src in (tokenizer, model.generation_config, model.config):
        pid = getattr(src, "pad_token_id", None) if src is not None else None
        if pid is not None:
            return int(pid)
    eos = sorted(_eos_ids(model))
    return eos[0] if eos else 0


@functools.lru_cache(maxsize=None)
def tested_transformers(version: str | None = None) -> bool:
    """Whether `version` (default: the installed transformers) lies in `TESTED_TRANSFORMERS`; warns if not."""
    from packaging.version import Version

    if version is None:
        import transformers

        version = transformers.__version__
    lo, hi = (Version(v) for v in TESTED_TRANSFORMERS)
    v = Version(version)
    if lo <= v and v.release[:2] <= hi.release[:2]:
        return True
    warnings.warn(f"sumpref.backends.prefix_sampling: the shared-prefix path uses private transformers internals "
                  f"tested with {lo}..{hi}, not {version}; falling back to mode='expand' (public API, slower). "
                  "Pin transformers to the tested range, or test and extend TESTED_TRANSFORMERS.", RuntimeWarning, stacklevel=2)
    return False


def supports_shared_prefix(model) -> bool:
    """Plain full-attention decoder: every cache layer a `DynamicLayer` with no sliding window."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if getattr(cfg, "sliding_window", None) or getattr(cfg, "use_sliding_window", False):
        return False
    types = getattr(cfg, "layer_types", None)
    if types and any(t != "full_attention" for t in types):
        return False
    return hasattr(cfg, "num_key_value_heads") or hasattr(cfg, "num_attention_heads")


def _finish(tokens: list[int], eos: set[int], pad_id: int) -> tuple[list[int], str]:
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[:i], "stop"
    return tokens, "length"


# ---------------------------------------------------------------------------------------------
# The cache layout and the attention function that reads it
# ---------------------------------------------------------------------------------------------


def _make_layer_class():
    from transformers.cache_utils import DynamicLayer

    class SharedPrefixLayer(DynamicLayer):
        """Prefix keys/values once per prompt `(P, Hkv, Lp, D)`; generated ones per sample
        `(P*n, Hkv, T, D)` in a preallocated buffer (no per-step concatenation)."""

        is_croppable = False

        def __init__(self, prefix_k, prefix_v, prefix_bias, n: int, max_new: int):
            super().__init__()
            torch = _torch()
            p, h, _, d = prefix_k.shape
            self.prefix_k, self.prefix_v, self.prefix_bias, self.n = prefix_k, prefix_v, prefix_bias, n
            self.buf_k = torch.empty(p * n, h, max_new, d, dtype=prefix_k.dtype, device=prefix_k.device)
            self.buf_v = torch.empty_like(self.buf_k)
            self.t = 0
            self.device = prefix_k.device
            # `keys`/`values` are what generic cache code inspects (device, dtype, batch size).
            self.keys, self.values = self.buf_k[:, :, :0], self.buf_v[:, :, :0]
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            q = key_states.shape[-2]
            if self.t + q > self.buf_k.shape[2]:
                raise RuntimeError("SharedPrefixLayer: more tokens generated than max_new_tokens allows")
            self.buf_k[:, :, self.t : self.t + q] = key_states
            self.buf_v[:, :, self.t : self.t + q] = value_states
            self.t += q
            self.keys, self.values = self.buf_k[:, :, : self.t], self.buf_v[:, :, : self.t]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.prefix_k.shape[2] + self.t

        def get_mask_sizes(self, query_length: int, *args) -> tuple[int, int]:
            return self.get_seq_length() + query_length, 0

        def batch_repeat_interleave(self, repeats: int) -> None:
            raise NotImplementedError("SharedPrefixCache already holds n samples per prompt")

        def reorder_cache(self, beam_idx) -> None:
            raise NotImplementedError("SharedPrefixCache does not support beam search")

        def attend(self, query, scaling: float):
            """query `(P*n, Hq, 1, D)` -> attention output `(P*n, 1, Hq, D)`."""
            p, h, lp, d = self.prefix_k.shape
            n, t = self.n, self.t
            g = query.shape[1] // h
            # (P*n, Hq, 1, D) -> (P, Hkv, n*g, D): every sample and grouped head of a prompt
            # becomes one row of a single product against that prompt's prefix.
            q = query.reshape(p, n, h, g, d).permute(0, 2, 1, 3, 4).reshape(p, h, n * g, d)
            # The score tensor is the largest thing here (P*Hq*n*Lp per layer): keep it in the
            # model dtype and touch it as few times as possible (softmax accumulates in fp32).
            s_pre = (q @ self.prefix_k.transpose(-1, -2)).view(p, h, n, g, lp).mul_(scaling)
            if self.prefix_bias is not None:
                s_pre.add_(self.prefix_bias)
            ks = self.keys.reshape(p, n, h, t, d).transpose(1, 2)  # (P, Hkv, n, t, D)
            vs = self.values.reshape(p, n, h, t, d).transpose(1, 2)
            s_gen = (q.view(p, h, n, g, d) @ ks.transpose(-1, -2)).mul_(scaling)
            probs = _torch().cat([s_pre, s_gen], dim=-1).softmax(dim=-1)
            p_pre, p_gen = probs.split([lp, t], dim=-1)  # p_pre's reshape below is a view
            out = (p_pre.reshape(p, h, n * g, lp) @ self.prefix_v).view(p, h, n, g, d) + p_gen @ vs
            return out.permute(0, 2, 1, 3, 4).reshape(p * n, h * g, d).unsqueeze(1)

    return SharedPrefixLayer


def _shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    cache = _ACTIVE.get()
    if cache is None:
        raise RuntimeError(f"attention '{ATTN_NAME}' used outside sample_shared_prefix")
    if query.shape[2] != 1:
        raise RuntimeError(f"attention '{ATTN_NAME}' decodes one token at a time (got {query.shape[2]})")
    layer = cache.layers[module.layer_idx]
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return layer.attend(query, scale), None


def _register_attention() -> None:
    from transformers import AttentionInterface

    if ATTN_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTN_NAME, _shared_prefix_attention)
    # Deliberately NOT registered as a mask function: transformers then skips mask creation,
    # and the prefix padding mask lives in the cache (`prefix_bias`).


@contextlib.contextmanager
def _attention(model, cache):
    _register_attention()
    configs = {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values()
    saved = [(c, c._attn_implementation) for c in configs]
    token = _ACTIVE.set(cache)
    try:
        for c, _ in saved:
            c._attn_implementation = ATTN_NAME
        yield
    finally:
        for c, impl in saved:
            c._attn_implementation = impl
        _ACTIVE.reset(token)


# ---------------------------------------------------------------------------------------------
# Prefill and sampling
# ---------------------------------------------------------------------------------------------


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device):
    torch = _torch()
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if len(p):
            ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
            mask[i, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


def _prefill(model, ids, mask, micro_batch: int):
    """Run all but the last column through the model; return per-layer (keys, values) for the batch."""
    from transformers import DynamicCache

    kw = _cache_kwarg(model)
    layers: list[tuple[Any, Any]] = []
    for start in range(0, ids.shape[0], micro_batch):
        sl = slice(start, start + micro_batch)
        pos = (mask[sl].cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        model(input_ids=ids[sl], attention_mask=mask[sl], position_ids=pos, use_cache=True, logits_to_keep=1, **{kw: cache})
        for li, layer in enumerate(cache.layers):
            k, v = layer.keys, layer.values
            if start == 0:
                shape = (ids.shape[0], *k.shape[1:])
                layers.append((k.new_empty(shape), v.new_empty(shape)))
            layers[li][0][sl].copy_(k)
            layers[li][1][sl].copy_(v)
        del cache
    return layers


def _gen_kwargs(model, temperature, top_p, top_k, max_new_tokens, pad_id) -> dict:
    kw = dict(max_new_tokens=max_new_tokens, pad_token_id=pad_id, num_beams=1)
    if temperature and temperature > 0:
        kw.update(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=top_k)
    else:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kw


def _sample_group(model, prompts, n, gen_kw, mode: str, micro_batch: int):
    torch = _torch()
    from transformers import DynamicCache

    device = next(model.parameters()).device
    pad_id = gen_kw["pad_token_id"]
    ids, mask = _left_pad(prompts, pad_id, device)
    full_ids, full_mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
    kw = _cache_kwarg(model)
    prefix = _prefill(model, ids[:, :-1], mask[:, :-1], micro_batch) if ids.shape[1] > 1 else None
    if mode == "expand":
        cache = DynamicCache()
        if prefix is not None:
            for li, (k, v) in enumerate(prefix):
                cache.update(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0), li)
        out = model.generate(input_ids=full_ids, attention_mask=full_mask, **{kw: cache}, **gen_kw)
        return out[:, ids.shape[1] :]
    if prefix is None:  # one-token prompts: nothing to share
        out = model.generate(input_ids=full_ids, attention_mask=full_mask, **gen_kw)
        return out[:, ids.shape[1] :]
    layer_cls = _make_layer_class()
    pmask = mask[:, :-1].bool()
    bias = None
    if not bool(pmask.all()):
        dtype = prefix[0][0].dtype
        bias = torch.zeros(pmask.shape, dtype=dtype, device=device).masked_fill(~pmask, float("-inf"))
        bias = bias[:, None, None, None, :]  # (P, 1, 1, 1, Lp) against scores (P, Hkv, n, g, Lp)
    cache = DynamicCache()
    cache.layers = [layer_cls(k, v, bias, n, gen_kw["max_new_tokens"] + 1) for k, v in prefix]
    del prefix
    with _attention(model, cache):
        out = model.generate(input_ids=full_ids, attention_mask=full_mask, **{kw: cache}, **gen_kw)
    return out[:, ids.shape[1] :]


def sample_shared_prefix(
    model,
    tokenizer,
    prompt_token_lists: Sequence[Sequence[int]],
    n: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    *,
    top_k: int = 0,
    prompts_per_group: int = 32,
    prefill_micro_batch: int = 4,
    mode: str = "shared",
) -> list[list[tuple[list[int], str]]]:
    """Sample `n` continuations of each tokenized prompt, prefilling every prompt once.

    Prompts are grouped by length (`prompts_per_group` prompts, i.e. `prompts_per_group * n`
    sequences decode together); the result comes back in input order. `top_k=0` disables
    top-k so that only temperature and top_p shape the distribution, as in the method.
    `mode`: "shared" (prefix stored once per prompt) or "expand" (library-only cache copy).
    """
    torch = _torch()
    if n < 1 or max_new_tokens < 1:
        raise ValueError("n and max_new_tokens must be >= 1")
    if any(len(p) == 0 for p in prompt_token_lists):
        raise ValueError("empty prompt")
    if mode not in ("shared", "expand"):
        raise ValueError(f"mode must be 'shared' or 'expand', got {mode!r}")
    if mode == "shared" and not (supports_shared_prefix(model) and tested_transformers()):
        mode = "expand"
    pad_id, eos = _pad_id(model, tokenizer), _eos_ids(model)
    gen_kw = _gen_kwargs(model, temperature, top_p, top_k, max_new_tokens, pad_id)
    order = sorted(range(len(prompt_token_lists)), key=lambda i: len(prompt_token_lists[i]))
    results: list[list[tuple[list[int], str]]] = [[] for _ in prompt_token_lists]
    torch.manual_seed(seed)
    with torch.inference_mode():
        for g0 in range(0, len(order), prompts_per_group):
            idx = order[g0 : g0 + prompts_per_group]
            gen = _sample_group(model, [prompt_token_lists[i] for i in idx], n, gen_kw, mode, prefill_micro_batch)
            rows = gen.tolist()
            for j, i in enumerate(idx):
                results[i] = [_finish(rows[j * n + s], eos, pad_id) for s in range(n)]
    return results
