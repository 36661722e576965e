"""Two runs of the same stage at once, as two real processes: the work is done once, both get the
same finished artifact, and no reader ever sees a half-written one (local root and S3 root; on S3
also as two machines, each with its own local cache, where only the lease in the store is shared)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.s3_store import new_bucket, s3_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# A stage whose produce is slow enough that the second process arrives while the first works.
SCRIPT = """
import glob, json, os, sys, time
from sumpref.artifacts import run_stage, write_table
root, log = sys.argv[1], sys.argv[2]

def produce(out):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    for i in range(3):
        write_table(out / "shards" / f"shard-{i:05d}.parquet", [{"i": i, "x": "y" * 1000}] * 100)
        time.sleep(1)
    return {"rows": 300}

# Both processes start the stage together (a barrier on files), however slowly each one started.
open(log + f".ready-{os.getpid()}", "w").close()
while len(glob.glob(log + ".ready-*")) < 2:
    time.sleep(0.05)
print("REF " + json.dumps(run_stage(root, "demo", {"a": 1}, [], "1", produce).__dict__))
"""


def run_two(root: str, tmp_path: Path, machines: int = 1) -> tuple[list[dict], list[str]]:
    log = tmp_path / "produce.log"
    envs = [{**os.environ, "PYTHONPATH": str(ROOT), "SUMPREF_ARTIFACT_CACHE": str(tmp_path / f"cache{i % machines}")}
            for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, root, str(log)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for env in envs]
    refs = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-2000:]
        refs.append(json.loads(next(x for x in out.splitlines() if x.startswith("REF ")).split(" ", 1)[1]))
    return refs, log.read_text().split()


def check(refs: list[dict], producers: list[str]) -> None:
    from sumpref.artifacts import load_ref, read_table

    assert len(producers) == 1, producers  # one process did the work, the other waited for it
    assert refs[0] == refs[1]
    ref = load_ref(refs[0]["uri"])
    assert ref.exists() and ref.rows == 300
    assert sum(len(read_table(ref.child(f"shards/shard-{i:05d}.parquet"))) for i in range(3)) == 300


def test_two_processes_same_stage_local_root(tmp_path):
    refs, producers = run_two(str(tmp_path / "runs"), tmp_path)
    check(refs, producers)


def test_two_processes_same_stage_s3_root(tmp_path, monkeypatch):
    with s3_server():
        bucket = new_bucket()
        refs, producers = run_two(f"{bucket}/runs", tmp_path)
        check(refs, producers)


def test_two_machines_same_stage_s3_root(tmp_path):
    """No shared disk: the local file locks differ, so only the lease object in the store keeps the
    second run from producing; it waits, then returns the first run's artifact."""
    from sumpref import storage

    with s3_server():
        bucket = new_bucket()
        refs, producers = run_two(f"{bucket}/runs", tmp_path, machines=2)
        check(refs, producers)
        assert "_LOCK" not in storage.list_files(refs[0]["uri"])
