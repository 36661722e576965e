"""Fan shards of rows out to Ray actors, persisting each finished shard atomically.

A shard worker is a small picklable object with `load()` (heavy setup, once per actor) and
`run(rows) -> (out_rows, BackendStats)`. `run_shards` skips shards whose file already exists,
so a run killed midway loses at most the shards in flight. Each execution is appended to
`logs/executions.jsonl` (outside the fingerprint), which makes resumption observable.

Ray: `RAY_ADDRESS` set -> that cluster; unset -> a local one started on first use.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Protocol

from sumpref.artifacts import write_table
from sumpref.backends.base import BackendStats

log = logging.getLogger("sumpref")


class ShardWorker(Protocol):
    def load(self) -> None: ...

    def run(self, rows: list[dict]) -> tuple[list[dict], BackendStats]: ...


def ensure_ray() -> None:
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(address=address, ignore_reinit_error=True, log_to_driver=True)
    if address is None:
        kwargs.update(include_dashboard=False)
    ray.init(**kwargs)


SECRET_ENV = "sumpref_secret_env"  # not a Ray runtime_env field: popped by run_shards


def actor_runtime_env(backend) -> dict | None:
    """What a shard actor running `backend` (a BackendConfig) needs in its Ray runtime_env.

    vLLM lives only in the workers' environment (the backend's `runtime_env`); an HTTP backend's
    key, resolved in the driver, is passed on as an environment variable of its actors only, and
    not through Ray's runtime_env (Ray writes runtime_envs to its logs): `run_shards` hands the
    `SECRET_ENV` entry to the actor's constructor, which sets it before `load()`.
    """
    if backend is None:
        return None
    if backend.backend == "vllm":
        from sumpref.backends.vllm_ray import load_runtime_env

        return load_runtime_env(backend.runtime_env)
    if backend.backend == "openai" and os.environ.get(backend.api_key_env):
        return {SECRET_ENV: {backend.api_key_env: os.environ[backend.api_key_env]}}
    return None


def shard_path(out_dir: Path, i: int) -> Path:
    return out_dir / "shards" / f"shard-{i:05d}.parquet"


def _actor_class():
    import ray

    @ray.remote
    class ShardActor:
        def __init__(self, worker: ShardWorker, secret_env: dict[str, str]):
            os.environ.update(secret_env)
            self.worker = worker
            self.worker.load()

        def run(self, i: int, rows: list[dict]):
            out, stats = self.worker.run(rows)
            return i, out, stats, ray.get_runtime_context().get_node_id()  # node: logged, for multi-node checks

    return ShardActor


def run_shards(out_dir: Path, shards: list[list[dict]], worker: ShardWorker, *, replicas: int = 1,
               num_cpus: float = 1, num_gpus: float = 0, accelerator_type: str | None = None,
               runtime_env: dict | None = None, desc: str = "shards") -> dict:
    """Run `worker` over every shard not yet on disk; return counts and summed backend stats."""
    pending = [i for i in range(len(shards)) if not shard_path(out_dir, i).exists()]
    stats = BackendStats()
    info = {"shards": len(shards), "shards_reused": len(shards) - len(pending), "shards_computed": 0}
    if pending:
        import ray
        from tqdm.auto import tqdm

        ensure_ray()
        opts: dict = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        if accelerator_type:
            opts["accelerator_type"] = accelerator_type
        runtime_env = dict(runtime_env or {})
        secret_env = runtime_env.pop(SECRET_ENV, {})
        if runtime_env:
            opts["runtime_env"] = runtime_env
        actor_cls = _actor_class()
        actors = [actor_cls.options(**opts).remote(worker, secret_env) for _ in range(min(replicas, len(pending)))]
        queue = list(pending)
        in_flight = {}
        for a in actors:
            if queue:
                i = queue.pop(0)
                in_flight[a.run.remote(i, shards[i])] = a
        rows_done, t0, last_log = 0, time.time(), time.time()
        bar = tqdm(total=len(shards), initial=info["shards_reused"], desc=desc, unit="shard")
        try:
            while in_flight:
                done, _ = ray.wait(list(in_flight), num_returns=1)
                actor = in_flight.pop(done[0])
                i, out_rows, shard_stats, node = ray.get(done[0])
                write_table(shard_path(out_dir, i), out_rows)
                _log_execution(out_dir, i, len(out_rows), node)
                stats.add(shard_stats)
                info["shards_computed"] += 1
                rows_done += len(out_rows)
                bar.update(1)
                if time.time() - last_log > 30 or not in_flight:
                    log.info("%s: %d/%d shards done, %d rows this run, %.0fs", desc,
                             info["shards_reused"] + info["shards_computed"], len(shards), rows_done, time.time() - t0)
                    last_log = time.time()
                if queue:
                    j = queue.pop(0)
                    in_flight[actor.run.remote(j, shards[j])] = actor
        finally:
            bar.close()
            for a in actors:
                ray.kill(a)
    info["backend"] = stats.__dict__
    return info


def _log_execution(out_dir: Path, i: int, rows: int, node: str = "") -> None:
    p = out_dir / "logs" / "executions.jsonl"
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        f.write(json.dumps({"shard": i, "rows": rows, "pid": os.getpid(), "node": node, "time": time.time()}) + "\n")


def read_shards(out_dir: Path, n: int) -> list[dict]:
    from sumpref.artifacts import read_table

    rows: list[dict] = []
    for i in range(n):
        rows.extend(read_table(shard_path(out_dir, i)))
    return rows
