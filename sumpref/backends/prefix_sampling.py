"""Prefill each prompt once, then draw its n samples from that one cache (transformers).

Contract: `sample_shared_prefix(model, tokenizer, prompt_token_lists, n, ...)` returns, for each
prompt (same order), `n` tuples `(token_ids, finish_reason)`; `token_ids` excludes the prompt, the
end-of-sequence token and padding; `finish_reason` is "stop" (an EOS was produced) or "length".

Why: the published method duplicated every article 10 times, so each 1,800-token prompt was
prefilled 10 times and its key/value cache stored and read 10 times at every decoding step.
Here a group of prompts is prefilled once (the library's `DynamicCache`), and all `n`
continuations decode from a `SharedPrefixCache`: the prompt part of each layer's cache is kept
ONCE per prompt and only the generated part is per sample. The one piece that knows about this
layout is an attention function registered through transformers' `AttentionInterface`
(`"sumpref_shared_prefix"`): at decoding it scores the query of every sample of a prompt against
that prompt's single copy of the prefix in one matrix product, scores it against the sample's own
generated tokens, and applies one softmax over both.

Decoding (`_Decoder`) is a loop over the model's own forward with that cache, and transformers'
own logits warpers (temperature, top-k, top-p, in `generate`'s order): one token per sequence per
step, with every per-step value (input token, position, step index, outputs, finished flags) in
fixed device tensors updated in place. A step therefore never waits for the host (`generate`
checks its stopping criteria with a host sync every step; here the check runs every 8 steps), and
on CUDA it is captured once per group as a CUDA graph and replayed. On a GPU the group (prompts
decoded together) is sized from free memory and the model's shape (`plan_groups`): a 135M model
needs thousands of rows per step before a step costs more than its launches (issue 27,
`benchmarks/RESULTS.md`). Generation configs that ask for other logits processors (repetition
penalty, ...) decode through `generate` instead (`mode="expand"`).

Equivalence: the arithmetic is the same attention as transformers' eager path (matmul, fp32
softmax), so at temperature 0 the tokens equal greedy `generate`; sampling draws exactly what
`torch.multinomial` draws inside `generate` (argmax of probs / Exp(1) noise from the same
generator), so with the same seed and one group the samples equal `generate`'s on duplicated rows
(tests/gpu/test_sampling_gpu.py with and without the CUDA graph, tests/integration on CPU).

`mode="expand"` is the library-only alternative (prefill once, `batch_repeat_interleave` the cache,
`generate`): same outputs, saves the repeated prefill but still copies the prefix per sample.
It is also the fallback for models the shared path does not cover (sliding windows, non-standard
caches, extra logits processors).

Private transformers internals, pinned: the shared path subclasses `cache_utils.DynamicLayer`,
replaces `cache.layers`, reads `AttentionInterface._global_mapping` and sets each config's
`_attn_implementation`. The cache layout was tested with transformers 5.17.0, 5.24.0 and 5.25.0 on
GPU, the decoding loop and CUDA graph with 5.17.0 (`benchmarks/RESULTS.md`), both with 5.25.0 on CPU by tests/integration/test_prefix_sampling.py, which
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


class _DecodeState:
    """What every layer of one group shares at a decoding step, on the device: the step index (where the
    new key/value goes) and the additive mask over the generated slots (0 for slots written so far, -inf
    for the rest). Both are tensors updated in place, so one captured CUDA graph serves every step."""

    def __init__(self, max_new: int, dtype, device):
        torch = _torch()
        self.step = torch.zeros(1, dtype=torch.long, device=device)
        self.slots = torch.arange(max_new, device=device)
        self.gen_bias = torch.full((max_new,), float("-inf"), dtype=dtype, device=device)
        self.t = 0  # host mirror of `step`, for generic cache code (get_seq_length); the loop keeps it

    def open_slot(self) -> None:
        """Unmask the slot this step writes (before the forward: the token attends to itself)."""
        self.gen_bias.masked_fill_(self.slots == self.step, 0.0)

    def advance(self) -> None:
        self.step.add_(1)


def _make_layer_class():
    from transformers.cache_utils import DynamicLayer

    class SharedPrefixLayer(DynamicLayer):
        """Prefix keys/values once per prompt `(P, Hkv, Lp, D)`; generated ones per sample in a fixed
        zero-filled buffer `(P, Hkv, n, T, D)` written at `state.step` (no per-step concatenation, no shape
        that changes from step to step: the step is capturable as one CUDA graph)."""

        is_croppable = False

        def __init__(self, prefix_k, prefix_v, prefix_bias, n: int, max_new: int, state: _DecodeState):
            super().__init__()
            torch = _torch()
            p, h, _, d = prefix_k.shape
            self.prefix_k, self.prefix_v, self.prefix_bias, self.n, self.state = prefix_k, prefix_v, prefix_bias, n, state
            # Zeros, not empty: masked slots get probability 0, and 0 * NaN from stale memory would be NaN.
            self.buf_k = torch.zeros(p, h, n, max_new, d, dtype=prefix_k.dtype, device=prefix_k.device)
            self.buf_v = torch.zeros_like(self.buf_k)
            self.device = prefix_k.device
            self.keys, self.values = self.buf_k, self.buf_v  # what generic cache code inspects (device, dtype)
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if key_states.shape[-2] != 1:
                raise RuntimeError("SharedPrefixLayer decodes one token at a time")
            p, h, n, _, d = self.buf_k.shape
            # (P*n, Hkv, 1, D) -> (P, Hkv, n, 1, D): sample-major rows into the head-major buffer.
            self.buf_k.index_copy_(3, self.state.step, key_states.reshape(p, n, h, 1, d).transpose(1, 2))
            self.buf_v.index_copy_(3, self.state.step, value_states.reshape(p, n, h, 1, d).transpose(1, 2))
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.prefix_k.shape[2] + self.state.t

        def get_mask_sizes(self, query_length: int, *args) -> tuple[int, int]:
            return self.get_seq_length() + query_length, 0

        def batch_repeat_interleave(self, repeats: int) -> None:
            raise NotImplementedError("SharedPrefixCache already holds n samples per prompt")

        def reorder_cache(self, beam_idx) -> None:
            raise NotImplementedError("SharedPrefixCache does not support beam search")

        def attend(self, query, scaling: float):
            """query `(P*n, Hq, 1, D)` -> attention output `(P*n, 1, Hq, D)`."""
            p, h, lp, d = self.prefix_k.shape
            n, t = self.n, self.buf_k.shape[3]
            g = query.shape[1] // h
            # (P*n, Hq, 1, D) -> (P, Hkv, n*g, D): every sample and grouped head of a prompt becomes one
            # row of a single product against that prompt's prefix. Scaling the (small) query instead of
            # the (large) scores saves a pass over them.
            q = (query.reshape(p, n, h, g, d).permute(0, 2, 1, 3, 4) * scaling).reshape(p, h, n * g, d)
            s_pre = q @ self.prefix_k.transpose(-1, -2)  # (P, Hkv, n*g, Lp), model dtype
            if self.prefix_bias is not None:
                s_pre.add_(self.prefix_bias)
            s_gen = q.view(p, h, n, g, d) @ self.buf_k.transpose(-1, -2)  # (P, Hkv, n, g, T)
            s_gen.add_(self.state.gen_bias)
            # One softmax over prefix and own generated tokens (accumulates in fp32); the two halves of
            # `probs` are strided views that the products below read in place.
            probs = _torch().cat([s_pre, s_gen.view(p, h, n * g, t)], dim=-1).softmax(dim=-1)
            out = probs[..., :lp] @ self.prefix_v  # (P, Hkv, n*g, D)
            out = out.view(p, h, n, g, d) + probs[..., lp:].view(p, h, n, g, t) @ self.buf_v
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
# Group sizes
# ---------------------------------------------------------------------------------------------

MAX_GROUP_ROWS = 4096  # sequences decoded together on a GPU; past this a step is bandwidth-bound anyway
GPU_MEMORY_FRACTION = 0.5  # of the memory free at the start (another actor may share the card)
PREFILL_TOKENS = 32768  # prompt tokens per prefill forward on a GPU (activations stay ~1-6 GB up to 7B)


def _text_config(model):
    return model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config


def bytes_per_token(model) -> int:
    """Key/value bytes one token occupies in the cache, over all layers."""
    cfg = _text_config(model)
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    return cfg.num_hidden_layers * 2 * kv * d * next(model.parameters()).element_size()


def _prompt_bytes(model, width: int, n: int, max_new: int) -> int:
    """Device memory one prompt of a group needs while its n samples decode: its prefix once, n generated
    buffers, n rows of the sampling tensors (fp32 scores, sort keys and int64 indices, probabilities, noise:
    about 32 bytes per vocabulary entry) and one layer's attention scores (a few copies)."""
    cfg = _text_config(model)
    elem = next(model.parameters()).element_size()
    kvb = bytes_per_token(model)
    return (width * kvb + n * max_new * kvb + n * cfg.vocab_size * 32
            + 3 * cfg.num_attention_heads * n * (width + max_new) * elem)


def _free_device_bytes(device) -> int:
    torch = _torch()
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def plan_groups(model, lengths: Sequence[int], n: int, max_new: int, prompts_per_group: int | None,
                budget_bytes: int | None = None) -> list[int]:
    """Sizes of consecutive groups over prompts sorted by length (ascending).

    A fixed `prompts_per_group` gives fixed sizes. `None` sizes each group from memory: on a GPU, as many
    prompts as fit `GPU_MEMORY_FRACTION` of the free memory (`_prompt_bytes` at the group's longest prompt)
    up to `MAX_GROUP_ROWS` sequences; on a CPU 32 prompts (decoding there is compute-bound: larger groups
    gain little and hold more memory)."""
    total = len(lengths)
    if prompts_per_group is not None:
        k = max(1, int(prompts_per_group))
        return [min(k, total - i) for i in range(0, total, k)]
    device = next(model.parameters()).device
    if device.type != "cuda" and budget_bytes is None:
        return plan_groups(model, lengths, n, max_new, 32)
    if budget_bytes is None:
        budget_bytes = int(_free_device_bytes(device) * GPU_MEMORY_FRACTION)
    max_prompts = max(1, MAX_GROUP_ROWS // n)
    sizes, i = [], 0
    while i < total:
        k = 1
        while (i + k < total and k < max_prompts
               and (k + 1) * _prompt_bytes(model, lengths[i + k], n, max_new) <= budget_bytes):
            k += 1
        sizes.append(k)
        i += k
    return sizes


# ---------------------------------------------------------------------------------------------
# Prefill, the decoding loop and sampling
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


def _prefill(model, ids, mask, micro_batch: int | None):
    """Run all but the last column through the model; return per-layer (keys, values) for the batch."""
    from transformers import DynamicCache

    if micro_batch is None:  # GPU: a token budget per forward; CPU: small batches (compute-bound there)
        micro_batch = max(1, PREFILL_TOKENS // max(1, ids.shape[1])) if ids.device.type == "cuda" else 4
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


# Generation-config fields that would add logits processors or stopping rules beyond temperature, top-k and
# top-p. If the model's generation config sets any of them, the sampler hands decoding to `generate`
# (mode="expand") so that they apply.
_OTHER_PROCESSING = (
    "repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "min_length", "min_new_tokens", "suppress_tokens", "begin_suppress_tokens",
    "forced_bos_token_id", "forced_eos_token_id", "sequence_bias", "min_p", "typical_p", "epsilon_cutoff",
    "eta_cutoff", "top_h", "renormalize_logits", "exponential_decay_length_penalty", "guidance_scale",
    "watermarking_config", "remove_invalid_values", "diversity_penalty", "stop_strings", "max_time",
    "forced_decoder_ids",
)


def _needs_generate(model) -> list[str]:
    """The generation-config fields (besides temperature/top-k/top-p) that differ from the defaults."""
    from transformers import GenerationConfig

    mine, default = getattr(model, "generation_config", None), GenerationConfig()
    if mine is None:
        return []
    return [f for f in _OTHER_PROCESSING if getattr(mine, f, None) != getattr(default, f, None)]


def _warpers(gen_kw):
    """transformers' own logits warpers, in `generate`'s order and on `generate`'s conditions."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    out = LogitsProcessorList()
    if not gen_kw["do_sample"]:
        return out
    t, k, p = gen_kw["temperature"], gen_kw["top_k"], gen_kw["top_p"]
    if t is not None and t != 1.0:
        out.append(TemperatureLogitsWarper(t))
    if k is not None and k != 0:
        out.append(TopKLogitsWarper(top_k=k, min_tokens_to_keep=1))
    if p is not None and p < 1.0:
        out.append(TopPLogitsWarper(top_p=p, min_tokens_to_keep=1))
    return out


class _Decoder:
    """Decode a group with the library's model forward and cache: one token per sequence per step.

    Everything a step reads or writes lives on the device in fixed tensors, updated in place: the input
    token, the position, the step index, the output tokens and the unfinished flags. So a step never
    waits for the host (the only syncs are the finish checks every `check_every` steps), and on CUDA
    the whole step (forward, warpers, sampling) is captured once as a CUDA graph and replayed.

    Sampling draws exactly what `torch.multinomial(probs, 1)` draws (`generate`'s sampler): for one
    sample per row multinomial takes argmax(probs / E) with E ~ Exp(1) from the same generator; doing
    it here avoids multinomial's host-side validity checks, which a CUDA graph cannot hold.
    """

    def __init__(self, model, cache, state, ids, pos, max_new, gen_kw, eos: set[int]):
        torch = _torch()
        self.model, self.cache, self.state = model, cache, state
        self.ids, self.pos = ids, pos  # (R, 1) each
        self.kw = {_cache_kwarg(model): cache}
        self.warpers = _warpers(gen_kw)
        self.do_sample = gen_kw["do_sample"]
        self.pad = gen_kw["pad_token_id"]
        rows, device = ids.shape[0], ids.device
        self.tokens = torch.full((rows, max_new), self.pad, dtype=torch.long, device=device)
        self.eos = torch.tensor(sorted(eos), dtype=torch.long, device=device) if eos else None
        self.unfinished = torch.ones(rows, dtype=torch.bool, device=device)
        self.max_new = max_new

    def step(self) -> None:
        torch = _torch()
        self.state.open_slot()
        out = self.model(input_ids=self.ids, position_ids=self.pos, use_cache=True, logits_to_keep=1, **self.kw)
        scores = out.logits[:, -1].to(dtype=torch.float32, copy=True)
        scores = self.warpers(self.ids, scores)
        if self.do_sample:
            probs = scores.softmax(dim=-1)
            nxt = (probs / torch.empty_like(probs).exponential_(1)).argmax(dim=-1)
        else:
            nxt = scores.argmax(dim=-1)
        if self.eos is not None:
            nxt = torch.where(self.unfinished, nxt, self.pad)
            self.unfinished &= ~torch.isin(nxt, self.eos)
        self.tokens.index_copy_(1, self.state.step, nxt[:, None])
        self.ids.copy_(nxt[:, None])
        self.pos.add_(1)
        self.state.advance()

    def _all_finished(self) -> bool:
        return self.eos is not None and not bool(self.unfinished.any())  # a host sync: called every few steps

    def run(self, cuda_graph: bool, check_every: int):
        torch = _torch()
        with _attention(self.model, self.cache):
            if cuda_graph:
                side = torch.cuda.Stream(device=self.ids.device)
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):  # the first step, eager, doubles as the capture's warm-up
                    self.step()
                torch.cuda.current_stream().wait_stream(side)
            else:
                self.step()
            steps = self.state.t = 1
            graph = _capture(self.step) if cuda_graph and steps < self.max_new else None
            while steps < self.max_new:
                if steps % check_every == 0 and self._all_finished():
                    break
                graph.replay() if graph is not None else self.step()
                steps = self.state.t = steps + 1
            del graph
        return self.tokens


_CAPTURE_FAILED: list[str] = []


def _capture(step):
    """A CUDA graph of `step` (not run by the capture), or None if this torch/transformers cannot capture it;
    then the loop runs the same step eagerly (still without per-step host syncs)."""
    torch = _torch()
    if _CAPTURE_FAILED:
        return None
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            step()
    except Exception as exc:  # noqa: BLE001 - any capture failure falls back to the eager step
        _CAPTURE_FAILED.append(repr(exc))
        warnings.warn(f"sumpref.backends.prefix_sampling: CUDA graph capture failed ({exc!r}); decoding eagerly",
                      RuntimeWarning, stacklevel=2)
        torch.cuda.synchronize()
        return None
    return graph


def _sample_group(model, prompts, n, gen_kw, mode: str, micro_batch: int | None, cuda_graph: bool = False):
    torch = _torch()
    from transformers import DynamicCache

    device = next(model.parameters()).device
    pad_id = gen_kw["pad_token_id"]
    ids, mask = _left_pad(prompts, pad_id, device)
    kw = _cache_kwarg(model)
    prefix = _prefill(model, ids[:, :-1], mask[:, :-1], micro_batch) if ids.shape[1] > 1 else None
    if mode == "expand" or prefix is None:  # library only; also one-token prompts (nothing to share)
        full_ids, full_mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        extra = {}
        if prefix is not None:
            cache = DynamicCache()
            for li, (k, v) in enumerate(prefix):
                cache.update(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0), li)
            extra = {kw: cache}
        out = model.generate(input_ids=full_ids, attention_mask=full_mask, **extra, **gen_kw)
        return out[:, ids.shape[1] :]
    layer_cls = _make_layer_class()
    max_new = gen_kw["max_new_tokens"]
    pmask = mask[:, :-1].bool()
    bias = None
    if not bool(pmask.all()):
        dtype = prefix[0][0].dtype
        bias = torch.zeros(pmask.shape, dtype=dtype, device=device).masked_fill(~pmask, float("-inf"))
        bias = bias[:, None, None, :]  # (P, 1, 1, Lp) against scores (P, Hkv, n*g, Lp)
    state = _DecodeState(max_new, prefix[0][0].dtype, device)
    cache = DynamicCache()
    cache.layers = [layer_cls(k, v, bias, n, max_new, state) for k, v in prefix]
    del prefix
    first = ids[:, -1:].repeat_interleave(n, 0).contiguous()
    pos = (mask.sum(-1, keepdim=True) - 1).repeat_interleave(n, 0).contiguous()
    decoder = _Decoder(model, cache, state, first, pos, max_new, gen_kw, _eos_ids(model))
    return decoder.run(cuda_graph, check_every=8 if device.type == "cuda" else 1)


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
    prompts_per_group: int | None = 32,
    prefill_micro_batch: int | None = None,
    mode: str = "shared",
    cuda_graph: bool | None = None,
) -> list[list[tuple[list[int], str]]]:
    """Sample `n` continuations of each tokenized prompt, prefilling every prompt once.

    Prompts are grouped by length (`prompts_per_group` prompts, i.e. `prompts_per_group * n`
    sequences decode together; `None` sizes groups from free memory, `plan_groups`); the result comes
    back in input order. `top_k=0` disables top-k so that only temperature and top_p shape the
    distribution, as in the method. `mode`: "shared" (prefix stored once per prompt, our decoding loop)
    or "expand" (library-only cache copy, `generate`). `cuda_graph` (default: on for CUDA) replays each
    group's decoding step as one CUDA graph. `prefill_micro_batch=None`: a token budget per prefill
    forward on a GPU, 4 prompts on a CPU.
    """
    torch = _torch()
    if n < 1 or max_new_tokens < 1:
        raise ValueError("n and max_new_tokens must be >= 1")
    if any(len(p) == 0 for p in prompt_token_lists):
        raise ValueError("empty prompt")
    if mode not in ("shared", "expand"):
        raise ValueError(f"mode must be 'shared' or 'expand', got {mode!r}")
    if mode == "shared" and not (supports_shared_prefix(model) and tested_transformers() and not _needs_generate(model)):
        mode = "expand"
    device = next(model.parameters()).device
    cuda_graph = (device.type == "cuda") if cuda_graph is None else (cuda_graph and device.type == "cuda")
    pad_id, eos = _pad_id(model, tokenizer), _eos_ids(model)
    gen_kw = _gen_kwargs(model, temperature, top_p, top_k, max_new_tokens, pad_id)
    order = sorted(range(len(prompt_token_lists)), key=lambda i: len(prompt_token_lists[i]))
    results: list[list[tuple[list[int], str]]] = [[] for _ in prompt_token_lists]
    torch.manual_seed(seed)
    with torch.inference_mode():
        sizes = plan_groups(model, [len(prompt_token_lists[i]) for i in order], n, max_new_tokens, prompts_per_group)
        g0 = 0
        for size in sizes:
            idx = order[g0 : g0 + size]
            g0 += size
            gen = _sample_group(model, [prompt_token_lists[i] for i in idx], n, gen_kw, mode, prefill_micro_batch,
                                cuda_graph)
            rows = gen.tolist()
            del gen
            for j, i in enumerate(idx):
                results[i] = [_finish(rows[j * n + s], eos, pad_id) for s in range(n)]
    return results
