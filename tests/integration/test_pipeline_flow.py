"""The whole flow for real: Prefect (a test server), local Ray, the embedded model."""

import json

import pytest

from tests.integration._flow_states import task_states
from tests.integration._pipeline_config import tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


def artifact_dirs(root, stage):
    """A stage's artifact folders (not the lock files beside them)."""
    d = root / stage
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.exists() else []


def stage_dirs(root, stage):
    return [p.name for p in artifact_dirs(root, stage)]


def test_full_flow_then_cached_rerun_then_beta_change(prefect_api, tmp_path_factory, monkeypatch):
    from flows.full_pipeline import full_pipeline

    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-a-key")  # a key alone adds no paid baseline (eval.api_baseline does)
    root = tmp_path_factory.mktemp("runs")
    trl = {"trainer": "trl"}  # TRL's DPOTrainer here (the tiny config's default is our packed trainer)
    cfg = tiny_config(root, dpo=trl)

    state = full_pipeline(cfg, return_state=True)
    assert state.is_completed()
    report_md = state.result()
    report = json.loads((root.joinpath(report_md).parent / "report.json").read_text())
    md = open(report_md).read()
    assert set(report["models"]) == {"base", "tuned"} and report["eval_articles"] >= 1
    assert report["training"][0]["steps"] == 2 and report["training"][0]["pairs_train"] > 0
    assert "Win rate vs base" in md and "Rows dropped or flagged" in md
    ci = report["win_rates"]["tuned vs base"]["ci95"]
    assert ci[0] <= report["win_rates"]["tuned vs base"]["value"] <= ci[1]
    first = task_states(state)
    assert first and all(s == "Completed" for s in first.values()), first

    again = full_pipeline(cfg, return_state=True)
    assert again.result() == report_md
    states = task_states(again)
    assert len(states) == len(first) and all(s == "Cached" for s in states.values()), states
    # The task's cache is the library's key: the cached pairs ref is the folder the stage spec names.
    from sumpref import stages
    from sumpref.artifacts import ArtifactRef

    pairs_ref = json.loads(artifact_dirs(root, "pairs")[0].joinpath("meta.json").read_text())["ref"]
    judged_ref = json.loads(artifact_dirs(root, "judged")[0].joinpath("meta.json").read_text())["ref"]
    assert stages.pairs_spec(cfg, ArtifactRef(**judged_ref)).key == pairs_ref["key"]

    # A cached task whose artifact folder was deleted is recomputed, not trusted.
    import shutil

    pairs_dir = artifact_dirs(root, "pairs")[0]
    shutil.rmtree(pairs_dir)
    healed = full_pipeline(cfg, return_state=True)
    assert healed.is_completed() and (pairs_dir / "_SUCCESS").exists()

    before = {s: stage_dirs(root, s) for s in ("articles", "questions", "samples", "judged", "pairs", "dpo", "eval")}
    changed = full_pipeline(tiny_config(root, dpo={**trl, "beta": 0.3}), return_state=True)
    assert changed.is_completed()
    after = {s: stage_dirs(root, s) for s in before}
    for stage in ("articles", "questions", "samples", "judged", "pairs"):
        assert after[stage] == before[stage], stage
    assert len(after["dpo"]) == len(before["dpo"]) + 1 and len(after["eval"]) == len(before["eval"]) + 1
    states = task_states(changed)
    recomputed = {name.rsplit("-", 1)[0] for name, s in states.items() if s != "Cached"}
    assert recomputed == {"train-dpo", "evaluate", "publish-report"}, states

    # Iterative DPO with our packed trainer: reference log-probs are their own cached stage; round
    # 1's sampling comes from cache (same inputs), round 2 samples from the merged round-1 policy
    # and trains against it as the reference.
    packed = full_pipeline(tiny_config(root, iterations=2, dpo={"trainer": "packed"}), return_state=True)
    assert packed.is_completed()
    import pyarrow.parquet as pq

    ref_dirs = artifact_dirs(root, "refprobs")
    assert len(ref_dirs) == 2  # one per round
    assert {"ref_chosen_logp", "ref_rejected_logp"} <= set(pq.read_schema(ref_dirs[0] / "train.parquet").names)
    report = json.loads((root.joinpath(packed.result()).parent / "report.json").read_text())
    assert [t["steps"] for t in report["training"]] == [2, 2] and report["training"][1]["train_loss"] is not None
    merged = artifact_dirs(root, "merged")[0]
    samples_meta = [json.loads((d / "meta.json").read_text()) for d in artifact_dirs(root, "samples")]
    assert any(m["config"]["policy"]["model"] == str(merged / "model") for m in samples_meta)
    states = task_states(packed)
    sampling = sorted(s for n, s in states.items() if n.startswith("sample-summaries"))
    assert sampling == ["Cached", "Completed"], states
