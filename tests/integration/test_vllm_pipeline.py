"""The whole flow with `policy.backend: vllm`: Prefect, local Ray, vLLM engines in actors of the
worker environment (sampling, and greedy evaluation of base and of the round's LoRA adapter,
served unmerged). Mid-run, the sampling engine's actor is SIGKILLed: only its shard fails, the
task's retry reuses the shards already written and finishes the rest."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from tests.integration._pipeline_config import tiny_config
from tests.integration.vllm_support import cpu_vllm_config

pytestmark = [pytest.mark.integration, pytest.mark.vllm, pytest.mark.usefixtures("prefect_api")]


def kill_sampling_actor_after_first_shard(root, killed: list, stop: threading.Event) -> None:
    """SIGKILL this job's live shard actor once the first sampling shard is on disk."""
    import ray

    while not stop.is_set():
        if list(root.glob("samples/*/shards/shard-*.parquet")) and ray.is_initialized():
            from ray._private import state  # the actor table (pids) without the dashboard

            job = ray.get_runtime_context().get_job_id()
            for info in state.actors().values():
                if (info["State"] == "ALIVE" and "ShardActor" in info["ActorClassName"]
                        and info["JobID"] == job and info["Pid"]):
                    os.kill(info["Pid"], signal.SIGKILL)
                    killed.append(info["Pid"])
                    return
        time.sleep(0.2)


def test_flow_with_vllm_policy_survives_a_killed_engine(prefect_api, tmp_path_factory):
    from flows.full_pipeline import full_pipeline

    root = tmp_path_factory.mktemp("runs")
    policy = cpu_vllm_config(max_model_len=512).model_dump(exclude_defaults=True)
    cfg = tiny_config(root, policy={**policy, "backend": "vllm", "replicas": 1}, sampling={"shard_size": 2})
    assert cfg.policy.backend == "vllm"

    killed, stop = [], threading.Event()
    killer = threading.Thread(target=kill_sampling_actor_after_first_shard, args=(root, killed, stop), daemon=True)
    killer.start()
    try:
        state = full_pipeline(cfg, return_state=True)
    finally:
        stop.set()
        killer.join(timeout=10)
    assert state.is_completed()
    assert killed, "the sampling actor was never killed"

    sdirs = [d for d in (root / "samples").iterdir() if (d / "_SUCCESS").exists()]
    assert len(sdirs) == 1  # the retry finished the artifact the killed attempt started
    sdir = sdirs[0]
    info = json.loads((sdir / "meta.json").read_text())["info"]
    log = [json.loads(x)["shard"] for x in (sdir / "logs" / "executions.jsonl").read_text().splitlines()]
    assert sorted(log) == list(range(info["shards"]))  # every shard written exactly once: none redone
    assert info["shards_reused"] >= 1 and info["shards_reused"] + info["shards_computed"] == info["shards"]
    assert info["backend"]["requests"] > 0
    assert not info["backend"]["errors"]

    import pyarrow.parquet as pq

    samples = [r for f in sorted((sdir / "shards").iterdir()) for r in pq.read_table(f).to_pylist()]
    assert len(samples) == info["rows"] and all(r["summary"] and not r["gen_error"] for r in samples)
    per_article = {}
    for r in samples:
        per_article.setdefault(r["article_id"], set()).add(r["sample_idx"])
    assert all(v == {0, 1, 2} for v in per_article.values())  # n=3 per article

    edir = root.joinpath(state.result()).parent  # the eval artifact that wrote report.md
    report = json.loads((edir / "report.json").read_text())
    assert set(report["models"]) == {"base", "tuned"} and report["n_articles"] >= 1
    spec = report["model_specs"]["tuned"]
    assert spec.startswith("vllm:") and "/adapter" in spec
    for name in ("base", "tuned"):  # greedy summaries from vLLM, the tuned one through the LoRA adapter
        acct = report["accounting"][f"eval {name} generation"]
        assert acct["requests"] == report["n_articles"] and acct["output_tokens"] > 0 and not acct["errors"]
