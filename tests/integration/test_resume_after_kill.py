"""SIGKILL the run during summary sampling; the rerun computes only the missing shards and ends
with artifacts identical to an uninterrupted run with the same seed."""

import json
import os
import signal
import subprocess
import sys
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
cfg = tiny_config(Path(sys.argv[1]), data={"num_articles": 8, "eval_fraction": 0.125}, sampling={"shard_size": 1})
refs = run_stages(cfg, through="pairs")
print("FINGERPRINTS " + json.dumps({stage: ref.fingerprint for stage, ref in refs.items()}))
"""


def run_pipeline(root: Path, kill_after_shards: int | None = None) -> dict | None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if kill_after_shards is None:
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out[-3000:]
        line = next(x for x in out.splitlines() if x.startswith("FINGERPRINTS "))
        return json.loads(line.split(" ", 1)[1])
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if len(list(root.glob("samples/*/shards/shard-*.parquet"))) >= kill_after_shards:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and every Ray process it started
            break
        time.sleep(0.2)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    kill_session(proc.pid)  # its Ray processes that left the group; not other tests' clusters (`ray stop` would)
    return None


def executions(root: Path) -> list[int]:
    log = next(root.glob("samples/[!.]*/logs/executions.jsonl"))
    return [json.loads(x)["shard"] for x in log.read_text().splitlines()]


def test_sigkill_during_sampling_then_resume(tmp_path):
    killed = tmp_path / "killed"
    run_pipeline(killed, kill_after_shards=3)
    sample_dir = next(killed.glob("samples/[!.]*"))  # not the lock files beside it
    assert not (sample_dir / "_SUCCESS").exists()
    done_before = sorted(int(p.stem.split("-")[1]) for p in sample_dir.glob("shards/shard-*.parquet"))
    assert len(done_before) >= 3
    n_exec_before = len(executions(killed))

    resumed = run_pipeline(killed)
    rerun = executions(killed)[n_exec_before:]
    total = json.loads((sample_dir / "meta.json").read_text())["info"]["shards"]
    assert sorted(rerun) == sorted(set(range(total)) - set(done_before))  # only unfinished shards
    assert json.loads((sample_dir / "meta.json").read_text())["info"]["shards_reused"] == len(done_before)

    clean = run_pipeline(tmp_path / "clean")
    assert resumed == clean  # identical content, stage by stage, to an uninterrupted run
