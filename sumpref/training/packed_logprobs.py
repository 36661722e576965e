"""The packed forward: summed log-probability of every completion of a packed batch.

Contract: `PackedLogProbs(model, autocast_dtype, attention, logprob_chunk_size)(**batch.model_inputs())`
-> `[N]` summed log-probs, one per completion of the batch (`sumpref.training.packing` builds the
batch). It is an `nn.Module` so DDP / DeepSpeed can wrap it and see one forward call.

Two switches, both exact (the same numbers up to float rounding; parity-tested in fp32):
- `attention`: "dense" hands the decoder an `[B, 1, L, L]` boolean mask (SDPA then does L x L
  work whatever the mask). "flex" hands it a FlexAttention `BlockMask` built from the segment ids,
  so blocks no query may see (one completion against another) are skipped. FlexAttention has no
  CPU backward, so on CPU with gradients the dense path runs instead; on CUDA it is compiled.
- `logprob_chunk_size`: 0 projects all target positions onto the vocabulary at once; N > 0
  projects N at a time and recomputes each chunk's logits in backward, so at most N x vocab
  logits exist at once. Either way only positions that predict a completion token reach the
  vocabulary projection, and the target's log-prob is its logit minus the log-sum-exp (no
  full-vocabulary log-softmax tensor).

Private internals, used only on the versions they were tested with (`sumpref.tested_versions`):
"flex" registers our attention function through transformers' attention and mask registries and
reads the decoder's `config._attn_implementation` (elsewhere: a warning, then "dense");
`disable_adapter_input_cast` turns off PEFT's private input cast (elsewhere: a warning, PEFT casts).
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from sumpref.tested_versions import tested

FLEX_ATTENTION = "sumpref_flex"  # our name in transformers' AttentionInterface


def block_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] boolean mask (True = attend) for the packed layout.

    Query in segment s attends causally to the prompt (segment 0) and to segment s. Padding
    queries attend to themselves only, so no softmax row is empty (an empty row gives NaN that
    backward would spread)."""
    L = segment_ids.shape[1]
    q = segment_ids[:, :, None]
    k = segment_ids[:, None, :]
    causal = torch.ones(L, L, dtype=torch.bool, device=segment_ids.device).tril()
    allowed = causal & (k >= 0) & ((k == 0) | (k == q))
    eye = torch.eye(L, dtype=torch.bool, device=segment_ids.device)
    allowed = torch.where((q < 0), eye, allowed)
    return allowed[:, None]


def flex_block_mask(segment_ids: torch.Tensor):
    """The same mask as `block_mask`, as a FlexAttention `BlockMask` (blocks fully masked are skipped)."""
    from torch.nn.attention.flex_attention import create_block_mask

    seg = segment_ids

    def mask_mod(b, h, q_idx, kv_idx):
        sq, sk = seg[b, q_idx], seg[b, kv_idx]
        visible = (kv_idx <= q_idx) & (sk >= 0) & ((sk == 0) | (sk == sq))
        return visible | (q_idx == kv_idx)

    B, L = seg.shape
    return create_block_mask(mask_mod, B, None, L, L, device=seg.device)


@functools.cache
def _flex_kernel(device_type: str):
    from torch.nn.attention.flex_attention import flex_attention

    # Eager FlexAttention materialises the scores (fine for CPU tests); CUDA gets the fused kernel.
    return torch.compile(flex_attention, dynamic=True) if device_type == "cuda" else flex_attention


def _flex_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function (query [B, H, L, D], key/value [B, H_kv, L, D]): FlexAttention
    on a `BlockMask`, SDPA (transformers' own function) on anything else, so a model switched to it
    still runs every other caller (dense masks, padding masks, generation) exactly as SDPA does."""
    from torch.nn.attention.flex_attention import BlockMask
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not isinstance(attention_mask, BlockMask):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    kernel = _flex_kernel(query.device.type)
    out = kernel(query, key, value, block_mask=attention_mask, scale=scaling,
                 enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).contiguous(), None


def _register_flex() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(FLEX_ATTENTION, _flex_attention_forward)
    AttentionMaskInterface.register(FLEX_ATTENTION, sdpa_mask)  # masks built for it are SDPA's


def flex_available(device: torch.device) -> bool:
    """FlexAttention can run here: CUDA, or CPU without gradients (it has no CPU backward)."""
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError:
        return False
    return device.type == "cuda" or not torch.is_grad_enabled()


def _decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT: LoRA lives in the modules
    return lm.get_decoder(), lm.get_output_embeddings()


def _target_logps(head: nn.Module, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(h).float()
    return logits.gather(-1, targets[:, None]).squeeze(-1) - logits.logsumexp(-1)


def target_logprobs(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, chunk_size: int = 0) -> torch.Tensor:
    """log p(target) at each row of `hidden` ([T, d]) under the vocabulary projection `head`."""
    if chunk_size <= 0 or hidden.shape[0] <= chunk_size:
        return _target_logps(head, hidden, targets)
    parts = []
    for h, t in zip(hidden.split(chunk_size), targets.split(chunk_size)):
        if torch.is_grad_enabled():  # keep only this chunk's hidden states; logits are recomputed in backward
            parts.append(checkpoint(_target_logps, head, h, t, use_reentrant=False))
        else:
            parts.append(_target_logps(head, h, t))
    return torch.cat(parts)


class PackedLogProbs(nn.Module):
    """Summed log-probability of every packed completion under `model` (a causal LM, PEFT or not).

    `autocast_dtype` (e.g. bfloat16 for a bf16 base with fp32 LoRA weights) runs the decoder under
    autocast: pair it with `disable_adapter_input_cast(model)` so PEFT does not copy every
    activation to fp32 for the adapter (see there). `attention="flex"` registers our attention
    function with transformers and switches `model` to it: FlexAttention where `flex_available`,
    SDPA otherwise (and for every other caller of the model).
    """

    def __init__(self, model: nn.Module, autocast_dtype: torch.dtype | None = None, attention: str = "dense",
                 logprob_chunk_size: int = 0):
        super().__init__()
        if attention not in ("dense", "flex"):
            raise ValueError(f"attention {attention!r}: choose 'dense' or 'flex'")
        if attention == "flex" and not tested("transformers", "attention 'flex' (sumpref.training.packed_logprobs)",
                                              "attention 'dense'"):
            attention = "dense"
        self.model = model
        self.autocast_dtype = autocast_dtype
        self.attention = attention
        self.logprob_chunk_size = logprob_chunk_size
        if attention == "flex":
            # Switched once and left so: on anything but a BlockMask our function is SDPA's (see there),
            # and gradient checkpointing's recompute must find the same function the forward used.
            _register_flex()
            decoder, _ = _decoder_and_head(model)
            if decoder.config._attn_implementation != FLEX_ATTENTION:
                decoder.set_attn_implementation(FLEX_ATTENTION)

    def _mask(self, segment_ids: torch.Tensor):
        if self.attention == "flex" and flex_available(segment_ids.device):
            return flex_block_mask(segment_ids)
        return block_mask(segment_ids)

    def forward(self, input_ids, position_ids, segment_ids, pred_index, target_ids, token_owner, completion_tokens):
        decoder, head = _decoder_and_head(self.model)
        mask = self._mask(segment_ids)
        with torch.autocast(input_ids.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            hidden = decoder(input_ids=input_ids, position_ids=position_ids, attention_mask=mask,
                             use_cache=False).last_hidden_state
            h = hidden.flatten(0, 1).index_select(0, pred_index)
            token_logp = target_logprobs(head, h, target_ids, self.logprob_chunk_size)
        out = torch.zeros(completion_tokens.numel(), dtype=token_logp.dtype, device=token_logp.device)
        return out.index_add(0, token_owner, token_logp)


def disable_adapter_input_cast(model: nn.Module) -> int:
    """Stop PEFT from casting each LoRA input to the adapter's fp32 dtype.

    By default every LoRA layer copies its (bf16) input to fp32, runs the adapter in fp32 and adds
    an fp32 result back: several extra passes over every projection's activations, and fp32 copies
    kept for backward. Under autocast the adapter matmuls run in bf16 against the fp32 master
    weights (cast once per forward, gradients still reach the fp32 weights). Returns the number
    of layers changed (0 on an untested PEFT, which then casts as it always does)."""
    if not tested("peft", "sumpref.training.packed_logprobs.disable_adapter_input_cast", "PEFT's fp32 adapter input cast"):
        return 0
    n = 0
    for module in model.modules():
        if hasattr(module, "lora_A") and hasattr(module, "_cast_input_dtype"):
            module.cast_input_dtype_enabled = False
            n += 1
    return n


def unpacked_logps(model: nn.Module, group) -> torch.Tensor:
    """Reference path for tests: each completion of `group` (an `ArticleGroup`) as its own sequence."""
    out = []
    for comp in group.completions:
        ids = torch.tensor([group.prompt_ids + comp], device=next(model.parameters()).device)
        logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
        lp = logits.log_softmax(-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        out.append(lp[len(group.prompt_ids) - 1 :].sum())
    return torch.stack(out)
