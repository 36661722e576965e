"""Fan shards of rows out to Ray actors, persisting each finished shard atomically.

A shard worker is a small picklable object with `load()` (heavy setup, once per actor and stage) and
`run(rows) -> (out_rows, BackendStats)`. Actors outlive their stage on a local Ray (see `_POOL`):
the next stage loads its worker into the same processes. `run_shards` skips shards whose file already exists,
so a run killed midway loses at most the shards in flight. Each execution is appended to
`logs/executions.jsonl` (outside the fingerprint: shard, rows, driver pid, actor node and pid,
who wrote the file), which makes resumption observable.

Accounting belongs to the kept shards, not to the attempt that finishes the stage: each shard's
backend stats (tokens, requests, retries, GPU seconds, cost, errors) are written to
`logs/stats/shard-NNNNN.json` just before the shard itself (outside the fingerprint: they hold
timings), and `run_shards` returns their sum over all shards, whichever attempt wrote each. So a
resumed stage's `backend` equals an uninterrupted one's (up to timings); a record without its
shard (killed in between) is overwritten when the shard is computed again.

Where a shard goes: on a local root the actor returns its rows and the driver writes
`shards/shard-NNNNN.parquet`. On a remote root (`out_dir` is a stage's staging folder, see
`artifacts.store_location`) the actor writes its stats record and then its shard straight to the
store (one PUT each: visible whole or not at all) and returns only counts, stats and its node, so
output rows never pass through the driver; which shards are done is read from the store. A shard's input is either its
rows, or a `RowSlice` (rows `index` of an upstream parquet file in the store) that the actor reads
itself: the stages pass slices where the input is an upstream file's rows unchanged (articles), and
rows where the driver joins inputs (summaries with their questions).

Ray: `RAY_ADDRESS` set -> that cluster; unset -> a local one started on first use.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from sumpref import faults, storage
from sumpref.artifacts import encode_table, mirror_file, read_table, store_location, write_table
from sumpref.backends.base import BackendStats

log = logging.getLogger("sumpref")

SHARDS = "shards"  # the folder of a sharded stage's files


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


@dataclass(frozen=True)
class RowSlice:
    """A shard's input by reference: rows `index` (in order) of the parquet file `uri`."""

    uri: str
    index: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.index)


def _input_rows(shard: list[dict] | RowSlice, tables: dict) -> list[dict]:
    """The rows of a shard's input; a slice's file is read once per actor (`tables` caches it)."""
    if not isinstance(shard, RowSlice):
        return shard
    if shard.uri not in tables:
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables[shard.uri] = pq.read_table(pa.BufferReader(storage.read_bytes(shard.uri)))
    return tables[shard.uri].take(list(shard.index)).to_pylist()


def shard_path(out_dir: Path, i: int) -> Path:
    return out_dir / SHARDS / f"shard-{i:05d}.parquet"


def stats_path(out_dir: Path, i: int) -> Path:
    """Where shard `i`'s backend stats are recorded (in `logs/`: not fingerprinted, they hold timings)."""
    return out_dir / "logs" / "stats" / f"shard-{i:05d}.json"


def encode_stats(stats: BackendStats) -> bytes:
    return json.dumps(asdict(stats), sort_keys=True).encode()


def write_shard(out_dir: Path, i: int, rows: list[dict], stats: BackendStats) -> None:
    """Shard `i` on a local root (the driver writes it): its stats record first, then its rows, so a
    shard file never exists without the stats of the execution that wrote it."""
    storage.write_bytes(str(stats_path(out_dir, i)), encode_stats(stats))  # no fault point: not a data file
    write_table(shard_path(out_dir, i), rows)


def kept_stats(out_dir: Path, n: int) -> tuple[BackendStats, int]:
    """The summed stats records of shards 0..n-1, and how many shards have none (written before
    records existed, or by hand)."""
    total, missing = BackendStats(), 0
    for i in range(n):
        p = stats_path(out_dir, i)
        if not p.exists():
            missing += 1
            continue
        total.add(BackendStats(**json.loads(p.read_bytes())))
    return total, missing


def _shard_location(out_dir: Path, i: int) -> str | Path:
    """Where shard `i` lives: its URI in the store (remote root) or its local path."""
    return store_location(shard_path(out_dir, i)) or shard_path(out_dir, i)


def _done_shards(out_dir: Path, n: int) -> set[int]:
    """The shards already written: listed in the store (remote root) or found on disk."""
    remote = store_location(out_dir / SHARDS)
    if remote is None:
        return {i for i in range(n) if shard_path(out_dir, i).exists()}
    have = set(storage.list_files(remote))
    return {i for i in range(n) if shard_path(out_dir, i).name in have}


def _actor_class():
    import ray

    @ray.remote
    class ShardActor:
        def __init__(self, secret_env: dict[str, str]):
            os.environ.update(secret_env)
            self.worker: ShardWorker | None = None
            self.tables: dict = {}  # upstream files read for `RowSlice` inputs

        def setup(self, worker: ShardWorker) -> None:
            """Load `worker` (a pooled actor gets the next stage's worker here)."""
            self.worker, self.tables = None, {}  # drop the previous stage's worker (and its model) first
            worker.load()
            self.worker = worker

        def run(self, i: int, shard: list[dict] | RowSlice, dest: tuple[str, str] | None):
            """Run one shard; write its stats record and then its rows to `dest` (store URIs) and
            return no rows, or return the rows."""
            out, stats = self.worker.run(_input_rows(shard, self.tables))
            done = {"shard": i, "rows": len(out), "stats": stats, "pid": os.getpid(),
                    "node": ray.get_runtime_context().get_node_id()}  # node: logged, for multi-node checks
            if dest is None:
                return {**done, "out": out}
            shard_uri, stats_uri = dest
            storage.write_bytes(stats_uri, encode_stats(stats))
            storage.write_bytes(shard_uri, encode_table(out))
            return {**done, "out": None}

    return ShardActor


# Idle shard actors kept between `run_shards` calls of this driver, by resource shape: the next
# stage's workers load into processes that have already imported torch and, for the same model,
# loaded its weights (`sumpref.backends.loaded_backend`). Idle actors hold their CPUs/GPUs, so
# a call for another shape, reference scoring and Ray Train release them first
# (`release_idle_actors`). Pooled only on the local Ray this driver started: on a shared cluster
# (`RAY_ADDRESS`) idle actors would hold resources other jobs wait for. Actors with a runtime_env
# (vLLM's worker environment) or a secret are never pooled: one engine per actor, no key left in
# a process that outlives its stage.
_POOL: dict = {"cluster": None, "actors": {}}


def _cluster_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def release_idle_actors(keep: tuple | None = None) -> None:
    """Kill the idle pooled shard actors (all, or all but those of shape `keep`)."""
    import ray

    cluster = _cluster_id()
    if _POOL["cluster"] != cluster:  # handles of an earlier Ray session went with it
        _POOL.update(cluster=cluster, actors={})
    for key in [k for k in _POOL["actors"] if k != keep]:
        for a in _POOL["actors"].pop(key):
            ray.kill(a)


def _start_actors(key: tuple | None, n: int, opts: dict, secret_env: dict, worker: ShardWorker) -> list:
    """`n` actors of shape `key` with `worker` loaded: idle pooled ones first, new ones for the rest.

    An idle actor that died meanwhile (its node lost, say) is replaced; a worker that fails to
    load raises here, before any shard is sent."""
    import ray
    from ray.exceptions import RayActorError

    release_idle_actors(keep=key)
    idle = _POOL["actors"].pop(key, []) if key is not None else []
    for a in idle[n:]:
        ray.kill(a)
    cls = _actor_class()
    idle = idle[:n]
    actors = idle + [cls.options(**opts).remote(secret_env) for _ in range(n - len(idle))]
    try:
        ready = [a.setup.remote(worker) for a in actors]
        for k, ref in enumerate(ready):
            try:
                ray.get(ref)
            except RayActorError:
                if k >= len(idle):
                    raise
                actors[k] = cls.options(**opts).remote(secret_env)  # a pooled actor died while idle
                ray.get(actors[k].setup.remote(worker))
    except BaseException:
        for a in actors:
            ray.kill(a)
        raise
    return actors


def run_shards(out_dir: Path, shards: list[list[dict] | RowSlice], worker: ShardWorker, *, replicas: int = 1,
               num_cpus: float = 1, num_gpus: float = 0, accelerator_type: str | None = None,
               runtime_env: dict | None = None, desc: str = "shards") -> dict:
    """Run `worker` over every shard not yet written; return counts and the backend stats summed over
    every shard's record (`backend`), those of shards an earlier attempt wrote included."""
    done_before = _done_shards(out_dir, len(shards))
    pending = [i for i in range(len(shards)) if i not in done_before]
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
        pooled = not (runtime_env or secret_env or os.environ.get("RAY_ADDRESS"))
        key = tuple(sorted(opts.items())) if pooled else None
        actors = _start_actors(key, min(replicas, len(pending)), opts, secret_env, worker)
        queue = list(pending)
        in_flight = {}
        dest = {i: _store_dest(out_dir, i) for i in pending}  # None: the driver writes
        for a in actors:
            if queue:
                i = queue.pop(0)
                in_flight[a.run.remote(i, shards[i], dest[i])] = a
        rows_done, t0, last_log = 0, time.time(), time.time()
        bar = tqdm(total=len(shards), initial=info["shards_reused"], desc=desc, unit="shard")
        try:
            while in_flight:
                done, _ = ray.wait(list(in_flight), num_returns=1)
                actor = in_flight.pop(done[0])
                res = ray.get(done[0])
                if res["out"] is not None:
                    write_shard(out_dir, res["shard"], res["out"], res["stats"])
                else:  # the actor wrote both to the store; the staging copy of the record keeps logs/ in step
                    storage.write_bytes(str(stats_path(out_dir, res["shard"])), encode_stats(res["stats"]))
                _log_execution(out_dir, res)
                if res["out"] is None:
                    faults.point("file")  # the actor wrote the shard: the same fault point as the driver's write
                info["shards_computed"] += 1
                rows_done += res["rows"]
                bar.update(1)
                if time.time() - last_log > 30 or not in_flight:
                    log.info("%s: %d/%d shards done, %d rows this run, %.0fs", desc,
                             info["shards_reused"] + info["shards_computed"], len(shards), rows_done, time.time() - t0)
                    last_log = time.time()
                if queue:
                    j = queue.pop(0)
                    in_flight[actor.run.remote(j, shards[j], dest[j])] = actor
        except BaseException:
            for a in actors:  # a failed or killed shard: no actor of this call is reused
                ray.kill(a)
            raise
        finally:
            bar.close()
        if key is None:
            for a in actors:
                ray.kill(a)
        else:
            _POOL["actors"][key] = actors
    stats, missing = kept_stats(out_dir, len(shards))
    if missing:
        log.warning("%s: %d of %d shards have no stats record; their tokens are not counted", desc, missing, len(shards))
        info["shards_without_stats"] = missing
    info["backend"] = asdict(stats)
    return info


def _store_dest(out_dir: Path, i: int) -> tuple[str, str] | None:
    """Where an actor writes shard `i` and its stats record in the store (remote root), or None."""
    shard_uri = store_location(shard_path(out_dir, i))
    return None if shard_uri is None else (shard_uri, store_location(stats_path(out_dir, i)))


def _log_execution(out_dir: Path, res: dict) -> None:
    """Append one shard execution to `logs/executions.jsonl` (and put the log in the store at once)."""
    p = out_dir / "logs" / "executions.jsonl"
    p.parent.mkdir(parents=True, exist_ok=True)
    entry = {"shard": res["shard"], "rows": res["rows"], "pid": os.getpid(), "node": res["node"],
             "worker_pid": res["pid"], "written_by": "driver" if res["out"] is not None else "actor", "time": time.time()}
    with open(p, "a") as f:
        f.write(json.dumps(entry) + "\n")
    mirror_file(p)


def read_shards(out_dir: Path, n: int, columns: list[str] | None = None) -> list[dict]:
    """The rows of shards 0..n-1 of `out_dir` (from the store while a remote stage produces)."""
    rows: list[dict] = []
    for i in range(n):
        rows.extend(read_table(_shard_location(out_dir, i), columns=columns))
    return rows
