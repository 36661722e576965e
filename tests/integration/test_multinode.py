"""A real two-node Ray cluster on 127.0.0.1 (a head and a second node started with `ray start`,
one CPU each): the pipeline, submitted with `RAY_ADDRESS`, runs shards on both nodes; killing the
second node mid-stage costs only its shards in flight, and the final artifacts equal an
uninterrupted run's."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration._procs import kill_session

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from pathlib import Path
from tests.integration._pipeline_config import run_stages, tiny_config
cfg = tiny_config(Path(sys.argv[1]), data={"num_articles": 10, "eval_fraction": 0.2}, sampling={"shard_size": 1},
                  policy={"replicas": 2, "num_cpus": 1})
refs = run_stages(cfg, through="samples")
print("FINGERPRINTS " + json.dumps({stage: ref.fingerprint for stage, ref in refs.items()}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(ROOT))
    return env


class Node:
    """`ray start --block` in its own session, so the test can SIGKILL exactly this node."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-gpus=0",
                                      "--disable-usage-stats", *args], env=ray_env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        kill_session(self.proc.pid)  # the raylet, its workers and agents left the group but not the session
        self.proc.wait(timeout=60)


def wait_nodes(address: str, n: int) -> list[str]:
    code = ("import ray, time, sys\nray.init(address=sys.argv[1])\n"
            f"for _ in range(300):\n    alive = [x['NodeID'] for x in ray.nodes() if x['Alive']]\n"
            f"    if len(alive) >= {n}: print('NODES', ' '.join(alive)); break\n    time.sleep(0.5)\n")
    out = subprocess.run([sys.executable, "-c", code, address], env=ray_env(), capture_output=True, text=True, timeout=300)
    line = next((x for x in out.stdout.splitlines() if x.startswith("NODES")), None)
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    return line.split()[1:]


@pytest.fixture
def cluster(tmp_path):
    ray_dir = tempfile.mkdtemp(prefix="rm-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    address = f"127.0.0.1:{port}"
    # Ray rewrites a 127.0.0.1 bootstrap address into this machine's node IP for its clients, so the
    # nodes keep their default node IP (the same machine) rather than pinning 127.0.0.1.
    head = Node("--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                f"--temp-dir={ray_dir}", f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}")
    nodes = {"head": head}
    wait_nodes(address, 1)

    def add_worker() -> Node:
        nodes[f"worker{len(nodes)}"] = w = Node(f"--address={address}", "--num-cpus=1")
        return w

    yield address, add_worker
    for node in reversed(list(nodes.values())):
        if node.proc.poll() is None:
            node.kill()
    shutil.rmtree(ray_dir, ignore_errors=True)


def pipeline(root: Path, address: str, wait_shards: int | None = None, on_shards=None) -> dict | None:
    env = {**ray_env(), "RAY_ADDRESS": address}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if wait_shards is not None:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if len(list(root.glob("samples/*/shards/shard-*.parquet"))) >= wait_shards:
                on_shards()
                break
            time.sleep(0.2)
    out, _ = proc.communicate(timeout=900)
    line = next((x for x in out.splitlines() if x.startswith("FINGERPRINTS ")), None)
    if wait_shards is None:
        assert proc.returncode == 0 and line, out[-3000:]
    return (json.loads(line.split(" ", 1)[1]) if line else None), proc.returncode, out


def executions(root: Path) -> list[dict]:
    log = next(root.glob("samples/*/logs/executions.jsonl"))
    return [json.loads(x) for x in log.read_text().splitlines()]


def test_two_nodes_then_lose_one_mid_stage(cluster, tmp_path):
    address, add_worker = cluster
    worker = add_worker()
    head_id, *_ = wait_nodes(address, 2)

    killed_root = tmp_path / "killed"
    _, rc, out = pipeline(killed_root, address, wait_shards=3, on_shards=worker.kill)
    first = executions(killed_root)
    assert len({e["node"] for e in first}) == 2, first  # shards ran on both nodes
    sample_dir = next(killed_root.glob("samples/[!.]*"))
    assert rc != 0 and not (sample_dir / "_SUCCESS").exists(), out[-2000:]  # the lost node's shard failed the stage
    done_before = sorted(e["shard"] for e in first)

    add_worker()  # a replacement node joins; the rerun recomputes only what the lost node had in flight
    wait_nodes(address, 2)
    resumed, _, _ = pipeline(killed_root, address)
    rerun = executions(killed_root)[len(first):]
    total = json.loads((sample_dir / "meta.json").read_text())["info"]["shards"]
    assert sorted(e["shard"] for e in rerun) == sorted(set(range(total)) - set(done_before))

    clean, _, _ = pipeline(tmp_path / "clean", address)
    assert resumed == clean
