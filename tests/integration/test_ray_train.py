"""Both DPO trainers through Ray Train's TorchTrainer: 2 CPU workers (gloo), the embedded SmolLM2,
a few steps on pairs built from real CNN/DM articles and their reference highlights.

Checks what the GPU path relies on: every rank trains (world size 2), losses are finite, the
adapter is written once (by rank 0, never copied into Ray's storage), and rank 0's metrics reach
the driver through Ray Train's result (`ray.train.report`), not only through files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from sumpref.config import PackedDPOConfig, TRLDPOConfig
from sumpref.model_paths import resolve_model
from sumpref.prompts import summary_messages

pytestmark = pytest.mark.integration

# Two steps on each of two workers; the smallest batches that still exercise the path (two shared cores).
COMMON = dict(num_workers=2, use_gpu=False, max_steps=2, max_length=192,
              gradient_checkpointing=False, lora_r=4, lora_alpha=8, lora_dropout=0.0, learning_rate=1e-3,
              beta=0.1, logging_steps=1, save_steps=100, target_modules=("q_proj", "v_proj"))


def _pair_rows(shared_data: Path, n_articles: int = 2) -> list[dict]:
    """Per article (first 60 words): highlights beat the bare lead, a longer highlight beats a shorter one."""
    rows = []
    with (shared_data / "cnndm_kaggle_train_sample.jsonl").open() as f:
        for line in f:
            art = json.loads(line)
            lines = [x.strip() for x in str(art["highlights"]).split("\n") if x.strip()]
            if len(lines) < 2:
                continue
            text = " ".join(art["article"].split()[:60])
            prompt = summary_messages(text)
            lead = " ".join(text.split()[:12])
            for chosen, rejected in [(" ".join(lines[:2]), lead), (lines[0], lead)]:
                rows.append({"article_id": art["id"], "prompt": prompt,
                             "chosen": prompt + [{"role": "assistant", "content": chosen}],
                             "rejected": prompt + [{"role": "assistant", "content": rejected}]})
            if len(rows) >= 2 * n_articles:
                break
    return rows


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:  # the workers' CPUs: one each; the Train controller takes none
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def model_path() -> str:
    return resolve_model("embedded:smollm2-135m-instruct")


def _adapters(root: Path) -> list[Path]:
    return sorted(root.rglob("adapter_model.safetensors"))


def test_trl_trainer_on_two_ray_train_workers(local_ray, shared_data, model_path, tmp_path):
    from sumpref.training.ray_train import train_dpo_trl_ray

    rows = _pair_rows(shared_data)
    out = tmp_path / "trl"
    metrics = train_dpo_trl_ray(rows, [], model_path, str(out), TRLDPOConfig(per_device_batch_size=1, **COMMON))

    assert metrics["world_size"] == 2 and metrics["steps"] == 2  # from the driver's Ray Train result
    assert math.isfinite(metrics["train_loss"]) and metrics["loss_finite"] is True
    summary = metrics["summary"]
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert _adapters(out) == [out / "adapter" / "adapter_model.safetensors"]  # once, by rank 0
    assert not (out / "checkpoints").exists()


def test_packed_trainer_on_two_ray_train_workers(local_ray, shared_data, model_path, tmp_path):
    from sumpref.training.ray_train import train_packed_dpo_ray
    from sumpref.training.reference import compute_reference_logps

    src = tmp_path / "pairs.parquet"
    pd.DataFrame(_pair_rows(shared_data)).to_parquet(src, index=False)
    pairs = compute_reference_logps(str(src), model_path, str(tmp_path / "pairs_ref.parquet"), max_length=192,
                                    use_gpu=False, use_ray=False)
    out = tmp_path / "packed"
    metrics = train_packed_dpo_ray(pairs, model_path, str(out), PackedDPOConfig(per_device_batch_size=2, **COMMON))

    assert metrics["world_size"] == 2 and metrics["steps"] == 2  # from the driver's Ray Train result
    assert math.isfinite(metrics["loss"]) and metrics["step"] == 2
    log = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(math.isfinite(r["loss"]) for r in log)  # rank 0 only
    assert log[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)  # fresh adapter: policy == reference
    assert _adapters(out) == [out / "adapter_model.safetensors"]  # once, by rank 0
