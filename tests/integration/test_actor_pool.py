"""Shard actors outlive their stage on a local Ray (`sumpref.fanout`): the next `run_shards` call
loads its worker into the same processes; an idle actor that died is replaced; a failed call
leaves no actor behind; idle actors give their CPUs back to reference scoring and Ray Train."""

from __future__ import annotations

import json
import os
import signal

import pytest

from sumpref import fanout
from tests.integration._shard_worker import Doubler, Failing

pytestmark = pytest.mark.integration


def shards(k: int) -> list[list[dict]]:
    return [[{"x": i * 10 + j} for j in range(3)] for i in range(k)]


def worker_pids(out) -> set[int]:
    return {json.loads(x)["worker_pid"] for x in (out / "logs" / "executions.jsonl").read_text().splitlines()}


@pytest.fixture(scope="module")
def local_ray():
    import ray

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_ADDRESS", raising=False)  # pooling is for the local Ray this driver starts
        ray.init(num_cpus=2, include_dashboard=False)
        yield ray
        ray.shutdown()


def test_next_stage_runs_in_the_same_actors_and_a_dead_idle_actor_is_replaced(local_ray, tmp_path):
    first = fanout.run_shards(tmp_path / "a", shards(4), Doubler(), replicas=2)
    assert first["shards_computed"] == 4
    pids_a = worker_pids(tmp_path / "a")
    assert len(pids_a) == 2

    fanout.run_shards(tmp_path / "b", shards(4), Doubler(), replicas=2)
    assert worker_pids(tmp_path / "b") == pids_a  # no new processes for the second stage

    dead = sorted(pids_a)[0]
    os.kill(dead, signal.SIGKILL)  # dies while idle, between stages
    third = fanout.run_shards(tmp_path / "c", shards(4), Doubler(), replicas=2)
    assert third["shards_computed"] == 4
    pids_c = worker_pids(tmp_path / "c")
    assert dead not in pids_c and len(pids_c) == 2 and sorted(pids_a)[1] in pids_c


def test_a_failed_call_kills_its_actors(local_ray, tmp_path):
    fanout.run_shards(tmp_path / "ok", shards(2), Doubler(), replicas=2)
    with pytest.raises(Exception, match="shard failed on purpose"):
        fanout.run_shards(tmp_path / "bad", shards(2), Failing(), replicas=2)
    assert not any(fanout._POOL["actors"].values())  # nothing idle is kept from a failed call
    again = fanout.run_shards(tmp_path / "again", shards(2), Doubler(), replicas=2)
    assert again["shards_computed"] == 2


def test_idle_actors_give_their_cpus_back(local_ray, tmp_path):
    ray = local_ray
    fanout.run_shards(tmp_path / "s", shards(2), Doubler(), replicas=2)
    assert fanout._POOL["actors"]  # two idle actors hold both CPUs of this 2-CPU Ray
    fanout.release_idle_actors()

    @ray.remote(num_cpus=2)
    def both_cpus() -> int:
        return 1

    assert ray.get(both_cpus.remote(), timeout=120) == 1
