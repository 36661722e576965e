"""SIGKILL the pipeline inside every stage (load, questions, sampling, judging, pairs, reference
log-probs, training, evaluation), one after the other on the same artifact root; the final rerun
completes and its artifacts equal an uninterrupted run's, and training resumes from its checkpoint.

The kill point is chosen by `$SUMPREF_KILL_AT` (`sumpref.faults`): the library SIGKILLs its own
process group there (the driver and the local Ray processes it started), a real kill -9 at a
moment that a poll from outside could miss in fast stages."""

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration._procs import kill_session

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from pathlib import Path
from tests.integration._pipeline_config import run_stages, tiny_config
cfg = tiny_config(Path(sys.argv[1]), data={"num_articles": 10, "eval_fraction": 0.2}, sampling={"shard_size": 2},
                  dpo={"trainer": "packed", "max_steps": 4, "save_steps": 2, "logging_steps": 1})
print("REFS " + json.dumps({stage: ref.uri for stage, ref in run_stages(cfg).items()}))
"""

# (stage folder, kill point): mid-stage where the stage writes several files, else after its data
# and before its marker; training right after its first checkpoint (step 2 of 4).
KILLS = [("articles", "file:1"), ("questions", "file:1"), ("samples", "file:2"), ("judged", "produced"),
         ("pairs", "file:1"), ("refprobs", "produced"), ("dpo", "checkpoint:1"), ("eval", "file:1")]
BYTE_EQUAL = ("articles", "questions", "samples", "judged", "pairs", "refprobs")


def run(root: Path, kill_at: str | None = None) -> dict | None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SUMPREF_KILL_AT")}
    env["PYTHONPATH"] = str(ROOT)
    if kill_at:
        env["SUMPREF_KILL_AT"] = kill_at
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
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


def final_state(refs: dict) -> dict:
    """What must not depend on the kills: every data stage's fingerprint, the adapter weights, the
    evaluated summaries and metrics (training metrics also hold timings and `resumed_from`)."""
    from sumpref.artifacts import ArtifactRef, load_ref

    got: dict = {}
    for stage, uri in refs.items():
        ref: ArtifactRef = load_ref(uri)
        if stage in BYTE_EQUAL:
            got[stage] = ref.fingerprint
    dpo, ev = load_ref(refs["dpo"]).path, load_ref(refs["eval"]).path
    got["adapter_weights"] = digest(dpo / "adapter" / "adapter_model.safetensors")
    got["eval_summaries"] = digest(*sorted(ev.glob("summaries_*.parquet")))
    got["eval_models"] = json.loads((ev / "report.json").read_text())["models"]
    return got


def test_kill_in_every_stage_then_rerun_equals_uninterrupted(tmp_path):
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

    clean = run(tmp_path / "clean")
    assert json.loads((stage_dir(tmp_path / "clean", "dpo") / "adapter" / "metrics.json").read_text())["resumed_from"] == 0
    assert final_state(resumed) == final_state(clean)
