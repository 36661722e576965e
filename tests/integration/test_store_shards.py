"""Shards on a remote root are written by the Ray actors straight to a real S3-compatible server
(moto's server mode on 127.0.0.1), never by the driver; a run SIGKILLed midway resumes on another
machine (a fresh local cache) from the shards in the store, after the killed run's lease expires;
and the fingerprints equal a local-root run's."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sumpref import storage
from tests.integration._procs import kill_session
from tests.s3_store import new_bucket, s3_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
N_SHARDS = 6

# One sharded stage on real local Ray: 6 shards of 5 rows, 2 actors.
SCRIPT = """
import json, os, sys
from sumpref.artifacts import run_stage
from sumpref.fanout import read_shards, run_shards
from tests.integration._shard_worker import Doubler
shards = [[{"x": i * 10 + j} for j in range(5)] for i in range(%d)]

def produce(out):
    info = run_shards(out, shards, Doubler(float(os.environ.get("SHARD_DELAY_S", "0"))), replicas=2)
    info["rows"] = len(read_shards(out, len(shards)))  # read back from wherever the shards are
    return info

print("DRIVER %%d" %% os.getpid(), flush=True)
print("REF " + json.dumps(run_stage(sys.argv[1], "demo", {"n": len(shards)}, [], "1", produce).__dict__))
""" % N_SHARDS


def run(root: str, cache: Path, **env_extra: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SUMPREF_KILL_AT")}
    env.update(PYTHONPATH=str(ROOT), SUMPREF_ARTIFACT_CACHE=str(cache), **env_extra)
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, root], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out, _ = proc.communicate(timeout=600)
    kill_session(proc.pid)
    return proc.returncode, out


def ref_of(out: str) -> dict:
    return json.loads(next(x for x in out.splitlines() if x.startswith("REF ")).split(" ", 1)[1])


def driver_pid(out: str) -> int:
    return int(next(x for x in out.splitlines() if x.startswith("DRIVER ")).split()[1])


def executions(uri: str) -> list[dict]:
    return [json.loads(x) for x in storage.read_text(f"{uri}/logs/executions.jsonl").splitlines()]


def staged_shards(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("shard-*.parquet"))


@pytest.fixture(scope="module")
def s3():
    with s3_server() as env:
        yield env


@pytest.fixture(scope="module")
def local_fingerprint(tmp_path_factory):
    """The same stage on a local root, where the driver writes the shards (the behaviour before)."""
    tmp = tmp_path_factory.mktemp("local")
    rc, out = run(str(tmp / "runs"), tmp / "cache")
    assert rc == 0, out[-3000:]
    ref = ref_of(out)
    log = Path(storage.local_path(ref["uri"])) / "logs" / "executions.jsonl"
    assert {json.loads(x)["written_by"] for x in log.read_text().splitlines()} == {"driver"}
    return ref["fingerprint"]


def test_actors_write_shards_straight_to_the_store(s3, local_fingerprint, tmp_path, monkeypatch):
    from sumpref.artifacts import load_ref
    from sumpref.fanout import read_shards

    root, cache = f"{new_bucket()}/runs", tmp_path / "machine-a"
    rc, out = run(root, cache)
    assert rc == 0, out[-3000:]
    ref = ref_of(out)
    assert sorted(storage.list_files(f"{ref['uri']}/shards")) == [f"shard-{i:05d}.parquet" for i in range(N_SHARDS)]
    assert storage.list_files(f"{ref['uri']}/logs/stats") == [f"shard-{i:05d}.json" for i in range(N_SHARDS)]  # accounting
    assert staged_shards(cache) == []  # no shard ever passed through the driver's staging folder
    log = executions(ref["uri"])
    assert sorted(e["shard"] for e in log) == list(range(N_SHARDS))
    assert all(e["written_by"] == "actor" and e["worker_pid"] != driver_pid(out) for e in log), log
    assert ref["fingerprint"] == local_fingerprint and ref["rows"] == N_SHARDS * 5
    assert "_LOCK" not in storage.list_files(ref["uri"])  # the lease was released

    monkeypatch.setenv("SUMPREF_ARTIFACT_CACHE", str(tmp_path / "reader"))  # a downstream reader elsewhere
    rows = read_shards(load_ref(ref["uri"]).path, N_SHARDS)  # the finished folder is downloaded on first use
    assert [r["y"] for r in rows] == [2 * (i * 10 + j) for i in range(N_SHARDS) for j in range(5)]
    assert {r["code"] for r in rows} == {str(ROOT / "sumpref")}  # the actors ran this worktree's code


def test_killed_run_resumes_from_store_shards_on_another_machine(s3, local_fingerprint, tmp_path):
    root = f"{new_bucket()}/runs"
    rc, out = run(root, tmp_path / "machine-a", SUMPREF_KILL_AT="demo:file:2", SHARD_DELAY_S="1",
                  SUMPREF_LEASE_TTL_S="3")
    assert rc == -signal.SIGKILL and "SIGKILL at demo:file:2" in out, out[-3000:]
    key = storage.list_files(f"{root}/demo")[0].split("/")[0]
    uri = f"{root}/demo/{key}"
    names = storage.list_files(uri)
    assert "_SUCCESS" not in names and "meta.json" not in names and "_LOCK" in names  # the killed owner's lease
    done_before = sorted(int(n[len("shards/shard-"):-len(".parquet")]) for n in names if n.startswith("shards/"))
    assert 2 <= len(done_before) < N_SHARDS
    n_logged = len(executions(uri))
    assert n_logged >= 2  # the log reached the store shard by shard

    rc, out = run(root, tmp_path / "machine-b")  # another machine: nothing local, the stale lease expires
    assert rc == 0, out[-3000:]
    assert "took over a stale lease" in out
    rerun = executions(uri)[n_logged:]
    assert sorted(e["shard"] for e in rerun) == sorted(set(range(N_SHARDS)) - set(done_before))
    meta = json.loads(storage.read_text(f"{uri}/meta.json"))
    assert meta["info"]["shards_reused"] == len(done_before) and meta["info"]["shards_computed"] == len(rerun)
    assert "shards_without_stats" not in meta["info"]  # the killed run's records came from the store too
    assert ref_of(out)["fingerprint"] == local_fingerprint
    assert "_LOCK" not in storage.list_files(uri)
