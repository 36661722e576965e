"""Reference log-probabilities as their own stage, computed once with the frozen reference model.

Columns in (pairs parquet): `article_id`, `prompt` (chat messages of the user turn), `chosen`,
`rejected` (full chat message lists: user turn + assistant turn), plus any others.
Columns out: the same rows, in the same order, plus `ref_chosen_logp` and `ref_rejected_logp`
(summed log-probabilities of the assistant turn's tokens under the reference model).

Shared-prompt packing applies here too: each article's prompt is run once for all its distinct
summaries. With `num_replicas > 1` (or `use_ray=True`) the articles are split into shards and
fanned out over Ray actors, one per GPU/replica (a local Ray cluster when RAY_ADDRESS is unset).
Training then never runs the reference model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from sumpref.training.packed_logprobs import PackedLogProbs
from sumpref.training.packing import ArticleGroup, build_groups, make_microbatches, pack_groups

REF_COLUMNS = ("ref_chosen_logp", "ref_rejected_logp")


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_reference_model(model_path: str, device: torch.device, dtype: str = "auto"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=_dtype(dtype, device), attn_implementation="sdpa")
    model.to(device).eval().requires_grad_(False)
    return model, AutoTokenizer.from_pretrained(model_path)


@torch.no_grad()
def reference_logps(
    model, groups: Sequence[ArticleGroup], pad_id: int, pairs_per_batch: int = 16, max_tokens: int | None = None
) -> dict[int, tuple[float, float]]:
    """{source row: (chosen logp, rejected logp)} for every pair of `groups` (no gradients)."""
    device = next(model.parameters()).device
    scorer = PackedLogProbs(model)
    order = sorted(range(len(groups)), key=lambda i: groups[i].n_tokens)  # less padding per batch
    sorted_groups = [groups[i] for i in order]
    out: dict[int, tuple[float, float]] = {}
    for mb in make_microbatches(sorted_groups, pairs_per_batch, max_tokens):
        batch = pack_groups([sorted_groups[i] for i in mb], pad_id).to(device)
        logps = scorer(**batch.model_inputs()).double().cpu()
        for row, c, r in zip(batch.rows, batch.chosen_index.tolist(), batch.rejected_index.tolist()):
            out[row] = (float(logps[c]), float(logps[r]))
    return out


def _score_rows(rows: list[dict], model_path: str, max_length: int, pairs_per_batch: int, dtype: str, device: str):
    dev = torch.device(device)
    model, tok = load_reference_model(model_path, dev, dtype)
    groups, _ = build_groups(rows, tok, max_length)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return reference_logps(model, groups, pad, pairs_per_batch)


def _shards(rows: list[dict], n: int) -> list[list[int]]:
    # Whole articles per shard, so every shard still shares its prompts.
    articles: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        articles.setdefault(str(r["article_id"]), []).append(i)
    shards: list[list[int]] = [[] for _ in range(n)]
    for k, idx in enumerate(articles.values()):
        shards[k % n].extend(idx)
    return [s for s in shards if s]


def _score_with_ray(rows, model_path, max_length, pairs_per_batch, dtype, num_replicas, use_gpu):
    import ray

    from sumpref.fanout import ensure_ray, release_idle_actors

    ensure_ray()

    release_idle_actors()  # idle shard actors would hold the resources the scorers need

    @ray.remote(num_gpus=1 if use_gpu else 0, num_cpus=1)
    class RefScorer:
        def score(self, shard_rows):
            return _score_rows(shard_rows, model_path, max_length, pairs_per_batch, dtype, "cuda" if use_gpu else "cpu")

    shards = _shards(rows, num_replicas)
    actors = [RefScorer.remote() for _ in shards]
    results = ray.get([a.score.remote([rows[i] for i in s]) for a, s in zip(actors, shards)])
    for a in actors:
        ray.kill(a)
    out = {}
    for shard, res in zip(shards, results):
        out.update({shard[local]: v for local, v in res.items()})  # shard-local row -> global row
    return out


def compute_reference_logps(
    pairs_path: str,
    model_path: str,
    output_path: str,
    *,
    max_length: int = 4096,
    pairs_per_batch: int = 16,
    dtype: str = "auto",
    num_replicas: int = 1,
    use_gpu: bool | None = None,
    use_ray: bool | None = None,
) -> str:
    """Write `output_path` (parquet): the rows of `pairs_path` plus the reference columns.

    Rows the reference cannot score (prompt longer than `max_length`) get NaN, which the
    trainer drops and counts. `use_ray` defaults to `num_replicas > 1`.
    """
    import pandas as pd

    df = pd.read_parquet(pairs_path)
    rows = df.to_dict("records")
    use_gpu = torch.cuda.is_available() if use_gpu is None else use_gpu
    if use_ray if use_ray is not None else num_replicas > 1:
        scores = _score_with_ray(rows, model_path, max_length, pairs_per_batch, dtype, num_replicas, use_gpu)
    else:
        scores = _score_rows(rows, model_path, max_length, pairs_per_batch, dtype, "cuda" if use_gpu else "cpu")
    nan = (float("nan"), float("nan"))
    df[REF_COLUMNS[0]] = [scores.get(i, nan)[0] for i in range(len(rows))]
    df[REF_COLUMNS[1]] = [scores.get(i, nan)[1] for i in range(len(rows))]
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{output_path}.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, output_path)  # a reader never sees a half-written file
    return output_path
