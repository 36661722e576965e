"""SIGKILL the pipeline and rerun it; the rerun ends with the artifacts of an uninterrupted run of
the same config and seed (`clean`, one local run that every test here compares against): the same
data, and the same generation accounting (token counts and requests per stage and in the report,
summed over the kept shards whichever attempt wrote them).

- Inside every stage (load, questions, sampling, judging, pairs, reference log-probs, training,
  evaluation), one after the other on the same artifact root; training resumes from its
  checkpoint. The kill point is chosen by `$SUMPREF_KILL_AT` (`sumpref.faults`): the library
  SIGKILLs its own process group there (the driver and the local Ray processes it started), a real
  kill -9 at a moment that a poll from outside could miss in fast stages.
- From outside, during sampling on two actors: the rerun computes only the missing shards.
- On a real two-node Ray cluster on 127.0.0.1 (a head and a second node started with `ray start`,
  one CPU each; the run submitted with `RAY_ADDRESS`): shards run on both nodes; killing the
  second node mid-sampling costs only its shards in flight, and the rerun's data stages equal
  `clean`'s."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration._procs import kill_session

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# One config for both tests; `argv[2]` the stage to stop after, `argv[3]` the policy's actors (the
# replicas enter no data stage's key: the fingerprints through reference log-probs do not change).
SCRIPT = """
import json, sys
from pathlib import Path
from tests.integration._pipeline_config import run_stages, tiny_config
cfg = tiny_config(Path(sys.argv[1]), data={"num_articles": 10, "eval_fraction": 0.2}, sampling={"shard_size": 2},
                  policy={"replicas": int(sys.argv[3])},
                  dpo={"trainer": "packed", "max_steps": 4, "save_steps": 2, "logging_steps": 1})
refs = run_stages(cfg, through=sys.argv[2])
print("REFS " + json.dumps({stage: ref.uri for stage, ref in refs.items()}))
"""

# (stage folder, kill point): mid-stage where the stage writes several files, else after its data
# and before its marker; training right after its first checkpoint (step 2 of 4).
KILLS = [("articles", "file:1"), ("questions", "file:1"), ("samples", "file:2"), ("judged", "produced"),
         ("pairs", "file:1"), ("refprobs", "produced"), ("dpo", "checkpoint:1"), ("eval_model", "file:2"),
         ("eval_compare", "produced")]
BYTE_EQUAL = ("articles", "questions", "samples", "judged", "pairs", "refprobs")


# What the cluster's processes and their clients get (the nodes run on this machine, unauthenticated).
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def child_env(**extra: str) -> dict:
    """This process's environment for a child: no Ray address or kill point of its own, this checkout
    importable, and `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SUMPREF_KILL_AT")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def start(root: Path, kill_at: str | None = None, through: str = "eval", replicas: int = 1, log=subprocess.PIPE,
          ray_address: str | None = None):
    """The run in a session of its own; its output to `log` (a file where nobody reads it meanwhile).
    On local Ray it starts, or on the cluster at `ray_address`."""
    env = child_env(**({"SUMPREF_KILL_AT": kill_at} if kill_at else {}),
                    **({"RAY_ADDRESS": ray_address, **CLUSTER_ENV} if ray_address else {}))
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(root), through, str(replicas)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def run(root: Path, kill_at: str | None = None, **kw) -> dict | None:
    proc = start(root, kill_at, **kw)
    out, _ = proc.communicate(timeout=900)
    kill_session(proc.pid)
    if kill_at:
        assert proc.returncode == -signal.SIGKILL, f"not killed at {kill_at}: {out[-3000:]}"
        assert f"SIGKILL at {kill_at}" in out
        return None
    assert proc.returncode == 0, out[-3000:]
    return json.loads(next(x for x in out.splitlines() if x.startswith("REFS ")).split(" ", 1)[1])


def stage_dir(root: Path, stage: str) -> Path:
    dirs = [d for d in (root / stage).iterdir() if not d.name.startswith(".")]  # not the lock files
    assert len(dirs) == 1, dirs
    return dirs[0]


def digest(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def fingerprints(refs: dict) -> dict:
    from sumpref.artifacts import load_ref

    return {stage: load_ref(uri).fingerprint for stage, uri in refs.items()}


COUNTS = ("prompt_tokens", "output_tokens", "requests")  # not timings, GPU seconds or retries


def token_counts(obj, where: str = "") -> dict:
    """Every backend stats dict inside `obj` (a stage's `info`, a report's accounting), by its path:
    its token counts and requests."""
    if not isinstance(obj, dict):
        return {}
    if "prompt_tokens" in obj:
        return {where: {k: obj.get(k) for k in COUNTS}}
    return {k: v for key, sub in obj.items() for k, v in token_counts(sub, f"{where}/{key}").items()}


def accounting(refs: dict) -> dict:
    """Generation accounting in each stage's meta.json, by stage (the stages that generate)."""
    from sumpref.artifacts import load_ref

    return {f"{stage}{where}": c for stage, uri in refs.items() for where, c in token_counts(load_ref(uri).meta()["info"]).items()}


def final_state(refs: dict) -> dict:
    """What must not depend on the kills: every data stage's fingerprint, the adapter weights, the
    evaluated summaries and metrics (training metrics also hold timings and `resumed_from`), and the
    generation accounting of the stages and the report."""
    from sumpref.artifacts import load_ref

    got = {stage: fp for stage, fp in fingerprints(refs).items() if stage in BYTE_EQUAL}
    dpo, ev = load_ref(refs["dpo"]).path, load_ref(refs["eval"]).path
    got["adapter_weights"] = digest(dpo / "adapter" / "adapter_model.safetensors")
    got["eval_summaries"] = digest(*sorted(ev.glob("summaries_*.parquet")))
    report = json.loads((ev / "report.json").read_text())
    got["eval_models"] = report["models"]
    got["accounting"] = accounting(refs)
    got["report_accounting"] = token_counts(report.get("accounting", {}))
    return got


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    """An uninterrupted run: each stage's ref by name."""
    root = tmp_path_factory.mktemp("clean")
    refs = run(root)
    assert json.loads((stage_dir(root, "dpo") / "adapter" / "metrics.json").read_text())["resumed_from"] == 0
    assert accounting(refs)["samples/backend"]["prompt_tokens"] > 0  # the accounting compared below is not empty
    return refs


def test_kill_in_every_stage_then_rerun_equals_uninterrupted(tmp_path, clean):
    killed = tmp_path / "killed"
    for stage, point in KILLS:
        run(killed, f"{stage}:{point}")
        d = stage_dir(killed, stage)
        assert not (d / "_SUCCESS").exists() and not (d / "meta.json").exists(), stage  # no half-finished artifact
        if stage == "dpo":
            steps = sorted(p.name for p in (d / "adapter" / "checkpoints").glob("step-*"))
            assert steps == ["step-2"], steps
    resumed = run(killed)
    metrics = json.loads((stage_dir(killed, "dpo") / "adapter" / "metrics.json").read_text())
    assert metrics["resumed_from"] == 2 and metrics["steps"] == 4  # from the checkpoint, not from step 0
    assert final_state(resumed) == final_state(clean)


def executions(root: Path) -> list[dict]:
    return [json.loads(x) for x in (stage_dir(root, "samples") / "logs" / "executions.jsonl").read_text().splitlines()]


def wait_for_shards(proc: subprocess.Popen, root: Path, n: int, then) -> None:
    """Call `then()` once `n` sampling shards of the run at `root` are written (if it is still running)."""
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if len(list(root.glob("samples/*/shards/shard-*.parquet"))) >= n:
            then()
            return
        time.sleep(0.2)


def test_sigkill_during_sampling_on_two_actors_then_resume(tmp_path, clean):
    """Killed from outside once 2 of the 4 sampling shards are written (two actors, so a third may be
    in flight); the rerun computes only the missing shards, and its data stages equal `clean`'s."""
    killed = tmp_path / "killed"
    with open(tmp_path / "killed.log", "w") as log:
        proc = start(killed, through="pairs", replicas=2, log=log)
    wait_for_shards(proc, killed, 2, lambda: os.killpg(proc.pid, signal.SIGKILL))  # the driver and its Ray
    proc.wait(timeout=60)
    kill_session(proc.pid)  # its Ray processes that left the group; not other tests' clusters (`ray stop` would)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]  # finished before the kill?
    sample_dir = stage_dir(killed, "samples")
    assert not (sample_dir / "_SUCCESS").exists()
    done_before = sorted(int(p.stem.split("-")[1]) for p in sample_dir.glob("shards/shard-*.parquet"))
    n_exec_before = len(executions(killed))

    resumed = run(killed, through="pairs", replicas=2)
    rerun = [e["shard"] for e in executions(killed)[n_exec_before:]]
    total = json.loads((sample_dir / "meta.json").read_text())["info"]["shards"]
    assert 2 <= len(done_before) < total == 4
    assert sorted(rerun) == sorted(set(range(total)) - set(done_before))  # only unfinished shards
    assert json.loads((sample_dir / "meta.json").read_text())["info"]["shards_reused"] == len(done_before)
    got = fingerprints(resumed)
    assert got == {stage: fp for stage, fp in fingerprints(clean).items() if stage in got}  # stage by stage
    # The sampling stage's tokens are those of all 4 kept shards, not of the 2 the rerun computed.
    assert accounting(resumed) == accounting({stage: uri for stage, uri in clean.items() if stage in resumed})


class Node:
    """`ray start --block` in its own session, so the test can SIGKILL exactly this node."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-gpus=0",
                                      "--disable-usage-stats", *args], env=child_env(**CLUSTER_ENV),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        kill_session(self.proc.pid)  # the raylet, its workers and agents left the group but not the session
        self.proc.wait(timeout=60)


def wait_nodes(address: str, n: int) -> list[str]:
    code = ("import ray, time, sys\nray.init(address=sys.argv[1])\n"
            f"for _ in range(300):\n    alive = [x['NodeID'] for x in ray.nodes() if x['Alive']]\n"
            f"    if len(alive) >= {n}: print('NODES', ' '.join(alive)); break\n    time.sleep(0.5)\n")
    out = subprocess.run([sys.executable, "-c", code, address], env=child_env(**CLUSTER_ENV), capture_output=True,
                         text=True, timeout=300)
    line = next((x for x in out.stdout.splitlines() if x.startswith("NODES")), None)
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    return line.split()[1:]


@pytest.fixture
def cluster():
    """A head node (one CPU) on 127.0.0.1; `add_node()` joins another one-CPU node."""
    ray_dir = tempfile.mkdtemp(prefix="rm-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    address = f"127.0.0.1:{port}"
    # Ray rewrites a 127.0.0.1 bootstrap address into this machine's node IP for its clients, so the
    # nodes keep their default node IP (the same machine) rather than pinning 127.0.0.1.
    nodes = [Node("--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={ray_dir}",
                  f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}")]

    def add_node() -> Node:
        nodes.append(Node(f"--address={address}", "--num-cpus=1"))
        return nodes[-1]

    try:  # the nodes go with the test, also when the head never came up
        wait_nodes(address, 1)
        yield address, add_node
    finally:
        for node in reversed(nodes):
            if node.proc.poll() is None:
                node.kill()
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_two_nodes_then_lose_one_mid_sampling(cluster, tmp_path, clean):
    """Two actors, one per node. The second node is SIGKILLed once 2 of the 4 sampling shards are
    written: the stage fails without a marker; a replacement node joins and the rerun computes
    exactly the shards not yet written; its data stages equal `clean`'s (local Ray, one actor)."""
    address, add_node = cluster
    worker = add_node()
    wait_nodes(address, 2)

    killed = tmp_path / "killed"
    with open(tmp_path / "killed.log", "w") as log:
        proc = start(killed, through="samples", replicas=2, log=log, ray_address=address)
        wait_for_shards(proc, killed, 2, worker.kill)
        proc.wait(timeout=600)
    kill_session(proc.pid)
    first = executions(killed)
    assert len({e["node"] for e in first}) == 2, first  # shards ran on both nodes
    sample_dir = stage_dir(killed, "samples")
    assert proc.returncode != 0 and not (sample_dir / "_SUCCESS").exists(), (tmp_path / "killed.log").read_text()[-2000:]
    done_before = {e["shard"] for e in first}

    add_node()  # a replacement node joins; the rerun recomputes only what the lost node had in flight
    wait_nodes(address, 2)
    resumed = run(killed, through="samples", replicas=2, ray_address=address)
    rerun = [e["shard"] for e in executions(killed)[len(first):]]
    total = json.loads((sample_dir / "meta.json").read_text())["info"]["shards"]
    assert total == 4 and sorted(rerun) == sorted(set(range(total)) - done_before)
    got = fingerprints(resumed)
    assert set(got) == {"articles", "questions", "samples"}
    assert got == {stage: fp for stage, fp in fingerprints(clean).items() if stage in got}
