"""Ray Train on a remote root (a real S3-compatible server, moto's server mode on 127.0.0.1): the
training worker reads the pairs with reference log-probs from their URI in the store (the driver
has no copy), and each complete checkpoint reaches the store at once, marker last; rank 0 puts the finished adapter
there itself (it may run on a node without the driver's disk)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from sumpref import storage
from sumpref.config import PackedDPOConfig
from sumpref.model_paths import resolve_model
from sumpref.prompts import summary_messages
from tests.s3_store import new_bucket, s3_server

pytestmark = pytest.mark.integration


def pair_rows(shared_data: Path, n: int = 4) -> list[dict]:
    rows = []
    with (shared_data / "cnndm_kaggle_train_sample.jsonl").open() as f:
        for line in f:
            art = json.loads(line)
            text = " ".join(art["article"].split()[:60])
            prompt = summary_messages(text)
            chosen, rejected = " ".join(str(art["highlights"]).split()[:30]), " ".join(text.split()[:12])
            rows.append({"article_id": art["id"], "prompt": prompt, "chosen": prompt + [{"role": "assistant", "content": chosen}],
                         "rejected": prompt + [{"role": "assistant", "content": rejected}]})
            if len(rows) >= n:
                return rows
    return rows


def test_ray_train_worker_reads_pairs_from_the_store_and_checkpoints_to_it(shared_data, tmp_path):
    import ray

    from sumpref.artifacts import mirrored
    from sumpref.training.ray_train import train_packed_dpo_ray
    from sumpref.training.reference import compute_reference_logps

    model = resolve_model("embedded:smollm2-135m-instruct")
    src = tmp_path / "pairs.parquet"
    pd.DataFrame(pair_rows(shared_data)).to_parquet(src, index=False)
    local = Path(compute_reference_logps(str(src), model, str(tmp_path / "ref.parquet"), max_length=160,
                                         use_gpu=False, use_ray=False))
    with s3_server():
        stage = f"{new_bucket()}/runs/dpo/k"
        pairs_uri = f"{stage}-refprobs/train.parquet"
        storage.upload_file(local, pairs_uri)
        local.unlink()  # the only copy is in the store
        staging = tmp_path / "staging"
        cfg = PackedDPOConfig(num_workers=1, use_gpu=False, max_steps=4, save_steps=2, logging_steps=1, max_length=160,
                              per_device_batch_size=2, gradient_checkpointing=False, lora_r=4, lora_alpha=8,
                              lora_dropout=0.0, learning_rate=1e-3, target_modules=("q_proj", "v_proj"))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # after the server: workers get its env
        try:
            with mirrored(staging, stage):
                metrics = train_packed_dpo_ray(pairs_uri, model, str(staging / "adapter"), cfg)
        finally:
            ray.shutdown()
        assert metrics["steps"] == 4 and math.isfinite(metrics["loss"])
        names = storage.list_files(f"{stage}/adapter/checkpoints")
        assert "step-2/COMPLETE" in names and "step-2/training_state.pt" in names, names
        assert any(n.startswith("step-2/adapter/") for n in names), names
        final = storage.list_files(f"{stage}/adapter")  # uploaded by the worker (rank 0), not at the stage's end
        assert {"adapter_model.safetensors", "adapter_config.json", "metrics.json"} <= set(final), final
        assert json.loads(storage.read_text(f"{stage}/adapter/metrics.json"))["steps"] == 4
