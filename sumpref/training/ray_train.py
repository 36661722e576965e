"""Both DPO trainers on Ray Train workers (`TorchTrainer`, one worker per GPU or gloo on CPU).

Contract:
- `train_packed_dpo_ray(pairs_path, model_path, output_dir, cfg) -> metrics`: the packed loop
  (`sumpref.training.packed_dpo`) on `cfg.num_workers` workers; DDP, or DeepSpeed ZeRO with
  `cfg.deepspeed`. Rank 0 writes `output_dir` (shared storage on a multi-node cluster).
- `train_dpo_trl_ray(train, valid, model_path, output_dir, cfg) -> metrics`: TRL's DPOTrainer
  (`sumpref.training.trl_dpo`) on the workers; Hugging Face's Trainer joins the process group
  Ray Train set up. `train`/`valid`: rows, or the path or URI of a parquet file.
Data paths may be store URIs (remote root): each worker reads them from the store, not from the
driver's disk. When `output_dir` is a remote stage's staging folder, the workers mirror what they
write through `sumpref.artifacts` (checkpoints included) to the stage's folder in the store.
Both return rank 0's metrics as Ray Train hands them to the driver (`Result.metrics`), plus the
rank-0 summary read from `metrics.json`. A local Ray cluster is started when RAY_ADDRESS is unset.

This module imports the loops; the loops never import it (no import cycle).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from sumpref.config import PackedDPOConfig, TRLDPOConfig


def _scalars(metrics: dict) -> dict:
    flat = {**metrics, **metrics.get("last", {})}
    return {k: v for k, v in flat.items() if isinstance(v, (int, float, str, bool))}


def report_to_driver(metrics: dict) -> None:
    """Hand rank 0's metrics to the driver; every rank must call this once (it is a barrier).

    Ray Train 2.60 (v2) keeps only the metrics attached to a checkpoint (`Result.metrics` is the
    latest checkpoint's), so rank 0 reports a checkpoint holding just `metrics.json`: the adapter
    is written once, by the trainer, and never copied into Ray's storage.
    """
    import ray.train

    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report({}, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as d:
        Path(d, "metrics.json").write_text(json.dumps(metrics, default=str))
        ray.train.report(_scalars(metrics), checkpoint=ray.train.Checkpoint.from_directory(d))


def _set_local_device(use_gpu: bool) -> None:
    import os

    import ray.train
    import torch

    local = ray.train.get_context().get_local_rank()
    os.environ["LOCAL_RANK"] = str(local)  # read by the packed trainer to pick its GPU
    if use_gpu and torch.cuda.is_available():
        torch.cuda.set_device(local)


def _mirror(config: dict):
    """In a worker: mirror `output_dir` to the store as the driver would (`artifacts.mirrored`)."""
    from contextlib import nullcontext

    from sumpref.artifacts import mirrored

    uri = config.get("output_uri")
    return mirrored(Path(config["output_dir"]), uri) if uri else nullcontext()


def _packed_worker(config: dict) -> None:
    from sumpref.training.packed_dpo import train_packed_dpo

    cfg: PackedDPOConfig = config["cfg"]
    _set_local_device(cfg.use_gpu)
    with _mirror(config):
        metrics = train_packed_dpo(config["pairs_path"], config["model_path"], config["output_dir"], cfg,
                                   valid_path=config.get("valid_path"))
    report_to_driver(metrics)


def rows_of(data: list[dict] | str) -> list[dict]:
    """Rows given as rows, or read from a parquet path or store URI."""
    from sumpref.artifacts import read_table

    return read_table(data) if isinstance(data, str) else data


def _trl_worker(config: dict) -> None:
    from sumpref.training.trl_dpo import train_dpo_trl

    cfg: TRLDPOConfig = config["cfg"]
    _set_local_device(cfg.use_gpu)
    with _mirror(config):
        metrics = train_dpo_trl(rows_of(config["train"]), rows_of(config["valid"]), config["model_path"],
                                config["output_dir"], cfg)
    report_to_driver({k: v for k, v in metrics.items() if k != "log_history"})


def _fit(loop, loop_config: dict, cfg, output_dir: Path, name: str) -> dict:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from sumpref.artifacts import read_staged, store_location
    from sumpref.fanout import ensure_ray, release_idle_actors

    ensure_ray()
    release_idle_actors()  # idle shard actors would hold the CPUs/GPUs the training workers need
    loop_config = {**loop_config, "output_uri": store_location(output_dir)}
    trainer = TorchTrainer(
        loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu),
        run_config=RunConfig(name=name, storage_path=str(output_dir / "ray_train")),
    )
    result = trainer.fit()
    metrics = dict(result.metrics or {})
    try:  # rank 0 may have run on another node: then the summary is in the store (remote root) or missing
        metrics["summary"] = json.loads(read_staged(output_dir / "metrics.json"))
    except FileNotFoundError:
        pass
    return metrics


def train_packed_dpo_ray(pairs_path: str, model_path: str, output_dir: str, cfg: PackedDPOConfig,
                         valid_path: str | None = None) -> dict:
    out = Path(output_dir).resolve()
    config = {"pairs_path": _absolute(pairs_path), "model_path": model_path, "output_dir": str(out), "cfg": cfg,
              "valid_path": _absolute(valid_path) if valid_path else None}
    return _fit(_packed_worker, config, cfg, out, "packed_dpo")


def _absolute(path: str) -> str:
    """A local path made absolute (workers do not share the driver's working folder); URIs as they are."""
    from sumpref import storage

    return path if storage.is_remote(path) else str(Path(path).resolve())


def train_dpo_trl_ray(train: list[dict] | str, valid: list[dict] | str, model_path: str, output_dir: str,
                      cfg: TRLDPOConfig) -> dict:
    out = Path(output_dir).resolve()
    config = {"train": train, "valid": valid, "model_path": model_path, "output_dir": str(out), "cfg": cfg}
    return _fit(_trl_worker, config, cfg, out, "trl_dpo")
