"""Shared-prompt packing: one copy of an article's prompt, then every distinct candidate summary.

A DPO pair is (prompt, chosen, rejected); with several pairs per article the 1-2k-token prompt
dominates the cost, and a plain trainer runs it twice per pair. Here each article becomes one
row: `prompt | c_1 | c_2 | ... | c_k` where c_i are the article's *distinct* completions (the
chosen and rejected of all its pairs, deduplicated by token ids). A block mask lets each
completion attend to the prompt and, causally, to itself only; its position ids continue from
the prompt's end, so every completion sees exactly the context it would see alone. Gradients
flow into the shared prompt activations from all completions, as they would in the unpacked sum.

Contract:
- `build_groups(rows, tokenizer, max_length)`: pair rows (`article_id`, `prompt` chat messages of
  the user turn, `chosen`/`rejected` full chat message lists) -> `ArticleGroup`s (token ids).
- `make_microbatches(groups, pairs_per_batch)`: whole articles per micro-batch.
- `pack_groups(groups, pad_id)` -> `PackedBatch` (tensors on CPU); completions are numbered group
  by group, completion by completion, and `batch.completion_tokens` holds their token counts.
`sumpref.training.packed_logprobs.PackedLogProbs` runs a model over a `PackedBatch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch


@dataclass
class ArticleGroup:
    article_id: str
    prompt_ids: list[int]
    completions: list[list[int]]  # distinct completions, token ids after the prompt
    pairs: list[tuple[int, int]]  # (chosen, rejected) indices into `completions`
    rows: list[int]  # source row of each pair
    truncated: int = 0  # completions cut to fit max_length

    @property
    def n_tokens(self) -> int:
        return len(self.prompt_ids) + sum(len(c) for c in self.completions)


def _messages(value: Any) -> list[dict]:
    # Parquet round-trips lists of structs as numpy arrays of dicts.
    return [dict(m) for m in list(value)]


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    # The template already writes any BOS token; adding special tokens again would double it.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def build_groups(rows: Iterable[dict], tokenizer, max_length: int) -> tuple[list[ArticleGroup], int]:
    """Tokenize pair rows and group them by article. Returns (groups, dropped pair count).

    The completion starts where the rendered prompt and prompt+answer diverge (usually right
    after the generation prompt). Completions are cut so prompt + completion <= max_length;
    articles whose prompt leaves fewer than 8 tokens are dropped (counted).
    """
    by_article: dict[str, dict] = {}
    for i, row in enumerate(rows):
        aid = str(row["article_id"])
        g = by_article.setdefault(aid, {"prompt": _render(tokenizer, _messages(row["prompt"]), True), "full": {}, "pairs": []})
        ids = []
        for side in ("chosen", "rejected"):
            full = tuple(_render(tokenizer, _messages(row[side]), False))
            ids.append(g["full"].setdefault(full, len(g["full"])))
        g["pairs"].append((ids[0], ids[1], i))
    groups, dropped = [], 0
    for aid, g in by_article.items():
        fulls = list(g["full"])
        cut = min(_common_prefix(g["prompt"], f) for f in fulls)
        cut = min(cut, *(len(f) - 1 for f in fulls))  # every completion keeps >= 1 token
        if cut > max_length - 8:
            dropped += len(g["pairs"])
            continue
        keep = max_length - cut
        comps = [list(f[cut : cut + keep]) for f in fulls]
        truncated = sum(len(f) - cut > keep for f in fulls)
        groups.append(
            ArticleGroup(
                article_id=aid,
                prompt_ids=list(g["prompt"][:cut]),
                completions=comps,
                pairs=[(c, r) for c, r, _ in g["pairs"]],
                rows=[i for _, _, i in g["pairs"]],
                truncated=truncated,
            )
        )
    return groups, dropped


def make_microbatches(groups: Sequence[ArticleGroup], pairs_per_batch: int, max_tokens: int | None = None) -> list[list[int]]:
    """Greedy: consecutive whole articles until `pairs_per_batch` pairs (or `max_tokens` padded
    tokens) would be exceeded; an article larger than the budget is a micro-batch of its own."""
    batches: list[list[int]] = []
    cur: list[int] = []
    n_pairs = longest = 0
    for i, g in enumerate(groups):
        new_longest = max(longest, g.n_tokens)
        over_pairs = n_pairs + len(g.pairs) > pairs_per_batch
        over_tokens = max_tokens is not None and new_longest * (len(cur) + 1) > max_tokens
        if cur and (over_pairs or over_tokens):
            batches.append(cur)
            cur, n_pairs, new_longest = [], 0, g.n_tokens
        cur.append(i)
        n_pairs += len(g.pairs)
        longest = new_longest
    if cur:
        batches.append(cur)
    return batches


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L]
    segment_ids: torch.Tensor  # [B, L]: 0 prompt, j+1 completion j of the row, -1 padding
    pred_index: torch.Tensor  # [T] flat index into B*L of the position predicting each target
    target_ids: torch.Tensor  # [T]
    token_owner: torch.Tensor  # [T] global completion index of each target token
    completion_tokens: torch.Tensor  # [N] tokens per completion
    chosen_index: torch.Tensor  # [P] global completion index of each pair's chosen
    rejected_index: torch.Tensor  # [P]
    rows: list[int] = field(default_factory=list)  # source row of each pair

    @property
    def n_completions(self) -> int:
        return int(self.completion_tokens.numel())

    def to(self, device) -> "PackedBatch":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return PackedBatch(**moved)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "segment_ids": self.segment_ids,
            "pred_index": self.pred_index,
            "target_ids": self.target_ids,
            "token_owner": self.token_owner,
            "completion_tokens": self.completion_tokens,
        }


def pack_groups(groups: Sequence[ArticleGroup], pad_id: int, pad_to_multiple: int = 16) -> PackedBatch:
    """One row per article, right-padded to a common length (a multiple of `pad_to_multiple`)."""
    longest = max(g.n_tokens for g in groups)
    L = -(-longest // pad_to_multiple) * pad_to_multiple
    B = len(groups)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    position_ids = torch.zeros((B, L), dtype=torch.long)
    segment_ids = torch.full((B, L), -1, dtype=torch.long)
    pred, tgt, owner, ntok, chosen, rejected, rows = [], [], [], [], [], [], []
    base = 0  # global index of this row's first completion
    for b, g in enumerate(groups):
        P = len(g.prompt_ids)
        input_ids[b, :P] = torch.tensor(g.prompt_ids)
        position_ids[b, :P] = torch.arange(P)
        segment_ids[b, :P] = 0
        start = P
        for j, comp in enumerate(g.completions):
            c = len(comp)
            input_ids[b, start : start + c] = torch.tensor(comp)
            position_ids[b, start : start + c] = torch.arange(P, P + c)
            segment_ids[b, start : start + c] = j + 1
            # token k of the completion is predicted by the previous token of *its* sequence:
            # the prompt's last position for k = 0, the completion's own k-1 otherwise.
            prev = [P - 1] + list(range(start, start + c - 1))
            pred.extend(b * L + p for p in prev)
            tgt.extend(comp)
            owner.extend([base + j] * c)
            ntok.append(c)
            start += c
        chosen.extend(base + c for c, _ in g.pairs)
        rejected.extend(base + r for _, r in g.pairs)
        rows.extend(g.rows)
        base += len(g.completions)
    t = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
    return PackedBatch(input_ids, position_ids, segment_ids, t(pred), t(tgt), t(owner), t(ntok), t(chosen), t(rejected), rows)
