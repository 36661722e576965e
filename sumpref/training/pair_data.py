"""Training data of the packed trainer: pairs with reference log-probs, grouped and ordered.

Contract:
- `load_pair_data(pairs_path, tokenizer, max_length) -> PairData`: the parquet written by
  `sumpref.training.reference.compute_reference_logps` (pair rows + `ref_chosen_logp` /
  `ref_rejected_logp`) as article groups; rows without reference log-probs are dropped (counted).
- `epoch_microbatches(groups, cfg, epoch)`: articles shuffled with (seed, epoch), packed greedily
  (`per_device_batch_size` pairs, `max_tokens_per_batch` padded tokens). A pure function of its
  arguments, so a resumed run sees exactly the micro-batches the killed one would have.
- `microbatch_stream(groups, cfg, rank, world)`: endless (epoch, micro-batch); rank r takes every
  world-th micro-batch, so every rank takes the same number per optimizer step.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from itertools import count
from typing import Iterator, Sequence

import torch

from sumpref.config import PackedDPOConfig
from sumpref.training.packing import ArticleGroup, build_groups, make_microbatches
from sumpref.training.reference import REF_COLUMNS


@dataclass
class PairData:
    groups: list[ArticleGroup]
    ref_chosen: torch.Tensor  # indexed by source row
    ref_rejected: torch.Tensor
    dropped: int


def load_pair_data(pairs_path: str, tokenizer, max_length: int) -> PairData:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sumpref import storage

    # A path, or a URI in the store (a Ray Train worker on another node has no copy of the artifact).
    source = pa.BufferReader(storage.read_bytes(pairs_path)) if storage.is_remote(pairs_path) else pairs_path
    df = pq.read_table(source).to_pandas()
    missing = [c for c in REF_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{pairs_path} lacks {missing}: run sumpref.training.reference.compute_reference_logps first "
            "(the packed trainer never runs the reference model)"
        )
    ok = df[list(REF_COLUMNS)].notna().all(axis=1)
    rows = df.to_dict("records")
    groups, dropped = build_groups([r for r, good in zip(rows, ok) if good], tokenizer, max_length)
    kept = df[ok]
    return PairData(
        groups,
        torch.tensor(kept[REF_COLUMNS[0]].to_numpy(), dtype=torch.float64),
        torch.tensor(kept[REF_COLUMNS[1]].to_numpy(), dtype=torch.float64),
        dropped + int((~ok).sum()),
    )


def epoch_microbatches(groups: Sequence[ArticleGroup], cfg: PackedDPOConfig, epoch: int) -> list[list[int]]:
    order = list(range(len(groups)))
    random.Random(cfg.seed * 1_000_003 + epoch).shuffle(order)
    mbs = make_microbatches([groups[i] for i in order], cfg.per_device_batch_size, cfg.max_tokens_per_batch)
    return [[order[i] for i in mb] for mb in mbs]


def microbatch_stream(groups, cfg: PackedDPOConfig, rank: int = 0, world: int = 1) -> Iterator[tuple[int, list[int]]]:
    k = 0
    for epoch in count():
        for mb in epoch_microbatches(groups, cfg, epoch):
            if k % world == rank:
                yield epoch, mb
            k += 1


def total_steps(groups, cfg: PackedDPOConfig, world: int = 1) -> int:
    """Optimizer steps of the run: `max_steps`, or `num_epochs` over this rank's share."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    per_epoch = len(epoch_microbatches(groups, cfg, 0)) / world
    return max(1, math.ceil(cfg.num_epochs * per_epoch / cfg.gradient_accumulation_steps))
